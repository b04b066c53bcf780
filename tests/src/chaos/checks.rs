//! After the wave: wait for the work to settle, then check what a customer and an
//! auditor would check — the audit, one capture per payment, provider refunds
//! equal to ours and every requested refund paid back, one fiscal registration per
//! receipt and none failed, usage counted once, every event delivered, and nothing
//! unresolved unless a dead letter names it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use super::client::Db;
use crate::atol::AtolSim;
use crate::cloudpayments::CloudPaymentsSim;

/// Rows still in flight: charges, refunds, receipts, unpublished events.
/// SQL condition: the outbox row `o` is published (off the relay's work list).
pub(super) const PUBLISHED: &str = "NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.seq = o.seq)";

const UNRESOLVED: &str = "\
    SELECT 'attempt ' || id || ' of payment ' || payment_id FROM payment_attempts WHERE status IN ('pending', 'sent', 'unknown') \
    UNION ALL SELECT 'refund ' || id FROM refunds WHERE status IN ('pending_review', 'approved', 'processing') \
    UNION ALL SELECT 'receipt ' || id FROM receipts WHERE status = 'pending' \
    UNION ALL SELECT 'event ' || o.id FROM outbox_pending p JOIN outbox_events o ON o.seq = p.seq";

/// Waits until nothing is in flight (or `within` passes); returns what still is.
pub async fn settle(db: &Db, within: Duration) -> anyhow::Result<Vec<String>> {
    let start = Instant::now();
    loop {
        let left = db.rows(UNRESOLVED).await?;
        if left.is_empty() || start.elapsed() > within {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One check's result: what it looks at and the breaches found (named).
pub struct Check {
    pub name: &'static str,
    pub looked_at: usize,
    pub breaches: Vec<String>,
}

/// One capture per captured payment, none for another one, amounts equal.
async fn charged_once(db: &Db, cp: &CloudPaymentsSim) -> anyhow::Result<Check> {
    // The invoice ids our attempts sent (widget and token), with their payment.
    let mut payment_of: HashMap<String, String> = HashMap::new();
    let mut captured: HashMap<String, Decimal> = HashMap::new();
    for row in db
        .rows(
            "SELECT a.invoice_id, p.id, p.status, p.amount FROM payment_attempts a JOIN payments p ON p.id = a.payment_id \
             UNION SELECT p.id::text, p.id, p.status, p.amount FROM payments p",
        )
        .await?
    {
        let f: Vec<&str> = row.split('|').collect();
        let [invoice, payment, status, amount] = f[..] else { anyhow::bail!("bad row {row}") };
        payment_of.insert(invoice.to_owned(), payment.to_owned());
        if matches!(status, "succeeded" | "refunded" | "partially_refunded") {
            captured.insert(payment.to_owned(), amount.parse()?);
        }
    }
    let mut captures: HashMap<String, Vec<Decimal>> = HashMap::new();
    let mut breaches = Vec::new();
    let completed: Vec<_> = cp.transactions().into_iter().filter(|t| t.status == "Completed").collect();
    for t in &completed {
        match t.invoice_id.as_ref().and_then(|i| payment_of.get(i)) {
            Some(p) => captures.entry(p.clone()).or_default().push(t.amount),
            None => breaches.push(format!("provider transaction {} captured for no payment of ours", t.id)),
        }
    }
    for (payment, amounts) in &captures {
        match captured.get(payment) {
            _ if amounts.len() > 1 => breaches.push(format!("payment {payment} captured {} times", amounts.len())),
            Some(a) if *a != amounts[0] => {
                breaches.push(format!("payment {payment}: ours {a}, captured {}", amounts[0]))
            }
            None => breaches.push(format!("payment {payment} captured by the provider, not booked")),
            Some(_) => {}
        }
    }
    for payment in captured.keys().filter(|p| !captures.contains_key(*p)) {
        breaches.push(format!("payment {payment} booked as captured without a provider capture"));
    }
    // One thing, one payment: a subscription's period is paid for once.
    for row in db
        .rows(
            "SELECT subscription_id || ' ' || kind || ' ' || coalesce(period_start::text, '-') FROM payments \
             WHERE captured_at IS NOT NULL AND kind IN ('purchase', 'renewal') \
             GROUP BY subscription_id, kind, period_start HAVING count(*) > 1",
        )
        .await?
    {
        breaches.push(format!("{row} paid more than once"));
    }
    Ok(Check {
        name: "charged exactly once (provider captures = booked payments)",
        looked_at: completed.len(),
        breaches,
    })
}

/// Money refunded by the provider equals each payment's `refunded_amount`, over
/// every transaction either side refunded (a provider refund of a payment we do not
/// know is a breach too).
async fn refunds_match(db: &Db, cp: &CloudPaymentsSim) -> anyhow::Result<Check> {
    let mut ours: HashMap<i64, Decimal> = HashMap::new();
    for row in db
        .rows("SELECT gateway_transaction_id, refunded_amount FROM payments WHERE gateway_transaction_id IS NOT NULL")
        .await?
    {
        let Some((tx, amount)) = row.split_once('|') else { anyhow::bail!("bad row {row}") };
        if let Ok(tx) = tx.parse::<i64>() {
            ours.insert(tx, amount.parse()?);
        }
    }
    let mut theirs: HashMap<i64, Decimal> = HashMap::new();
    for r in cp.refunds() {
        *theirs.entry(r.payment_transaction_id).or_default() += r.amount;
    }
    let mut breaches = Vec::new();
    for (tx, refunded) in &theirs {
        match ours.get(tx) {
            None => {
                breaches.push(format!("transaction {tx}: refunded {refunded} at the provider, not a payment of ours"))
            }
            Some(booked) if booked != refunded => {
                breaches.push(format!("transaction {tx}: refunded {refunded} at the provider, {booked} booked"))
            }
            Some(_) => {}
        }
    }
    for (tx, booked) in ours.iter().filter(|(tx, b)| !b.is_zero() && !theirs.contains_key(*tx)) {
        breaches.push(format!("transaction {tx}: {booked} booked as refunded, nothing refunded at the provider"));
    }
    Ok(Check { name: "refunds at the provider = refunds booked", looked_at: theirs.len(), breaches })
}

/// Every refund the wave asked for (full, auto-approved by the tenant's rule)
/// reached `succeeded`: the faults are all transient, so a failed, rejected or
/// unfinished one is money a customer did not get back.
async fn refunds_done(db: &Db, requested: u64) -> anyhow::Result<Check> {
    let mut breaches: Vec<String> = db
        .rows("SELECT id || ' ' || status FROM refunds WHERE status <> 'succeeded'")
        .await?
        .into_iter()
        .map(|r| format!("refund {r}"))
        .collect();
    let recorded = db.number("SELECT count(*) FROM refunds").await?;
    if u64::try_from(recorded)? != requested {
        breaches.push(format!("{requested} refunds requested, {recorded} recorded"));
    }
    Ok(Check { name: "every requested refund succeeded", looked_at: usize::try_from(requested)?, breaches })
}

/// The receipt an ATOL document fiscalises: attempt N of receipt R is sent as
/// `R-N` (`services::receipt_registration`).
fn receipt_of(external_id: &str) -> &str {
    external_id.rsplit_once('-').map_or(external_id, |(receipt, _)| receipt)
}

/// Each receipt fiscalised exactly once: the receipts ATOL holds a done document
/// for are exactly the ones registered here, none twice; none failed (every ATOL
/// fault the run injects is transient).
async fn receipts_once(db: &Db, atol: &AtolSim) -> anyhow::Result<Check> {
    let mut done: HashMap<String, usize> = HashMap::new();
    for d in atol.documents().into_iter().filter(|d| d.status == "done") {
        *done.entry(receipt_of(&d.external_id).to_owned()).or_default() += 1;
    }
    let registered: HashSet<String> =
        db.rows("SELECT id::text FROM receipts WHERE status = 'registered'").await?.into_iter().collect();
    let mut breaches: Vec<String> =
        done.iter().filter(|(_, n)| **n > 1).map(|(id, n)| format!("receipt {id} fiscalised {n} times")).collect();
    breaches.extend(
        done.keys()
            .filter(|id| !registered.contains(*id))
            .map(|id| format!("receipt {id} fiscalised, not registered here")),
    );
    breaches.extend(
        registered
            .iter()
            .filter(|id| !done.contains_key(*id))
            .map(|id| format!("receipt {id} registered here, no ATOL document")),
    );
    breaches.extend(
        db.rows("SELECT id::text FROM receipts WHERE status = 'failed'")
            .await?
            .into_iter()
            .map(|id| format!("receipt {id} failed")),
    );
    Ok(Check { name: "receipts fiscalised exactly once, none failed", looked_at: registered.len(), breaches })
}

/// Each captured payment, succeeded refund and registered receipt recorded its
/// event in the outbox exactly once, and that row was published.
async fn events_recorded_once(db: &Db) -> anyhow::Result<Check> {
    let pairs = [
        ("payment.succeeded", "payment_id", "SELECT id::text FROM payments WHERE captured_at IS NOT NULL"),
        ("refund.succeeded", "id", "SELECT id::text FROM refunds WHERE status = 'succeeded'"),
        ("receipt.registered", "id", "SELECT id::text FROM receipts WHERE status = 'registered'"),
    ];
    let mut breaches = Vec::new();
    let mut looked_at = 0;
    for (event, key, things) in pairs {
        let sql = format!(
            "SELECT t.id || ' ' || count(o.seq) FROM ({things}) t(id) LEFT JOIN outbox_events o \
             ON o.event_type = '{event}' AND o.payload->'data'->>'{key}' = t.id AND {PUBLISHED} \
             GROUP BY t.id HAVING count(o.seq) <> 1"
        );
        looked_at += usize::try_from(db.number(&format!("SELECT count(*) FROM ({things}) t")).await?)?;
        breaches.extend(db.rows(&sql).await?.into_iter().map(|r| format!("{event} for {r} times recorded")));
    }
    Ok(Check { name: "one event recorded and published per capture, refund and receipt", looked_at, breaches })
}

/// Every event the outbox published reached a subscriber bound to
/// `billing.events` (at least once — a redelivery carries the same id), and the
/// subscriber got nothing the outbox does not hold.
async fn events_delivered(db: &Db, delivered: &HashMap<String, usize>) -> anyhow::Result<Check> {
    let published: HashSet<String> = db
        .rows(&format!("SELECT id::text FROM outbox_events o WHERE message = 'event' AND {PUBLISHED}"))
        .await?
        .into_iter()
        .collect();
    let mut breaches: Vec<String> = published
        .iter()
        .filter(|id| !delivered.contains_key(*id))
        .map(|id| format!("event {id} never delivered"))
        .collect();
    breaches.extend(
        delivered.keys().filter(|id| !published.contains(*id)).map(|id| format!("event {id} delivered, not published")),
    );
    Ok(Check { name: "every published event delivered to a subscriber", looked_at: published.len(), breaches })
}

/// Every usage event accepted is stored once.
async fn usage_once(db: &Db, sent: u64) -> anyhow::Result<Check> {
    let stored = db.number("SELECT count(*) FROM usage_events").await?;
    let breaches = if u64::try_from(stored)? == sent {
        Vec::new()
    } else {
        vec![format!("{sent} events accepted, {stored} stored")]
    };
    Ok(Check { name: "usage events stored exactly once", looked_at: usize::try_from(sent)?, breaches })
}

/// What is still in flight must be named by a dead letter.
async fn nothing_stuck(db: &Db, unresolved: &[String]) -> anyhow::Result<Check> {
    let letters = db.rows("SELECT coalesce(payload::text, '') || ' ' || reason FROM dead_letters").await?;
    let breaches = unresolved
        .iter()
        .filter(|u| {
            let ids: Vec<&str> = u.split(' ').filter(|w| w.len() == 36).collect();
            !letters.iter().any(|l| ids.iter().any(|id| l.contains(id)))
        })
        .map(|u| format!("{u} unresolved, no dead letter names it"))
        .collect();
    Ok(Check { name: "nothing unresolved without a dead letter naming it", looked_at: unresolved.len(), breaches })
}

/// What the checks compare the books with: the wave's own counts and what the
/// events tap received.
pub struct Observed<'a> {
    pub usage_sent: u64,
    pub refunds_requested: u64,
    pub delivered: &'a HashMap<String, usize>,
    pub unresolved: &'a [String],
}

/// Every check but the audit (run by the caller with the binary).
pub async fn run_all(
    db: &Db,
    cp: &CloudPaymentsSim,
    atol: &AtolSim,
    seen: &Observed<'_>,
) -> anyhow::Result<Vec<Check>> {
    Ok(vec![
        charged_once(db, cp).await?,
        refunds_match(db, cp).await?,
        refunds_done(db, seen.refunds_requested).await?,
        receipts_once(db, atol).await?,
        usage_once(db, seen.usage_sent).await?,
        events_recorded_once(db).await?,
        events_delivered(db, seen.delivered).await?,
        nothing_stuck(db, seen.unresolved).await?,
    ])
}
