//! Autopay renewals through the worker: exact periods and amounts, price versions,
//! notices, catch-up after a clock jump.

use serde_json::{Value, json};

use crate::support::app::replicas;
use crate::support::{Card, Gw, Tenant, TestApp};

/// Buys Orbita START (1990 RUB / month, autopay) at `at` and pays it; returns
/// (customer, subscription).
pub async fn bought_monthly(app: &TestApp, t: &Tenant, external_id: &str, at: &str) -> (String, String) {
    app.set_clock(at).await;
    let customer = app.customer(t, external_id).await;
    let bought = app.purchase(t, &customer, "START").await;
    assert!(app.pay_by(&bought, Card::Ok).await.approved);
    (customer, bought["subscription"]["id"].as_str().unwrap().to_owned())
}

pub async fn payments_of(app: &TestApp, t: &Tenant, customer: &str) -> Vec<Value> {
    app.get(t, &format!("/v1/payments?customer_id={customer}&limit=100")).await.expect(200)["data"]
        .as_array()
        .unwrap()
        .clone()
}

pub async fn orbita(app: &TestApp, policy: Value) -> Tenant {
    orbita_on(app, Gw::CloudPayments, policy).await
}

/// Orbita with its START plan on `gw`.
pub async fn orbita_on(app: &TestApp, gw: Gw, policy: Value) -> Tenant {
    let t = app.tenant_on(gw, "Orbita", "Europe/Moscow", policy).await;
    app.plan_monthly(&t, "START", "1990.00").await;
    t
}

crate::on_both_gateways!(a_year_of_monthly_renewals_after_one_clock_jump);

async fn a_year_of_monthly_renewals_after_one_clock_jump(gw: Gw) {
    let app = TestApp::with_worker().await;
    let t = orbita_on(&app, gw, json!({"renewal_notice_days": 3})).await;
    let (customer, sub_id) = bought_monthly(&app, &t, "year-1", "2026-01-31T10:00:00Z").await;

    // One jump over the whole year: the worker catches up period by period.
    app.advance_to("2027-01-31T10:00:00Z").await;

    let payments = payments_of(&app, &t, &customer).await;
    let renewals: Vec<&Value> = payments.iter().filter(|p| p["kind"] == "renewal").collect();
    assert_eq!(renewals.len(), 12, "{payments:#?}");
    let expected_starts = [
        "2026-02-28T10:00:00Z",
        "2026-03-31T10:00:00Z",
        "2026-04-30T10:00:00Z",
        "2026-05-31T10:00:00Z",
        "2026-06-30T10:00:00Z",
        "2026-07-31T10:00:00Z",
        "2026-08-31T10:00:00Z",
        "2026-09-30T10:00:00Z",
        "2026-10-31T10:00:00Z",
        "2026-11-30T10:00:00Z",
        "2026-12-31T10:00:00Z",
        "2027-01-31T10:00:00Z",
    ];
    for (p, start) in renewals.iter().zip(expected_starts) {
        assert_eq!(p["status"], "succeeded");
        assert_eq!(p["amount"]["value"], "1990.00");
        assert_eq!(p["period_start"], start);
    }
    assert_eq!(renewals[11]["period_end"], "2027-02-28T10:00:00Z");
    let sub = app.get(&t, &format!("/v1/subscriptions/{sub_id}")).await.expect(200);
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["current_period_start"], "2027-01-31T10:00:00Z");
    assert_eq!(sub["current_period_end"], "2027-02-28T10:00:00Z");
    assert_eq!(sub["next_charge_at"], "2027-02-28T10:00:00Z");

    // Every renewal reached the provider once, as a merchant-initiated charge of the saved method.
    match gw {
        Gw::CloudPayments => {
            let txs: Vec<_> = app
                .sim
                .transactions()
                .into_iter()
                .filter(|t| t.token.is_some() && t.tr_initiator_code.is_some())
                .collect();
            assert_eq!(txs.len(), 12);
            assert!(
                txs.iter().all(|t| t.status == "Completed"
                    && t.tr_initiator_code == Some(0)
                    && t.payment_scheduled == Some(1))
            );
        }
        Gw::YooKassa => {
            let method = app.saved_method(&customer).await;
            let autopays: Vec<_> = app.yk.payments().into_iter().filter(|p| p.autopay).collect();
            assert_eq!(autopays.len(), 12);
            for (p, renewal) in autopays.iter().zip(&renewals) {
                assert_eq!(p.status, "succeeded");
                assert!(p.capture && p.confirmation_token.is_none());
                assert_eq!(p.method_id.as_deref(), Some(method.as_str()), "charged by payment_method_id");
                assert_eq!(p.amount.to_string(), "1990.00");
                assert_eq!(p.metadata["customer_id"], customer.as_str());
                assert_eq!(
                    p.idempotence_key,
                    p.metadata["attempt_id"].as_str().unwrap(),
                    "Idempotence-Key = attempt id"
                );
                assert_eq!(renewal["gateway_transaction_id"], p.id.as_str());
            }
        }
    }
    assert_eq!(app.captures_of(&t, &customer), 13);

    let events = app.event_types(&t).await;
    let count = |ty: &str| events.iter().filter(|e| *e == ty).count();
    assert_eq!(count("subscription.renewed"), 12);
    assert_eq!(count("subscription.renewal_upcoming"), 12, "one notice per period: {events:?}");
    assert_eq!(count("payment.succeeded"), 13);
    assert_eq!(count("payment.failed"), 0);
    app.assert_ledger_balanced().await;
    assert_eq!(app.account_total("revenue").await, "25870.00");
}

