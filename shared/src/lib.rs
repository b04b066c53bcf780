//! `billing-shared`: everything the billing API and worker share — pure domain
//! rules, database access, use-case services, payment gateway adapters, the clock
//! and configuration.

pub mod cache;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod fiscal;
pub mod gateways;
pub mod pdf;
pub mod ports;
pub mod provider_http;
pub mod queue;
pub mod sealing;
pub mod services;
pub mod signing;
pub mod telemetry;
pub mod trace;
