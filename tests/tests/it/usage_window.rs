//! Usage at scale (issue 15, part 5): events land in the partition of the UTC day
//! they were received, event ids are recognised as duplicates for at least 35 days
//! across a key generation's turn, and the worker's upkeep creates partitions ahead,
//! moves rows out of the default partitions, drops days past retention (their
//! totals archived, so the audit still adds up), and forgets key generations past
//! the window. Each generation's keys are unique through a hash index (an exclusion
//! constraint), which concurrent batches claim each id through once.

use billing_shared::domain::usage_filter::FORMAT;
use billing_shared::services::usage_key_filter::{Built, build_due};
use billing_shared::services::usage_partitions::{Upkeep, upkeep};
use billing_tests::cloudpayments::CARD_OK;
use chrono::{DateTime, Utc};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::support::{Tenant, TestApp, rows_on};

async fn report(app: &TestApp, t: &Tenant, c: &str, events: &[(&str, i64)]) -> (i64, i64) {
    let events: Vec<Value> = events
        .iter()
        .map(|(id, q)| {
            json!({"event_id": id, "customer_id": c, "metric": "messages", "quantity": q,
                   "occurred_at": "2026-03-06T08:00:00Z"})
        })
        .collect();
    let r = app.post(t, "/v1/usage", json!({"events": events})).await.expect(200);
    assert_eq!(r["rejected"], json!([]), "{r}");
    (r["accepted"].as_i64().unwrap(), r["duplicates"].as_i64().unwrap())
}

async fn upkeep_at(app: &TestApp, at: &str, retention_days: u32) -> Upkeep {
    app.set_clock(at).await;
    let now: DateTime<Utc> = at.parse().unwrap();
    let mut conn = app.db.conn().await;
    upkeep(&mut conn, now, retention_days).await.unwrap().expect("no other upkeep holds the lock")
}

/// The indexes of a partition of `usage_event_keys`, as `pg_indexes` defines them.
async fn key_indexes(app: &TestApp, partition: &str) -> Vec<String> {
    app.rows(&format!(
        "SELECT replace(indexdef, 'public.', '') AS row FROM pg_indexes WHERE tablename = '{partition}' ORDER BY 1"
    ))
    .await
}

/// A WhatsMonster tenant with a yearly plan of 1 000 messages, and a customer who
/// bought it on 2026-03-05 at 09:00 UTC and paid: (tenant, customer id).
async fn paying_customer(app: &TestApp) -> (Tenant, String) {
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    app.post(
        &t,
        "/v1/plans",
        json!({"code": "YEAR", "name": "Год", "price": {"value": "9900.00", "currency": "RUB"},
               "period": {"unit": "year", "count": 1}, "auto_renew": false,
               "quotas": {"messages": {"limit": 1000, "mode": "block"}}}),
    )
    .await
    .expect(201);
    let c = app.customer(&t, "wm-1").await;
    let bought = app.purchase(&t, &c, "YEAR").await; // 2026-03-05T09:00Z
    assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
    (t, c)
}