/// The query counting the outbox's messages of type `ty` (a job's type name).
fn jobs_of_type(ty: &str) -> String {
    format!("SELECT count(*) AS n FROM outbox_events WHERE event_type = '{ty}'")
}

/// `n` customers of `t` who bought START on 2026-03-05 09:00 (each renews on
/// 2026-04-05, all in one wave); only the charges' own answers report the
/// renewals' captures (no Pay notification takes one of them to the one-by-one
/// path first). Returns (customer, subscription) pairs.
async fn bought_for_one_wave(app: &TestApp, t: &Tenant, prefix: &str, n: usize) -> Vec<(String, String)> {
    let mut bought = Vec::new();
    for i in 0..n {
        bought.push(bought_monthly(app, t, &format!("{prefix}-{i}"), "2026-03-05T09:00:00Z").await);
    }
    app.settle().await;
    app.sim.set_token_charge_notifications(false);
    bought
}

/// Each of `bought` renewed once on 2026-04-05 for 1990.00, charged once at the
/// provider, and active for the new period.
async fn assert_renewed_once(app: &TestApp, t: &Tenant, bought: &[(String, String)]) {
    for (customer, sub_id) in bought {
        let payments = payments_of(app, t, customer).await;
        let renewals: Vec<&Value> = payments.iter().filter(|p| p["kind"] == "renewal").collect();
        assert_eq!(renewals.len(), 1, "{payments:#?}");
        assert_eq!(renewals[0]["status"], "succeeded");
        assert_eq!(renewals[0]["amount"]["value"], "1990.00");
        assert_eq!(renewals[0]["period_start"], "2026-04-05T09:00:00Z");
        assert_eq!(renewals[0]["period_end"], "2026-05-05T09:00:00Z");
        let sub = app.get(t, &format!("/v1/subscriptions/{sub_id}")).await.expect(200);
        assert_eq!(sub["status"], "active");
        assert_eq!(sub["current_period_start"], "2026-04-05T09:00:00Z");
        assert_eq!(sub["current_period_end"], "2026-05-05T09:00:00Z");
        assert_eq!(app.captures_of(t, customer), 2, "the purchase and one renewal charged at the provider");
    }
}

/// A wave of captured renewals whose set-based recording fails (a fault injected in
/// the database refuses the batch's period move, after its payments were marked
/// paid in the same transaction) is recorded one by one: nothing of the failed
/// batch stays, every renewal is paid once and renewed once.
#[tokio::test]
async fn a_wave_whose_set_based_recording_fails_is_recorded_one_by_one() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({})).await;
    let bought = bought_for_one_wave(&app, &t, "one-by-one", 4).await;
    // The fault: the set-based period move (`db::subscription_batches::apply_paid_periods`) raises.
    app.refuse_statements("subscriptions", "UPDATE subscriptions s SET status = v.status").await;

    app.advance_to("2026-04-05T09:00:00Z").await;

    assert!(app.refusals().await, "the set-based recording was tried and refused");
    assert_renewed_once(&app, &t, &bought).await;
    let events = app.event_types(&t).await;
    let count = |ty: &str| events.iter().filter(|e| *e == ty).count();
    assert_eq!(count("subscription.renewed"), 4, "{events:?}");
    assert_eq!(count("payment.succeeded"), 8, "{events:?}");
    app.assert_ledger_balanced().await;
    assert_eq!(app.account_total("revenue").await, "15920.00", "eight payments of 1990.00 in revenue, none twice");
}

