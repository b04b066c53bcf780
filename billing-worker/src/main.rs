//! `billing-worker [migrate]`: runs the worker (applying pending migrations first),
//! or with `migrate` only applies migrations and exits.

use anyhow::Context;
use billing_shared::config::Config;
use billing_shared::db::{missing_migrations, run_migrations};
use billing_shared::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init_logs(config.log_format);
    telemetry::install_crypto_provider();
    run_migrations(&config.database_url).await.context("applying migrations")?;
    let missing = missing_migrations(&config.database_url).await?;
    if !missing.is_empty() {
        anyhow::bail!("the database lacks migrations this binary needs: {missing:?}");
    }
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        return Ok(());
    }
    billing_worker::run(config, billing_worker::shutdown_signal()).await
}
