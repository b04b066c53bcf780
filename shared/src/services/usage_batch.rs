//! The `POST /v1/usage` request and answer, and a batch's checks that need
//! neither the database nor the clock (SPEC §5): each event parsed on its own,
//! its id and quantity checked, its id's key computed. They run before the
//! ingestion takes a database connection and its turn
//! ([`super::usage::ingest`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::ids::{CustomerId, TenantId};
use crate::domain::usage::event_key;
use crate::error::{ServiceError, ServiceResult};

/// Events per call.
pub const MAX_EVENTS: usize = 10_000;
/// Largest quantity of one event (keeps counters and overage amounts in range).
pub const MAX_QUANTITY: i64 = 1_000_000_000;

/// `POST /v1/usage` body. Events are checked one by one: an invalid event is
/// listed in `rejected`, the others are accepted.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"events": [{"event_id": "evt-1", "customer_id": "01926f6e-8d40-7b3a-9c1e-2f4a5b6c7d8e", "metric": "messages", "quantity": 1, "occurred_at": "2026-03-05T09:00:00Z"}]})))]
pub struct UsageBatch {
    /// Kept raw so each event is parsed (and rejected) on its own, straight into
    /// [`UsageEvent`] without an intermediate JSON tree.
    #[schema(value_type = Vec<UsageEvent>)]
    pub events: Vec<Box<RawValue>>,
}

/// One usage event.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageEvent {
    /// Unique per tenant: the same id again within at least 35 days (up to 70)
    /// counts once, as a duplicate. 1 to 255 characters, no control characters
    /// (else the event is rejected: `invalid_event_id`).
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub event_id: String,
    /// The tenant's customer the event is of (else `customer_not_found`); it needs
    /// a live subscription (else `no_active_subscription`).
    pub customer_id: CustomerId,
    /// A quota metric of the customer's plan (plan metric names follow this
    /// pattern; any other is rejected: `unknown_metric`).
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    pub metric: String,
    /// Counter: units used (summed). Gauge: the absolute level measured. An
    /// integer; `5.0` counts as 5 (JSON Schema's integers), `5.5` is refused.
    #[serde(deserialize_with = "integer")]
    pub quantity: i64,
    /// When the usage happened (RFC 3339): chooses the paid period it counts in; at
    /// most 5 minutes ahead of the service's clock (else `occurred_in_future`).
    pub occurred_at: DateTime<Utc>,
}

/// An `i64` written as a JSON integer or as a number with a zero fraction.
fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct Integer;
    impl serde::de::Visitor<'_> for Integer {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                // Exact: |v| < 2^53, so the conversion loses nothing.
                #[allow(clippy::cast_possible_truncation)]
                Ok(v as i64)
            } else {
                Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
            }
        }
    }
    d.deserialize_any(Integer)
}

/// An event of the batch that was not counted, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rejected {
    /// Position of the event in `events`.
    pub index: usize,
    /// `validation_failed`, `invalid_event_id`, `invalid_quantity`,
    /// `occurred_in_future`, `customer_not_found`, `no_active_subscription`,
    /// `unknown_metric`, `period_closed`.
    pub code: &'static str,
    /// What was wrong, for people (absent when the code says it all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `POST /v1/usage` answer: every event of the batch is accepted, a duplicate, or
/// rejected.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageResult {
    /// Events counted now.
    pub accepted: usize,
    /// Events whose id was already counted (earlier, or earlier in this batch).
    pub duplicates: usize,
    /// The events not counted, by index.
    pub rejected: Vec<Rejected>,
}

/// A batch after [`check`]: the events that passed, in order, each with its
/// index in `events` and its id's key, and those rejected so far.
pub struct Checked {
    pub(super) events: Vec<(usize, Uuid, UsageEvent)>,
    pub(super) rejected: Vec<Rejected>,
}

impl Checked {
    /// The batch's share of the API's usage turns: one permit per event that
    /// passed, 1 when none did, at most [`MAX_EVENTS`] (a full batch's turn).
    pub fn share(&self) -> u32 {
        u32::try_from(self.events.len().clamp(1, MAX_EVENTS)).unwrap_or(1)
    }
}

