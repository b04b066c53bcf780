//! RabbitMQ vhosts for tests, from a small reusable pool: creating and deleting a
//! vhost with ~25 quorum queues per test was seen to hang a 2-core broker, so a test
//! takes a vhost from the pool and gives it back when dropped; the next test to
//! take it closes any connection still open there and purges every queue first, so
//! it starts empty. Made through the management API (enabled by deploy/lib.sh; here
//! once if it is not). Pool vhosts carry the process id: at start, those of
//! processes no longer running (and leftovers of the old one-per-test scheme) are
//! swept. A broker that does not answer fails the test at once with what to do.
#![allow(clippy::expect_used, clippy::panic)] // test support: failing loudly is the point

use std::sync::Mutex;
use std::time::Duration;

const API: &str = "http://127.0.0.1:15672/api";
const UNHEALTHY: &str = "RabbitMQ is not answering its management API in time: the broker looks unhealthy. \
     Restart it (`rabbitmqctl stop`, then `rabbitmq-server -detached`; see README) and run the tests again";

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

/// Vhosts of this process not in use.
static FREE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn free() -> std::sync::MutexGuard<'static, Vec<String>> {
    FREE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

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

/// The management API's JSON list at `path` (empty when it cannot be read).
async fn list(http: &reqwest::Client, path: &str) -> Vec<serde_json::Value> {
    match http.get(format!("{API}/{path}")).basic_auth("guest", Some("guest")).send().await {
        Ok(res) if res.status().is_success() => res.json().await.unwrap_or_default(),
        Ok(_) => Vec::new(),
        Err(e) => panic!("{UNHEALTHY} ({e})"),
    }
}

async fn delete(http: &reqwest::Client, path: &str) {
    if let Err(e) = http.delete(format!("{API}/{path}")).basic_auth("guest", Some("guest")).send().await {
        panic!("{UNHEALTHY} ({e})");
    }
}

/// Deletes pool vhosts whose process is gone, and one-per-test vhosts of old runs.
async fn sweep(http: &reqwest::Client) {
    for v in list(http, "vhosts").await {
        let Some(name) = v["name"].as_str() else { continue };
        let stale = match name.strip_prefix("billing_pool_").and_then(|rest| rest.split('_').next()) {
            Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            None => name.starts_with("billing_t_"),
        };
        if stale {
            delete(http, &format!("vhosts/{name}")).await;
        }
    }
}

/// Makes the vhost empty: no connection left from its previous test, no message
/// in any queue. Queues, exchanges and bindings stay declared, except the retry
/// queues: their TTL follows the worker's settings, which differ between tests.
async fn purge(http: &reqwest::Client, name: &str) {
    for c in list(http, &format!("vhosts/{name}/connections")).await {
        if let Some(conn) = c["name"].as_str() {
            delete(http, &format!("connections/{}", encode(conn))).await;
        }
    }
    for q in list(http, &format!("queues/{name}")).await {
        if let Some(queue) = q["name"].as_str() {
            // Exclusive and auto-delete queues of closed connections vanish by themselves.
            let path = format!("queues/{name}/{}", encode(queue));
            if queue.contains(".retry.") {
                delete(http, &path).await;
            } else {
                delete(http, &format!("{path}/contents")).await;
            }
        }
    }
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

/// A vhost for one test, returned to the pool when dropped.
pub struct TestVhost {
    pub name: String,
    pub amqp_url: String,
}

impl TestVhost {
    pub async fn create() -> TestVhost {
        let http = client();
        ensure_management(&http).await;
        let reused = free().pop();
        let name = match reused {
            Some(name) => {
                purge(&http, &name).await;
                name
            }
            None => {
                let name = format!("billing_pool_{}_{}", std::process::id(), uuid::Uuid::new_v4().simple());
                let put = |url: String, body: serde_json::Value| {
                    http.put(url).basic_auth("guest", Some("guest")).json(&body).send()
                };
                let res = put(format!("{API}/vhosts/{name}"), serde_json::json!({}))
                    .await
                    .unwrap_or_else(|e| panic!("{UNHEALTHY} (creating a vhost: {e})"));
                assert!(res.status().is_success(), "create vhost: {}", res.status());
                let grant = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
                let res = put(format!("{API}/permissions/{name}/guest"), grant)
                    .await
                    .unwrap_or_else(|e| panic!("{UNHEALTHY} (granting a vhost: {e})"));
                assert!(res.status().is_success(), "grant vhost: {}", res.status());
                name
            }
        };
        TestVhost { amqp_url: format!("amqp://guest:guest@127.0.0.1:5672/{name}"), name }
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        free().push(self.name.clone());
    }
}
