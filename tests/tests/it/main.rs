//! Black-box tests of the billing service over HTTP against real PostgreSQL (and
//! RabbitMQ for the worker), with providers replaced only by the simulators.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is the assertion

mod support;

mod atol;
mod audit;
mod balance;
mod balance_receipts;
mod bank_statements;
mod catalog;
mod console;
mod conventions;
mod dunning;
mod events;
mod faults;
mod gateway;
mod invoices;
mod ledger;
mod lifecycle;
mod ops_cli;
mod partners;
mod pay_batches;
mod plan_change;
mod ports;
mod purchase;
mod reads;
mod receipts;
mod refund_execution;
mod refunds;
mod renewals;
mod resilience;
mod sealing;
mod secrets;
mod tenants;
mod traces;
mod usage;
mod usage_window;
mod webhooks;
mod yookassa;
