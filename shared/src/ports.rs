//! The ports a process talks to the outside through, with the adapters it was
//! built with: payment gateways (`gateways::registry::Gateways`) and fiscal
//! registrars (`fiscal::Registrars`). The binaries build the built-in adapters
//! from the configuration; tests may plug adapters of their own.

use crate::config::Config;
use crate::fiscal::{FiscalError, Registrars};
use crate::gateways::GatewayError;
use crate::gateways::registry::Gateways;

/// The adapters behind each port.
#[derive(Clone)]
pub struct Ports {
    pub gateways: Gateways,
    pub registrars: Registrars,
}

/// A port's adapters could not be built (an HTTP client without TLS roots, ...).
#[derive(Debug, thiserror::Error)]
pub enum PortsError {
    #[error("payment gateways: {0}")]
    Gateways(#[from] GatewayError),
    #[error("fiscal registrars: {0}")]
    Registrars(#[from] FiscalError),
}

impl Ports {
    /// The built-in adapters, with the configured provider timeout and bound on
    /// concurrent gateway calls.
    pub fn from_config(config: &Config) -> Result<Ports, PortsError> {
        Ok(Ports {
            gateways: Gateways::new(config.gateway_timeout, config.gateway_concurrency)?,
            registrars: Registrars::new(config.gateway_timeout)?,
        })
    }
}
