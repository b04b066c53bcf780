//! An OpenTelemetry collector for tests: takes OTLP/HTTP JSON exports
//! (`POST /v1/traces`, `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) and keeps every
//! span with its service, trace, parent and name.
#![allow(clippy::expect_used)]

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::web::{self, Bytes, Data};
use actix_web::{App, HttpResponse, HttpServer};
use serde_json::Value;

/// One exported span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    /// The exporting process's `service.name`.
    pub service: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
}

#[derive(Clone)]
pub struct OtlpSink {
    /// The base URL to give as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<SpanRecord>>>,
}

impl OtlpSink {
    pub fn start() -> OtlpSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let sink = OtlpSink { endpoint: format!("http://127.0.0.1:{port}"), spans: Arc::default() };
        let data = Data::new(sink.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route("/v1/traces", web::post().to(receive))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        sink
    }

    pub fn spans(&self) -> Vec<SpanRecord> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<SpanRecord> {
        self.spans().into_iter().filter(|s| s.trace_id == trace_id).collect()
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The OTLP JSON `ExportTraceServiceRequest`: resourceSpans[].scopeSpans[].spans[].
async fn receive(sink: Data<OtlpSink>, body: Bytes) -> HttpResponse {
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut got = Vec::new();
    for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .map(|a| text(&a["value"]["stringValue"]))
            .unwrap_or_default();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                got.push(SpanRecord {
                    service: service.clone(),
                    trace_id: text(&s["traceId"]).to_lowercase(),
                    span_id: text(&s["spanId"]).to_lowercase(),
                    parent_span_id: text(&s["parentSpanId"]).to_lowercase(),
                    name: text(&s["name"]),
                });
            }
        }
    }
    sink.spans.lock().unwrap_or_else(|p| p.into_inner()).extend(got);
    HttpResponse::Ok().content_type("application/json").body("{}")
}
