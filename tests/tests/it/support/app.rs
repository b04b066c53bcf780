//! `TestApp`: the real API on port 0 over a test database, with the CloudPayments
//! simulator, and a method per common call.

use std::time::Duration;

use billing_api::Application;
use billing_shared::config::Config;
use billing_shared::ports::Ports;
use billing_tests::atol::AtolSim;
use billing_tests::cloudpayments::{CloudPaymentsSim, Site, WidgetOutcome, WidgetParams};
use billing_tests::process::{Proc, binary, free_port};
use billing_tests::testmq::TestVhost;
use billing_tests::yookassa::{Shop, YooKassaSim};
use reqwest::StatusCode;
use serde_json::{Value, json};

use billing_tests::testdb::TestDb;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct TestApp {
    /// The API the test's own calls go to.
    pub base: String,
    /// The API replica providers call (notifications, ATOL callbacks): `base`
    /// unless [`replicas`] is 2.
    pub notify_base: String,
    pub http: reqwest::Client,
    pub sim: CloudPaymentsSim,
    /// The YooKassa v3 simulator, for tenants made with [`super::Gw::YooKassa`].
    pub yk: YooKassaSim,
    /// The fiscal provider (ATOL Online v5) of tenants made by [`TestApp::fiscal_tenant`].
    pub atol: AtolSim,
    pub db: TestDb,
    pub mq: TestVhost,
    servers: Vec<actix_web::dev::ServerHandle>,
    /// Adapters the test plugged behind the ports (else the built-in ones).
    ports: Option<Ports>,
    workers: Vec<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

/// API and worker replicas each test runs (`BILLING_TEST_REPLICAS`: 1, or 2 for
/// two API servers and two workers on one database and vhost; `deploy/test` runs
/// the purchase, renewal and dunning tests so as well).
pub fn replicas() -> usize {
    if std::env::var("BILLING_TEST_REPLICAS").as_deref() == Ok("2") { 2 } else { 1 }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// Worker settings for tests: fast loops, retry ladders in milliseconds, a short
/// gateway timeout (the simulator's slow answers exceed it).
pub fn worker_env(db_url: &str, amqp_url: &str) -> Vec<(&'static str, String)> {
    worker_env_on(db_url, amqp_url, free_port())
}

pub fn worker_env_on(db_url: &str, amqp_url: &str, metrics_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db_url.to_owned()),
        ("AMQP_URL", amqp_url.to_owned()),
        ("BILLING_TEST_CLOCK", "1".to_owned()),
        ("BILLING_WORKER_METRICS_ADDR", format!("127.0.0.1:{metrics_port}")),
        ("BILLING_SCHEDULER_INTERVAL_MS", "20".to_owned()),
        ("BILLING_RELAY_INTERVAL_MS", "10".to_owned()),
        ("BILLING_RETRY_DELAY_DIVISOR", "1000".to_owned()),
        ("BILLING_GATEWAY_TIMEOUT_MS", "1000".to_owned()),
        ("BILLING_WEBHOOK_TIMEOUT_MS", "2000".to_owned()),
        ("BILLING_DB_POOL_SIZE", "6".to_owned()),
        ("BILLING_SECRETS_KEY", SECRETS_KEY.to_owned()),
    ]
}

/// The key sealing tenants' secrets in every test process (32 bytes, base64).
pub const SECRETS_KEY: &str = "dGVzdC1zZWNyZXRzLWtleS0zMi1ieXRlcy1sb25nISE=";

/// An HTTP answer: status and JSON body (Null when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub content_type: String,
}

impl Answer {
    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self.body
    }

    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn problem(self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        assert_eq!(self.content_type, "application/problem+json", "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        self.body
    }
}

/// A tenant created through the operator API.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub api_key: String,
    pub webhook_secret: String,
    /// CloudPayments public id, or YooKassa shop id.
    pub public_id: String,
    pub api_secret: String,
    pub gateway: super::Gw,
}

