//! `billing-api [migrate [--check] | audit [--tenant ID]]`: serves the HTTP API
//! (applying pending migrations first); with `migrate` applies migrations, seals
//! tenants' secrets under the current `BILLING_SECRETS_KEY` (plain rows from before
//! sealing, rows under the previous key after a rotation) and exits; with `migrate
//! --check` changes nothing and exits 0 when a serving process would start (every
//! migration applied; every tenant's secrets sealed and opening under the installed
//! keys, which during a rotation includes `BILLING_SECRETS_KEY_PREVIOUS`, so rows
//! still under the previous key pass), 3 when it would not — what a pod's init
//! container polls while the migration Job runs; with `audit` checks every invariant
//! the service promises (`services::audit`), prints a table and exits 1 when any is
//! breached. Any other arguments are a usage error (exit 2, before anything is
//! done). Serving needs `BILLING_SECRETS_KEY` and refuses to start when it does not
//! open every tenant's secrets.

use anyhow::Context;
use billing_api::Application;
use billing_shared::config::Config;
use billing_shared::db::{missing_migrations, run_migrations};
use billing_shared::domain::ids::TenantId;
use billing_shared::telemetry;

const USAGE: &str = "usage: billing-api [migrate [--check] | audit [--tenant ID]]";

/// What the command line asks for.
enum Command {
    Serve,
    Migrate,
    /// `migrate --check`.
    CheckMigrated,
    Audit(Option<TenantId>),
}

impl Command {
    /// The command `args` name, or what is wrong with them (a usage error).
    fn parse(args: &[String]) -> Result<Command, String> {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        match words.as_slice() {
            [] => Ok(Command::Serve),
            ["migrate"] => Ok(Command::Migrate),
            ["migrate", "--check"] => Ok(Command::CheckMigrated),
            ["audit"] => Ok(Command::Audit(None)),
            ["audit", "--tenant", id] => {
                id.parse().map(|t| Command::Audit(Some(t))).map_err(|_| format!("{id:?} is not a tenant id"))
            }
            _ => Err(format!("unexpected arguments: {}", words.join(" "))),
        }
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match Command::parse(&args) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("billing-api: {why}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let config = Config::from_env()?;
    let _tracing = telemetry::init(config.log_format, "billing-api").map_err(anyhow::Error::msg)?;
    if let Command::CheckMigrated = command {
        std::process::exit(migrated(&config).await?);
    }
    let applied = run_migrations(&config.database_url).await.context("applying migrations")?;
    if !applied.is_empty() {
        tracing::info!(?applied, "applied migrations");
    }
    let missing = missing_migrations(&config.database_url).await?;
    if !missing.is_empty() {
        anyhow::bail!("the database lacks migrations this binary needs: {missing:?}");
    }
    match command {
        Command::Migrate => return reseal_tenant_secrets(&config).await,
        Command::Audit(tenant) => std::process::exit(audit(&config, tenant).await?),
        Command::Serve | Command::CheckMigrated => {}
    }
    let app = Application::build(&config).await?;
    tracing::info!(addr = %config.api_addr, port = app.port(), test_clock = config.test_clock, "billing-api listening");
    app.run_until_stopped().await?;
    tracing::info!("billing-api stopped");
    Ok(())
}

/// Installs the secrets keyring and re-seals every tenant's secrets under the
/// current key (plain rows from before sealing, rows under the previous key).
/// Errors: no key, or a secret neither key opens (named by tenant and field).
async fn reseal_tenant_secrets(config: &Config) -> anyhow::Result<()> {
    billing_shared::sealing::install(config.keyring()?);
    let pool = billing_shared::db::build_pool(&config.database_url, 1)?;
    let mut conn = pool.get().await?;
    let changed = billing_shared::services::tenant_secrets::reseal_all(&mut conn).await?;
    if changed > 0 {
        tracing::info!(tenants = changed, "re-sealed tenant secrets under the current key");
    }
    Ok(())
}

/// `migrate --check`, read-only: 0 when the schema has every migration this binary
/// embeds and every tenant's secrets are sealed and open under the installed keyring
/// (`services::tenant_secrets::verify_all`: the current key or, during a rotation,
/// `BILLING_SECRETS_KEY_PREVIOUS` — a row not yet re-sealed under the current key
/// passes, as it does for a serving process), 3 (saying what is missing on stderr)
/// when a migration is pending, a secret is still plain text or one does not open.
/// Errors: no key, or the database unreachable.
async fn migrated(config: &Config) -> anyhow::Result<i32> {
    let missing = missing_migrations(&config.database_url).await?;
    if !missing.is_empty() {
        eprintln!("billing-api migrate --check: {} migrations pending: {missing:?}", missing.len());
        return Ok(3);
    }
    billing_shared::sealing::install(config.keyring()?);
    let pool = billing_shared::db::build_pool(&config.database_url, 1)?;
    if let Err(e) = billing_shared::services::tenant_secrets::verify_on_start(&pool).await {
        eprintln!("billing-api migrate --check: {e}");
        return Ok(3);
    }
    Ok(0)
}

/// `audit [--tenant ID]`: the exit code (0 clean, 1 breaches).
#[allow(clippy::print_stdout)] // the report is the command's output
async fn audit(config: &Config, tenant: Option<TenantId>) -> anyhow::Result<i32> {
    let pool = billing_shared::db::build_pool(&config.database_url, 1)?;
    let mut conn = pool.get().await?;
    let findings = billing_shared::services::audit::run(&mut conn, tenant).await?;
    print!("{}", billing_shared::services::audit::table(&findings));
    Ok(if findings.iter().any(|f| !f.breaches.is_empty()) { 1 } else { 0 })
}
