//! Fuzzing the service's parsers of untrusted bytes without a nightly toolchain:
//! each target is fed seeded random inputs — mutations of real examples (byte
//! flips, insertions, deletions, repeated chunks, splices, tokens known to break
//! parsers) and plain random bytes — and must return (an error is fine) without
//! panicking. `fuzz-parsers` runs every target and prints a table; the unit test
//! below runs a short round of each so the harness keeps working.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use billing_shared::domain::money::{Money, UnitPrice};
use billing_shared::fiscal::atol::wire::report_of;
use billing_shared::gateways::cloudpayments::wire::{Fields, NotificationKind, PaymentNotification, dedup_key};
use billing_shared::gateways::yookassa::wire::{NotificationBody, Payment, Refund};
use billing_shared::services::usage::{UsageBatch, UsageEvent};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A parser under test and real inputs to mutate.
pub struct Target {
    pub name: &'static str,
    seeds: &'static [&'static [u8]],
    run: fn(&[u8]),
}

const TOKENS: [&[u8]; 14] = [
    b"-",
    b"0",
    b"99999999999999999999999999999",
    b"\0",
    b"%",
    b"=",
    b"&",
    b"\"",
    b"{",
    b"}",
    b"1e400",
    b"NaN",
    b"\xff\xfe",
    b".000000001",
];

fn cloudpayments(body: &[u8]) {
    for ct in [Some("application/x-www-form-urlencoded"), Some("application/json"), None] {
        if let Ok(fields) = Fields::parse(ct, body) {
            let _ = PaymentNotification::from_fields(&fields);
            for kind in ["check", "pay", "fail", "refund", "recurrent", "cancel"] {
                if let Some(kind) = NotificationKind::parse(kind) {
                    let _ = dedup_key(kind, &fields);
                }
            }
        }
    }
}

fn money(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let value = serde_json::Value::String(text.into_owned());
    for currency in [serde_json::json!("RUB"), serde_json::json!("XXX")] {
        let _ = Money::parse(&value, &currency);
        let _ = UnitPrice::parse(&value, &currency);
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let _ = Money::parse(&json["value"], &json["currency"]);
        let _ = UnitPrice::parse(&json["value"], &json["currency"]);
    }
}

fn usage(bytes: &[u8]) {
    if let Ok(batch) = serde_json::from_slice::<UsageBatch>(bytes) {
        for event in &batch.events {
            let _ = serde_json::from_str::<UsageEvent>(event.get());
        }
    }
}

fn atol(bytes: &[u8]) {
    for status in [200, 400, 401, 404, 500] {
        let _ = report_of("uuid-1", status, bytes);
    }
}

fn yookassa(bytes: &[u8]) {
    let _ = NotificationBody::parse(bytes);
    let _ = serde_json::from_slice::<Payment>(bytes);
    let _ = serde_json::from_slice::<Refund>(bytes);
}

