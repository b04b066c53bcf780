//! Writes balanced postings to the ledger tables; reads balances.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use diesel::sql_types::{Array, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid};

use super::cached::Cached;
use super::schema::ledger_entries;
use crate::domain::ids::{CustomerId, PaymentId, TenantId};
use crate::domain::ledger::{Account, Posting};
use crate::domain::money::Currency;

/// One posting to record for a tenant.
pub struct Posted<'a> {
    pub tenant_id: TenantId,
    pub payment_id: Option<PaymentId>,
    pub occurred_at: DateTime<Utc>,
    pub posting: &'a Posting,
}

impl<'a> Posted<'a> {
    /// Payments' postings, each as it is recorded at `occurred_at` (a batch's).
    pub fn of_payments(occurred_at: DateTime<Utc>, postings: &'a [(TenantId, PaymentId, Posting)]) -> Vec<Self> {
        postings
            .iter()
            .map(|(tenant_id, payment_id, posting)| Posted {
                tenant_id: *tenant_id,
                payment_id: Some(*payment_id),
                occurred_at,
                posting,
            })
            .collect()
    }
}

/// Records a posting as one ledger transaction. Returns the transaction id.
pub async fn post(
    conn: &AsyncPgConnection,
    tenant_id: TenantId,
    payment_id: Option<PaymentId>,
    occurred_at: DateTime<Utc>,
    posting: &Posting,
) -> QueryResult<Uuid> {
    let ids = post_many(conn, &[Posted { tenant_id, payment_id, occurred_at, posting }]).await?;
    ids.into_iter().next().ok_or(diesel::result::Error::NotFound)
}