/// A wave of six renewals against a provider that answers slowly, with the worker's
/// gateway calls bounded to two: the provider never sees more than the bound (per
/// worker: `deploy/test` runs this with two workers too), and every renewal is
/// charged once.
#[tokio::test]
async fn a_wave_of_renewals_keeps_no_more_gateway_calls_open_than_the_bound() {
    let mut app = TestApp::spawn().await;
    app.start_worker_with(&[("BILLING_GATEWAY_CONCURRENCY", "2")]);
    let t = orbita(&app, json!({})).await;
    let mut bought = Vec::new();
    for i in 0..6 {
        bought.push(bought_monthly(&app, &t, &format!("bounded-{i}"), "2026-03-05T09:00:00Z").await);
    }
    app.settle().await;
    // Each charge takes 300 ms to answer: the six of the wave, sent together, overlap
    // at the provider unless the worker holds them back.
    app.sim.set_charge_latency_ms(300);

    app.advance_to("2026-04-05T09:00:00Z").await;

    let (most, bound) = (app.sim.most_charges_in_flight(), 2 * replicas());
    assert!((2..=bound).contains(&most), "{most} charges at once: the bound (2 per worker) reached, never exceeded");
    for (customer, sub_id) in &bought {
        let sub = app.get(&t, &format!("/v1/subscriptions/{sub_id}")).await.expect(200);
        assert_eq!(sub["status"], "active");
        assert_eq!(sub["current_period_end"], "2026-05-05T09:00:00Z");
        assert_eq!(app.captures_of(&t, customer), 2, "the purchase and one renewal charged at the provider");
    }
    let events = app.event_types(&t).await;
    assert_eq!(events.iter().filter(|e| *e == "subscription.renewed").count(), 6, "{events:?}");
    app.assert_ledger_balanced().await;
}

/// A tick's plain renewals go out as one wave job. When the wave cannot record
/// what the provider captured (a fault injected in the database refuses every
/// ledger posting, set-based and one by one), each attempt is handed to its own
/// `charge_attempt` job instead of failing the wave as a whole; once the database
/// accepts again, each job learns its capture from the provider (`payments/find`)
/// and records it: every renewal is charged once and paid once.
#[tokio::test]
async fn a_wave_that_cannot_record_its_captures_hands_each_attempt_to_its_own_job() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({"renewal_notice_days": 0})).await;
    let bought = bought_for_one_wave(&app, &t, "handed", 3).await;
    app.refuse_statements("ledger_entries", "WITH accounts AS").await;

    app.set_clock("2026-04-05T09:00:00Z").await;
    assert_eq!(app.count_when(&jobs_of_type("charge_attempt"), 3).await, 3, "each attempt handed to its own job");
    app.accept_statements("ledger_entries").await;
    app.settle().await;

    assert!(app.refusals().await, "recording the captures was tried and refused");
    // One wave per scheduler tick; with two workers their ticks may split the three
    // (each claims what the other has not locked), never send one twice.
    let waves = app.count(&jobs_of_type("charge_attempts")).await;
    assert!((1..=replicas() as i64).contains(&waves), "{waves} waves: one per worker's tick at most");
    let attempts_in_waves = "FROM outbox_events, jsonb_array_elements_text(payload->'data'->'attempt_ids') a \
                             WHERE event_type = 'charge_attempts'";
    let in_waves = format!("SELECT count(*) AS n {attempts_in_waves}");
    assert_eq!(app.count(&in_waves).await, 3, "the tick's three renewals went out in waves");
    let distinct = format!("SELECT count(DISTINCT a) AS n {attempts_in_waves}");
    assert_eq!(app.count(&distinct).await, 3, "each attempt in one wave only");
    let delayed = "SELECT count(*) AS n FROM outbox_events WHERE event_type = 'charge_attempt' AND delay_step = 0";
    assert_eq!(app.count(delayed).await, 3, "each handed over after the queue's first retry step");
    assert_eq!(app.count("SELECT count(*) AS n FROM dead_letters").await, 0);
    assert_renewed_once(&app, &t, &bought).await;
    let events = app.event_types(&t).await;
    assert_eq!(events.iter().filter(|e| *e == "subscription.renewed").count(), 3, "{events:?}");
    app.assert_ledger_balanced().await;
    assert_eq!(app.account_total("revenue").await, "11940.00", "six payments of 1990.00 in revenue, none twice");
}

/// With `BILLING_CHARGE_WAVES=0` (a rolling upgrade from a release that cannot read
/// wave jobs), a tick's plain renewals go out as one `charge_attempt` job each, and
/// each is charged and recorded once.
#[tokio::test]
async fn without_charge_waves_each_renewal_has_its_own_job() {
    let mut app = TestApp::spawn().await;
    app.start_worker_with(&[("BILLING_CHARGE_WAVES", "0")]);
    let t = orbita(&app, json!({"renewal_notice_days": 0})).await;
    let bought = bought_for_one_wave(&app, &t, "one-job-each", 3).await;

    app.advance_to("2026-04-05T09:00:00Z").await;

    assert_eq!(app.count(&jobs_of_type("charge_attempts")).await, 0, "no wave job");
    assert_eq!(app.count(&jobs_of_type("charge_attempt")).await, 3, "one job per renewal");
    assert_renewed_once(&app, &t, &bought).await;
    app.assert_ledger_balanced().await;
}

