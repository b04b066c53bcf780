//! `provider-sim`: the provider simulators as a process, for the local demo.
//! Listens on `SIM_ADDR` (default `127.0.0.1:8091`).

use billing_tests::cloudpayments::CloudPaymentsSim;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("SIM_ADDR").unwrap_or_else(|_| "127.0.0.1:8091".into());
    let sim = CloudPaymentsSim::start(&addr)?;
    eprintln!("provider-sim: CloudPayments simulator on {}", sim.base_url);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
