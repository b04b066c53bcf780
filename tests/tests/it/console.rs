//! The operator console end to end in headless Chromium: signing in, the tenants
//! and a tenant's chart, approving a held refund (which the worker then executes),
//! a subscription's timeline and search, replaying dead-lettered webhooks, and
//! resending a receipt stuck at a refused ATOL login.

use reqwest::Method;
use serde_json::json;

use crate::events::wait_for;
use crate::faults::dead_letters;
use crate::receipts::{licence_fiscal, paid, receipts, unused_refunds};
use crate::renewals::{bought_monthly, orbita_on, payments_of};
use crate::support::app::ADMIN_TOKEN;
use crate::support::browser::Browser;
use crate::support::{Gw, Tenant, TestApp};
use billing_tests::webhook_sink::WebhookSink;

#[tokio::test]
async fn an_operator_approves_a_held_refund_and_replays_dead_letters_in_the_console() {
    let mut app = TestApp::spawn().await;
    // The ~3-day webhook retry ladder compressed to about a second.
    app.start_worker_with(&[("BILLING_RETRY_DELAY_DIVISOR", "300000")]);
    let sink = WebhookSink::start();
    sink.set_always_fail(true);
    let t = orbita_on(
        &app,
        Gw::CloudPayments,
        json!({"refund_rules": [{"reasons": ["outage"], "decision": "review", "amount": "full"}]}),
    )
    .await;
    app.admin(Method::PATCH, &format!("/v1/admin/tenants/{}", t.id), Some(&json!({"webhook_url": sink.url})))
        .await
        .expect(200);
    // A tenant whose name is markup: the pages show it as text.
    app.tenant("<script>alert(1)</script> & Co", "Europe/Moscow", json!({})).await;
    let (customer, sub) = bought_monthly(&app, &t, "console-1", "2026-03-10T09:00:00Z").await;
    let payment = payments_of(&app, &t, &customer).await[0]["id"].as_str().unwrap().to_owned();
    let held = app
        .post(
            &t,
            "/v1/refunds",
            json!({"payment_id": payment, "reason": "outage", "amount": {"value": "500.00", "currency": "RUB"}}),
        )
        .await
        .expect(201);
    assert_eq!(held["status"], "pending_review");
    let refund_id = held["id"].as_str().unwrap().to_owned();
    // Every event's webhook dies after its retries.
    app.settle().await;
    let events = all_webhooks_dead(&app, &t).await;
    assert!(events >= 3, "purchase and refund request events: {events}");

    let mut b = Browser::start("refund-and-replay").await;
    let console = |path: &str| format!("{}/console{path}", app.base);

    // Signing in: the console sends a stranger to the form; a wrong token is refused.
    sign_in(&mut b, &app, "not-the-token").await;
    assert_eq!(b.path().await, "/console/login");
    assert!(b.text("#detail").await.contains("not the operator token"));
    b.screenshot("sign-in-refused").await;
    sign_in(&mut b, &app, ADMIN_TOKEN).await;
    assert_eq!(b.path().await, "/console/");
    let cookie = b.client.get_named_cookie("billing_console").await.expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site().map(|s| s.to_string()).as_deref(), Some("Strict"));
    let tenants = b.text("#tenants").await;
    assert!(tenants.contains("<script>alert(1)</script> & Co"), "escaped, shown as text: {tenants}");
    assert!(tenants.contains("Orbita") && tenants.contains("active: 1"), "{tenants}");
    assert!(tenants.contains("1990.00 RUB"), "MRR: {tenants}");
    b.screenshot("tenants").await;

    // The tenant: MRR and the day's captured payment in the chart's figures.
    b.click_link("Orbita").await;
    assert_eq!(b.text("#mrr").await, "1990.00 RUB");
    let daily = b.text("#daily").await;
    assert!(daily.contains("2026-03-10 RUB 1990.00 1 0"), "{daily}");
    b.screenshot("tenant-overview").await;

    // The review queue: the held request, approved with a note.
    b.click_link("Refund review").await;
    let queue = b.text("#refunds").await;
    assert!(queue.contains(&refund_id) && queue.contains("500.00 RUB"), "{queue}");
    b.screenshot("refund-review").await;
    b.fill("form[action$='/approve'] input[name=comment]", "outage 2026-03-10").await;
    b.click("form[action$='/approve'] button").await;
    assert_eq!(b.path().await, format!("/console/tenants/{}/refunds", t.id));
    assert_eq!(b.text("#refunds tr:nth-child(2)").await, "No refund is waiting for review.");
    b.screenshot("refund-approved").await;
    let mut refund = json!(null);
    for _ in 0..600 {
        refund = app.get(&t, &format!("/v1/refunds?payment_id={payment}")).await.expect(200)["data"][0].clone();
        if refund["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(refund["status"], "succeeded", "{refund}");
    assert_eq!(refund["decision_code"], "approved_by_operator");
    assert_eq!(refund["review_comment"], "outage 2026-03-10");
    let tx = payments_of(&app, &t, &customer).await[0]["gateway_transaction_id"].as_str().unwrap().to_owned();
    assert_eq!(app.refunded_at_provider(&t, &tx), "500.00".parse().unwrap());

    // The subscription's timeline shows the payment, its refund and the events.
    b.goto(&console(&format!("/tenants/{}/subscriptions/{sub}", t.id))).await;
    assert_eq!(b.text("#status").await, "active");
    let payments = b.text("table.payment").await;
    assert!(payments.contains("succeeded") && payments.contains("1990.00 RUB"), "{payments}");
    assert!(payments.contains("refund outage succeeded 500.00 RUB approved_by_operator"), "{payments}");
    let timeline_events = b.text("#events").await;
    assert!(timeline_events.contains("subscription.activated"), "{timeline_events}");
    b.screenshot("timeline").await;

    // Search by the product's customer id, and one that matches nothing.
    b.goto(&console(&format!("/tenants/{}/subscriptions?status=active&customer=console-1", t.id))).await;
    assert!(b.text("#subscriptions").await.contains(&sub));
    b.goto(&console(&format!("/tenants/{}/subscriptions?customer=nobody", t.id))).await;
    assert!(b.text("#subscriptions").await.contains("No subscriptions match."));
    // Mistakes get a page with the API's stable code.
    b.goto(&console(&format!("/tenants/{}/subscriptions?status=nope", t.id))).await;
    assert_eq!(b.text(".problem strong").await, "validation_failed");
    b.goto(&console("/tenants/not-a-tenant")).await;
    assert_eq!(b.text(".problem strong").await, "tenant_not_found");

    // Without the session cookie nothing is replayed.
    let stranger = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = stranger.post(console("/dead-letters/billing.webhooks/replay")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (303, "/console/login"));

    // Dead letters: the endpoint is fixed, the operator replays them. (The refund's
    // own events died too; a delivery is marked dead before its message is
    // dead-lettered: wait for the letters.)
    let events = all_webhooks_dead(&app, &t).await;
    dead_letters(&app, "billing.webhooks", usize::try_from(events).unwrap()).await;
    b.goto(&console("/dead-letters")).await;
    let letters = b.text("#letters").await;
    assert_eq!(letters.matches("billing.webhooks").count() as i64, events, "{letters}");
    assert!(letters.contains("HTTP 500"), "{letters}");
    b.screenshot("dead-letters").await;
    sink.set_always_fail(false);
    b.click("form[action='/console/dead-letters/billing.webhooks/replay'] button").await;
    assert_eq!(b.path().await, "/console/dead-letters");
    assert!(b.text("#letters").await.contains("No dead letters."));
    wait_for("replayed webhooks delivered", || sink.delivered().len() as i64 >= events).await;
    let dead = "SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'dead'";
    assert_eq!(app.count_when(dead, 0).await, 0, "the replayed deliveries are recorded");
    b.screenshot("dead-letters-replayed").await;

    // Signing out ends the session, also for a copy of its cookie (on any replica).
    let copied = format!("billing_console={}", cookie.value());
    let with_copy = |stranger: &reqwest::Client| stranger.get(console("/dead-letters")).header("cookie", &copied);
    let r = with_copy(&stranger).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the copy works while the session lives");
    b.click("form[action='/console/logout'] button").await;
    assert_eq!(b.path().await, "/console/login");
    b.goto(&console("/dead-letters")).await;
    assert_eq!(b.path().await, "/console/login");
    let r = with_copy(&stranger).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (303, "/console/login"));
    b.close().await;
}

