//! The worker's jobs: one serde-tagged enum shared by whoever enqueues (through the
//! outbox) and whoever consumes.
//!
//! On the wire a job is the outbox envelope `{id, type, created_at, tenant_id,
//! data}` with `type` the job's snake_case name and `data` its fields, e.g.
//! `{"type": "charge_attempt", "data": {"attempt_id": "…"}}`. Each job belongs to
//! one work queue ([`Job::queue`]); the outbox relay routes it there.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::topology::{GATEWAY_FOLLOWUPS, RECEIPT_WAVES, RECEIPTS, REFUNDS, RENEWAL_WAVES, RENEWALS, WorkQueue};

/// A unit of work for the worker (see the module docs for its wire form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Job {
    /// Charge a saved card for a payment attempt (renewals, retries, pay now).
    ChargeAttempt { attempt_id: Uuid },
    /// Charge the first attempts of one tenant's plain renewals together (up to
    /// `services::charge_waves::CHUNK` of a scheduler tick's). An attempt the wave
    /// does not settle is handed to its own `ChargeAttempt` job
    /// (`services::charge_waves::process_wave`).
    ChargeAttempts { attempt_ids: Vec<Uuid> },
    /// Settle an attempt whose outcome is unknown by asking the provider.
    ReconcileAttempt { attempt_id: Uuid },
    /// Send an approved refund's current try to the gateway.
    ExecuteRefund { refund_id: Uuid },
    /// Ask the gateway about a refund whose notification has not come.
    ReconcileRefund { refund_id: Uuid },
    /// Register a 54-FZ receipt with the fiscal provider and poll its report.
    RegisterReceipt { receipt_id: Uuid },
    /// Register a wave of one tenant's receipts together (a renewal wave's), then
    /// poll their reports: `round` 0 is the first pass; each later round is
    /// delivered after `billing.receipt-waves`' retry step `round - 1` and carries only
    /// the receipts still awaiting their reports. A receipt the wave cannot carry
    /// through is handed to its own `RegisterReceipt` job
    /// (`services::receipt_waves::process_wave`).
    RegisterReceipts {
        receipt_ids: Vec<Uuid>,
        #[serde(default)]
        round: u16,
    },
}

/// Declares [`Kind`] and `Kind::ALL` from one list, so no kind can be missing
/// from `ALL` (which `Job::queue_of` searches).
macro_rules! kinds {
    ($($kind:ident),+ $(,)?) => {
        /// A job's type without its fields: its name on the wire (the same as serde's
        /// snake_case tag of [`Job`], checked by the tests) and its work queue.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Kind {
            $($kind),+
        }

        impl Kind {
            const ALL: &[Kind] = &[$(Kind::$kind),+];
        }
    };
}

kinds!(
    ChargeAttempt,
    ChargeAttempts,
    ReconcileAttempt,
    ExecuteRefund,
    ReconcileRefund,
    RegisterReceipt,
    RegisterReceipts,
);

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ChargeAttempt => "charge_attempt",
            Kind::ChargeAttempts => "charge_attempts",
            Kind::ReconcileAttempt => "reconcile_attempt",
            Kind::ExecuteRefund => "execute_refund",
            Kind::ReconcileRefund => "reconcile_refund",
            Kind::RegisterReceipt => "register_receipt",
            Kind::RegisterReceipts => "register_receipts",
        }
    }

    fn queue(self) -> WorkQueue {
        match self {
            Kind::ChargeAttempt => RENEWALS,
            Kind::ChargeAttempts => RENEWAL_WAVES,
            Kind::ReconcileAttempt | Kind::ReconcileRefund => GATEWAY_FOLLOWUPS,
            Kind::ExecuteRefund => REFUNDS,
            Kind::RegisterReceipt => RECEIPTS,
            Kind::RegisterReceipts => RECEIPT_WAVES,
        }
    }
}

impl Job {
    fn kind(&self) -> Kind {
        match self {
            Job::ChargeAttempt { .. } => Kind::ChargeAttempt,
            Job::ChargeAttempts { .. } => Kind::ChargeAttempts,
            Job::ReconcileAttempt { .. } => Kind::ReconcileAttempt,
            Job::ExecuteRefund { .. } => Kind::ExecuteRefund,
            Job::ReconcileRefund { .. } => Kind::ReconcileRefund,
            Job::RegisterReceipt { .. } => Kind::RegisterReceipt,
            Job::RegisterReceipts { .. } => Kind::RegisterReceipts,
        }
    }

