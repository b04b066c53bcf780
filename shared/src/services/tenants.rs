//! Tenants: creation and patching by operators, authentication by API key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use std::sync::{Arc, LazyLock};

use super::corrupt;
use super::tenant_secrets as secrets;
use crate::cache::Expiring;
use crate::clock::real_now;
use crate::db::PgPool;
use crate::db::tenants::{self as db, NewApiKey, TenantRow};
use crate::domain::ids::TenantId;
use crate::domain::invoice::Requisites;
use crate::domain::parse_time_zone;
use crate::domain::secret::Secret;
use crate::domain::tenant::{FiscalSettings, GatewayConfig, Policy, validate_http_url};
use crate::error::{ServiceError, ServiceResult};
use crate::signing::{random_bytes, sha256};

/// A tenant with its configuration parsed.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub time_zone: String,
    pub tz: Tz,
    pub gateway: GatewayConfig,
    pub fiscal: Option<FiscalSettings>,
    pub requisites: Option<Requisites>,
    pub policy: Policy,
    pub webhook_url: Option<String>,
    pub webhook_secret: Secret,
    pub webhook_secret_prev: Option<(Secret, DateTime<Utc>)>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = ServiceError;

    /// Parses a stored row, opening its sealed secrets ([`secrets`]).
    fn try_from(r: TenantRow) -> ServiceResult<Self> {
        let id = r.id;
        let gateway = secrets::open_json(id, "gateway", r.gateway)?;
        let fiscal = r.fiscal.map(|f| secrets::open_json(id, "fiscal", f)).transpose()?;
        Ok(Tenant {
            tz: parse_time_zone(&r.time_zone).ok_or_else(|| corrupt("tenant time zone", &r.time_zone))?,
            gateway: serde_json::from_value(gateway).map_err(|e| corrupt("tenant gateway", e))?,
            fiscal: fiscal.map(serde_json::from_value).transpose().map_err(|e| corrupt("tenant fiscal", e))?,
            requisites: r
                .requisites
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| corrupt("tenant requisites", e))?,
            policy: serde_json::from_value(r.policy).map_err(|e| corrupt("tenant policy", e))?,
            webhook_secret: secrets::open(id, "webhook_secret", &r.webhook_secret)?,
            webhook_secret_prev: match (r.webhook_secret_prev, r.webhook_secret_prev_until) {
                (Some(s), Some(until)) => Some((secrets::open(id, "webhook_secret_prev", &s)?, until)),
                _ => None,
            },
            id,
            name: r.name,
            time_zone: r.time_zone,
            webhook_url: r.webhook_url,
            created_at: r.created_at,
        })
    }
}

/// The operator's description of a tenant (create body, and the document PATCH
/// merges into).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"name": "Orbita", "time_zone": "Europe/Moscow", "gateway": {"kind": "cloudpayments", "public_id": "pk_0123456789abcdef", "api_secret": "0123456789abcdef0123456789abcdef"}, "policy": {"dunning_retry_days": [1, 3, 5]}, "webhook_url": "https://orbita.example.ru/billing-events"})))]
pub struct TenantSpec {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// IANA time zone, e.g. `Europe/Moscow`.
    #[schema(min_length = 1, pattern = r"\S")]
    pub time_zone: String,
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub fiscal: Option<FiscalSettings>,
    /// The seller's requisites printed on invoices and acts (needed for
    /// `pay_with: "invoice"`).
    #[serde(default)]
    pub requisites: Option<Requisites>,
    #[serde(default)]
    pub policy: Option<Policy>,
    #[serde(default)]
    #[schema(pattern = r"^https?://[^/\s]+\S*$")]
    pub webhook_url: Option<String>,
}

