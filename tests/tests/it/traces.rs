//! Distributed tracing end to end, with the real binaries exporting OTLP/JSON to a
//! test collector: a renewal is one trace from the scheduler's claim through the
//! charge batch and the gateway call to the webhook delivery of its event; a
//! purchase's Pay notification is one trace from the API request to the webhook;
//! an API request continues the caller's `traceparent`, and its JSON log lines
//! name the trace.

use std::collections::HashMap;
use std::time::Duration;

use billing_tests::cloudpayments::{CARD_OK, Site, WidgetParams};
use billing_tests::otlp_sink::{OtlpSink, SpanRecord};
use billing_tests::process::{Proc, binary, free_port, wait_http_ok};
use billing_tests::webhook_sink::WebhookSink;
use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::app::ADMIN_TOKEN;

/// `span` and its ancestors in its trace, nearest first.
fn chain<'a>(spans: &'a [SpanRecord], span: &'a SpanRecord) -> Vec<&'a SpanRecord> {
    let by_id: HashMap<&str, &SpanRecord> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let mut chain = vec![span];
    while let Some(p) = chain.last().and_then(|s| by_id.get(s.parent_span_id.as_str())) {
        chain.push(p);
    }
    chain
}

/// The names of `span` and its ancestors in its trace, nearest first.
fn lineage(spans: &[SpanRecord], span: &SpanRecord) -> Vec<String> {
    chain(spans, span).into_iter().map(|s| s.name.clone()).collect()
}

/// The span ids of `span` and its ancestors in its trace, nearest first.
fn ancestry(spans: &[SpanRecord], span: &SpanRecord) -> Vec<String> {
    chain(spans, span).into_iter().map(|s| s.span_id.clone()).collect()
}

/// The id of the nearest `job` span above `span`.
fn nearest_job(spans: &[SpanRecord], span: &SpanRecord) -> String {
    let found = chain(spans, span).into_iter().find(|s| s.name == "job");
    found.map(|s| s.span_id.clone()).unwrap_or_else(|| panic!("no job above {}: {:?}", span.name, lineage(spans, span)))
}

/// The trace id of a `traceparent` value.
fn trace_of(traceparent: &str) -> String {
    traceparent.split('-').nth(1).unwrap_or_default().to_owned()
}