    /// The job's type name (the envelope's `type`, serde's tag).
    pub fn type_name(&self) -> &'static str {
        self.kind().name()
    }

    /// The work queue the job runs on.
    pub fn queue(&self) -> WorkQueue {
        self.kind().queue()
    }

    /// The work queue a job type runs on (the relay routes stored jobs by it);
    /// `None` for a name no job has.
    pub fn queue_of(type_name: &str) -> Option<WorkQueue> {
        Kind::ALL.iter().find(|k| k.name() == type_name).map(|k| k.queue())
    }

    /// Whether a consumer of `queue` runs the job: on its own queue, and a wave also
    /// on the one it ran on before waves had queues of their own (2026-12-03): a
    /// wave an older relay published, or one waiting in that queue's retry steps at
    /// the upgrade, still runs there.
    pub fn runs_on(&self, queue: WorkQueue) -> bool {
        let before = match self {
            Job::ChargeAttempts { .. } => Some(RENEWALS),
            Job::RegisterReceipts { .. } => Some(RECEIPTS),
            _ => None,
        };
        self.queue().name == queue.name || before.is_some_and(|q| q.name == queue.name)
    }

    /// The job's `data` (its fields, without the tag).
    pub fn data(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut m)) => m.remove("data").unwrap_or_default(),
            _ => serde_json::Value::Null,
        }
    }

    /// Reads a job from a message body (the outbox envelope).
    pub fn decode(body: &[u8]) -> Result<Job, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_read_back_from_their_envelope_and_route_to_their_queue() {
        let id = Uuid::now_v7();
        let jobs = [
            Job::ChargeAttempt { attempt_id: id },
            Job::ChargeAttempts { attempt_ids: vec![id, Uuid::now_v7()] },
            Job::ReconcileAttempt { attempt_id: id },
            Job::ExecuteRefund { refund_id: id },
            Job::ReconcileRefund { refund_id: id },
            Job::RegisterReceipt { receipt_id: id },
            Job::RegisterReceipts { receipt_ids: vec![id, Uuid::now_v7()], round: 2 },
        ];
        for job in jobs {
            let envelope = serde_json::json!({
                "id": Uuid::now_v7(), "type": job.type_name(), "created_at": "2026-03-01T00:00:00Z",
                "tenant_id": Uuid::now_v7(), "data": job.data(),
            });
            let body = serde_json::to_vec(&envelope).unwrap();
            assert_eq!(Job::queue_of(job.type_name()).unwrap().name, job.queue().name);
            assert_eq!(Job::decode(&body).unwrap(), job);
            assert!(job.runs_on(job.queue()), "{}", job.type_name());
        }
        // A wave also runs on the queue it shared with one-attempt jobs before waves
        // had their own; a one-attempt job runs on its queue only.
        let (id, ids) = (Uuid::now_v7(), vec![Uuid::now_v7()]);
        assert!(Job::ChargeAttempts { attempt_ids: ids.clone() }.runs_on(RENEWALS));
        assert!(Job::RegisterReceipts { receipt_ids: ids.clone(), round: 0 }.runs_on(RECEIPTS));
        assert!(!Job::ChargeAttempts { attempt_ids: ids }.runs_on(RECEIPTS));
        assert!(!Job::ChargeAttempt { attempt_id: id }.runs_on(RENEWAL_WAVES));
        assert!(!Job::RegisterReceipt { receipt_id: id }.runs_on(RECEIPT_WAVES));
        assert!(!Job::ExecuteRefund { refund_id: id }.runs_on(RENEWALS));
        assert_eq!(Job::queue_of("charge_attempts").unwrap().name, "billing.renewal-waves");
        assert_eq!(Job::queue_of("register_receipts").unwrap().name, "billing.receipt-waves");
        assert!(Job::decode(br#"{"type": "charge_attempt", "data": {}}"#).is_err());
        assert!(Job::decode(br#"{"type": "no_such_job", "data": {}}"#).is_err());
        assert!(Job::queue_of("no_such_job").is_none());
    }
}