impl TenantSpec {
    fn validate(&self) -> ServiceResult<Tz> {
        if !crate::domain::is_filled_within(&self.name, 200) {
            return Err(ServiceError::validation("name must be 1..200 characters"));
        }
        let tz = parse_time_zone(&self.time_zone).ok_or_else(|| {
            ServiceError::invalid("invalid_time_zone", format!("unknown time zone {:?}", self.time_zone))
        })?;
        self.gateway.validate().map_err(ServiceError::validation)?;
        if let Some(f) = &self.fiscal {
            f.validate().map_err(ServiceError::validation)?;
        }
        if let Some(r) = &self.requisites {
            r.validate().map_err(ServiceError::validation)?;
        }
        if let Some(p) = &self.policy {
            p.validate().map_err(ServiceError::validation)?;
        }
        if let Some(u) = &self.webhook_url {
            validate_http_url(u).map_err(|e| ServiceError::validation(format!("webhook_url: {e}")))?;
        }
        Ok(tz)
    }

    fn from_tenant(t: &Tenant) -> TenantSpec {
        TenantSpec {
            name: t.name.clone(),
            time_zone: t.time_zone.clone(),
            gateway: t.gateway.clone(),
            fiscal: t.fiscal.clone(),
            requisites: t.requisites.clone(),
            policy: Some(t.policy.clone()),
            webhook_url: t.webhook_url.clone(),
        }
    }
}

/// A tenant as shown to operators: configuration without secrets.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TenantView {
    pub id: TenantId,
    pub name: String,
    pub time_zone: String,
    #[schema(value_type = Object)]
    pub gateway: Value,
    #[schema(value_type = Option<Object>)]
    pub fiscal: Option<Value>,
    pub requisites: Option<Requisites>,
    pub policy: Policy,
    pub webhook_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        TenantView {
            id: t.id,
            name: t.name.clone(),
            time_zone: t.time_zone.clone(),
            gateway: t.gateway.public_view(),
            fiscal: t.fiscal.as_ref().map(FiscalSettings::public_view),
            requisites: t.requisites.clone(),
            policy: t.policy.clone(),
            webhook_url: t.webhook_url.clone(),
            created_at: t.created_at,
        }
    }
}

/// Answer to tenant creation: the only time the secrets are shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TenantCreated {
    pub id: TenantId,
    pub api_key: Secret,
    pub webhook_secret: Secret,
    pub tenant: TenantView,
}

/// Answer to key rotation: the new secrets, shown once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeysRotated {
    pub api_key: Option<Secret>,
    pub webhook_secret: Option<Secret>,
    /// Until when the previous key/secret keep working.
    pub previous_valid_until: DateTime<Utc>,
}

