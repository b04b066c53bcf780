//! A PostgreSQL database per test, cloned from a template migrated once per
//! migration set. Names carry a timestamp so leftovers of killed runs are swept.
#![allow(clippy::expect_used, clippy::panic)] // test support: failing loudly is the point

use std::time::{SystemTime, UNIX_EPOCH};

use billing_shared::config::Secret;
use diesel::sql_types::{Bool, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};

/// Server-level URL (no database) for admin statements; `TEST_DATABASE_URL` overrides.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn url_for(db: &str) -> String {
    let base = server_url();
    match base.rfind('/') {
        Some(i) => format!("{}/{db}", &base[..i]),
        None => format!("{base}/{db}"),
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Hash of every migration file: a changed migration gets a new template.
fn migrations_hash() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(f.to_string_lossy().as_bytes());
        h.update(std::fs::read(&f).unwrap_or_default());
    }
    hex::encode(&h.finalize()[..6])
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
        }
    }
    out
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    datname: String,
}

#[derive(QueryableByName)]
struct Ready {
    #[diesel(sql_type = Bool)]
    ready: bool,
}

async fn admin() -> AsyncPgConnection {
    AsyncPgConnection::establish(&server_url()).await.expect("connect to PostgreSQL (is it running?)")
}

const LOCK: i64 = 0x7465_7374_7470_6c31;

/// The migrated template's name, creating it (once, across processes) if needed.
async fn template() -> String {
    let hash = migrations_hash();
    let prefix = format!("billing_tpl_{hash}_");
    let mut conn = admin().await;
    sql_query(format!("SELECT pg_advisory_lock({LOCK})")).execute(&mut conn).await.expect("lock");
    let existing: Vec<Name> = sql_query(format!(
        "SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%' AND shobj_description(oid, 'pg_database') = 'ready'"
    ))
    .load(&mut conn)
    .await
    .expect("list templates");
    let name = match existing.into_iter().next() {
        Some(n) => n.datname,
        None => {
            let name = format!("{prefix}{}", unix_now());
            sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create template");
            billing_shared::db::run_migrations(&Secret::new(url_for(&name))).await.expect("migrate template");
            sql_query(format!("COMMENT ON DATABASE {name} IS 'ready'"))
                .execute(&mut conn)
                .await
                .expect("mark template");
            name
        }
    };
    sweep(&mut conn, &name).await;
    sql_query(format!("SELECT pg_advisory_unlock({LOCK})")).execute(&mut conn).await.expect("unlock");
    name
}

/// Drops test databases older than three hours and templates older than a day
/// (leftovers of killed runs), never the current template.
async fn sweep(conn: &mut AsyncPgConnection, current_template: &str) {
    let names: Vec<Name> = sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'billing_t%'")
        .load(conn)
        .await
        .unwrap_or_default();
    let now = unix_now();
    for Name { datname } in names {
        let ts = datname.rsplit('_').find_map(|part| part.parse::<u64>().ok().filter(|t| *t > 1_600_000_000));
        let max_age = if datname.starts_with("billing_tpl_") { 86_400 } else { 3 * 3_600 };
        if datname != current_template && ts.is_some_and(|t| now.saturating_sub(t) > max_age) {
            let _ = sql_query(format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)")).execute(conn).await;
        }
    }
}

static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let template = TEMPLATE.get_or_init(template).await.clone();
        let name = format!("billing_t_{}_{}", uuid::Uuid::new_v4().simple(), unix_now());
        let mut conn = admin().await;
        let mut tries = 0;
        loop {
            match sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}")).execute(&mut conn).await {
                Ok(_) => break,
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("retrying CREATE DATABASE: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot create test database: {e}"),
            }
        }
        TestDb { url: url_for(&name), name }
    }

    /// An empty database (no migrations), for tests of the binaries' own migrating.
    pub async fn empty() -> TestDb {
        let name = format!("billing_t_{}_{}", uuid::Uuid::new_v4().simple(), unix_now());
        let mut conn = admin().await;
        sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
        TestDb { url: url_for(&name), name }
    }

    /// Sets a server setting for every later connection to this database
    /// (`ALTER DATABASE … SET name = 'value'`); panics on failure.
    pub async fn set(&self, name: &str, value: &str) {
        let sql = format!("ALTER DATABASE {} SET {name} = '{value}'", self.name);
        sql_query(&sql).execute(&mut admin().await).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.expect("connect to test database")
    }

    /// Runs a statement (tests that corrupt data on purpose); panics on failure.
    pub async fn execute(&self, sql: &str) {
        let mut conn = self.conn().await;
        sql_query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Whether a query returns `true` (for ad-hoc assertions).
    pub async fn check(&self, sql: &str) -> bool {
        let mut conn = self.conn().await;
        let row: Ready = sql_query(sql).get_result(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.ready
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut conn) = AsyncPgConnection::establish(&server_url()).await {
                        let _ =
                            sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
                    }
                });
            }
        })
        .join();
    }
}
