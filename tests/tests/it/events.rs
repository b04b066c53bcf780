//! Events reach RabbitMQ (`billing.events`, routing key `<tenant>.<type>`) in order
//! per subscription, and tenants' webhook URLs signed, retried, dead-lettered and
//! replayable.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use billing_tests::webhook_sink::WebhookSink;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use reqwest::Method;
use serde_json::{Value, json};

use crate::renewals::{bought_monthly, orbita};
use crate::support::{Tenant, TestApp, rows_on};

/// A consumer bound to `billing.events` with `#`, like a product backend's.
struct Tap {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    _conn: lapin::Connection,
}

impl Tap {
    async fn start(app: &TestApp) -> Tap {
        let conn = lapin::Connection::connect(&app.mq.amqp_url, lapin::ConnectionProperties::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        // The worker declares the exchange when it connects.
        for _ in 0..200 {
            let probe = conn.create_channel().await.unwrap();
            let passive = lapin::options::ExchangeDeclareOptions { passive: true, ..Default::default() };
            if probe
                .exchange_declare("billing.events".into(), lapin::ExchangeKind::Topic, passive, FieldTable::default())
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let q = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap();
        ch.queue_bind(
            q.name().clone(),
            "billing.events".into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let mut consumer = ch
            .basic_consume(q.name().clone(), "tap".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .unwrap();
        let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let body: Value = serde_json::from_slice(&d.data).unwrap_or(Value::Null);
                sink.lock().unwrap().push((d.routing_key.to_string(), body));
                let _ = d.ack(BasicAckOptions::default()).await;
            }
        });
        Tap { seen, _conn: conn }
    }

    fn seen(&self) -> Vec<(String, Value)> {
        self.seen.lock().unwrap().clone()
    }
}

pub(crate) async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..500 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn events_reach_the_topic_exchange_in_order_per_subscription() {
    let app = TestApp::with_worker().await;
    let tap = Tap::start(&app).await;
    let t = orbita(&app, json!({"renewal_notice_days": 2})).await;
    let (_c1, s1) = bought_monthly(&app, &t, "ev-1", "2026-03-10T09:00:00Z").await;
    let (_c2, s2) = bought_monthly(&app, &t, "ev-2", "2026-03-10T09:00:00Z").await;
    app.advance_to("2026-06-10T09:00:00Z").await;
    let outbox = app.events(&t).await;
    wait_for("every event on RabbitMQ", || tap.seen().len() >= outbox.len()).await;
    let seen = tap.seen();
    for (key, body) in &seen {
        assert_eq!(key, &format!("{}.{}", t.id, body["type"].as_str().unwrap()));
    }
    for sub in [&s1, &s2] {
        let ids = |events: &mut dyn Iterator<Item = &Value>| -> Vec<String> {
            let mut v: Vec<String> = Vec::new();
            for e in events {
                let id = e["id"].as_str().unwrap().to_owned();
                if e["data"]["subscription_id"] == sub.as_str() && !v.contains(&id) {
                    v.push(id);
                }
            }
            v
        };
        let published = ids(&mut seen.iter().map(|(_, b)| b));
        let committed = ids(&mut outbox.iter());
        assert_eq!(published, committed, "order per subscription");
        let types: Vec<&str> = outbox
            .iter()
            .filter(|e| e["data"]["subscription_id"] == sub.as_str())
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert!(committed.len() >= 11, "activated, 3 notices, 3 renewals, 4 payments: {types:?}");
    }
}

/// 6 000 events committed at once, spread over the relay's 16 lanes: the work list
/// empties, and every one of them reaches RabbitMQ.
#[tokio::test]
async fn the_relay_publishes_a_burst_of_events_across_its_lanes() {
    let app = TestApp::with_worker().await;
    let tap = Tap::start(&app).await;
    let t = orbita(&app, json!({})).await;
    app.db
        .execute(&format!(
            "INSERT INTO outbox_events (id, tenant_id, event_type, ordering_key, payload, message, lane, created_at) \
             SELECT id, '{tid}', 'test.burst', id, jsonb_build_object('id', id, 'type', 'test.burst', \
                    'tenant_id', '{tid}', 'created_at', now(), 'data', jsonb_build_object('n', n)), \
                    'event', n % 16, now() \
               FROM (SELECT gen_random_uuid() AS id, n FROM generate_series(1, 6000) n) burst",
            tid = t.id
        ))
        .await;
    let pending = "SELECT count(*) AS n FROM outbox_pending";
    assert_eq!(app.count_when(pending, 0).await, 0, "every message confirmed by the broker");
    let key = format!("{}.test.burst", t.id);
    let burst = || tap.seen().into_iter().filter(|(k, _)| *k == key).collect::<Vec<_>>();
    wait_for("the burst on RabbitMQ", || burst().len() >= 6000).await;
    let mut numbers: Vec<i64> = burst().iter().map(|(_, body)| body["data"]["n"].as_i64().unwrap()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers, (1..=6000).collect::<Vec<_>>(), "each event of the burst published");
}

async fn with_webhook(app: &TestApp, sink: &WebhookSink) -> Tenant {
    let t = orbita(app, json!({})).await;
    app.admin(Method::PATCH, &format!("/v1/admin/tenants/{}", t.id), Some(&json!({"webhook_url": sink.url})))
        .await
        .expect(200);
    t
}

fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v.to_owned()),
            Some(("v1", v)) => sigs.push(v.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(body);
    let expected = hex::encode(billing_tests::cloudpayments::hmac_sha256(secret.as_bytes(), &msg));
    let fresh = t.parse::<i64>().is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
    fresh && sigs.contains(&expected)
}