fn random_token(prefix: &str) -> ServiceResult<String> {
    let bytes = random_bytes::<32>().map_err(|e| ServiceError::Internal(format!("no randomness: {e}")))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

async fn issue_api_key(conn: &mut AsyncPgConnection, tenant_id: TenantId) -> ServiceResult<Secret> {
    let key = random_token("bk_")?;
    db::insert_api_key(
        conn,
        &NewApiKey {
            id: Uuid::now_v7(),
            tenant_id,
            key_hash: sha256(key.as_bytes()).to_vec(),
            key_prefix: key.chars().take(10).collect(),
        },
    )
    .await?;
    Ok(Secret::new(key))
}

fn to_json<T: Serialize>(v: &T) -> ServiceResult<Value> {
    serde_json::to_value(v).map_err(|e| ServiceError::Internal(e.to_string()))
}

/// The webhook signing secrets a row is written with: the current one and, for an
/// hour after a rotation, the previous one with its expiry.
struct WebhookSecrets<'a> {
    current: &'a str,
    previous: Option<(&'a str, DateTime<Utc>)>,
}

/// The row for a tenant, its secrets sealed.
fn to_row(
    id: TenantId,
    spec: &TenantSpec,
    webhook: WebhookSecrets<'_>,
    created_at: DateTime<Utc>,
) -> ServiceResult<TenantRow> {
    Ok(TenantRow {
        id,
        name: spec.name.trim().to_owned(),
        time_zone: spec.time_zone.clone(),
        gateway: secrets::seal_json(id, "gateway", to_json(&spec.gateway)?)?,
        fiscal: spec.fiscal.as_ref().map(|f| secrets::seal_json(id, "fiscal", to_json(f)?)).transpose()?,
        requisites: spec.requisites.as_ref().map(to_json).transpose()?,
        policy: to_json(&spec.policy.clone().unwrap_or_default())?,
        webhook_url: spec.webhook_url.clone(),
        webhook_secret: secrets::seal(id, "webhook_secret", webhook.current)?,
        webhook_secret_prev: webhook.previous.map(|(s, _)| secrets::seal(id, "webhook_secret_prev", s)).transpose()?,
        webhook_secret_prev_until: webhook.previous.map(|(_, until)| until),
        created_at,
        updated_at: real_now(),
    })
}

pub async fn create(conn: &mut AsyncPgConnection, spec: TenantSpec) -> ServiceResult<TenantCreated> {
    spec.validate()?;
    let id = TenantId::new();
    let webhook_secret = random_token("whsec_")?;
    let row = to_row(id, &spec, WebhookSecrets { current: &webhook_secret, previous: None }, real_now())?;
    db::insert(conn, &row).await?;
    let api_key = issue_api_key(conn, id).await?;
    let tenant = Tenant::try_from(row)?;
    Ok(TenantCreated { id, api_key, webhook_secret: Secret::new(webhook_secret), tenant: TenantView::from(&tenant) })
}

/// Reads the tenant now, bypassing the cache. Errors: 404 `tenant_not_found`.
pub async fn load(conn: &mut AsyncPgConnection, id: TenantId) -> ServiceResult<Tenant> {
    db::find(conn, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("tenant_not_found", "no such tenant"))
        .and_then(Tenant::try_from)
}

/// Applies an RFC 7396 JSON merge patch to the tenant's document and validates the
/// result as a whole: `{"gateway": {"api_url": null}}` removes the override and
/// keeps the secret.
pub async fn patch(conn: &mut AsyncPgConnection, id: TenantId, patch: Value) -> ServiceResult<TenantView> {
    if !patch.is_object() {
        return Err(ServiceError::validation("body must be a JSON object"));
    }
    let row = db::find_for_update(conn, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("tenant_not_found", "no such tenant"))?;
    let created_at = row.created_at;
    let current = Tenant::try_from(row)?;
    let mut doc = to_json(&TenantSpec::from_tenant(&current))?;
    merge_patch(&mut doc, &patch);
    let spec: TenantSpec = serde_json::from_value(doc).map_err(|e| ServiceError::validation(e.to_string()))?;
    spec.validate()?;
    let new_row = to_row(id, &spec, webhook_secrets(&current), created_at)?;
    db::update(conn, &new_row).await?;
    forget(id);
    Ok(TenantView::from(&Tenant::try_from(new_row)?))
}

/// Issues a new API key and/or webhook secret; the previous ones stay valid for an hour.
pub async fn rotate_keys(
    conn: &mut AsyncPgConnection,
    id: TenantId,
    api_key: bool,
    webhook_secret: bool,
) -> ServiceResult<KeysRotated> {
    if !api_key && !webhook_secret {
        return Err(ServiceError::validation("rotate at least one of api_key and webhook_secret"));
    }
    let row = db::find_for_update(conn, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("tenant_not_found", "no such tenant"))?;
    let created_at = row.created_at;
    let current = Tenant::try_from(row)?;
    let until = real_now() + TimeDelta::hours(1);
    let new_key = if api_key {
        db::expire_api_keys(conn, id, until).await?;
        Some(issue_api_key(conn, id).await?)
    } else {
        None
    };
    let new_secret = if webhook_secret {
        let secret = random_token("whsec_")?;
        let webhook = WebhookSecrets { current: &secret, previous: Some((current.webhook_secret.expose(), until)) };
        db::update(conn, &to_row(id, &TenantSpec::from_tenant(&current), webhook, created_at)?).await?;
        forget(id);
        Some(Secret::new(secret))
    } else {
        None
    };
    Ok(KeysRotated { api_key: new_key, webhook_secret: new_secret, previous_valid_until: until })
}

/// The tenant's webhook secrets as they stand.
fn webhook_secrets(t: &Tenant) -> WebhookSecrets<'_> {
    WebhookSecrets {
        current: t.webhook_secret.expose(),
        previous: t.webhook_secret_prev.as_ref().map(|(s, until)| (s.expose(), *until)),
    }
}

