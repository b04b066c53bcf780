//! Writes balanced postings to the ledger tables; reads balances.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use diesel::sql_types::{self, Array, Nullable};

use super::schema::ledger_entries;
use crate::domain::ledger::{Account, Posting};
use crate::domain::money::Currency;

/// Records a posting as one ledger transaction, in one statement: the accounts it
/// touches are created on first use (deterministic ids, `ON CONFLICT DO NOTHING`),
/// then the transaction and its entries. Returns the transaction id.
pub async fn post(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    payment_id: Option<Uuid>,
    occurred_at: DateTime<Utc>,
    posting: &Posting,
) -> QueryResult<Uuid> {
    let txn_id = Uuid::now_v7();
    let mut account_ids = Vec::new();
    let mut codes = Vec::new();
    let mut customers: Vec<Option<Uuid>> = Vec::new();
    let mut account_currencies = Vec::new();
    for e in posting.entries() {
        let id = e.account.id(tenant_id, e.currency);
        if !account_ids.contains(&id) {
            account_ids.push(id);
            codes.push(e.account.code().to_owned());
            customers.push(e.account.customer_id());
            account_currencies.push(e.currency.code().to_owned());
        }
    }
    let entry_accounts: Vec<Uuid> = posting.entries().iter().map(|e| e.account.id(tenant_id, e.currency)).collect();
    let amounts: Vec<Decimal> = posting.entries().iter().map(|e| e.amount).collect();
    let currencies: Vec<String> = posting.entries().iter().map(|e| e.currency.code().to_owned()).collect();
    diesel::sql_query(
        "WITH accounts AS ( \
             INSERT INTO ledger_accounts (id, tenant_id, code, customer_id, currency) \
             SELECT a.id, $1, a.code, a.customer_id, a.currency \
             FROM unnest($2::uuid[], $3::text[], $4::uuid[], $5::text[]) AS a(id, code, customer_id, currency) \
             ON CONFLICT DO NOTHING), \
         txn AS ( \
             INSERT INTO ledger_transactions (id, tenant_id, kind, payment_id, description, occurred_at) \
             VALUES ($6, $1, $7, $8, $9, $10)) \
         INSERT INTO ledger_entries (transaction_id, account_id, amount, currency) \
         SELECT $6, e.account_id, e.amount, e.currency \
         FROM unnest($11::uuid[], $12::numeric[], $13::text[]) AS e(account_id, amount, currency)",
    )
    .bind::<sql_types::Uuid, _>(tenant_id)
    .bind::<Array<sql_types::Uuid>, _>(&account_ids)
    .bind::<Array<sql_types::Text>, _>(&codes)
    .bind::<Array<Nullable<sql_types::Uuid>>, _>(&customers)
    .bind::<Array<sql_types::Text>, _>(&account_currencies)
    .bind::<sql_types::Uuid, _>(txn_id)
    .bind::<sql_types::Text, _>(posting.kind)
    .bind::<Nullable<sql_types::Uuid>, _>(payment_id)
    .bind::<sql_types::Text, _>(&posting.description)
    .bind::<sql_types::Timestamptz, _>(occurred_at)
    .bind::<Array<sql_types::Uuid>, _>(&entry_accounts)
    .bind::<Array<sql_types::Numeric>, _>(&amounts)
    .bind::<Array<sql_types::Text>, _>(&currencies)
    .execute(conn)
    .await?;
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
