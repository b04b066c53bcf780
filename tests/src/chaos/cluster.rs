//! The processes under test: API and worker replicas started from release
//! binaries, killed with SIGKILL at chosen instants and restarted on the same
//! ports by a supervisor, plus restarts of the RabbitMQ node and of PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, bail};

/// Which binary a replica runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Worker,
}

struct Replica {
    role: Role,
    /// The API's listen port, or the worker's metrics port.
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

/// The replicas and how to start them.
#[derive(Clone)]
pub struct Cluster {
    bin_dir: PathBuf,
    env: Vec<(String, String)>,
    replicas: Arc<Mutex<Vec<Replica>>>,
}

impl Cluster {
    /// `apis` API ports and `workers` worker metrics ports; nothing starts yet.
    /// `env` is what every process gets; logs go to `log_dir/<role>-<port>.log`.
    pub fn new(bin_dir: &Path, env: Vec<(String, String)>, apis: &[u16], workers: &[u16], log_dir: &Path) -> Cluster {
        let replica = |role, port: u16| Replica {
            role,
            port,
            child: None,
            log: log_dir.join(format!("{}-{port}.log", if role == Role::Api { "api" } else { "worker" })),
        };
        let replicas =
            apis.iter().map(|p| replica(Role::Api, *p)).chain(workers.iter().map(|p| replica(Role::Worker, *p)));
        Cluster { bin_dir: bin_dir.to_owned(), env, replicas: Arc::new(Mutex::new(replicas.collect())) }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Replica>> {
        self.replicas.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self, r: &Replica) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&r.log)?;
        let (bin, addr_var) = match r.role {
            Role::Api => ("billing-api", "BILLING_API_ADDR"),
            Role::Worker => ("billing-worker", "BILLING_WORKER_METRICS_ADDR"),
        };
        Command::new(self.bin_dir.join(bin))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(addr_var, format!("127.0.0.1:{}", r.port))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {bin}"))
    }

    /// Starts every replica that is not running (the supervisor's one step);
    /// returns how many were (re)started.
    pub fn restart_exited(&self) -> anyhow::Result<usize> {
        let mut started = 0;
        let mut replicas = self.lock();
        for i in 0..replicas.len() {
            let running = replicas[i].child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
            if !running {
                let child = self.spawn(&replicas[i])?;
                replicas[i].child = Some(child);
                started += 1;
            }
        }
        Ok(started)
    }

    /// SIGKILLs the `index`-th replica of `role` (modulo their number); it is
    /// restarted by the next [`Cluster::restart_exited`].
    pub fn kill(&self, role: Role, index: usize) -> anyhow::Result<u16> {
        let mut replicas = self.lock();
        let of_role: Vec<usize> = (0..replicas.len()).filter(|i| replicas[*i].role == role).collect();
        let Some(&i) = of_role.get(index % of_role.len().max(1)) else { bail!("no {role:?} replica") };
        if let Some(child) = replicas[i].child.as_mut() {
            child.kill()?; // SIGKILL on Unix
            child.wait()?;
        }
        Ok(replicas[i].port)
    }

    /// Stops every replica (SIGKILL; the run is over).
    pub fn stop_all(&self) {
        for r in self.lock().iter_mut() {
            if let Some(c) = r.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// The base URLs of the API replicas.
    pub fn api_urls(&self) -> Vec<String> {
        self.lock().iter().filter(|r| r.role == Role::Api).map(|r| format!("http://127.0.0.1:{}", r.port)).collect()
    }

    /// Runs `billing-api` with `args` to completion: (exit code, stdout, stderr).
    pub fn api_command(&self, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
        let out = Command::new(self.bin_dir.join("billing-api"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("BILLING_LOG_FORMAT", "text")
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    if !status.success() {
        bail!("{program} {args:?} exited with {status}");
    }
    Ok(())
}

/// Restarts the RabbitMQ application on its node (every connection drops; quorum
/// queues recover from their logs).
pub fn restart_rabbitmq() -> anyhow::Result<()> {
    run("rabbitmqctl", &["-q", "stop_app"])?;
    run("rabbitmqctl", &["-q", "start_app"])?;
    run("rabbitmqctl", &["-q", "await_startup"])
}

/// Restarts the PostgreSQL cluster (`pg_ctlcluster <version> main restart`, fast
/// shutdown: open transactions are rolled back, connections drop).
pub fn restart_postgres() -> anyhow::Result<()> {
    let version = std::fs::read_dir("/etc/postgresql")?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .max()
        .context("no cluster under /etc/postgresql")?;
    run("pg_ctlcluster", &["--skip-systemctl-redirect", &version, "main", "restart", "-m", "fast"])
        .or_else(|_| run("pg_ctlcluster", &[&version, "main", "restart", "-m", "fast"]))?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}