/// RFC 7396 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

// This process's caches of tenants (by id) and API-key lookups (by the key's
// SHA-256): the hot paths — every authenticated request, every provider
// notification, the worker's jobs — neither read nor unseal the row each time.
// `patch` and `rotate_keys` drop the tenant's entries here at once; other replicas
// see a change within `cache::TTL`. API keys are never revoked at once (a rotated
// key stays valid for an hour) and a key's `expires_at` is cached with it and
// checked on every hit, so a cached key never authenticates past its expiry.

/// A key lookup: the tenant and when the key expires (`None`: never).
type KeyEntry = (Arc<Tenant>, Option<DateTime<Utc>>);

static TENANTS: LazyLock<Expiring<TenantId, Arc<Tenant>>> = LazyLock::new(Expiring::new);
static KEYS: LazyLock<Expiring<[u8; 32], KeyEntry>> = LazyLock::new(Expiring::new);

/// Drops the tenant's entries (its settings or keys changed in this process).
pub fn forget(id: TenantId) {
    TENANTS.retain(|k, _| *k != id);
    KEYS.retain(|_, (t, _)| t.id != id);
}

/// The tenant as cached, if read less than [`crate::cache::TTL`] ago.
pub fn cached(id: TenantId) -> Option<Arc<Tenant>> {
    TENANTS.get(&id)
}

/// The tenant, read at most [`crate::cache::TTL`] ago (the hot paths: a changed
/// webhook URL or gateway credential takes effect within seconds). Errors: 404 `tenant_not_found`; a row
/// that does not parse or open.
pub async fn load_cached(conn: &mut AsyncPgConnection, id: TenantId) -> ServiceResult<Arc<Tenant>> {
    if let Some(t) = cached(id) {
        return Ok(t);
    }
    let row = db::find(conn, id).await?.ok_or_else(|| ServiceError::not_found("tenant_not_found", "no such tenant"))?;
    let t = Arc::new(Tenant::try_from(row)?);
    TENANTS.put(id, t.clone());
    Ok(t)
}

/// The tenant holding this API key at `now` (expired keys do not authenticate),
/// from the cache when looked up less than [`crate::cache::TTL`] ago; a connection is taken
/// from `pool` only on a miss. Unknown keys are not cached.
pub async fn authenticate(pool: &PgPool, api_key: &str, now: DateTime<Utc>) -> ServiceResult<Option<Arc<Tenant>>> {
    let hash: [u8; 32] = sha256(api_key.as_bytes());
    if let Some((tenant, expires_at)) = KEYS.get(&hash) {
        return Ok(expires_at.is_none_or(|e| e > now).then_some(tenant));
    }
    let mut conn = pool.get().await?;
    let Some((row, expires_at)) = db::find_by_key_hash(&mut conn, &hash, now).await? else { return Ok(None) };
    let tenant = Arc::new(Tenant::try_from(row)?);
    KEYS.put(hash, (tenant.clone(), expires_at));
    TENANTS.put(tenant.id, tenant.clone());
    Ok(Some(tenant))
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": [1, 2], "e": "x"});
        merge_patch(&mut doc, &json!({"a": {"b": null, "z": 3}, "d": [3], "e": null}));
        assert_eq!(doc, json!({"a": {"c": 2, "z": 3}, "d": [3]}));
    }
}
