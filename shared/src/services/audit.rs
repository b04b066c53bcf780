//! `billing-api audit`: checks every invariant the service promises (the ledger
//! balances and every entry belongs to a transaction of at least two entries,
//! balances match their entries, each capture is applied once, receipts
//! exist for what must be receipted, refunds never exceed captures, subscriptions
//! agree with their payments, the outbox drains) and reports what breaches each.

use diesel_async::AsyncPgConnection;

use crate::db::audit::{INVARIANTS, LIMIT, breaches};
use crate::domain::ids::TenantId;
use crate::error::ServiceResult;

/// One invariant's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable name (`ledger_balanced`, ...).
    pub name: &'static str,
    /// What the service promises.
    pub promise: &'static str,
    /// The ids breaching it (at most `db::audit::LIMIT`; the count is then a floor).
    pub breaches: Vec<String>,
}

/// Runs every check, for one tenant or all.
pub async fn run(conn: &mut AsyncPgConnection, tenant: Option<TenantId>) -> ServiceResult<Vec<Finding>> {
    let mut findings = Vec::with_capacity(INVARIANTS.len());
    for invariant in &INVARIANTS {
        let breaches = breaches(conn, invariant, tenant.map(|t| t.0)).await?;
        findings.push(Finding { name: invariant.name, promise: invariant.promise, breaches });
    }
    Ok(findings)
}

/// The report as a text table: one row per invariant with its breach count and the
/// first offending ids.
pub fn table(findings: &[Finding]) -> String {
    let width = findings.iter().map(|f| f.name.len()).max().unwrap_or(0).max("invariant".len());
    let mut out = format!(
        "| {:width$} | {:>8} | examples\n|{}|{}|{}\n",
        "invariant",
        "breaches",
        "-".repeat(width + 2),
        "-".repeat(10),
        "-".repeat(10)
    );
    for f in findings {
        let count = if f.breaches.len() as i64 >= LIMIT {
            format!("{}+", f.breaches.len())
        } else {
            f.breaches.len().to_string()
        };
        let examples = f.breaches.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
        out.push_str(&format!("| {:width$} | {:>8} | {examples}\n", f.name, count));
    }
    let total: usize = findings.iter().map(|f| f.breaches.len()).sum();
    out.push_str(&format!("{} invariants checked, {total} breaches\n", findings.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_counts_and_names_breaches() {
        let findings = vec![
            Finding { name: "ledger_balanced", promise: "", breaches: vec![] },
            Finding { name: "outbox_draining", promise: "", breaches: vec!["17".into(), "18".into()] },
        ];
        let t = table(&findings);
        assert!(t.contains("| ledger_balanced |        0 | \n"), "{t}");
        assert!(t.contains("| outbox_draining |        2 | 17, 18\n"), "{t}");
        assert!(t.ends_with("2 invariants checked, 2 breaches\n"), "{t}");
    }
}
