//! `billing-api [migrate [--check] | audit [--tenant ID]]`: serves the HTTP API
//! (applying pending migrations first); with `migrate` applies migrations, seals
//! tenants' secrets under the current `BILLING_SECRETS_KEY` (plain rows from before
//! sealing, rows under the previous key after a rotation) and exits; with `migrate
//! --check` changes nothing and exits 0 when that is done (every migration applied,
//! every secret sealed under the current key), 3 when it is not — what a pod's init
//! container polls while the migration Job runs; with `audit` checks
//! every invariant the service promises (`services::audit`), prints a table and
//! exits 1 when any is breached (2 on a usage error). Serving needs
//! `BILLING_SECRETS_KEY` and refuses to start when it does not open every
//! tenant's secrets.

use anyhow::Context;
use billing_api::Application;
use billing_shared::config::Config;
use billing_shared::db::{missing_migrations, run_migrations};
use billing_shared::telemetry;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init_logs(config.log_format);
    telemetry::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().map(String::as_str).eq(["migrate", "--check"]) {
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
    match args.first().map(String::as_str) {
        Some("migrate") => return reseal_tenant_secrets(&config).await,
        Some("audit") => std::process::exit(audit(&config, &args[1..]).await?),
        _ => {}
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

/// `migrate --check`: 0 when the schema has every migration this binary embeds and
/// every tenant's secrets open under the current key, 3 (saying what is missing on
/// stderr) otherwise. Errors: no key, or the database unreachable.
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

/// `audit [--tenant ID]`: the exit code (0 clean, 1 breaches, 2 usage).
#[allow(clippy::print_stdout, clippy::print_stderr)] // the report is the command's output
async fn audit(config: &Config, args: &[String]) -> anyhow::Result<i32> {
    let tenant = match args {
        [] => None,
        [flag, id] if flag == "--tenant" => match id.parse() {
            Ok(t) => Some(t),
            Err(_) => {
                eprintln!("billing-api audit: {id:?} is not a tenant id");
                return Ok(2);
            }
        },
        _ => {
            eprintln!("usage: billing-api audit [--tenant ID]");
            return Ok(2);
        }
    };
    let pool = billing_shared::db::build_pool(&config.database_url, 1)?;
    let mut conn = pool.get().await?;
    let findings = billing_shared::services::audit::run(&mut conn, tenant).await?;
    print!("{}", billing_shared::services::audit::table(&findings));
    Ok(if findings.iter().any(|f| !f.breaches.is_empty()) { 1 } else { 0 })
}
