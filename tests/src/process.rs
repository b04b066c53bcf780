//! Running the service's real binaries as child processes: for start/stop tests and
//! for killing a worker with SIGKILL mid-flight.
#![allow(clippy::expect_used)] // test support: failing loudly is the point

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary built into the same target directory as the running
/// test (`cargo test --workspace` builds `billing-api` and `billing-worker` for their
/// own integration tests).
pub fn binary(name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} not built: run `cargo test --workspace` (or `cargo build -p {name}`)", path.display());
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

pub struct Proc {
    child: Child,
}

impl Proc {
    pub fn spawn(bin: &PathBuf, args: &[&str], env: &[(&str, String)]) -> Proc {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        cmd.env_remove("RUST_LOG").env("BILLING_LOG_FORMAT", "text").stdin(Stdio::null());
        if std::env::var_os("TEST_LOG").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc { child: cmd.spawn().expect("spawn binary") }
    }

    /// Like [`Proc::spawn`], with stdout and stderr appended to `log` and the
    /// service's own settings (`RUST_LOG`, `BILLING_LOG_FORMAT`) taken from `env`.
    pub fn spawn_logged(bin: &PathBuf, env: &[(&str, String)], log: &std::path::Path) -> Proc {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        let mut cmd = Command::new(bin);
        cmd.env_remove("RUST_LOG").stdin(Stdio::null());
        cmd.stdout(file.try_clone().expect("log file")).stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc { child: cmd.spawn().expect("spawn binary") }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.id().to_string()).status().expect("kill");
        assert!(ok.success(), "kill -{sig} failed");
    }

    /// SIGTERM, then waits up to `within` for the exit.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        self.wait_exit(within)
    }

    /// SIGKILL: the process dies at whatever instant it is in.
    pub fn kill_hard(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `url` until it answers 2xx.
pub async fn wait_http_ok(url: &str, within: Duration) -> bool {
    billing_shared::telemetry::install_crypto_provider();
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let start = Instant::now();
    while start.elapsed() < within {
        if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
