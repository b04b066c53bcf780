//! Customers: the product's users, known by the product's own `external_id`.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::tenants::Tenant;
use super::{Page, PageRequest};
use crate::db::customers::{self as db, CustomerRow};
use crate::domain::ids::CustomerId;
use crate::domain::{is_plausible_email, parse_time_zone};
use crate::error::{ServiceError, ServiceResult};

/// Legal entity details for invoices (SellerGPT 3.1.2, Alfa 5.3).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegalEntity {
    pub name: String,
    pub inn: String,
    #[serde(default)]
    pub kpp: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

/// `POST /v1/customers` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"external_id": "user-42", "email": "user42@example.ru", "time_zone": "Europe/Moscow"})))]
pub struct CustomerSpec {
    /// The product's own id of the customer, unique per tenant.
    #[schema(min_length = 1, max_length = 200)]
    pub external_id: String,
    /// Where receipts and notices go.
    #[schema(max_length = 254, pattern = r"^[^@\s]+@[^@\s.][^@\s]*\.[^@\s]*[^@\s.]$")]
    pub email: String,
    /// IANA zone; defaults to the tenant's. Quota resets use it.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// The partner who brought the customer (registered code).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub partner_code: Option<String>,
    #[serde(default)]
    pub legal_entity: Option<LegalEntity>,
}

/// `PATCH /v1/customers/{id}` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"email": "new-address@example.ru"})))]
pub struct CustomerPatch {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Attributes the customer to a partner: once, and only before its first
    /// captured payment (SellerGPT 3.2.2); else 409 `partner_attribution_closed`.
    #[serde(default)]
    pub partner_code: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerView {
    pub id: CustomerId,
    pub external_id: String,
    pub email: String,
    pub time_zone: String,
    pub partner_code: Option<String>,
    #[schema(value_type = Option<LegalEntity>)]
    pub legal_entity: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

impl From<CustomerRow> for CustomerView {
    fn from(r: CustomerRow) -> Self {
        CustomerView {
            id: r.id,
            external_id: r.external_id,
            email: r.email,
            time_zone: r.time_zone,
            partner_code: r.partner_code,
            legal_entity: r.legal_entity,
            created_at: r.created_at,
        }
    }
}

fn check_email(email: &str) -> ServiceResult<()> {
    if is_plausible_email(email) {
        Ok(())
    } else {
        Err(ServiceError::invalid("invalid_email", format!("{email:?} is not an e-mail address")))
    }
}

fn check_zone(zone: &str) -> ServiceResult<()> {
    parse_time_zone(zone)
        .map(|_| ())
        .ok_or_else(|| ServiceError::invalid("invalid_time_zone", format!("unknown time zone {zone:?}")))
}

pub async fn create(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    spec: CustomerSpec,
) -> ServiceResult<CustomerView> {
    if !crate::domain::is_filled_within(&spec.external_id, 200) {
        return Err(ServiceError::validation("external_id must be 1..200 characters"));
    }
    check_email(&spec.email)?;
    let time_zone = spec.time_zone.unwrap_or_else(|| tenant.time_zone.clone());
    check_zone(&time_zone)?;
    if spec.partner_code.as_ref().is_some_and(|p| p.is_empty() || p.chars().count() > 64) {
        return Err(ServiceError::validation("partner_code must be 1..64 characters"));
    }
    if let Some(le) = &spec.legal_entity
        && (le.name.trim().is_empty()
            || !(le.inn.len() == 10 || le.inn.len() == 12)
            || !le.inn.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ServiceError::validation("legal_entity needs a name and a 10- or 12-digit INN"));
    }
    let row = CustomerRow {
        id: CustomerId::new(),
        tenant_id: tenant.id,
        external_id: spec.external_id,
        email: spec.email,
        time_zone,
        partner_code: spec.partner_code,
        legal_entity: spec
            .legal_entity
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| ServiceError::Internal(e.to_string()))?,
        created_at: now,
    };
    db::insert(conn, &row).await.map_err(|e| {
        let e = ServiceError::from(e);
        if e.violated_constraint() == Some(PARTNER_FK) {
            unknown_partner(row.partner_code.as_deref().unwrap_or_default())
        } else if e.is_unique_violation() {
            ServiceError::conflict(
                "customer_exists",
                format!("a customer with external_id {:?} exists", row.external_id),
            )
        } else {
            e
        }
    })?;
    Ok(row.into())
}

pub async fn load(conn: &AsyncPgConnection, tenant: &Tenant, id: CustomerId) -> ServiceResult<CustomerRow> {
    db::find(conn, tenant.id, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("customer_not_found", "no such customer"))
}

pub async fn get(conn: &mut AsyncPgConnection, tenant: &Tenant, id: CustomerId) -> ServiceResult<CustomerView> {
    load(conn, tenant, id).await.map(Into::into)
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    external_id: Option<&str>,
    page: PageRequest,
) -> ServiceResult<Page<CustomerView>> {
    let rows = db::list(conn, tenant.id, external_id, page.starting_after, page.fetch()).await?;
    Ok(Page::from_rows(rows, page, Into::into))
}

pub async fn patch(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    id: CustomerId,
    patch: CustomerPatch,
) -> ServiceResult<CustomerView> {
    let mut row = db::find_for_update(conn, tenant.id, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("customer_not_found", "no such customer"))?;
    if let Some(email) = patch.email {
        check_email(&email)?;
        row.email = email;
    }
    if let Some(zone) = patch.time_zone {
        check_zone(&zone)?;
        row.time_zone = zone;
    }
    if let Some(code) = patch.partner_code {
        if row.partner_code.is_some() || db::has_captured_payment(conn, id).await? {
            return Err(ServiceError::conflict(
                "partner_attribution_closed",
                "a customer is attributed once, before its first payment",
            ));
        }
        row.partner_code = Some(code);
    }
    db::update_contact(conn, id, &row.email, &row.time_zone, row.partner_code.as_deref()).await.map_err(|e| {
        let e = ServiceError::from(e);
        if e.violated_constraint() == Some(PARTNER_FK) {
            unknown_partner(row.partner_code.as_deref().unwrap_or_default())
        } else {
            e
        }
    })?;
    Ok(row.into())
}

/// The constraint that ties a customer's `partner_code` to a registered partner.
const PARTNER_FK: &str = "customers_partner_fk";

fn unknown_partner(code: &str) -> ServiceError {
    ServiceError::invalid(
        "partner_not_found",
        format!("no partner with code {code:?}: register it with POST /v1/partners"),
    )
}
