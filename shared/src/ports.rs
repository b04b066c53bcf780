//! The ports a process talks to the outside through, with the adapters it was
//! built with: payment gateways (`gateways::registry`) and, later in this file's
//! history, fiscal registrars. The binaries build the defaults from the
//! configuration; tests may plug adapters of their own.

use crate::config::Config;
use crate::gateways::GatewayError;
use crate::gateways::registry::Gateways;

/// The adapters behind each port.
#[derive(Clone)]
pub struct Ports {
    pub gateways: Gateways,
}

impl Ports {
    /// The built-in adapters, with the configured provider timeout.
    pub fn from_config(config: &Config) -> Result<Ports, GatewayError> {
        Ok(Ports { gateways: Gateways::new(config.gateway_timeout)? })
    }
}
