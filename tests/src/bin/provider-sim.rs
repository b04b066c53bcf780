//! `provider-sim`: the provider simulators as a process (CloudPayments on `SIM_ADDR`,
//! default `127.0.0.1:8091`; ATOL Online v5 on `SIM_ATOL_ADDR`, default
//! `127.0.0.1:8092`, accounts added through `POST /sim/atol/accounts`; YooKassa v3
//! on `SIM_YOOKASSA_ADDR`, default `127.0.0.1:8093`, shops added through
//! `POST /sim/yookassa/shops`).
//!
//! With `--demo`, also seeds the demo tenants into the running billing API
//! (`BILLING_API_URL`, `BILLING_ADMIN_TOKEN`) and prints a walkthrough.

use std::path::PathBuf;

use billing_tests::atol::AtolSim;
use billing_tests::cloudpayments::CloudPaymentsSim;
use billing_tests::demo::{DemoConfig, Simulators, seed, walkthrough};
use billing_tests::yookassa::YooKassaSim;

#[tokio::main]
#[allow(clippy::print_stdout)] // the walkthrough is the program's output
async fn main() -> anyhow::Result<()> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    billing_shared::telemetry::install_crypto_provider();
    let addr = env("SIM_ADDR", "127.0.0.1:8091");
    let sim = CloudPaymentsSim::start(&addr)?;
    // Benchmarks seed saved cards directly and may not want Pay notifications.
    sim.set_accept_any_token(std::env::var("SIM_ACCEPT_ANY_TOKEN").is_ok_and(|v| v == "1"));
    sim.set_token_charge_notifications(std::env::var("SIM_TOKEN_NOTIFICATIONS").map_or(true, |v| v != "0"));
    eprintln!("provider-sim: CloudPayments simulator on {}", sim.base_url);
    // Kept alive for the whole process (its server runs on the runtime).
    let atol = AtolSim::start(&env("SIM_ATOL_ADDR", "127.0.0.1:8092"))?;
    eprintln!("provider-sim: ATOL Online v5 simulator on {}", atol.base_url);
    let yookassa = YooKassaSim::start(&env("SIM_YOOKASSA_ADDR", "127.0.0.1:8093"))?;
    // Benchmarks seed saved methods directly and may not want notifications.
    yookassa.set_accept_any_method(std::env::var("SIM_ACCEPT_ANY_TOKEN").is_ok_and(|v| v == "1"));
    yookassa.set_notifications(std::env::var("SIM_TOKEN_NOTIFICATIONS").map_or(true, |v| v != "0"));
    eprintln!("provider-sim: YooKassa v3 simulator on {}", yookassa.api_url());
    if std::env::args().any(|a| a == "--demo") {
        let api = env("BILLING_API_URL", "http://127.0.0.1:8080");
        let admin_token = env("BILLING_ADMIN_TOKEN", "");
        let tenants_file = PathBuf::from(env("DEMO_TENANTS", "deploy/demo/tenants.json"));
        let state_file = PathBuf::from(env("DEMO_STATE", ".run/demo-state.json"));
        let cfg =
            DemoConfig { api: &api, admin_token: &admin_token, tenants_file: &tenants_file, state_file: &state_file };
        let sims = Simulators { cloudpayments: &sim, yookassa: &yookassa, atol: &atol };
        let state = seed(&sims, &cfg).await?;
        println!("{}", walkthrough(&api, &sim.base_url, &yookassa.base_url, &admin_token, &state));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
