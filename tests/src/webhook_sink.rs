//! A product backend's webhook endpoint, for tests: records every POST (body and
//! headers) and can be told to fail.
#![allow(clippy::expect_used)]

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::web::{self, Bytes, Data};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};

#[derive(Debug, Clone)]
pub struct Received {
    pub body: Vec<u8>,
    pub signature: Option<String>,
    pub event_id: Option<String>,
    /// The W3C trace context the service sent along.
    pub traceparent: Option<String>,
    pub status_answered: u16,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Answer 500 to this many requests before answering 200.
    fail_next: u32,
    always_fail: bool,
}

#[derive(Clone)]
pub struct WebhookSink {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl WebhookSink {
    pub fn start() -> WebhookSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let sink = WebhookSink { url: format!("http://127.0.0.1:{port}/hooks"), state: Arc::default() };
        let data = Data::new(sink.clone());
        let server =
            HttpServer::new(move || App::new().app_data(data.clone()).route("/hooks", web::post().to(receive)))
                .workers(1)
                .listen(listener)
                .expect("listen")
                .run();
        tokio::spawn(server);
        sink
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fail_next(&self, n: u32) {
        self.state().fail_next = n;
    }

    pub fn set_always_fail(&self, on: bool) {
        self.state().always_fail = on;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state().received.clone()
    }

    /// Bodies of the requests answered 2xx, parsed.
    pub fn delivered(&self) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .filter(|r| r.status_answered < 300)
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect()
    }
}

async fn receive(sink: Data<WebhookSink>, req: HttpRequest, body: Bytes) -> HttpResponse {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut st = sink.state();
    let fail = st.always_fail || st.fail_next > 0;
    if st.fail_next > 0 {
        st.fail_next -= 1;
    }
    let status = if fail { 500 } else { 200 };
    st.received.push(Received {
        body: body.to_vec(),
        signature: header("Billing-Signature"),
        event_id: header("Billing-Event-Id"),
        traceparent: header("traceparent"),
        status_answered: status,
    });
    if fail { HttpResponse::InternalServerError().finish() } else { HttpResponse::Ok().finish() }
}
