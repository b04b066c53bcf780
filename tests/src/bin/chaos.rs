//! `chaos [--seed N] [--customers N]`: the fault-injection run
//! (`billing_tests::chaos`) against release binaries in `BIN_DIR` (default
//! `target/release`), on `DATABASE_URL` and `AMQP_URL` (fresh ones: `bench/chaos.sh`
//! makes them) with `BILLING_SECRETS_KEY`. Prints the table; exits 1 when any check or the audit found a
//! breach.

use std::path::PathBuf;

use billing_tests::chaos::{Settings, run};

#[tokio::main]
#[allow(clippy::print_stdout)] // the table is the program's output
async fn main() -> anyhow::Result<()> {
    billing_shared::telemetry::install_crypto_provider();
    let mut seed = 1;
    let mut customers = 200;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seed" => seed = value.parse()?,
            "--customers" => customers = value.parse()?,
            _ => anyhow::bail!("usage: chaos [--seed N] [--customers N]"),
        }
    }
    let env = |k: &str| std::env::var(k).map_err(|_| anyhow::anyhow!("{k} is not set"));
    let settings = Settings {
        seed,
        customers,
        bin_dir: PathBuf::from(std::env::var("BIN_DIR").unwrap_or_else(|_| "target/release".into())),
        log_dir: PathBuf::from(std::env::var("LOG_DIR").unwrap_or_else(|_| ".run/chaos".into())),
        database_url: env("DATABASE_URL")?,
        amqp_url: env("AMQP_URL")?,
        secrets_key: env("BILLING_SECRETS_KEY")?,
        min_worker_kills: 20,
        min_api_kills: 10,
    };
    std::fs::create_dir_all(&settings.log_dir)?;
    let report = run(&settings).await?;
    print!("{}", report.table());
    if report.breaches() > 0 {
        std::process::exit(1);
    }
    Ok(())
}