/// The relay's read of a lane, as diesel sends it (`db::outbox::pending`).
const RELAY_READ: &str = "SELECT \"outbox_events\".\"seq\", \"outbox_events\".\"id\", \"outbox_events\".\"tenant_id\", \
    \"outbox_events\".\"message\", \"outbox_events\".\"event_type\", \"outbox_events\".\"delay_step\", \"outbox_events\".\"payload\", \
    \"outbox_events\".\"trace_context\" FROM (\"outbox_pending\" INNER JOIN \"outbox_events\" ON (\"outbox_events\".\"seq\" = \
    \"outbox_pending\".\"seq\")) WHERE (\"outbox_pending\".\"lane\" = $1) ORDER BY \"outbox_pending\".\"seq\" ASC LIMIT $2";

/// The plan of the relay's read of a lane on `conn` (`EXPLAIN EXECUTE` of the
/// prepared `relay_read`), one line of text per plan line.
async fn relay_plan(conn: &mut diesel_async::AsyncPgConnection) -> String {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let plan: Vec<Line> = diesel::sql_query("EXPLAIN EXECUTE relay_read(3, 500)").load(conn).await.unwrap();
    plan.into_iter().map(|l| l.line).collect::<Vec<_>>().join("\n")
}

/// The relay runs its statements in `db::in_transaction_by_index`. A connection
/// that prepared its read of a lane on an analyzed, empty outbox keeps a generic
/// plan of sequential scans, and still uses it once the outbox holds 30 000 events;
/// inside `in_transaction_by_index` the read is planned for the outbox of the
/// moment and reaches each message by its index. The settings end with the
/// transaction.
#[tokio::test]
async fn the_relays_read_is_planned_for_the_outbox_of_the_moment() {
    use diesel_async::SimpleAsyncConnection;
    let app = TestApp::spawn().await;
    let settings = "SELECT current_setting('plan_cache_mode') || ' ' || current_setting('enable_seqscan') \
                    || current_setting('enable_hashjoin') || current_setting('enable_mergejoin') AS row";
    let mut conn = app.db.conn().await;
    let runs = "EXECUTE relay_read(3, 500); ".repeat(7);
    conn.batch_execute("VACUUM ANALYZE outbox_events, outbox_pending").await.unwrap();
    conn.batch_execute(&format!("PREPARE relay_read AS {RELAY_READ}; {runs}")).await.unwrap();
    conn.batch_execute(
        "INSERT INTO outbox_events (id, tenant_id, event_type, ordering_key, payload, message, lane, created_at) \
         SELECT gen_random_uuid(), gen_random_uuid(), 'bench.event', gen_random_uuid(), '{}', 'event', (g % 16)::int2, now() \
           FROM generate_series(1, 30000) g; \
         DELETE FROM outbox_pending WHERE seq <= (SELECT max(seq) - 1000 FROM outbox_events)",
    )
    .await
    .unwrap();
    let kept = relay_plan(&mut conn).await;
    assert!(kept.contains("Seq Scan on outbox_events"), "the hazard this guards against: {kept}");
    let (inside, plan) = billing_shared::db::in_transaction_by_index(&mut conn, async |c| {
        Ok::<_, diesel::result::Error>((rows_on(c, settings).await, relay_plan(c).await))
    })
    .await
    .unwrap();
    assert_eq!(inside, ["force_custom_plan offoffoff"]);
    // Planned for this read (its lane a constant, not a parameter), by the lane's index.
    assert!(plan.contains("on outbox_pending_pkey") && plan.contains("Index Cond: (lane = '3'::smallint)"), "{plan}");
    assert!(plan.contains("Index Scan using outbox_events_pkey on outbox_events"), "{plan}");
    assert!(plan.contains("Index Cond: (seq = outbox_pending.seq)"), "{plan}");
    assert!(!plan.contains("Seq Scan") && !plan.contains("Hash"), "{plan}");
    assert_eq!(rows_on(&mut conn, settings).await, ["auto ononon"], "the settings outlived the transaction");
}