/// Waits until the tenant's events are all published and every webhook delivery of
/// them is dead (the sink refuses them all); returns how many events there are.
async fn all_webhooks_dead(app: &TestApp, t: &Tenant) -> i64 {
    app.settle().await;
    let events = format!("SELECT count(*) AS n FROM outbox_events WHERE tenant_id = '{}' AND message = 'event'", t.id);
    let events = app.count(&events).await;
    let dead = "SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'dead'";
    assert_eq!(app.count_when(dead, events).await, events);
    events
}

/// Opens the console (a stranger lands on the sign-in form) and signs in with `token`.
async fn sign_in(b: &mut Browser, app: &TestApp, token: &str) {
    b.goto(&format!("{}/console/", app.base)).await;
    assert_eq!(b.path().await, "/console/login");
    b.fill("input[name=token]", token).await;
    b.click("form[action='/console/login'] button").await;
}

#[tokio::test]
async fn an_operator_resends_a_stuck_receipt_in_the_console() {
    let mut app = TestApp::spawn().await;
    // The receipt queue's ~two-day ladder compressed to a couple of seconds.
    app.start_worker_with(&[("BILLING_RETRY_DELAY_DIVISOR", "100000")]);
    let t = app.fiscal_tenant("SMM-GPT", unused_refunds(), licence_fiscal()).await;
    app.plan_pro(&t).await;
    // The tenant's ATOL password is mistyped: the receipt stays pending, its job dead.
    let tenant_path = format!("/v1/admin/tenants/{}", t.id);
    let password = |p: &str| json!({"fiscal": {"provider": {"password": p}}});
    app.admin(Method::PATCH, &tenant_path, Some(&password("mistyped"))).await.expect(200);
    let (payment, _, _) = paid(&app, &t, "console-receipt").await;
    dead_letters(&app, "billing.receipts", 1).await;
    let stuck = receipts(&app, &t, &payment).await.remove(0);
    assert_eq!((stuck["status"].as_str(), stuck["attempt"].as_i64()), (Some("pending"), Some(1)), "{stuck}");
    let id = stuck["id"].as_str().unwrap().to_owned();

    let mut b = Browser::start("receipt-resend").await;
    sign_in(&mut b, &app, ADMIN_TOKEN).await;
    b.goto(&format!("{}/console/tenants/{}/receipts", app.base, t.id)).await;
    let listed = b.text("#receipts").await;
    assert!(listed.contains(&id) && listed.contains("pending") && listed.contains("1390.00 RUB"), "{listed}");
    b.screenshot("receipt-stuck").await;

    // The password is fixed; Resend sends the same attempt again, and it registers once.
    app.admin(Method::PATCH, &tenant_path, Some(&password("atol-pass"))).await.expect(200);
    b.click(&format!("form[action$='/receipts/{id}/resend'] button")).await;
    assert_eq!(b.path().await, format!("/console/tenants/{}/receipts", t.id));
    app.settle().await;
    let registered = receipts(&app, &t, &payment).await.remove(0);
    assert_eq!((registered["status"].as_str(), registered["attempt"].as_i64()), (Some("registered"), Some(1)));
    let docs = app.atol.documents();
    assert_eq!(docs.len(), 1, "registered once");
    assert_eq!((docs[0].external_id.clone(), docs[0].status.as_str()), (format!("{id}-1"), "done"));
    b.goto(&format!("{}/console/tenants/{}/receipts", app.base, t.id)).await;
    assert!(b.text("#receipts").await.contains("Every receipt is registered."));
    b.screenshot("receipt-registered").await;
    b.close().await;
}

