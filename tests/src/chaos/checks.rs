//! After the wave: wait for the work to settle, then check what a customer and an
//! auditor would check — the audit, one capture per payment, provider refunds
//! equal to ours, one fiscal registration per receipt, usage counted once, and
//! nothing unresolved unless a dead letter names it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use super::client::Db;
use crate::atol::AtolSim;
use crate::cloudpayments::CloudPaymentsSim;

/// Rows still in flight: charges, refunds, receipts, unpublished events.
const UNRESOLVED: &str = "\
    SELECT 'attempt ' || id || ' of payment ' || payment_id FROM payment_attempts WHERE status IN ('pending', 'sent', 'unknown') \
    UNION ALL SELECT 'refund ' || id FROM refunds WHERE status IN ('approved', 'processing') \
    UNION ALL SELECT 'receipt ' || id FROM receipts WHERE status = 'pending' \
    UNION ALL SELECT 'event ' || id FROM outbox_events WHERE published_at IS NULL";

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

/// Money refunded by the provider equals each payment's `refunded_amount`.
async fn refunds_match(db: &Db, cp: &CloudPaymentsSim) -> anyhow::Result<Check> {
    let rows = db
        .rows("SELECT gateway_transaction_id, refunded_amount FROM payments WHERE gateway_transaction_id IS NOT NULL")
        .await?;
    let mut breaches = Vec::new();
    for row in &rows {
        let Some((tx, ours)) = row.split_once('|') else { anyhow::bail!("bad row {row}") };
        let Ok(tx_id) = tx.parse::<i64>() else { continue };
        let theirs = cp.refunded_of(tx_id);
        if theirs != ours.parse::<Decimal>()? {
            breaches.push(format!("transaction {tx}: refunded {theirs} at the provider, {ours} booked"));
        }
    }
    Ok(Check { name: "refunds at the provider = refunds booked", looked_at: rows.len(), breaches })
}

/// Each receipt registered at most once, and every registered one is ours.
async fn receipts_once(db: &Db, atol: &AtolSim) -> anyhow::Result<Check> {
    let mut done: HashMap<String, usize> = HashMap::new();
    for d in atol.documents().into_iter().filter(|d| d.status == "done") {
        *done.entry(d.external_id).or_default() += 1;
    }
    let registered = db.number("SELECT count(*) FROM receipts WHERE status = 'registered'").await?;
    let mut breaches: Vec<String> =
        done.iter().filter(|(_, n)| **n > 1).map(|(id, n)| format!("receipt {id} fiscalised {n} times")).collect();
    if usize::try_from(registered)? != done.len() {
        breaches.push(format!("{registered} receipts registered, ATOL holds {} done documents", done.len()));
    }
    Ok(Check { name: "receipts fiscalised exactly once", looked_at: done.len(), breaches })
}

/// Each captured payment, succeeded refund and registered receipt has its event,
/// published exactly once.
async fn events_once(db: &Db) -> anyhow::Result<Check> {
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
             ON o.event_type = '{event}' AND o.published_at IS NOT NULL AND o.payload->'data'->>'{key}' = t.id \
             GROUP BY t.id HAVING count(o.seq) <> 1"
        );
        looked_at += usize::try_from(db.number(&format!("SELECT count(*) FROM ({things}) t")).await?)?;
        breaches.extend(db.rows(&sql).await?.into_iter().map(|r| format!("{event} for {r} times published")));
    }
    Ok(Check { name: "one published event per capture, refund and receipt", looked_at, breaches })
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

/// Every check but the audit (run by the caller with the binary).
pub async fn run_all(
    db: &Db,
    cp: &CloudPaymentsSim,
    atol: &AtolSim,
    usage_sent: u64,
    unresolved: &[String],
) -> anyhow::Result<Vec<Check>> {
    Ok(vec![
        charged_once(db, cp).await?,
        refunds_match(db, cp).await?,
        receipts_once(db, atol).await?,
        usage_once(db, usage_sent).await?,
        events_once(db).await?,
        nothing_stuck(db, unresolved).await?,
    ])
}