/// Parses each event of `batch` on its own and checks its id (1 to 255
/// characters, no control characters: `invalid_event_id`) and quantity (0 to
/// [`MAX_QUANTITY`]: `invalid_quantity`); an event that does not parse is
/// `validation_failed`. Each passing event gets its id's key for `tenant`
/// ([`event_key`]). Errors: `too_many_events` (more than [`MAX_EVENTS`]).
pub fn check(tenant: TenantId, batch: UsageBatch) -> ServiceResult<Checked> {
    if batch.events.len() > MAX_EVENTS {
        return Err(ServiceError::invalid(
            "too_many_events",
            format!("at most {MAX_EVENTS} events per call ({} sent)", batch.events.len()),
        ));
    }
    let mut rejected = Vec::new();
    let mut events = Vec::with_capacity(batch.events.len());
    for (index, raw) in batch.events.into_iter().enumerate() {
        let event: UsageEvent = match serde_json::from_str(raw.get()) {
            Ok(e) => e,
            Err(e) => {
                rejected.push(reject(index, "validation_failed", e.to_string()));
                continue;
            }
        };
        if event.event_id.is_empty()
            || event.event_id.chars().count() > 255
            || event.event_id.chars().any(char::is_control)
        {
            rejected.push(reject(
                index,
                "invalid_event_id",
                "event_id must be 1 to 255 printable characters".to_owned(),
            ));
        } else if !(0..=MAX_QUANTITY).contains(&event.quantity) {
            rejected.push(reject(index, "invalid_quantity", format!("quantity must be 0 to {MAX_QUANTITY}")));
        } else {
            events.push((index, event_key(tenant, &event.event_id), event));
        }
    }
    Ok(Checked { events, rejected })
}

/// A rejection of the event at `index` with `code`.
pub(super) fn reject(index: usize, code: &'static str, detail: impl Into<Option<String>>) -> Rejected {
    Rejected { index, code, detail: detail.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(events: serde_json::Value) -> UsageBatch {
        serde_json::from_value(serde_json::json!({ "events": events })).unwrap()
    }

    #[test]
    fn check_keeps_valid_events_in_order_with_their_keys_and_rejects_the_others_by_index() {
        let tenant = TenantId::new();
        let customer = "01926f6e-8d40-7b3a-9c1e-2f4a5b6c7d8e";
        let ok = |id: &str, q: i64| {
            serde_json::json!({"event_id": id, "customer_id": customer, "metric": "messages", "quantity": q,
                               "occurred_at": "2026-03-05T09:00:00Z"})
        };
        let checked = check(
            tenant,
            batch(serde_json::json!([
                ok("a", 1),
                ok("", 1),
                ok("b", -1),
                {"event_id": "c"},
                ok("a", 2),
                ok("d\u{7}", 1),
                ok("e", MAX_QUANTITY),
            ])),
        )
        .unwrap();
        // Duplicates within the batch are told apart later, with the clock.
        let kept: Vec<(usize, Uuid, &str, i64)> =
            checked.events.iter().map(|(i, k, e)| (*i, *k, e.event_id.as_str(), e.quantity)).collect();
        assert_eq!(
            kept,
            vec![
                (0, event_key(tenant, "a"), "a", 1),
                (4, event_key(tenant, "a"), "a", 2),
                (6, event_key(tenant, "e"), "e", MAX_QUANTITY),
            ]
        );
        let codes: Vec<(usize, &str)> = checked.rejected.iter().map(|r| (r.index, r.code)).collect();
        assert_eq!(
            codes,
            vec![(1, "invalid_event_id"), (2, "invalid_quantity"), (3, "validation_failed"), (5, "invalid_event_id")]
        );
    }

    #[test]
    fn check_refuses_more_than_max_events() {
        let events: Vec<serde_json::Value> = (0..=MAX_EVENTS).map(|_| serde_json::json!({})).collect();
        let Err(ServiceError::Invalid { code, .. }) = check(TenantId::new(), batch(serde_json::Value::from(events)))
        else {
            panic!("expected too_many_events");
        };
        assert_eq!(code, "too_many_events");
    }
}
