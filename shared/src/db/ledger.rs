//! Writes balanced postings to the ledger tables; reads balances.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::schema::{ledger_accounts, ledger_entries, ledger_transactions};
use crate::domain::ledger::{Account, Posting};
use crate::domain::money::Currency;

/// Records a posting as one ledger transaction. Accounts are created on first use
/// (deterministic ids, `ON CONFLICT DO NOTHING`). Returns the transaction id.
pub async fn post(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    payment_id: Option<Uuid>,
    occurred_at: DateTime<Utc>,
    posting: &Posting,
) -> QueryResult<Uuid> {
    let mut accounts: Vec<(Uuid, &'static str, Option<Uuid>, Currency)> = Vec::new();
    for e in posting.entries() {
        let id = e.account.id(tenant_id, e.currency);
        if !accounts.iter().any(|(a, ..)| *a == id) {
            accounts.push((id, e.account.code(), e.account.customer_id(), e.currency));
        }
    }
    let account_rows: Vec<_> = accounts
        .iter()
        .map(|(id, code, customer, currency)| {
            (
                ledger_accounts::id.eq(*id),
                ledger_accounts::tenant_id.eq(tenant_id),
                ledger_accounts::code.eq(*code),
                ledger_accounts::customer_id.eq(*customer),
                ledger_accounts::currency.eq(currency.code()),
            )
        })
        .collect();
    diesel::insert_into(ledger_accounts::table).values(&account_rows).on_conflict_do_nothing().execute(conn).await?;
    let txn_id = Uuid::now_v7();
    diesel::insert_into(ledger_transactions::table)
        .values((
            ledger_transactions::id.eq(txn_id),
            ledger_transactions::tenant_id.eq(tenant_id),
            ledger_transactions::kind.eq(posting.kind),
            ledger_transactions::payment_id.eq(payment_id),
            ledger_transactions::description.eq(&posting.description),
            ledger_transactions::occurred_at.eq(occurred_at),
        ))
        .execute(conn)
        .await?;
    let entry_rows: Vec<_> = posting
        .entries()
        .iter()
        .map(|e| {
            (
                ledger_entries::transaction_id.eq(txn_id),
                ledger_entries::account_id.eq(e.account.id(tenant_id, e.currency)),
                ledger_entries::amount.eq(e.amount),
                ledger_entries::currency.eq(e.currency.code()),
            )
        })
        .collect();
    diesel::insert_into(ledger_entries::table).values(&entry_rows).execute(conn).await?;
    Ok(txn_id)
}

/// Sum of an account's entries.
pub async fn balance(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    account: Account,
    currency: Currency,
) -> QueryResult<Decimal> {
    let sum: Option<Decimal> = ledger_entries::table
        .filter(ledger_entries::account_id.eq(account.id(tenant_id, currency)))
        .select(diesel::dsl::sum(ledger_entries::amount))
        .first(conn)
        .await?;
    Ok(sum.unwrap_or(Decimal::ZERO))
}
