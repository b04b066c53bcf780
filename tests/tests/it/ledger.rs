//! The database itself refuses a ledger that does not balance or that is edited.

use diesel::sql_query;
use diesel_async::{AnsiTransactionManager, RunQueryDsl, TransactionManager};
use serde_json::json;

use crate::support::TestApp;

async fn try_commit(app: &TestApp, tenant: &str, entries: &[&str]) -> Result<(), String> {
    let mut conn = app.db.conn().await;
    AnsiTransactionManager::begin_transaction(&mut conn).await.unwrap();
    let txn = uuid::Uuid::new_v4();
    let setup = [
        format!(
            "INSERT INTO ledger_accounts (id, tenant_id, code, currency) VALUES ('00000000-0000-0000-0000-0000000000a1', '{tenant}', 'revenue', 'RUB'), ('00000000-0000-0000-0000-0000000000a2', '{tenant}', 'gateway_clearing', 'RUB') ON CONFLICT DO NOTHING"
        ),
        format!(
            "INSERT INTO ledger_transactions (id, tenant_id, kind, description, occurred_at) VALUES ('{txn}', '{tenant}', 'test', 'test', now())"
        ),
    ];
    for sql in setup.iter().map(String::as_str).chain(entries.iter().copied()) {
        let sql = sql.replace("$TXN", &txn.to_string());
        sql_query(&sql).execute(&mut conn).await.map_err(|e| e.to_string())?;
    }
    AnsiTransactionManager::commit_transaction(&mut conn).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn an_unbalanced_transaction_is_rejected_at_commit() {
    let app = TestApp::spawn().await;
    let t = app.tenant("A", "Europe/Moscow", json!({})).await;
    let e = |account: &str, amount: &str| {
        format!(
            "INSERT INTO ledger_entries (transaction_id, account_id, amount, currency) VALUES ('$TXN', '00000000-0000-0000-0000-0000000000{account}', {amount}, 'RUB')"
        )
    };
    let unbalanced = try_commit(&app, &t.id, &[&e("a1", "100.00"), &e("a2", "-99.99")]).await.unwrap_err();
    assert!(unbalanced.contains("does not balance"), "{unbalanced}");
    let single = try_commit(&app, &t.id, &[&e("a1", "100.00")]).await.unwrap_err();
    assert!(single.contains("at least two"), "{single}");
    let empty = try_commit(&app, &t.id, &[]).await.unwrap_err();
    assert!(empty.contains("at least two"), "{empty}");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM ledger_transactions").await,
        0,
        "nothing of the rejected transactions remains"
    );

    try_commit(&app, &t.id, &[&e("a1", "100.00"), &e("a2", "-60.00"), &e("a2", "-40.00")]).await.unwrap();
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_entries").await, 3);

    let mut conn = app.db.conn().await;
    for sql in ["UPDATE ledger_entries SET amount = 1", "DELETE FROM ledger_entries", "DELETE FROM ledger_transactions"]
    {
        let err = sql_query(sql).execute(&mut conn).await.unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_entries").await, 3);
}
