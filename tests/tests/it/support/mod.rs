//! Test support: databases, the app under test, simulators, and both gateways.

pub mod app;
pub mod browser;
pub mod gateways;
mod queries;

pub use app::{Answer, T0, Tenant, TestApp};
pub use gateways::{Card, ChargeScript, Gw};
pub use queries::rows_on;
