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
    /// Set when the injector killed the running process: its exit is expected.
    killed: bool,
}

/// The replicas and how to start them.
#[derive(Clone)]
pub struct Cluster {
    bin_dir: PathBuf,
    env: Vec<(String, String)>,
    replicas: Arc<Mutex<Vec<Replica>>>,
    /// Processes found exited that nobody killed: `<bin>:<port> <exit status>`.
    self_exits: Arc<Mutex<Vec<String>>>,
    /// (Re)starts made by the supervisor.
    starts: Arc<Mutex<usize>>,
}

impl Cluster {
    /// `apis` API ports and `workers` worker metrics ports; nothing starts yet.
    /// `env` is what every process gets; logs go to `log_dir/<role>-<port>.log`.
    pub fn new(bin_dir: &Path, env: Vec<(String, String)>, apis: &[u16], workers: &[u16], log_dir: &Path) -> Cluster {
        let replica = |role, port: u16| Replica {
            role,
            port,
            child: None,
            killed: false,
            log: log_dir.join(format!("{}-{port}.log", if role == Role::Api { "api" } else { "worker" })),
        };
        let replicas =
            apis.iter().map(|p| replica(Role::Api, *p)).chain(workers.iter().map(|p| replica(Role::Worker, *p)));
        Cluster {
            bin_dir: bin_dir.to_owned(),
            env,
            replicas: Arc::new(Mutex::new(replicas.collect())),
            self_exits: Arc::default(),
            starts: Arc::default(),
        }
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

    /// Starts every replica that is not running (the supervisor's one step),
    /// noting the ones that exited though nobody killed them; returns how many
    /// were (re)started.
    pub fn restart_exited(&self) -> anyhow::Result<usize> {
        let mut started = 0;
        let mut replicas = self.lock();
        for r in replicas.iter_mut() {
            let exited = match r.child.as_mut().map(Child::try_wait) {
                None => None,
                Some(Ok(None)) => continue, // running
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(e.to_string()),
            };
            if let Some(status) = exited.filter(|_| !r.killed) {
                let name = format!("{:?}:{} {status}", r.role, r.port);
                self.self_exits.lock().unwrap_or_else(|e| e.into_inner()).push(name);
            }
            r.child = Some(self.spawn(r)?);
            r.killed = false;
            started += 1;
        }
        *self.starts.lock().unwrap_or_else(|e| e.into_inner()) += started;
        Ok(started)
    }

    /// SIGKILLs the `index`-th replica of `role` (modulo their number) if it is
    /// running — returning its port — or returns `None` (already down, not yet
    /// restarted). The next [`Cluster::restart_exited`] restarts it.
    pub fn kill(&self, role: Role, index: usize) -> anyhow::Result<Option<u16>> {
        let mut replicas = self.lock();
        let of_role: Vec<usize> = (0..replicas.len()).filter(|i| replicas[*i].role == role).collect();
        let Some(&i) = of_role.get(index % of_role.len().max(1)) else { bail!("no {role:?} replica") };
        let r = &mut replicas[i];
        let Some(child) = r.child.as_mut().filter(|_| !r.killed) else { return Ok(None) };
        if child.try_wait()?.is_some() {
            return Ok(None);
        }
        child.kill()?; // SIGKILL on Unix
        child.wait()?;
        r.killed = true;
        Ok(Some(r.port))
    }

    /// The processes' own health over the run: none exited unless killed, no
    /// panic in any log.
    pub fn health_check(&self) -> anyhow::Result<super::checks::Check> {
        let mut breaches: Vec<String> = self
            .self_exits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|e| format!("{e}: exited without being killed"))
            .collect();
        for r in self.lock().iter() {
            let log = std::fs::read_to_string(&r.log).unwrap_or_default();
            breaches
                .extend(log.lines().filter(|l| l.contains("panicked at")).map(|l| format!("{}: {l}", r.log.display())));
        }
        let looked_at = *self.starts.lock().unwrap_or_else(|e| e.into_inner());
        Ok(super::checks::Check { name: "no process exited on its own or panicked (starts)", looked_at, breaches })
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