/// Records postings, each as one ledger transaction, in one statement: the
/// accounts they touch are created on first use (deterministic ids, `ON CONFLICT
/// DO NOTHING`), then the transactions and their entries. Returns the ids.
pub async fn post_many(conn: &AsyncPgConnection, items: &[Posted<'_>]) -> QueryResult<Vec<Uuid>> {
    // Accounts on first use, created in id order, as every writer inserts them:
    // two batches creating the same new accounts wait in turn, never in a cycle.
    let mut accounts: std::collections::BTreeMap<Uuid, (TenantId, String, Option<CustomerId>, String)> =
        std::collections::BTreeMap::new();
    let (mut txn_ids, mut txn_tenants, mut kinds, mut payments, mut descriptions, mut occurred) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut entry_txns, mut entry_accounts, mut amounts, mut currencies): (
        Vec<Uuid>,
        Vec<Uuid>,
        Vec<Decimal>,
        Vec<String>,
    ) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Balances kept beside the entries of spendable accounts, in id order (the
    // order every writer locks them in).
    let mut spendable: std::collections::BTreeMap<Uuid, Decimal> = std::collections::BTreeMap::new();
    for item in items {
        let txn_id = Uuid::now_v7();
        txn_ids.push(txn_id);
        txn_tenants.push(item.tenant_id);
        kinds.push(item.posting.kind.to_owned());
        payments.push(item.payment_id);
        descriptions.push(item.posting.description.clone());
        occurred.push(item.occurred_at);
        for e in item.posting.entries() {
            let id = e.account.id(item.tenant_id, e.currency);
            accounts.entry(id).or_insert_with(|| {
                (item.tenant_id, e.account.code().to_owned(), e.account.customer_id(), e.currency.code().to_owned())
            });
            if e.account.is_spendable() {
                *spendable.entry(id).or_default() += e.amount;
            }
            entry_txns.push(txn_id);
            entry_accounts.push(id);
            amounts.push(e.amount);
            currencies.push(e.currency.code().to_owned());
        }
    }
    let account_ids: Vec<Uuid> = accounts.keys().copied().collect();
    let mut account_tenants = Vec::with_capacity(accounts.len());
    let mut codes = Vec::with_capacity(accounts.len());
    let mut customers: Vec<Option<CustomerId>> = Vec::with_capacity(accounts.len());
    let mut account_currencies = Vec::with_capacity(accounts.len());
    for (tenant, code, customer, currency) in accounts.into_values() {
        account_tenants.push(tenant);
        codes.push(code);
        customers.push(customer);
        account_currencies.push(currency);
    }
    // Accounts on first use, the transactions, their entries — one statement, so the
    // ledger's statement-level balance checks see each transaction whole; its SQL
    // never varies, so it stays prepared (parsing and planning it on every capture
    // was once the webhook path's largest cost).
    Cached::new(
        diesel::sql_query(
            "WITH accounts AS (INSERT INTO ledger_accounts (id, tenant_id, code, customer_id, currency) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[]) ON CONFLICT DO NOTHING), \
             txns AS (INSERT INTO ledger_transactions (id, tenant_id, kind, payment_id, description, occurred_at) \
             SELECT * FROM unnest($6::uuid[], $7::uuid[], $8::text[], $9::uuid[], $10::text[], $11::timestamptz[])) \
             INSERT INTO ledger_entries (transaction_id, account_id, amount, currency) \
             SELECT * FROM unnest($12::uuid[], $13::uuid[], $14::numeric[], $15::text[])",
        )
        .bind::<Array<SqlUuid>, _>(&account_ids)
        .bind::<Array<SqlUuid>, _>(&account_tenants)
        .bind::<Array<Text>, _>(&codes)
        .bind::<Array<Nullable<SqlUuid>>, _>(&customers)
        .bind::<Array<Text>, _>(&account_currencies)
        .bind::<Array<SqlUuid>, _>(&txn_ids)
        .bind::<Array<SqlUuid>, _>(&txn_tenants)
        .bind::<Array<Text>, _>(&kinds)
        .bind::<Array<Nullable<SqlUuid>>, _>(&payments)
        .bind::<Array<Text>, _>(&descriptions)
        .bind::<Array<Timestamptz>, _>(&occurred)
        .bind::<Array<SqlUuid>, _>(&entry_txns)
        .bind::<Array<SqlUuid>, _>(&entry_accounts)
        .bind::<Array<Numeric>, _>(&amounts)
        .bind::<Array<Text>, _>(&currencies),
    )
    .execute(&mut &*conn)
    .await?;
    if !spendable.is_empty() {
        // A spend beyond the balance violates `ledger_accounts_no_overdraft`.
        let (ids, deltas): (Vec<Uuid>, Vec<Decimal>) = spendable.into_iter().unzip();
        Cached::new(
            diesel::sql_query(
                "UPDATE ledger_accounts a SET balance = a.balance + d.delta \
             FROM unnest($1::uuid[], $2::numeric[]) AS d(id, delta) WHERE a.id = d.id",
            )
            .bind::<Array<SqlUuid>, _>(&ids)
            .bind::<Array<Numeric>, _>(&deltas),
        )
        .execute(&mut &*conn)
        .await?;
    }
    Ok(txn_ids)
}

/// The constraint a spend beyond a customer's balance violates.
pub const NO_OVERDRAFT: &str = "ledger_accounts_no_overdraft";

/// What a customer can spend: (prepaid money, cashback), as kept beside the
/// ledger; zero for accounts not opened yet.
pub async fn spendable(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    customer_id: CustomerId,
    currency: Currency,
) -> QueryResult<(Decimal, Decimal)> {
    use super::schema::ledger_accounts;
    let prepaid = Account::Prepaid(customer_id).id(tenant_id, currency);
    let cashback = Account::Cashback(customer_id).id(tenant_id, currency);
    let rows: Vec<(Uuid, Decimal)> = ledger_accounts::table
        .filter(ledger_accounts::id.eq_any([prepaid, cashback]))
        .select((ledger_accounts::id, ledger_accounts::balance))
        .load(conn)
        .await?;
    let of = |id: Uuid| rows.iter().find(|(a, _)| *a == id).map_or(Decimal::ZERO, |(_, b)| *b);
    Ok((of(prepaid), of(cashback)))
}

/// Sum of an account's entries.
pub async fn balance(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
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

/// True when a payment's capture was booked to the customer's balance (a
/// duplicate capture, or one with nothing left to apply it to) rather than to revenue.
pub async fn captured_to_balance(conn: &mut AsyncPgConnection, payment_id: PaymentId) -> QueryResult<bool> {
    use super::schema::ledger_transactions;
    diesel::select(diesel::dsl::exists(
        ledger_transactions::table
            .filter(ledger_transactions::payment_id.eq(payment_id))
            .filter(ledger_transactions::kind.eq_any(["payment_captured_unapplied", "duplicate_capture"])),
    ))
    .get_result(conn)
    .await
}

/// How much an account's entries moved in `[from, to)` (by their transactions'
/// `occurred_at`).
pub async fn change_in_window(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    account: Account,
    currency: Currency,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> QueryResult<Decimal> {
    use super::schema::ledger_transactions;
    let sum: Option<Decimal> = ledger_entries::table
        .inner_join(ledger_transactions::table)
        .filter(ledger_entries::account_id.eq(account.id(tenant_id, currency)))
        .filter(ledger_transactions::occurred_at.ge(from))
        .filter(ledger_transactions::occurred_at.lt(to))
        .select(diesel::dsl::sum(ledger_entries::amount))
        .first(conn)
        .await?;
    Ok(sum.unwrap_or(Decimal::ZERO))
}
