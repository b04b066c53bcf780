//! A RabbitMQ vhost per test, made and dropped through the management API
//! (enabled by deploy/lib.sh; enabled here once if it is not). Names carry a
//! timestamp so leftovers of killed runs are swept.
#![allow(clippy::expect_used, clippy::panic)] // test support: failing loudly is the point

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const API: &str = "http://127.0.0.1:15672/api";

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn client() -> reqwest::Client {
    billing_shared::telemetry::install_crypto_provider();
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("http client")
}

async fn management_up(http: &reqwest::Client) -> bool {
    http.get(format!("{API}/overview"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

static READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

async fn ensure_management(http: &reqwest::Client) {
    READY
        .get_or_init(|| async {
            if !management_up(http).await {
                let _ = std::process::Command::new("rabbitmq-plugins").args(["enable", "rabbitmq_management"]).status();
                for _ in 0..300 {
                    if management_up(http).await {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            assert!(management_up(http).await, "the RabbitMQ management API (port 15672) is needed by the tests");
            sweep(http).await;
        })
        .await;
}

async fn sweep(http: &reqwest::Client) {
    let Ok(res) = http.get(format!("{API}/vhosts")).basic_auth("guest", Some("guest")).send().await else { return };
    let vhosts: Vec<serde_json::Value> = res.json().await.unwrap_or_default();
    for v in vhosts {
        let Some(name) = v["name"].as_str() else { continue };
        let ts = name
            .strip_prefix("billing_t_")
            .and_then(|rest| rest.rsplit('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if ts.is_some_and(|t| unix_now().saturating_sub(t) > 3 * 3600) {
            let _ = http.delete(format!("{API}/vhosts/{name}")).basic_auth("guest", Some("guest")).send().await;
        }
    }
}

/// A vhost of its own for one test, deleted when dropped.
pub struct TestVhost {
    pub name: String,
    pub amqp_url: String,
}

impl TestVhost {
    pub async fn create() -> TestVhost {
        let http = client();
        ensure_management(&http).await;
        let name = format!("billing_t_{}_{}", uuid::Uuid::new_v4().simple(), unix_now());
        let put =
            |url: String, body: serde_json::Value| http.put(url).basic_auth("guest", Some("guest")).json(&body).send();
        let res = put(format!("{API}/vhosts/{name}"), serde_json::json!({})).await.expect("create vhost");
        assert!(res.status().is_success(), "create vhost: {}", res.status());
        let res = put(
            format!("{API}/permissions/{name}/guest"),
            serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await
        .expect("grant vhost");
        assert!(res.status().is_success(), "grant vhost: {}", res.status());
        TestVhost { amqp_url: format!("amqp://guest:guest@127.0.0.1:5672/{name}"), name }
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async {
                    let _ =
                        client().delete(format!("{API}/vhosts/{name}")).basic_auth("guest", Some("guest")).send().await;
                });
            }
        })
        .join();
    }
}