/// The scheduler's list (`due_subscriptions`, migration 000029) holds each due
/// subscription once, at its `due_at`, and renews it once; a list that drifted (a
/// second row at an earlier instant, as a restore of one table could leave) still
/// renews each subscription once (the claim takes a subscription only at its own
/// due instant, and one renewal per period is unique in the database besides), and
/// the stale row is left for the audit to name.
#[tokio::test]
async fn the_schedulers_list_follows_due_at_and_a_stale_row_renews_nothing_twice() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({"renewal_notice_days": 0})).await;
    let bought = bought_for_one_wave(&app, &t, "listed", 2).await;
    let listed = |sub: &str| {
        format!(
            "SELECT count(*) AS n FROM due_subscriptions d JOIN subscriptions s ON s.id = d.subscription_id \
             WHERE s.id = '{sub}' AND d.due_at = s.due_at AND s.due_at = '2026-04-05T09:00:00Z'"
        )
    };
    for (_, sub) in &bought {
        assert_eq!(app.count(&listed(sub)).await, 1, "listed once, at the renewal instant");
    }
    let stale = &bought[0].1;
    app.db
        .execute(&format!(
            "INSERT INTO due_subscriptions SELECT due_at - interval '1 day', id FROM subscriptions WHERE id = '{stale}'"
        ))
        .await;

    app.advance_to("2026-04-05T09:00:00Z").await;

    assert_renewed_once(&app, &t, &bought).await;
    let moved = "SELECT count(*) AS n FROM due_subscriptions d JOIN subscriptions s ON s.id = d.subscription_id \
                 AND d.due_at = s.due_at WHERE s.due_at > '2026-04-05T09:00:00Z'";
    assert_eq!(app.count(moved).await, 2, "both listed again at their next instant");
    let left = format!("SELECT count(*) AS n FROM due_subscriptions WHERE subscription_id = '{stale}'");
    assert_eq!(app.count(&left).await, 2, "the stale row stays for the audit");
}

/// The list follows every kind of move one `UPDATE` statement makes at once (the
/// statement trigger of migration 000032): a due instant moved, one cleared, one
/// left as it was while another column changed; then the cleared one set again. After
/// each statement the list holds exactly each subscription's own instant (the
/// audit's `due_subscriptions_follow` finds no row missing or stale).
#[tokio::test]
async fn the_schedulers_list_follows_a_statement_moving_many_subscriptions() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({"renewal_notice_days": 0})).await;
    let bought = bought_for_one_wave(&app, &t, "moved", 3).await;
    let ids: Vec<&str> = bought.iter().map(|(_, sub)| sub.as_str()).collect();
    let listed =
        format!("SELECT count(*) AS n FROM due_subscriptions WHERE subscription_id IN ('{}')", ids.join("','"));
    let at = |id: &str, instant: &str| {
        format!("SELECT count(*) AS n FROM due_subscriptions WHERE subscription_id = '{id}' AND due_at = '{instant}'")
    };
    assert_eq!(app.count(&listed).await, 3);
    app.assert_ledger_balanced().await;

    app.db
        .execute(&format!(
            "UPDATE subscriptions SET \
               due_at = CASE id WHEN '{0}' THEN due_at + interval '1 day' WHEN '{1}' THEN NULL ELSE due_at END, \
               updated_at = now() WHERE id IN ('{0}', '{1}', '{2}')",
            ids[0], ids[1], ids[2]
        ))
        .await;
    assert_eq!(app.count(&listed).await, 2, "the cleared one is off the list, nothing stale is left");
    assert_eq!(app.count(&at(ids[0], "2026-04-06T09:00:00Z")).await, 1, "moved a day");
    assert_eq!(app.count(&at(ids[2], "2026-04-05T09:00:00Z")).await, 1, "left at its instant");
    app.assert_ledger_balanced().await;

    app.db
        .execute(&format!(
            "UPDATE subscriptions SET due_at = '2026-04-07T09:00:00Z' WHERE id IN ('{}', '{}')",
            ids[1], ids[2]
        ))
        .await;
    assert_eq!(app.count(&listed).await, 3);
    for id in &ids[1..] {
        assert_eq!(app.count(&at(id, "2026-04-07T09:00:00Z")).await, 1);
    }
    app.assert_ledger_balanced().await;
}
