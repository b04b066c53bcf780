//! Reading the test database from outside the service: rows, counts, the
//! audit's invariants and the outbox's events.

use diesel_async::AsyncPgConnection;
use serde_json::Value;

use super::{Tenant, TestApp};

/// [`TestApp::rows`] on a given connection (inside a transaction it holds open).
pub async fn rows_on(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct R {
        #[diesel(sql_type = diesel::sql_types::Text)]
        row: String,
    }
    let rows: Vec<R> = diesel::sql_query(sql).load(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(|r| r.row).collect()
}

impl TestApp {
    /// The text of each row of `sql`, which names its one column `row`.
    pub async fn rows(&self, sql: &str) -> Vec<String> {
        rows_on(&mut self.db.conn().await, sql).await
    }

    /// The sum of every ledger entry on the accounts with this code (`revenue`,
    /// `gateway_clearing`, ...), all tenants together, as `numeric(14, 2)` text.
    pub async fn account_total(&self, code: &str) -> String {
        let sql = format!(
            "SELECT coalesce(sum(e.amount), 0)::numeric(14, 2)::text AS row FROM ledger_entries e \
             JOIN ledger_accounts a ON a.id = e.account_id WHERE a.code = '{code}'"
        );
        self.rows(&sql).await.remove(0)
    }

    pub async fn count(&self, sql: &str) -> i64 {
        use diesel::sql_types::BigInt;
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.db.conn().await;
        let row: N = diesel::sql_query(sql).get_result(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.n
    }

    /// `count(sql)` once it equals `want`, or its last value after about a minute:
    /// for rows another process writes after the effect the test waited for (a
    /// webhook delivery is recorded after the endpoint answered).
    pub async fn count_when(&self, sql: &str, want: i64) -> i64 {
        let mut n = self.count(sql).await;
        for _ in 0..1200 {
            if n == want {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            n = self.count(sql).await;
        }
        n
    }

    /// Every ledger transaction sums to zero per currency, and every other invariant
    /// `billing-api audit` checks holds (its checks, run from outside).
    pub async fn assert_ledger_balanced(&self) {
        let mut conn = self.db.conn().await;
        let findings = billing_shared::services::audit::run(&mut conn, None).await.expect("audit");
        let breached: Vec<_> = findings.iter().filter(|f| !f.breaches.is_empty()).collect();
        assert!(breached.is_empty(), "audit breaches:\n{}", billing_shared::services::audit::table(&findings));
    }

    /// Event types in the outbox, oldest first, optionally of one tenant.
    pub async fn events(&self, tenant: &Tenant) -> Vec<Value> {
        use diesel::sql_types::Jsonb;
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct E {
            #[diesel(sql_type = Jsonb)]
            payload: Value,
        }
        let mut conn = self.db.conn().await;
        let rows: Vec<E> = diesel::sql_query(format!(
            "SELECT payload FROM outbox_events WHERE tenant_id = '{}' AND message = 'event' ORDER BY seq",
            tenant.id
        ))
        .load(&mut conn)
        .await
        .expect("events");
        rows.into_iter().map(|r| r.payload).collect()
    }

    pub async fn event_types(&self, tenant: &Tenant) -> Vec<String> {
        self.events(tenant).await.iter().map(|e| e["type"].as_str().unwrap_or("").to_owned()).collect()
    }

    /// A fault injected in the database: any statement on `table` whose text
    /// starts with `statement` raises (an `AFTER … FOR EACH STATEMENT` trigger),
    /// rolling its transaction back. [`Self::refusals`] counts them.
    pub async fn refuse_statements(&self, table: &str, statement: &str) {
        self.db.execute("CREATE SEQUENCE refused_statements").await;
        self.db
            .execute(&format!(
                "CREATE FUNCTION refuse_statements() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                   IF current_query() LIKE '{statement}%' THEN \
                     PERFORM nextval('refused_statements'); RAISE EXCEPTION 'injected fault: the statement is refused'; \
                   END IF; RETURN NULL; END $$"
            ))
            .await;
        self.db
            .execute(&format!(
                "CREATE TRIGGER refuse_statements AFTER INSERT OR UPDATE OR DELETE ON {table} \
                 FOR EACH STATEMENT EXECUTE FUNCTION refuse_statements()"
            ))
            .await;
    }

    /// Lifts the fault [`Self::refuse_statements`] injected on `table`.
    pub async fn accept_statements(&self, table: &str) {
        self.db.execute(&format!("DROP TRIGGER refuse_statements ON {table}")).await;
    }

    /// Whether a statement [`Self::refuse_statements`] refuses ran (a sequence
    /// counts them; it is not rolled back with them).
    pub async fn refusals(&self) -> bool {
        self.db.check("SELECT is_called AS ready FROM refused_statements").await
    }
}