/// Every target, with seeds from the providers' documented examples.
pub const TARGETS: [Target; 5] = [
    Target {
        name: "cloudpayments_notification",
        seeds: &[
            b"TransactionId=1001&Amount=1390.00&Currency=RUB&InvoiceId=inv-1&AccountId=acc&Token=tk_1&Status=Completed&CardLastFour=4444",
            br#"{"TransactionId":1001,"Amount":1390.00,"Currency":"RUB","InvoiceId":"inv-1","ReasonCode":5051,"Data":"{\"refund_id\":\"x\"}"}"#,
            b"TransactionId=7&PaymentTransactionId=6&Amount=100.00&OperationType=Refund",
        ],
        run: cloudpayments,
    },
    Target {
        name: "money_and_unit_price",
        seeds: &[b"690.00", b"0.05", b"0.123456", br#"{"value":"1390.00","currency":"RUB"}"#, b"-1.00"],
        run: money,
    },
    Target {
        name: "usage_batch",
        seeds: &[
            br#"{"events":[{"event_id":"e1","customer_id":"01a22e06-ccc5-7329-920d-c58d2a795584","metric":"messages","quantity":3,"occurred_at":"2026-03-05T09:00:00Z"}]}"#,
        ],
        run: usage,
    },
    Target {
        name: "atol_report",
        seeds: &[
            br#"{"uuid":"u1","status":"done","payload":{"total":1390.0,"fns_site":"www.nalog.gov.ru","fn_number":"9999078900001341","shift_number":23,"receipt_datetime":"05.03.2026 12:00:00","fiscal_receipt_number":6,"fiscal_document_number":133,"ecr_registration_number":"0000000001002292","fiscal_document_attribute":3449555941},"error":null}"#,
            br#"{"uuid":"u1","status":"fail","error":{"code":32,"text":"\u041e\u0448\u0438\u0431\u043a\u0430","type":"system"}}"#,
            br#"{"uuid":"u1","status":"wait","error":null}"#,
        ],
        run: atol,
    },
    Target {
        name: "yookassa_notification",
        seeds: &[
            br#"{"type":"notification","event":"payment.succeeded","object":{"id":"2d1f-1","status":"succeeded","amount":{"value":"990.00","currency":"RUB"},"metadata":{"attempt_id":"a"},"payment_method":{"type":"bank_card","id":"2d1f-1","saved":true,"card":{"last4":"4477"}},"cancellation_details":{"party":"merchant","reason":"canceled_by_merchant"}}}"#,
            br#"{"id":"r1","payment_id":"p1","status":"succeeded","amount":{"value":"100.00","currency":"RUB"},"description":"refund 0190"}"#,
        ],
        run: yookassa,
    },
];

fn mutate(rng: &mut SmallRng, seeds: &[&[u8]]) -> Vec<u8> {
    if rng.random_ratio(1, 8) {
        let len = rng.random_range(0..256);
        return (0..len).map(|_| rng.random()).collect();
    }
    let mut input = seeds[rng.random_range(0..seeds.len())].to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=input.len());
        match rng.random_range(0..6) {
            0 if !input.is_empty() => {
                let i = rng.random_range(0..input.len());
                input[i] ^= 1 << rng.random_range(0..8);
            }
            1 => input.insert(at, rng.random()),
            2 if at < input.len() => {
                let end = rng.random_range(at..=input.len());
                input.drain(at..end);
            }
            3 if at < input.len() => {
                let end = rng.random_range(at..=input.len().min(at + 32));
                let chunk = input[at..end].to_vec();
                input.splice(at..at, chunk.iter().cycle().take(chunk.len() * rng.random_range(1..8)).copied());
            }
            4 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            _ => {
                let other = seeds[rng.random_range(0..seeds.len())];
                let from = rng.random_range(0..=other.len());
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
        }
    }
    input
}

/// What a run of one target found.
#[derive(Debug, Clone)]
pub struct Round {
    pub name: &'static str,
    pub executions: u64,
    /// Inputs that made the parser panic (kept to become regression tests).
    pub crashes: Vec<Vec<u8>>,
    pub seconds: f64,
}

/// Runs `target` on `executions` inputs from `seed`.
pub fn run(target: &Target, executions: u64, seed: u64) -> Round {
    let mut rng = SmallRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut crashes = Vec::new();
    for _ in 0..executions {
        let input = mutate(&mut rng, target.seeds);
        if catch_unwind(AssertUnwindSafe(|| (target.run)(&input))).is_err() {
            crashes.push(input);
        }
    }
    Round { name: target.name, executions, crashes, seconds: started.elapsed().as_secs_f64() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_round_of_every_target_finds_no_panic() {
        for target in &TARGETS {
            let round = run(target, 20_000, 7);
            assert!(
                round.crashes.is_empty(),
                "{}: {:?}",
                target.name,
                round.crashes.first().map(|c| String::from_utf8_lossy(c).into_owned())
            );
        }
    }
}
