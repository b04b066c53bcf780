//! Test support: databases, the app under test, and simulators.

pub mod app;

pub use app::{Answer, T0, Tenant, TestApp};
