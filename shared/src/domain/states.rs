//! Statuses and kinds of payments, their attempts, refunds and receipts, as types.
//!
//! Each is stored as its snake_case name (the database checks the same list) and
//! shown as that name in the API (API.md). [`string_enum!`] gives every enum
//! `as_str`, a strict `parse` (an unknown name is `None`, which readers of stored
//! data turn into an error) and `ALL`; `db::enums` maps them to text columns.

/// Declares a fieldless enum stored and shown as fixed strings.
macro_rules! string_enum {
    ($(#[doc = $doc:literal])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored and shown name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value named `text`; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        /// The OpenAPI schema: a string, one of the shown names, described by the
        /// enum's doc comment.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let doc: &[&str] = &[$($doc,)*];
                let description = doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description((!description.is_empty()).then_some(description))
                    .enum_values(Some([$($text,)+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use string_enum;

string_enum! {
    /// What a payment pays for (API.md "Usage, balance, payments").
    pub enum PaymentKind {
        Purchase = "purchase",
        Renewal = "renewal",
        Upgrade = "upgrade",
        Extension = "extension",
        TopUp = "top_up",
        Overage = "overage",
    }
}

impl PaymentKind {
    /// Kinds that pay for a period of a plan's tariff.
    pub fn pays_tariff(self) -> bool {
        matches!(self, PaymentKind::Purchase | PaymentKind::Renewal | PaymentKind::Extension)
    }
}

string_enum! {
    /// One charged thing of a payment: the plan's tariff, an upgrade's surcharge,
    /// usage above a quota.
    pub enum LineKind {
        Tariff = "tariff",
        Upgrade = "upgrade",
        Overage = "overage",
    }
}

impl PaymentKind {
    /// What a payment charges when it has a single line.
    pub fn line_kind(self) -> LineKind {
        match self {
            PaymentKind::Upgrade => LineKind::Upgrade,
            PaymentKind::Overage => LineKind::Overage,
            _ => LineKind::Tariff,
        }
    }
}

string_enum! {
    /// Where a payment stands: collected, refunded in part or in full, or not.
    pub enum PaymentStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
        Refunded = "refunded",
        PartiallyRefunded = "partially_refunded",
    }
}

/// A payment's `failure_reason` when the service itself closed it unpaid: a newer
/// request replaced it. It can no longer be paid.
pub const PAYMENT_SUPERSEDED: &str = "superseded";
/// A payment's `failure_reason` when it was not paid in time. It can no longer be paid.
pub const PAYMENT_EXPIRED: &str = "expired";

impl PaymentStatus {
    /// The money was captured (whatever was refunded since).
    pub fn is_captured(self) -> bool {
        matches!(self, PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded)
    }

    /// Still to be collected (a failed payment may be paid by another attempt).
    pub fn is_open(self) -> bool {
        matches!(self, PaymentStatus::Pending | PaymentStatus::Failed)
    }
}

string_enum! {
    /// How an attempt collects a payment.
    pub enum AttemptChannel {
        /// The gateway's checkout (the customer enters a card).
        Widget = "widget",
        /// A scheduled charge of the saved card: the automatic renewal and its retries.
        Scheduled = "token",
        /// A charge of the saved card the customer asked for.
        Manual = "token_manual",
        /// Taken from the customer's balance (prepaid money and cashback).
        Balance = "balance",
        /// An invoice paid by bank transfer.
        Invoice = "invoice",
    }
}

string_enum! {
    /// Where one attempt at collecting a payment stands.
    pub enum AttemptStatus {
        /// Created, not sent to the provider yet.
        Pending = "pending",
        /// Sent (committed before the call): the outcome is awaited.
        Sent = "sent",
        Succeeded = "succeeded",
        Failed = "failed",
        /// The call's outcome is unknown: to be reconciled with the provider.
        Unknown = "unknown",
        /// The provider refused the merchant's request: never charged, re-sent later.
        Refused = "refused",
    }
}

impl AttemptStatus {
    /// The attempt has an outcome.
    pub fn is_final(self) -> bool {
        matches!(self, AttemptStatus::Succeeded | AttemptStatus::Failed)
    }

    /// The provider may have charged it: its outcome must be known before anything else.
    pub fn may_have_reached_provider(self) -> bool {
        matches!(self, AttemptStatus::Sent | AttemptStatus::Unknown)
    }

    /// Never charged and not in flight: it can be called off.
    pub fn never_charged(self) -> bool {
        matches!(self, AttemptStatus::Pending | AttemptStatus::Refused)
    }
}

string_enum! {
    /// Where a refund stands (API.md "Refunds, receipts, invoices, partners").
    pub enum RefundStatus {
        PendingReview = "pending_review",
        Approved = "approved",
        Rejected = "rejected",
        Processing = "processing",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

impl RefundStatus {
    /// Statuses whose amount is refunded or held for a refund: together they may
    /// not exceed what the payment captured.
    pub const HOLDING: [RefundStatus; 4] =
        [RefundStatus::PendingReview, RefundStatus::Approved, RefundStatus::Processing, RefundStatus::Succeeded];
}

string_enum! {
    /// A 54-FZ receipt's operation: income (приход) or its refund (возврат прихода).
    pub enum ReceiptKind {
        Income = "income",
        IncomeRefund = "income_refund",
    }
}

string_enum! {
    /// Where a receipt's registration with the fiscal provider stands.
    pub enum ReceiptStatus {
        Pending = "pending",
        Registered = "registered",
        Failed = "failed",
    }
}

string_enum! {
    /// Where an outgoing webhook's delivery stands: delivered, failing (will be
    /// retried) or dead (retries exhausted, dead-lettered for replay).
    pub enum DeliveryStatus {
        Delivered = "delivered",
        Failing = "failing",
        Dead = "dead",
    }
}

string_enum! {
    /// What an outbox row carries: an event for product backends (the topic
    /// exchange `billing.events`, and their webhooks) or a job for the worker.
    pub enum OutboxMessage {
        Event = "event",
        Job = "job",
    }
}

string_enum! {
    /// Where an invoice for bank transfer stands: issued, partly paid (less than
    /// its total received so far), or paid (its payment captured).
    pub enum InvoiceStatus {
        Issued = "issued",
        PartiallyPaid = "partially_paid",
        Paid = "paid",
    }
}

string_enum! {
    /// A numbered document of a tenant (numbered per kind and year).
    pub enum DocumentKind {
        Invoice = "invoice",
        Act = "act",
    }
}

string_enum! {
    /// How a bank transfer for an invoice became known: recorded by hand
    /// (`mark-paid`) or found in an imported bank statement.
    pub enum TransferSource {
        Manual = "manual",
        BankStatement = "bank_statement",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: Copy + PartialEq + std::fmt::Debug + serde::Serialize>(
        all: &[T],
        as_str: fn(T) -> &'static str,
        parse: fn(&str) -> Option<T>,
    ) {
        for v in all {
            assert_eq!(parse(as_str(*v)), Some(*v));
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(as_str(*v)));
        }
        assert_eq!(parse("no-such-state"), None);
    }

    #[test]
    fn every_state_reads_back_as_itself() {
        round_trips(PaymentKind::ALL, PaymentKind::as_str, PaymentKind::parse);
        round_trips(LineKind::ALL, LineKind::as_str, LineKind::parse);
        round_trips(PaymentStatus::ALL, PaymentStatus::as_str, PaymentStatus::parse);
        round_trips(AttemptChannel::ALL, AttemptChannel::as_str, AttemptChannel::parse);
        round_trips(AttemptStatus::ALL, AttemptStatus::as_str, AttemptStatus::parse);
        round_trips(RefundStatus::ALL, RefundStatus::as_str, RefundStatus::parse);
        round_trips(ReceiptKind::ALL, ReceiptKind::as_str, ReceiptKind::parse);
        round_trips(ReceiptStatus::ALL, ReceiptStatus::as_str, ReceiptStatus::parse);
        round_trips(DeliveryStatus::ALL, DeliveryStatus::as_str, DeliveryStatus::parse);
        round_trips(OutboxMessage::ALL, OutboxMessage::as_str, OutboxMessage::parse);
        round_trips(InvoiceStatus::ALL, InvoiceStatus::as_str, InvoiceStatus::parse);
        round_trips(DocumentKind::ALL, DocumentKind::as_str, DocumentKind::parse);
        round_trips(TransferSource::ALL, TransferSource::as_str, TransferSource::parse);
    }
}
