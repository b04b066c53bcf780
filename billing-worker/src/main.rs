//! `billing-worker [migrate | definitions]`: runs the worker (applying pending
//! migrations first); `migrate` only applies migrations; `definitions` prints the
//! RabbitMQ topology as definitions JSON (deploy/rabbitmq/definitions.json).

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
    if command.as_deref() == Some("migrate") {
        return Ok(());
    }
    billing_worker::run(config, billing_worker::shutdown_signal()).await
}
