//! `billing-worker [migrate | upkeep | definitions]`: runs the worker (applying
//! pending migrations first); `migrate` only applies migrations; `upkeep` applies
//! them, then runs the usage tables' upkeep once at the business clock (partitions,
//! the frozen key generation's filter) and exits; `definitions` prints the RabbitMQ topology as
//! definitions JSON (deploy/rabbitmq/definitions.json).

use anyhow::Context;
use billing_shared::config::Config;
use billing_shared::db::{missing_migrations, run_migrations};
use billing_shared::queue::topology;
use billing_shared::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = std::env::args().nth(1);
    if command.as_deref() == Some("definitions") {
        let json = serde_json::to_string_pretty(&topology::definitions())?;
        #[allow(clippy::print_stdout)] // the definitions are the command's output
        {
            println!("{json}");
        }
        return Ok(());
    }
    let config = Config::from_env()?;
    let _tracing = telemetry::init(config.log_format, "billing-worker").map_err(anyhow::Error::msg)?;
    run_migrations(&config.database_url).await.context("applying migrations")?;
    let missing = missing_migrations(&config.database_url).await?;
    if !missing.is_empty() {
        anyhow::bail!("the database lacks migrations this binary needs: {missing:?}");
    }
    match command.as_deref() {
        Some("migrate") => return Ok(()),
        Some("upkeep") => {
            let pool = billing_shared::db::build_pool(&config.database_url, 1)?;
            let clock = billing_shared::clock::Clock::from_test_flag(config.test_clock);
            billing_worker::partitions::once(&pool, clock, config.usage_retention_days).await?;
            return Ok(());
        }
        _ => {}
    }
    billing_worker::run(config, billing_worker::shutdown_signal()).await
}
