//! Customers of a tenant.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::cached::Cached;
use super::schema::customers;
use crate::domain::ids::{CustomerId, TenantId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = customers, check_for_backend(diesel::pg::Pg))]
pub struct CustomerRow {
    pub id: CustomerId,
    pub tenant_id: TenantId,
    pub external_id: String,
    pub email: String,
    pub time_zone: String,
    pub partner_code: Option<String>,
    pub legal_entity: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &CustomerRow) -> QueryResult<()> {
    Cached::new(diesel::insert_into(customers::table).values(row)).execute(conn).await.map(|_| ())
}

pub async fn find(conn: &AsyncPgConnection, tenant_id: TenantId, id: CustomerId) -> QueryResult<Option<CustomerRow>> {
    customers::table
        .filter(customers::tenant_id.eq(tenant_id))
        .filter(customers::id.eq(id))
        .select(CustomerRow::as_select())
        .first(&mut &*conn)
        .await
        .optional()
}

/// Locks the customer row: purchases of one customer are serialised.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    id: CustomerId,
) -> QueryResult<Option<CustomerRow>> {
    customers::table
        .filter(customers::tenant_id.eq(tenant_id))
        .filter(customers::id.eq(id))
        .select(CustomerRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    external_id: Option<&str>,
    starting_after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<CustomerRow>> {
    let mut q = customers::table.filter(customers::tenant_id.eq(tenant_id)).into_boxed();
    if let Some(ext) = external_id {
        q = q.filter(customers::external_id.eq(ext.to_owned()));
    }
    if let Some(after) = starting_after {
        q = q.filter(customers::id.gt(after));
    }
    q.order(customers::id.asc()).limit(limit).select(CustomerRow::as_select()).load(conn).await
}

/// Stores a customer's contact details and partner attribution.
pub async fn update_contact(
    conn: &mut AsyncPgConnection,
    id: CustomerId,
    email: &str,
    time_zone: &str,
    partner_code: Option<&str>,
) -> QueryResult<usize> {
    diesel::update(customers::table.find(id))
        .set((
            customers::email.eq(email),
            customers::time_zone.eq(time_zone),
            customers::partner_code.eq(partner_code),
            customers::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
}

/// True when any of the customer's payments was captured.
pub async fn has_captured_payment(conn: &mut AsyncPgConnection, id: CustomerId) -> QueryResult<bool> {
    use super::schema::payments;
    diesel::select(diesel::dsl::exists(
        payments::table.filter(payments::customer_id.eq(id)).filter(payments::captured_at.is_not_null()),
    ))
    .get_result(conn)
    .await
}

/// A customer's current e-mail (receipts go to it).
pub async fn email_of(conn: &mut AsyncPgConnection, id: CustomerId) -> QueryResult<String> {
    customers::table.find(id).select(customers::email).first(conn).await
}

/// The e-mails of `ids` (a wave of renewals' receipts), by customer; an id not
/// found is absent.
pub async fn emails_of(
    conn: &mut AsyncPgConnection,
    ids: &[CustomerId],
) -> QueryResult<std::collections::HashMap<CustomerId, String>> {
    let rows: Vec<(CustomerId, String)> =
        customers::table.filter(customers::id.eq_any(ids)).select((customers::id, customers::email)).load(conn).await?;
    Ok(rows.into_iter().collect())
}