/// Default test start: a Thursday morning in Moscow.
pub const T0: &str = "2026-03-05T09:00:00Z";

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// Spawns with some settings overridden (e.g. the test clock off).
    pub async fn spawn_with(overrides: &[(&str, &str)]) -> TestApp {
        Self::spawn_on(overrides, None, &[]).await
    }

    /// Spawns over a database whose server settings are changed first (`ALTER
    /// DATABASE … SET`, so every connection the API and the test open has them).
    /// A setting only a superuser may change (`deadlock_timeout`) needs the test
    /// server's user to be one, as the default `postgres` is.
    pub async fn spawn_with_db_settings(settings: &[(&str, &str)]) -> TestApp {
        Self::spawn_on(&[], None, settings).await
    }

    /// Spawns with the test's own adapters behind the gateway and fiscal ports;
    /// the worker started later uses them too.
    pub async fn spawn_with_ports(ports: Ports) -> TestApp {
        Self::spawn_on(&[], Some(ports), &[]).await
    }

    async fn spawn_on(overrides: &[(&str, &str)], ports: Option<Ports>, db_settings: &[(&str, &str)]) -> TestApp {
        billing_shared::telemetry::install_crypto_provider();
        if std::env::var("TEST_LOG").is_ok() {
            // The guard is kept for the test process's life (nothing is exported here).
            std::mem::forget(billing_shared::telemetry::init(billing_shared::config::LogFormat::Text, "tests"));
        }
        let db = TestDb::create().await;
        for (name, value) in db_settings {
            db.set(name, value).await;
        }
        let mq = TestVhost::create().await;
        let vars = [
            ("AMQP_URL", mq.amqp_url.clone()),
            ("DATABASE_URL", db.url.clone()),
            ("BILLING_API_ADDR", "127.0.0.1:0".to_owned()),
            ("BILLING_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("BILLING_TEST_CLOCK", "1".to_owned()),
            ("BILLING_DB_POOL_SIZE", "4".to_owned()),
            ("BILLING_SECRETS_KEY", SECRETS_KEY.to_owned()),
        ];
        let lookup = |k: &str| {
            overrides
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
                .or_else(|| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        };
        let config = Config::from_lookup(lookup).expect("config");
        let settable_clock = config.test_clock && config.admin_token.is_some();
        let (mut bases, mut servers) = (Vec::new(), Vec::new());
        for _ in 0..replicas() {
            let app = match &ports {
                Some(ports) => Application::build_with(&config, ports.clone()).expect("build app"),
                None => Application::build(&config).await.expect("build app"),
            };
            bases.push(format!("http://127.0.0.1:{}", app.port()));
            servers.push(app.handle());
            tokio::spawn(app.run_until_stopped());
        }
        let (base, notify_base) = (bases[0].clone(), bases[bases.len() - 1].clone());
        let sim = CloudPaymentsSim::start("127.0.0.1:0").expect("start simulator");
        let yk = YooKassaSim::start("127.0.0.1:0").expect("start YooKassa simulator");
        let atol = AtolSim::start("127.0.0.1:0").expect("start ATOL simulator");
        let http = reqwest::Client::builder().no_proxy().build().expect("http client");
        let app = TestApp { base, notify_base, http, sim, yk, atol, db, mq, servers, ports, workers: Vec::new() };
        if settable_clock {
            app.set_clock(T0).await;
        }
        app
    }

    /// Spawns with the worker running in-process.
    pub async fn with_worker() -> TestApp {
        let mut app = Self::spawn().await;
        app.start_worker();
        app
    }

    pub fn worker_config_with(&self, overrides: &[(&str, &str)]) -> Config {
        let mut vars = worker_env(&self.db.url, &self.mq.amqp_url);
        vars.push(("BILLING_PUBLIC_URL", self.notify_base.clone()));
        for (k, v) in overrides {
            vars.retain(|(n, _)| n != k);
            vars.push((leak(k), (*v).to_owned()));
        }
        Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).expect("worker config")
    }

    /// Starts the worker in this process, [`replicas`] of them (stopped when the
    /// app is dropped).
    pub fn start_worker(&mut self) {
        self.start_worker_with(&[]);
    }

    pub fn start_worker_with(&mut self, overrides: &[(&str, &str)]) {
        for _ in 0..replicas() {
            let config = self.worker_config_with(overrides);
            let ports = self.ports.clone();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let handle = tokio::spawn(async move {
                let stop = async {
                    let _ = rx.await;
                };
                let _ = match ports {
                    Some(ports) => billing_worker::run_with(config, ports, stop).await,
                    None => billing_worker::run(config, stop).await,
                };
            });
            self.workers.push((tx, handle));
        }
    }

    /// Stops the in-process workers gracefully.
    pub async fn stop_worker(&mut self) {
        for (tx, handle) in std::mem::take(&mut self.workers) {
            let _ = tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(40), handle).await;
        }
    }

    /// Settings for the real binaries on this app's database and vhost, the API on
    /// `port`, logging JSON into files under a fresh directory: (settings, directory).
    pub fn process_env(&self, name: &str, port: u16) -> (Vec<(&'static str, String)>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("billing-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("log directory");
        let mut env = worker_env(&self.db.url, &self.mq.amqp_url);
        env.extend([
            ("BILLING_API_ADDR", format!("127.0.0.1:{port}")),
            ("BILLING_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("BILLING_LOG_FORMAT", "json".to_owned()),
        ]);
        (env, dir)
    }

    /// Runs the real worker binary against this app's database and vhost.
    pub fn worker_process(&self) -> Proc {
        Proc::spawn(&binary("billing-worker"), &[], &worker_env(&self.db.url, &self.mq.amqp_url))
    }

    /// Waits until nothing is due at the clock's instant (the clock's `settled`).
    pub async fn settle(&self) {
        let start = std::time::Instant::now();
        loop {
            let c = self.admin(reqwest::Method::GET, "/v1/admin/clock", None).await.expect(200);
            if c["settled"] == true {
                return;
            }
            if start.elapsed() > Duration::from_secs(90) {
                let due = self
                    .count(&format!(
                        "SELECT count(*) AS n FROM due_subscriptions WHERE due_at <= '{}'",
                        c["now"].as_str().unwrap_or("")
                    ))
                    .await;
                let unpublished = self.count("SELECT count(*) AS n FROM outbox_pending").await;
                let open = self.count("SELECT count(*) AS n FROM payment_attempts WHERE status IN ('pending', 'sent', 'unknown') AND channel <> 'widget'").await;
                let rows =
                    self.rows("SELECT row_to_json(s)::text AS row FROM subscriptions s WHERE due_at IS NOT NULL").await;
                panic!(
                    "the worker did not settle at {}: {due} due subscriptions, {unpublished} unpublished messages, {open} open charges\n{rows:#?}",
                    c["now"]
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Moves the shared clock and waits for the worker to catch up.
    pub async fn advance_to(&self, at: &str) {
        self.set_clock(at).await;
        self.settle().await;
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        idem: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_ne!(status.as_u16(), 500, "500 for {path}: {text}");
        Answer { status, body, content_type }
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Answer {
        self.send(method, path, Some(ADMIN_TOKEN), None, body).await
    }

    pub async fn set_clock(&self, at: &str) -> Value {
        self.admin(reqwest::Method::POST, "/v1/admin/clock", Some(&json!({"now": at}))).await.expect(200)
    }

    /// A CloudPayments tenant registered with the simulator.
    pub async fn tenant(&self, name: &str, time_zone: &str, policy: Value) -> Tenant {
        self.tenant_on(super::Gw::CloudPayments, name, time_zone, policy).await
    }

    /// A tenant on `gateway`, registered with its simulator.
    pub async fn tenant_on(&self, gateway: super::Gw, name: &str, time_zone: &str, policy: Value) -> Tenant {
        self.tenant_with(gateway, name, time_zone, policy, Value::Null).await
    }

    /// A tenant with 54-FZ settings (`fiscal` without its provider): receipts are
    /// registered with the ATOL simulator under an account of its own.
    pub async fn fiscal_tenant(&self, name: &str, policy: Value, fiscal: Value) -> Tenant {
        let login = format!("login-{}", uuid::Uuid::new_v4().simple());
        let group = format!("group-{}", uuid::Uuid::new_v4().simple());
        self.atol.add_account(&login, "atol-pass", &group);
        let mut fiscal = fiscal;
        fiscal["provider"] =
            json!({"login": login, "password": "atol-pass", "group_code": group, "api_url": self.atol.base_url});
        self.tenant_with(super::Gw::CloudPayments, name, "Europe/Moscow", policy, fiscal).await
    }

    async fn tenant_with(
        &self,
        gateway: super::Gw,
        name: &str,
        time_zone: &str,
        policy: Value,
        fiscal: Value,
    ) -> Tenant {
        let public_id = format!("pk_{}", uuid::Uuid::new_v4().simple());
        let api_secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
        let gateway_json = match gateway {
            super::Gw::CloudPayments => json!({"kind": "cloudpayments", "public_id": public_id,
                "api_secret": api_secret, "api_url": self.sim.base_url}),
            super::Gw::YooKassa => json!({"kind": "yookassa", "shop_id": public_id, "api_secret": api_secret,
                "api_url": self.yk.api_url(), "notification_ips": ["127.0.0.0/8", "::1/128"]}),
        };
        let body = json!({
            "name": name,
            "time_zone": time_zone,
            "gateway": gateway_json,
            "policy": policy,
            "fiscal": fiscal,
        });
        let created = self.admin(reqwest::Method::POST, "/v1/admin/tenants", Some(&body)).await.expect(201);
        let id = created["id"].as_str().expect("id").to_owned();
        match gateway {
            super::Gw::CloudPayments => self.sim.register_site(Site {
                public_id: public_id.clone(),
                api_secret: api_secret.clone(),
                notify_base: format!("{}/v1/webhooks/cloudpayments/{id}", self.notify_base),
                format: Default::default(),
            }),
            super::Gw::YooKassa => self.yk.register_shop(Shop {
                shop_id: public_id.clone(),
                secret_key: api_secret.clone(),
                notification_url: format!("{}/v1/webhooks/yookassa/{id}", self.notify_base),
            }),
        }
        Tenant {
            id,
            api_key: created["api_key"].as_str().expect("api_key").to_owned(),
            webhook_secret: created["webhook_secret"].as_str().expect("secret").to_owned(),
            public_id,
            api_secret,
            gateway,
        }
    }

    pub async fn get(&self, t: &Tenant, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, Some(&t.api_key), None, None).await
    }

    pub async fn post(&self, t: &Tenant, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(&t.api_key), None, Some(&body)).await
    }

    pub async fn post_idem(&self, t: &Tenant, path: &str, key: &str, body: Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(&t.api_key), Some(key), Some(&body)).await
    }

    /// WhatsMonster's PRO tariff (seed 004, 7.3): 1390 RUB, 30 days, manual renewal.
    pub async fn plan_pro(&self, t: &Tenant) -> Value {
        self.post(t, "/v1/plans", json!({
            "code": "PRO", "name": "PRO", "price": {"value": "1390.00", "currency": "RUB"},
            "period": {"unit": "day", "count": 30}, "auto_renew": false,
            "quotas": {"messages": {"limit": 100000, "mode": "overage", "unit_price": {"value": "0.05", "currency": "RUB"}},
                       "accounts": {"limit": 10, "mode": "block", "kind": "gauge"}},
            "quota_reset": "last_day_local_midnight"
        }))
        .await
        .expect(201)
    }

    /// A monthly auto-renewing plan.
    pub async fn plan_monthly(&self, t: &Tenant, code: &str, price: &str) -> Value {
        self.post(
            t,
            "/v1/plans",
            json!({
                "code": code, "name": code, "price": {"value": price, "currency": "RUB"},
                "period": {"unit": "month", "count": 1}, "auto_renew": true
            }),
        )
        .await
        .expect(201)
    }

    pub async fn customer(&self, t: &Tenant, external_id: &str) -> String {
        let c = self
            .post(t, "/v1/customers", json!({"external_id": external_id, "email": format!("{external_id}@example.ru")}))
            .await
            .expect(201);
        c["id"].as_str().expect("customer id").to_owned()
    }

    /// Starts a purchase; returns the answer body (subscription + payment).
    pub async fn purchase(&self, t: &Tenant, customer: &str, plan: &str) -> Value {
        self.post(t, "/v1/subscriptions", json!({"customer_id": customer, "plan": plan, "pay_with": "card"}))
            .await
            .expect(201)
    }

    /// Pays a purchase's widget in the simulator with `card`.
    pub async fn pay(&self, purchase: &Value, card: &str) -> WidgetOutcome {
        let params: WidgetParams =
            serde_json::from_value(purchase["payment"]["confirmation"].clone()).expect("widget params");
        self.sim.pay_widget(&params, card).await.expect("widget flow")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for (tx, _) in self.workers.drain(..) {
            let _ = tx.send(());
        }
        for server in &self.servers {
            drop(server.stop(false));
        }
    }
}