/// The tenants page reads the business sample (`db::business_metrics::sample`, as
/// the worker's gauges do). A subscription naming a plan that is gone (no foreign
/// key since migration 000021; the audit lists it) counts by its status and adds no
/// MRR: its tenant shows no MRR row, never a failed page.
#[tokio::test]
async fn the_tenants_page_counts_a_subscription_whose_plan_is_gone_and_leaves_it_out_of_mrr() {
    let app = TestApp::spawn().await;
    let t = orbita_on(&app, Gw::CloudPayments, json!({})).await;
    bought_monthly(&app, &t, "mrr-1", "2026-03-10T09:00:00Z").await;
    let other = app.tenant_on(Gw::CloudPayments, "Kosmos", "Europe/Moscow", json!({})).await;
    app.plan_monthly(&other, "START", "1990.00").await;
    let (_, orphan) = bought_monthly(&app, &other, "mrr-2", "2026-03-10T10:00:00Z").await;
    app.db.execute(&format!("UPDATE subscriptions SET plan_id = gen_random_uuid() WHERE id = '{orphan}'")).await;

    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = client
        .post(format!("{}/console/login", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"));
    let r = login.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = client.get(format!("{}/console/", app.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    let row =
        |id: &str| html.split("<tr>").find(|r| r.contains(id)).unwrap_or_else(|| panic!("{id}: {html}")).to_owned();
    let (orbita, kosmos) = (row(&t.id), row(&other.id));
    assert!(orbita.contains("active: 1") && orbita.contains("1990.00 RUB"), "{orbita}");
    assert!(kosmos.contains("active: 1") && !kosmos.contains("RUB"), "{kosmos}");
}