#[tokio::test]
async fn ids_count_once_across_a_generation_turn_and_old_days_are_dropped_whole() {
    let app = TestApp::spawn().await;
    let (t, c) = paying_customer(&app).await;

    // Generation 586 runs from 2026-02-26 to 2026-04-02, 587 to 2026-05-07, 588 to 2026-06-11.
    let first = upkeep_at(&app, "2026-03-06T09:00:00Z", 400).await;
    for name in ["usage_events_20260305", "usage_events_20260306", "usage_events_20260309", "usage_event_keys_586"] {
        assert!(first.created.contains(&name.to_owned()), "{name} not in {first:?}");
    }
    // A generation's keys are unique through a hash index; the default partition,
    // which may hold several generations, through a B-tree on both columns.
    for g in [586, 587] {
        let expected = format!("CREATE INDEX usage_event_keys_{g}_key ON usage_event_keys_{g} USING hash (key)");
        assert_eq!(key_indexes(&app, &format!("usage_event_keys_{g}")).await, [expected]);
    }
    assert_eq!(
        key_indexes(&app, "usage_event_keys_default").await,
        ["CREATE UNIQUE INDEX usage_event_keys_default_pkey ON usage_event_keys_default USING btree (generation, key)"]
    );
    assert_eq!(report(&app, &t, &c, &[("e1", 2), ("e2", 3)]).await, (2, 0));
    let where_stored = "SELECT tableoid::regclass::text || ' ' || event_id AS row FROM usage_events ORDER BY 1";
    assert_eq!(app.rows(where_stored).await, ["usage_events_20260306 e1", "usage_events_20260306 e2"]);

    // The first day of generation 587: e1 is still known (and now claimed in 587 as
    // well); e3 is new and claimed in both generations. No partition exists for that
    // day yet: the default one takes it.
    app.set_clock("2026-04-02T10:00:00Z").await;
    assert_eq!(report(&app, &t, &c, &[("e1", 2), ("e3", 5)]).await, (1, 1));
    // Keys are digests of tenant and id (the service computes them, the database's
    // usage_event_key must agree): matched back to the stored events' ids.
    let keys = "SELECT DISTINCT k.generation::text || ' ' || e.event_id AS row FROM usage_event_keys k \
                JOIN usage_events e ON k.key = usage_event_key(e.tenant_id, e.event_id) ORDER BY 1";
    assert_eq!(app.rows(keys).await, ["586 e1", "586 e2", "586 e3", "587 e1", "587 e3"]);
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_event_keys").await, 5);
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_events_default").await, 1);
    let second = upkeep_at(&app, "2026-04-02T10:00:00Z", 400).await;
    assert!(second.created.contains(&"usage_events_20260402".to_owned()), "{second:?}");
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_events_default").await, 0);
    assert!(app.rows(where_stored).await.contains(&"usage_events_20260402 e3".to_owned()));

    // Later in 587: e1 and e2 are found in 586, e3 in 587; e4 is new. With 100 000
    // more ids of other tenants in 586 its partition is no longer trivially small,
    // and a second batch of 30 new ids beside two known ones must still find only
    // the known ones there and add nothing to 586.
    upkeep_at(&app, "2026-04-20T09:00:00Z", 400).await;
    let others = "INSERT INTO usage_event_keys SELECT 586, gen_random_uuid() FROM generate_series(1, 100000)";
    diesel::sql_query(others).execute(&mut app.db.conn().await).await.unwrap();
    diesel::sql_query("ANALYZE usage_event_keys_586").execute(&mut app.db.conn().await).await.unwrap();
    assert_eq!(report(&app, &t, &c, &[("e1", 2), ("e2", 3), ("e3", 5), ("e4", 7)]).await, (1, 3));
    let new_ids: Vec<String> = (1..=30).map(|i| format!("z{i}")).collect();
    let mut batch: Vec<(&str, i64)> = new_ids.iter().map(|id| (id.as_str(), 0)).collect();
    batch.extend([("e1", 2), ("e2", 3)]);
    assert_eq!(report(&app, &t, &c, &batch).await, (30, 2));
    let keys_586 = "SELECT count(*) AS n FROM usage_event_keys WHERE generation = 586";
    assert_eq!(app.count(keys_586).await, 100_003, "nothing claimed in 586 after its successor's first day");
    let used = || async {
        app.get(&t, &format!("/v1/customers/{c}/entitlements")).await.expect(200)["metrics"]["messages"]["used"].clone()
    };
    assert_eq!(used().await, 17);
    app.assert_ledger_balanced().await;

    // In 588 with 30 days kept: every day up to 2026-04-20 is dropped whole (its
    // totals archived) and generation 586 is forgotten.
    let third = upkeep_at(&app, "2026-05-20T09:00:00Z", 30).await;
    for name in ["usage_events_20260306", "usage_events_20260402", "usage_events_20260420", "usage_event_keys_586"] {
        assert!(third.dropped.contains(&name.to_owned()), "{name} not in {third:?}");
    }
    assert!(third.created.contains(&"usage_event_keys_589".to_owned()), "{third:?}");
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_events").await, 0);
    let archived = "SELECT metric || ' ' || quantity::text || ' ' || events::text AS row FROM usage_archived";
    assert_eq!(app.rows(archived).await, ["messages 17 34"]);
    app.assert_ledger_balanced().await;
    // e1 and e4 (generation 587) are still duplicates; e2, last seen in 586, is past
    // the window (35 to 70 days) and counts again.
    assert_eq!(report(&app, &t, &c, &[("e1", 2), ("e2", 2), ("e4", 7)]).await, (1, 2));
    assert_eq!(used().await, 19);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn concurrent_batches_claim_each_id_once() {
    let app = TestApp::spawn().await;
    let (t, c) = paying_customer(&app).await;
    upkeep_at(&app, "2026-03-06T09:00:00Z", 400).await;
    // Six batches at once: 40 ids in all of them, 10 of each batch's own.
    let ids: Vec<Vec<String>> = (0..6)
        .map(|b| (0..40).map(|i| format!("shared-{i}")).chain((0..10).map(|i| format!("own-{b}-{i}"))).collect())
        .collect();
    let tries = ids.iter().map(|batch| {
        let events: Vec<(&str, i64)> = batch.iter().map(|id| (id.as_str(), 1)).collect();
        let (app, t, c) = (&app, &t, &c);
        async move { report(app, t, c, &events).await }
    });
    let answers = futures_util::future::join_all(tries).await;
    let accepted: i64 = answers.iter().map(|(a, _)| a).sum();
    let duplicates: i64 = answers.iter().map(|(_, d)| d).sum();
    assert_eq!((accepted, duplicates), (100, 200), "{answers:?}");
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_event_keys_586").await, 100);
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_events").await, 100);
    let used = app.get(&t, &format!("/v1/customers/{c}/entitlements")).await.expect(200);
    assert_eq!(used["metrics"]["messages"]["used"], 100, "{used}");
    app.assert_ledger_balanced().await;
}

/// The stored key filters: generation, format, keys, bytes.
async fn stored_filters(app: &TestApp) -> Vec<String> {
    app.rows(
        "SELECT generation::text || ' ' || format || ' ' || keys::text || ' ' || length(bits)::text AS row \
           FROM usage_key_filters ORDER BY generation",
    )
    .await
}

#[tokio::test]
async fn a_frozen_generations_filter_skips_lookups_of_new_ids_and_misses_no_duplicate() {
    let app = TestApp::spawn().await;
    let (t, c) = paying_customer(&app).await;
    let build_at = |at: &'static str| {
        let app = &app;
        async move {
            app.set_clock(at).await;
            build_due(&mut app.db.conn().await, at.parse().unwrap()).await.unwrap()
        }
    };
    upkeep_at(&app, "2026-03-06T09:00:00Z", 400).await;
    assert_eq!(report(&app, &t, &c, &[("e1", 2), ("e2", 3)]).await, (2, 0));

    // Generation 587 starts on 2026-04-02; 586's filter is built two days in, not
    // on the overlap day nor the day after.
    assert_eq!(build_at("2026-04-02T10:00:00Z").await, None);
    assert_eq!(build_at("2026-04-03T23:59:59Z").await, None);
    let built = build_at("2026-04-04T00:00:00Z").await;
    // Sized for a full page of keys (157): 1 536 bits.
    assert_eq!(built, Some(Built { generation: 586, keys: 2, bytes: 192 }));
    assert_eq!(stored_filters(&app).await, [format!("586 {FORMAT} 2 192")]);
    assert_eq!(build_at("2026-04-04T10:00:00Z").await, None, "built once");

    // An id slipped into 586 behind the filter's back (nothing does that: 586 is
    // frozen) shows which answered: the filter rules it out, so it is not looked up
    // and counts. e1 and e2, which the filter may hold, are looked up and found.
    let ghost = format!("INSERT INTO usage_event_keys VALUES (586, usage_event_key('{}', 'ghost'))", t.id);
    diesel::sql_query(ghost).execute(&mut app.db.conn().await).await.unwrap();
    assert_eq!(report(&app, &t, &c, &[("e1", 2), ("e2", 3), ("ghost", 4), ("e5", 5)]).await, (2, 2));
    assert_eq!(report(&app, &t, &c, &[("ghost", 4), ("e5", 5), ("e6", 6)]).await, (1, 2), "now in 587");
    let used = app.get(&t, &format!("/v1/customers/{c}/entitlements")).await.expect(200);
    assert_eq!(used["metrics"]["messages"]["used"], 2 + 3 + 4 + 5 + 6, "{used}");

    // In 588, a day in: 587 has no filter yet, so its ids are looked up (e5 is a
    // duplicate), and 586's filter, past the window, is deleted by the next build.
    assert_eq!(build_at("2026-05-08T10:00:00Z").await, None);
    assert_eq!(stored_filters(&app).await, Vec::<String>::new());
    assert_eq!(report(&app, &t, &c, &[("e5", 5), ("e7", 7)]).await, (1, 1));
    let built = build_at("2026-05-09T10:00:00Z").await;
    assert_eq!(built, Some(Built { generation: 587, keys: 3, bytes: 192 }), "ghost, e5 and e6");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_filter_of_another_format_is_not_used_and_the_earlier_claim_still_looks_up() {
    let app = TestApp::spawn().await;
    let (t, c) = paying_customer(&app).await;
    upkeep_at(&app, "2026-03-06T09:00:00Z", 400).await;
    assert_eq!(report(&app, &t, &c, &[("e1", 2)]).await, (1, 0));
    // Another release's filter of 586 that rules every key out: this release does
    // not read it, so e1 is looked up in 586 and found.
    let other = "INSERT INTO usage_key_filters VALUES (586, 'another-format', 7, 1, '\\x0000000000000000', now())";
    diesel::sql_query(other).execute(&mut app.db.conn().await).await.unwrap();
    app.set_clock("2026-04-04T09:00:00Z").await;
    assert_eq!(report(&app, &t, &c, &[("e1", 2), ("e2", 3)]).await, (1, 1));
    // The earlier release's three-argument claim looks every key up: e1 and e2
    // are known, e3 is new and claimed in 587.
    let claim = format!(
        "SELECT count(*) AS n FROM usage_claim_keys(587, false, ARRAY[usage_event_key('{0}', 'e1'), \
         usage_event_key('{0}', 'e2'), usage_event_key('{0}', 'e3')])",
        t.id
    );
    assert_eq!(app.count(&claim).await, 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_event_keys WHERE generation = 587").await, 2);
}

/// A connection with a transaction open, claiming ids in generation 586 (every id
/// looked up in 585) as `usage_claim` does.
struct Claimer {
    conn: diesel_async::AsyncPgConnection,
    tenant: String,
}

impl Claimer {
    async fn begin(app: &TestApp, t: &Tenant) -> Self {
        use diesel_async::SimpleAsyncConnection;
        let mut conn = app.db.conn().await;
        conn.batch_execute("BEGIN").await.unwrap();
        Claimer { conn, tenant: t.id.to_string() }
    }

    /// The ids among `ids` claimed now, and those of them the transaction itself
    /// wrote (the `ON CONFLICT` way, after the plain insert failed): the plain
    /// insert writes in the function's subtransaction, whose rows carry another
    /// `xmin`. Both sorted.
    async fn claim(&mut self, ids: &[&str]) -> (Vec<String>, Vec<String>) {
        let ids = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", ");
        let t = &self.tenant;
        let claimed = rows_on(
            &mut self.conn,
            &format!(
                "WITH ids AS (SELECT unnest(ARRAY[{ids}]) AS id), \
                      claimed AS (SELECT usage_claim(586, false, ARRAY(SELECT usage_event_key('{t}', id) FROM ids ORDER BY 1), \
                                                     '{{}}') AS keys) \
                 SELECT id AS row FROM ids, claimed WHERE usage_event_key('{t}', id) = ANY(claimed.keys) ORDER BY 1"
            ),
        )
        .await;
        let by_transaction = rows_on(
            &mut self.conn,
            &format!(
                "SELECT id AS row FROM unnest(ARRAY[{ids}]) AS id \
                   JOIN usage_event_keys k ON k.generation = 586 AND k.key = usage_event_key('{t}', id) \
                  WHERE k.xmin = pg_current_xact_id()::xid ORDER BY 1"
            ),
        )
        .await;
        (claimed, by_transaction)
    }

    async fn end(mut self, how: &str) {
        use diesel_async::SimpleAsyncConnection;
        self.conn.batch_execute(how).await.unwrap();
    }
}

/// `Claimer::claim` in a transaction of its own, committed.
async fn claim(app: &TestApp, t: &Tenant, ids: &[&str]) -> (Vec<String>, Vec<String>) {
    let mut c = Claimer::begin(app, t).await;
    let claimed = c.claim(ids).await;
    c.end("COMMIT").await;
    claimed
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

#[tokio::test]
async fn a_claim_inserts_plainly_and_when_it_meets_a_claimed_id_claims_the_rest_the_on_conflict_way() {
    let app = TestApp::spawn().await;
    let (t, _) = paying_customer(&app).await;
    // No partition for 586 yet: keys land in the default partition, whose B-tree
    // primary key stops the plain insert at "a" (unique_violation).
    assert_eq!(claim(&app, &t, &["a"]).await, (ids(&["a"]), ids(&[])), "plain");
    assert_eq!(claim(&app, &t, &["a", "b", "c"]).await, (ids(&["b", "c"]), ids(&["b", "c"])));
    assert_eq!(claim(&app, &t, &["a", "c"]).await, (ids(&[]), ids(&[])));
    // The upkeep moves them into 586's partition, whose exclusion constraint stops
    // the plain insert at "c" (exclusion_violation).
    upkeep_at(&app, "2026-03-06T09:00:00Z", 400).await;
    assert_eq!(claim(&app, &t, &["c", "d"]).await, (ids(&["d"]), ids(&["d"])));
    assert_eq!(claim(&app, &t, &["e", "f"]).await, (ids(&["e", "f"]), ids(&[])), "plain");
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_event_keys_586").await, 6);
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_event_keys_default").await, 0);
}

#[tokio::test]
async fn a_claim_waits_for_a_batch_in_flight_holding_one_of_its_ids() {
    let app = TestApp::spawn().await;
    let (t, _) = paying_customer(&app).await;
    upkeep_at(&app, "2026-03-06T09:00:00Z", 400).await;
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(300));
    // x is claimed by a batch still in flight; the second waits for it, and once it
    // commits, x is a duplicate and the rest are claimed.
    let mut first = Claimer::begin(&app, &t).await;
    assert_eq!(first.claim(&["x"]).await, (ids(&["x"]), ids(&[])));
    let mut second = Claimer::begin(&app, &t).await;
    let (claimed, ()) = tokio::join!(second.claim(&["w", "x", "y"]), async {
        pause().await;
        first.end("COMMIT").await
    });
    assert_eq!(claimed, (ids(&["w", "y"]), ids(&["w", "y"])));
    second.end("COMMIT").await;
    // When the batch in flight rolls back instead, its id is free: the plain insert
    // goes through.
    let mut first = Claimer::begin(&app, &t).await;
    assert_eq!(first.claim(&["z"]).await, (ids(&["z"]), ids(&[])));
    let mut second = Claimer::begin(&app, &t).await;
    let (claimed, ()) = tokio::join!(second.claim(&["z", "zz"]), async {
        pause().await;
        first.end("ROLLBACK").await
    });
    assert_eq!(claimed, (ids(&["z", "zz"]), ids(&[])));
    second.end("COMMIT").await;
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_event_keys_586").await, 5);
}
