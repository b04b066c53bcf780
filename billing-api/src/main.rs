//! `billing-api [migrate]`: serves the HTTP API (applying pending migrations first),
//! or with `migrate` only applies migrations and exits.

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
    let applied = run_migrations(&config.database_url).await.context("applying migrations")?;
    if !applied.is_empty() {
        tracing::info!(?applied, "applied migrations");
    }
    let missing = missing_migrations(&config.database_url).await?;
    if !missing.is_empty() {
        anyhow::bail!("the database lacks migrations this binary needs: {missing:?}");
    }
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        return Ok(());
    }
    let app = Application::build(&config).await?;
    tracing::info!(addr = %config.api_addr, port = app.port(), test_clock = config.test_clock, "billing-api listening");
    app.run_until_stopped().await?;
    tracing::info!("billing-api stopped");
    Ok(())
}
