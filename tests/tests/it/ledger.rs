//! The database itself refuses a ledger that does not balance or that is edited
//! (updated, deleted or truncated).

use diesel::sql_query;
use diesel_async::{AnsiTransactionManager, RunQueryDsl, TransactionManager};
use serde_json::json;

use crate::support::TestApp;

/// Writes one ledger transaction with `entries` ("account amount", e.g. "a1 100.00")
/// the way the service posts: the transaction and its entries in one statement.
async fn try_post(app: &TestApp, tenant: &str, txn: uuid::Uuid, entries: &[&str]) -> Result<(), String> {
    let mut conn = app.db.conn().await;
    AnsiTransactionManager::begin_transaction(&mut conn).await.unwrap();
    let accounts = format!(
        "INSERT INTO ledger_accounts (id, tenant_id, code, currency) VALUES ('00000000-0000-0000-0000-0000000000a1', '{tenant}', 'revenue', 'RUB'), ('00000000-0000-0000-0000-0000000000a2', '{tenant}', 'gateway_clearing', 'RUB') ON CONFLICT DO NOTHING"
    );
    let transaction = format!(
        "INSERT INTO ledger_transactions (id, tenant_id, kind, description, occurred_at) VALUES ('{txn}', '{tenant}', 'test', 'test', now())"
    );
    let rows: Vec<String> = entries
        .iter()
        .map(|e| {
            let (account, amount) = e.split_once(' ').unwrap();
            format!("('{txn}', '00000000-0000-0000-0000-0000000000{account}', {amount}, 'RUB')")
        })
        .collect();
    let posting = if rows.is_empty() {
        transaction
    } else {
        format!(
            "WITH t AS ({transaction}) INSERT INTO ledger_entries (transaction_id, account_id, amount, currency) VALUES {}",
            rows.join(", ")
        )
    };
    for sql in [accounts, posting] {
        if let Err(e) = sql_query(&sql).execute(&mut conn).await {
            AnsiTransactionManager::rollback_transaction(&mut conn).await.unwrap();
            return Err(e.to_string());
        }
    }
    AnsiTransactionManager::commit_transaction(&mut conn).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn an_unbalanced_posting_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.tenant("A", "Europe/Moscow", json!({})).await;
    let post = |entries: &'static [&'static str]| try_post(&app, &t.id, uuid::Uuid::new_v4(), entries);
    let unbalanced = post(&["a1 100.00", "a2 -99.99"]).await.unwrap_err();
    assert!(unbalanced.contains("does not balance: RUB 0.01"), "{unbalanced}");
    let single = post(&["a1 100.00"]).await.unwrap_err();
    assert!(single.contains("has 1 entries; at least two"), "{single}");
    let empty = post(&[]).await.unwrap_err();
    assert!(empty.contains("has 0 entries; at least two"), "{empty}");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM ledger_transactions").await,
        0,
        "nothing of the rejected transactions remains"
    );

    let txn = uuid::Uuid::new_v4();
    try_post(&app, &t.id, txn, &["a1 100.00", "a2 -60.00", "a2 -40.00"]).await.unwrap();
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_entries").await, 3);

    let mut conn = app.db.conn().await;
    // An entry added later to a balanced transaction, or to one that does not exist.
    let late = |txn: uuid::Uuid| {
        format!(
            "INSERT INTO ledger_entries (transaction_id, account_id, amount, currency) VALUES ('{txn}', '00000000-0000-0000-0000-0000000000a1', 5.00, 'RUB'), ('{txn}', '00000000-0000-0000-0000-0000000000a2', -5.00, 'USD')"
        )
    };
    let err = sql_query(late(txn)).execute(&mut conn).await.unwrap_err().to_string();
    assert!(err.contains("does not balance: RUB 5.00, USD -5.00"), "{err}");
    let err = sql_query(late(uuid::Uuid::new_v4())).execute(&mut conn).await.unwrap_err().to_string();
    assert!(err.contains("which does not exist"), "{err}");
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_entries").await, 3);

    for sql in ["UPDATE ledger_entries SET amount = 1", "DELETE FROM ledger_entries", "DELETE FROM ledger_transactions"]
    {
        let err = sql_query(sql).execute(&mut conn).await.unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    // Row triggers do not see TRUNCATE; statement triggers refuse it (migration 000016).
    for sql in ["TRUNCATE ledger_transactions", "TRUNCATE ledger_entries", "TRUNCATE ledger_accounts"] {
        let err = sql_query(sql).execute(&mut conn).await.unwrap_err().to_string();
        assert!(err.contains("the ledger is never truncated"), "{sql}: {err}");
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_entries").await, 3);
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_transactions").await, 1);
}