#[tokio::test]
async fn webhooks_are_signed_and_retried_until_delivered() {
    let app = TestApp::with_worker().await;
    let sink = WebhookSink::start();
    sink.fail_next(2);
    let t = with_webhook(&app, &sink).await;
    bought_monthly(&app, &t, "hook-1", "2026-03-10T09:00:00Z").await;
    wait_for("two deliveries", || sink.delivered().len() == 2).await;
    let received = sink.received();
    assert_eq!(received.len(), 4, "two failures, then both events");
    for r in &received {
        assert!(verify(&t.webhook_secret, r.signature.as_deref().unwrap(), &r.body), "bad signature {:?}", r.signature);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(r.event_id.as_deref(), body["id"].as_str());
        assert_eq!(body["tenant_id"], t.id.as_str());
    }
    let types: Vec<String> = sink.delivered().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(types.len(), 2);
    assert!(types.contains(&"payment.succeeded".to_owned()) && types.contains(&"subscription.activated".to_owned()));
    let delivered = "SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'delivered'";
    assert_eq!(app.count_when(delivered, 2).await, 2);
    assert_eq!(app.count("SELECT coalesce(sum(attempts), 0)::bigint AS n FROM webhook_deliveries").await, 4);
}

#[tokio::test]
async fn undeliverable_webhooks_are_dead_lettered_and_can_be_replayed() {
    let mut app = TestApp::spawn().await;
    // The ~3-day ladder compressed to about a second.
    app.start_worker_with(&[("BILLING_RETRY_DELAY_DIVISOR", "300000")]);
    let sink = WebhookSink::start();
    sink.set_always_fail(true);
    let t = with_webhook(&app, &sink).await;
    bought_monthly(&app, &t, "hook-2", "2026-03-10T09:00:00Z").await;
    let mut dead = Value::Null;
    // Waits for the condition (up to a minute under a loaded CI machine), never for a time.
    for _ in 0..1200 {
        dead = app.admin(Method::GET, "/v1/admin/dead-letters?queue=billing.webhooks", None).await.expect(200);
        if dead["data"].as_array().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let letters = dead["data"].as_array().unwrap();
    assert_eq!(letters.len(), 2, "{dead}");
    for l in letters {
        assert_eq!(l["queue"], "billing.webhooks");
        assert_eq!(l["attempts"], 10, "the first try and nine retries");
        assert!(l["reason"].as_str().unwrap().contains("500"), "{l}");
        assert_eq!(l["payload"]["tenant_id"], t.id.as_str());
    }
    assert_eq!(sink.received().len(), 20);
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'dead'").await, 2);

    // The tenant fixed its endpoint: the operator replays.
    sink.set_always_fail(false);
    let replayed =
        app.admin(Method::POST, "/v1/admin/dead-letters/billing.webhooks/replay", Some(&json!({}))).await.expect(200);
    assert_eq!(replayed, json!({"queue": "billing.webhooks", "replayed": 2}));
    wait_for("replayed deliveries", || sink.delivered().len() == 2).await;
    let open = app.admin(Method::GET, "/v1/admin/dead-letters", None).await.expect(200);
    assert_eq!(open["data"], json!([]));
    let all = app.admin(Method::GET, "/v1/admin/dead-letters?include_replayed=true", None).await.expect(200);
    assert!(all["data"].as_array().unwrap().iter().all(|l| l["replayed_at"].is_string()));
    let delivered = "SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'delivered'";
    assert_eq!(app.count_when(delivered, 2).await, 2, "the replayed deliveries are recorded");
    app.admin(Method::POST, "/v1/admin/dead-letters/no.such.queue/replay", Some(&json!({})))
        .await
        .problem(404, "queue_not_found");
}

#[tokio::test]
async fn during_a_secret_rotation_webhooks_carry_both_signatures() {
    let app = TestApp::with_worker().await;
    let sink = WebhookSink::start();
    let t = with_webhook(&app, &sink).await;
    let rotated = app
        .admin(
            Method::POST,
            &format!("/v1/admin/tenants/{}/keys/rotate", t.id),
            Some(&json!({"api_key": false, "webhook_secret": true})),
        )
        .await
        .expect(200);
    let new_secret = rotated["webhook_secret"].as_str().unwrap();
    bought_monthly(&app, &t, "hook-3", "2026-03-10T09:00:00Z").await;
    wait_for("deliveries", || sink.delivered().len() == 2).await;
    for r in sink.received() {
        let header = r.signature.unwrap();
        assert_eq!(header.matches("v1=").count(), 2);
        assert!(verify(new_secret, &header, &r.body));
        assert!(verify(&t.webhook_secret, &header, &r.body));
    }
}

/// The three events of a renewal recorded by a wave carry the data API.md names,
/// key for key: `payment.succeeded` (the payment), `subscription.renewed` (the
/// subscription with the payment and amount) and `receipt.registered` (the receipt
/// without its document, with its fiscal attributes).
pub(crate) async fn renewal_events_carry_their_data(
    app: &TestApp,
    t: &Tenant,
    customer: &str,
    renewal: &Value,
    receipt: &Value,
) {
    let events = app.events(t).await;
    let payment_id = renewal["id"].as_str().unwrap();
    let data_of = |ty: &str| -> Value {
        let found: Vec<&Value> =
            events.iter().filter(|e| e["type"] == ty && e["data"]["payment_id"] == payment_id).collect();
        assert_eq!(found.len(), 1, "one {ty} of the renewal: {events:#?}");
        found[0]["data"].clone()
    };
    let rub = |value: &str| json!({"value": value, "currency": "RUB"});
    let sub = renewal["subscription_id"].clone();
    assert_eq!(
        data_of("payment.succeeded"),
        json!({
            "payment_id": payment_id, "customer_id": customer, "subscription_id": sub, "kind": "renewal",
            "status": "succeeded", "amount": rub("1990.00"), "from_prepaid": rub("0.00"), "from_cashback": rub("0.00"),
            "gateway_transaction_id": renewal["gateway_transaction_id"], "failure_reason": null, "failure_code": null,
            "duplicate_of": null, "period_start": "2026-04-05T09:00:00Z", "period_end": "2026-05-05T09:00:00Z",
            "lines": [{"kind": "tariff", "description": renewal["lines"][0]["description"], "amount": rub("1990.00")}],
        })
    );
    assert_eq!(
        data_of("subscription.renewed"),
        json!({
            "subscription_id": sub, "customer_id": customer, "plan": "START", "status": "active", "auto_renew": true,
            "current_period_start": "2026-04-05T09:00:00Z", "current_period_end": "2026-05-05T09:00:00Z",
            "next_charge_at": "2026-05-05T09:00:00Z", "payment_id": payment_id, "amount": rub("1990.00"),
        })
    );
    assert!(receipt["fiscal"]["fiscal_document_number"].is_number(), "{receipt:#}");
    assert_eq!(
        data_of("receipt.registered"),
        json!({
            "id": receipt["id"], "payment_id": payment_id, "refund_id": null, "subscription_id": sub, "kind": "income",
            "status": "registered", "total": rub("1990.00"), "attempt": 1,
            "external_id": format!("{}-1", receipt["id"].as_str().unwrap()), "fiscal": receipt["fiscal"],
            "failure_reason": null, "registered_at": receipt["registered_at"],
        })
    );
}