/// Waits until the trace holds spans named `names` (exports are batched; a loaded
/// CI machine may take a while), then gives it a moment for late siblings.
async fn wait_for_spans(otlp: &OtlpSink, trace: &str, names: &[&str]) -> Vec<SpanRecord> {
    for _ in 0..1200 {
        let spans = otlp.trace(trace);
        if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("trace {trace} lacks some of {names:?}; every span received: {:#?}", otlp.spans());
}

/// The delivered webhook of the event `kind` matching `pick`, waiting for it.
async fn delivery(hooks: &WebhookSink, kind: &str, pick: impl Fn(&Value) -> bool) -> String {
    for _ in 0..300 {
        let found = hooks.received().into_iter().find(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            r.status_answered < 300 && body["type"] == kind && pick(&body["data"])
        });
        if let Some(r) = found {
            return r.traceparent.expect("a webhook carries the trace context");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {kind} webhook delivered");
}

#[tokio::test]
async fn a_renewal_is_one_trace_from_the_scheduler_through_the_gateway_to_the_webhook() {
    let app = TestApp::spawn().await;
    let otlp = OtlpSink::start();
    let hooks = WebhookSink::start();
    let port = free_port();
    let (mut env, dir) = app.process_env("traces", port);
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ]);
    let _api = Proc::spawn_logged(&binary("billing-api"), &env, &dir.join("api.log"));
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_http_ok(&format!("{base}/healthz"), Duration::from_secs(30)).await, "API up");
    let _worker = Proc::spawn_logged(&binary("billing-worker"), &env, &dir.join("worker.log"));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let call = async |method: reqwest::Method, path: &str, token: &str, body: Value| -> Value {
        let res = http.request(method, format!("{base}{path}")).bearer_auth(token).json(&body).send().await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap()
    };

    let created = call(reqwest::Method::POST, "/v1/admin/tenants", ADMIN_TOKEN, json!({
        "name": "Orbita", "time_zone": "Europe/Moscow", "webhook_url": hooks.url,
        "gateway": {"kind": "cloudpayments", "public_id": "pk_traces", "api_secret": "traces-secret", "api_url": app.sim.base_url},
        "policy": {"renewal_notice_days": 0}}))
    .await;
    let (tenant, key) = (created["id"].as_str().unwrap(), created["api_key"].as_str().unwrap().to_owned());
    app.sim.register_site(Site {
        public_id: "pk_traces".into(),
        api_secret: "traces-secret".into(),
        notify_base: format!("{base}/v1/webhooks/cloudpayments/{tenant}"),
        format: Default::default(),
    });
    let plan = json!({"code": "START", "name": "START", "price": {"value": "1990.00", "currency": "RUB"},
                      "period": {"unit": "month", "count": 1}, "auto_renew": true});
    call(reqwest::Method::POST, "/v1/plans", &key, plan).await;
    let customer =
        call(reqwest::Method::POST, "/v1/customers", &key, json!({"external_id": "t-1", "email": "t-1@example.ru"}))
            .await;
    let bought = call(
        reqwest::Method::POST,
        "/v1/subscriptions",
        &key,
        json!({"customer_id": customer["id"], "plan": "START", "pay_with": "card"}),
    )
    .await;
    let params: WidgetParams = serde_json::from_value(bought["payment"]["confirmation"].clone()).unwrap();
    assert_eq!(app.sim.pay_widget(&params, CARD_OK).await.unwrap().status, "Completed");

    // The Pay notification's request, its events and their webhooks: one trace.
    let activated = trace_of(&delivery(&hooks, "subscription.activated", |_| true).await);
    let spans = wait_for_spans(&otlp, &activated, &["http.request", "job", "webhook.deliver"]).await;
    let request = spans.iter().find(|s| s.name == "http.request").unwrap();
    assert_eq!((request.service.as_str(), request.parent_span_id.as_str()), ("billing-api", ""));
    let deliver = spans.iter().find(|s| s.name == "webhook.deliver").unwrap();
    assert_eq!(deliver.service, "billing-worker");
    assert_eq!(lineage(&spans, deliver).last().map(String::as_str), Some("http.request"), "{spans:#?}");

    // A month later the worker renews with the saved card. (The simulator's own Pay
    // notification for the charge would race the charge's answer to book it — a
    // trace of its own, from the API — so it stays silent here.)
    app.sim.set_token_charge_notifications(false);
    call(reqwest::Method::POST, "/v1/admin/clock", ADMIN_TOKEN, json!({"now": "2026-04-05T09:00:01Z"})).await;
    let sent = delivery(&hooks, "payment.succeeded", |d| d["kind"] == "renewal").await;
    let renewed = trace_of(&sent);
    let names = ["scheduler.claim", "gateway.charge", "job", "webhook.deliver"];
    let mut spans = wait_for_spans(&otlp, &renewed, &names).await;
    // The renewal's other events are delivered in spans of their own, exported in
    // batches: wait for the one this webhook names too.
    for _ in 0..1200 {
        if spans.iter().any(|s| s.name == "webhook.deliver" && sent.contains(&s.span_id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        spans = otlp.trace(&renewed);
    }
    assert!(spans.iter().all(|s| s.service == "billing-worker"), "{spans:#?}");
    let root = spans.iter().find(|s| s.name == "scheduler.claim").unwrap();
    assert_eq!(root.parent_span_id, "", "the claim starts the trace");
    let deliver = spans.iter().find(|s| s.name == "webhook.deliver" && sent.contains(&s.span_id));
    assert!(deliver.is_some(), "the webhook's traceparent names its webhook.deliver span: {sent}");
    // The charge runs in the wave's job (a wave job has a span of its own, not a
    // batch's); the webhook's delivery descends from that same job.
    let charge = spans.iter().find(|s| s.name == "gateway.charge").unwrap();
    let wave = nearest_job(&spans, charge);
    for leaf in ["gateway.charge", "webhook.deliver"] {
        let span = spans.iter().find(|s| s.name == leaf).unwrap();
        let line = lineage(&spans, span);
        assert!(ancestry(&spans, span).contains(&wave), "{leaf} descends from the wave's job: {line:?}");
        assert_eq!(line.last().map(String::as_str), Some("scheduler.claim"), "{leaf}: {line:?}");
    }

    // A caller's trace context is continued, and the log lines name the trace.
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let res = http
        .get(format!("{base}/v1/plans"))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{trace}-{parent}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let spans = wait_for_spans(&otlp, trace, &["http.request"]).await;
    let request = spans.iter().find(|s| s.name == "http.request").unwrap();
    assert_eq!((request.service.as_str(), request.parent_span_id.as_str()), ("billing-api", parent));
    let log = std::fs::read_to_string(dir.join("api.log")).unwrap();
    let line = log.lines().find(|l| l.contains("/v1/plans") && l.contains(trace));
    let line: Value = serde_json::from_str(line.unwrap_or_else(|| panic!("no log line names {trace}"))).unwrap();
    assert_eq!(line["spans"][0]["trace_id"], trace, "{line}");
    assert_eq!(line["message"], "request");
    let _ = std::fs::remove_dir_all(&dir);
}
