//! Provider simulators for the billing service's tests and local demo.
//!
//! Each simulator speaks its provider's real wire format (see GATEWAYS.md), so that
//! swapping it for the real provider changes only a base URL and credentials. They
//! are deliberately independent of the service's own code: signatures are computed
//! here with the `hmac` crate, not with the service's helpers, so a signing bug in
//! the service cannot hide behind a matching bug in the simulator.

pub mod atol;
pub mod chaos;
pub mod cloudpayments;
pub mod demo;
pub mod fuzz;
pub mod otlp_sink;
pub mod process;
pub mod testdb;
pub mod testmq;
pub mod webhook_sink;
pub mod yookassa;
