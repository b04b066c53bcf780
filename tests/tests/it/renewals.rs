//! Autopay renewals through the worker: exact periods and amounts, price versions,
//! notices, catch-up after a clock jump.

use billing_tests::cloudpayments::CARD_OK;
use serde_json::{Value, json};

use crate::support::{Tenant, TestApp};

/// Buys Orbita START (1990 RUB / month, autopay) at `at` and pays it; returns
/// (customer, subscription).
pub async fn bought_monthly(app: &TestApp, t: &Tenant, external_id: &str, at: &str) -> (String, String) {
    app.set_clock(at).await;
    let customer = app.customer(t, external_id).await;
    let bought = app.purchase(t, &customer, "START").await;
    let outcome = app.pay(&bought, CARD_OK).await;
    assert_eq!(outcome.status, "Completed");
    (customer, bought["subscription"]["id"].as_str().unwrap().to_owned())
}

pub async fn payments_of(app: &TestApp, t: &Tenant, customer: &str) -> Vec<Value> {
    app.get(t, &format!("/v1/payments?customer_id={customer}&limit=100")).await.expect(200)["data"]
        .as_array()
        .unwrap()
        .clone()
}

pub async fn orbita(app: &TestApp, policy: Value) -> Tenant {
    let t = app.tenant("Orbita", "Europe/Moscow", policy).await;
    app.plan_monthly(&t, "START", "1990.00").await;
    t
}

#[tokio::test]
async fn a_year_of_monthly_renewals_after_one_clock_jump() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({"renewal_notice_days": 3})).await;
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

    // Every renewal reached the provider once, as a scheduled merchant-initiated charge.
    let txs: Vec<_> =
        app.sim.transactions().into_iter().filter(|t| t.token.is_some() && t.tr_initiator_code.is_some()).collect();
    assert_eq!(txs.len(), 12);
    assert!(
        txs.iter().all(|t| t.status == "Completed" && t.tr_initiator_code == Some(0) && t.payment_scheduled == Some(1))
    );
    assert_eq!(app.sim.captures_for_account(&customer), 13);

    let events = app.event_types(&t).await;
    let count = |ty: &str| events.iter().filter(|e| *e == ty).count();
    assert_eq!(count("subscription.renewed"), 12);
    assert_eq!(count("subscription.renewal_upcoming"), 12, "one notice per period: {events:?}");
    assert_eq!(count("payment.succeeded"), 13);
    assert_eq!(count("payment.failed"), 0);
    app.assert_ledger_balanced().await;
    assert!(app.db.check("SELECT (SELECT sum(e.amount) FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id WHERE a.code = 'revenue') = 25870.00 AS ready").await);
}
