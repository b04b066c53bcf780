//! The tenant row's secrets sealed at rest ([`crate::sealing`]): the webhook
//! signing secrets (current and previous) and, inside the JSON settings, the
//! gateway's `api_secret` and the fiscal provider's `password`. Everything else on
//! the row stays readable to an operator with SQL.
//!
//! Each value is bound to its tenant and field (`<tenant id>/<field>`), so a value
//! copied to another tenant or field does not open.

use std::time::{Duration, Instant};

use diesel_async::AsyncPgConnection;
use serde_json::Value;

use super::corrupt;
use crate::db::tenants::{self as db, TenantRow};
use crate::db::{PgPool, in_transaction};
use crate::domain::ids::TenantId;
use crate::domain::secret::Secret;
use crate::error::{ServiceError, ServiceResult};
use crate::sealing::{Keyring, SealError, keyring};

/// Secret strings inside the JSON settings: (column, JSON pointer). A test
/// serialises every settings type with distinct secrets and checks none survives.
const JSON_SECRETS: [(&str, &str); 2] = [("gateway", "/api_secret"), ("fiscal", "/provider/password")];

fn context(tenant: TenantId, field: &str) -> String {
    format!("{tenant}/{field}")
}

fn sealing_error(e: SealError) -> ServiceError {
    ServiceError::Internal(format!("tenant secrets: {e}"))
}

/// `plain` sealed for the tenant's `field`.
pub(super) fn seal(tenant: TenantId, field: &str, plain: &str) -> ServiceResult<String> {
    keyring().and_then(|k| k.seal(&context(tenant, field), plain)).map_err(sealing_error)
}

/// The plain text of the tenant's sealed `field`; a value that does not open is an
/// error that names the field, never a blank secret.
pub(super) fn open(tenant: TenantId, field: &str, sealed: &str) -> ServiceResult<Secret> {
    keyring()
        .and_then(|k| k.open(&context(tenant, field), sealed))
        .map(Secret::new)
        .map_err(|e| corrupt(&format!("tenant {field}"), e))
}

/// Rewrites each secret string inside a settings document through `f`
/// (`column` is `gateway` or `fiscal`).
fn map_json(
    column: &str,
    doc: &mut Value,
    mut f: impl FnMut(&str, &str) -> ServiceResult<String>,
) -> ServiceResult<()> {
    for (col, pointer) in JSON_SECRETS {
        if col != column {
            continue;
        }
        if let Some(slot) = doc.pointer_mut(pointer) {
            let text = slot.as_str().ok_or_else(|| corrupt(&format!("tenant {col}{pointer}"), "not a string"))?;
            *slot = Value::String(f(&format!("{col}{pointer}"), text)?);
        }
    }
    Ok(())
}

/// A settings document with its secrets sealed.
pub(super) fn seal_json(tenant: TenantId, column: &str, mut doc: Value) -> ServiceResult<Value> {
    map_json(column, &mut doc, |field, plain| seal(tenant, field, plain))?;
    Ok(doc)
}

/// A stored settings document with its secrets opened.
pub(super) fn open_json(tenant: TenantId, column: &str, mut doc: Value) -> ServiceResult<Value> {
    map_json(column, &mut doc, |field, sealed| open(tenant, field, sealed).map(|s| s.expose().to_owned()))?;
    Ok(doc)
}

/// The value re-sealed under the current key, or `None` when it already is.
/// Plain text (a row from before sealing: no `v<N>.` prefix) is sealed as it is.
fn reseal_value(k: &Keyring, ctx: &str, stored: &str) -> Result<Option<String>, SealError> {
    if k.is_current(stored) {
        return Ok(None);
    }
    let plain = match k.open(ctx, stored) {
        Ok(p) => p,
        Err(SealError::NotSealed) => stored.to_owned(),
        Err(e) => return Err(e),
    };
    k.seal(ctx, &plain).map(Some)
}

/// Passes each secret slot of the row through `f(field, stored)`, which returns
/// what the slot is to hold.
fn map_slots(row: &mut TenantRow, mut f: impl FnMut(&str, &str) -> ServiceResult<String>) -> ServiceResult<()> {
    row.webhook_secret = f("webhook_secret", &row.webhook_secret)?;
    if let Some(prev) = row.webhook_secret_prev.as_mut() {
        *prev = f("webhook_secret_prev", prev)?;
    }
    for (column, doc) in [("gateway", Some(&mut row.gateway)), ("fiscal", row.fiscal.as_mut())] {
        if let Some(doc) = doc {
            map_json(column, doc, &mut f)?;
        }
    }
    Ok(())
}

/// Re-seals one row's secrets under the current key; true when anything changed.
fn reseal_row(k: &Keyring, row: &mut TenantRow) -> ServiceResult<bool> {
    let id = row.id;
    let mut changed = false;
    map_slots(row, |field, stored| match reseal_value(k, &context(id, field), stored) {
        Ok(Some(new)) => {
            changed = true;
            Ok(new)
        }
        Ok(None) => Ok(stored.to_owned()),
        Err(e) => Err(ServiceError::Internal(format!("tenant {id}: {field} cannot be re-sealed: {e}"))),
    })?;
    Ok(changed)
}

/// Seals every tenant's secrets under the current key: plain values left from
/// before sealing, and values under `BILLING_SECRETS_KEY_PREVIOUS` after a
/// rotation. Run by `billing-api migrate` (an explicit one-off step, never by a
/// serving process); each tenant in its own transaction under a row lock, so two
/// runs do not race. Returns how many rows changed.
///
/// Errors: a value neither key opens (the wrong `BILLING_SECRETS_KEY`), or sealed
/// in a format version this binary does not know, stops it with the tenant and
/// field named; nothing of that tenant is rewritten.
pub async fn reseal_all(conn: &mut AsyncPgConnection) -> ServiceResult<usize> {
    let k = keyring().map_err(sealing_error)?;
    let mut changed = 0;
    for id in db::ids(conn).await? {
        let done = in_transaction(conn, async |c| {
            let Some(mut row) = db::find_for_update(c, id).await? else { return Ok(false) };
            if !reseal_row(k, &mut row)? {
                return Ok(false);
            }
            db::update(c, &row).await?;
            Ok::<_, ServiceError>(true)
        })
        .await?;
        changed += usize::from(done);
    }
    Ok(changed)
}

/// Checks at start-up that the installed keys open every tenant's secrets, so a
/// process under the wrong `BILLING_SECRETS_KEY` refuses to start instead of
/// failing tenant by tenant later. Read-only. Returns how many tenants it checked.
///
/// Errors: a secret that does not open, or one still in plain text (run
/// `billing-api migrate` to seal it), named by tenant and field, never by value.
pub async fn verify_all(conn: &mut AsyncPgConnection) -> ServiceResult<usize> {
    let k = keyring().map_err(sealing_error)?;
    let ids = db::ids(conn).await?;
    for id in &ids {
        let Some(mut row) = db::find(conn, *id).await? else { continue };
        map_slots(&mut row, |field, stored| match k.open(&context(*id, field), stored) {
            Ok(_) => Ok(String::new()),
            Err(SealError::NotSealed) => Err(ServiceError::Internal(format!(
                "tenant {id}: {field} is not sealed (a row from before sealing): run `billing-api migrate`"
            ))),
            Err(e) => Err(ServiceError::Internal(format!("tenant {id}: {field} does not open: {e}"))),
        })?;
    }
    Ok(ids.len())
}

/// [`verify_all`] at a process's start-up, waiting up to a minute for the database
/// to accept connections (a replica restarted while PostgreSQL restarts too).
///
/// Errors: the database still unreachable after that, or [`verify_all`]'s.
pub async fn verify_on_start(pool: &PgPool) -> ServiceResult<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut wait = Duration::from_millis(200);
    loop {
        match pool.get().await {
            Ok(mut conn) => return verify_all(&mut conn).await,
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "PostgreSQL not reachable");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tenant::{FiscalSettings, GatewayConfig};
    use crate::sealing::install;

    fn keyring_installed() {
        install(std::sync::Arc::new(
            Keyring::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", None).unwrap(),
        ));
    }

    fn fiscal() -> FiscalSettings {
        serde_json::from_value(serde_json::json!({
            "inn": "7700000000", "sno": "usn_income", "vat": "none", "settlement_sign": "full_payment",
            "payment_object": 4, "payment_address": "https://example.ru", "email": "a@example.ru",
            "provider": {"login": "l", "password": "atol-password-1", "group_code": "g"}
        }))
        .unwrap()
    }

    #[test]
    fn every_secret_of_every_settings_type_is_sealed_and_opens_back() {
        keyring_installed();
        let t = TenantId::new();
        let gateways = [
            GatewayConfig::Cloudpayments {
                public_id: "pk".into(),
                api_secret: Secret::new("cp-secret-1"),
                api_url: None,
            },
            GatewayConfig::Yookassa {
                shop_id: "1".into(),
                api_secret: Secret::new("yk-secret-1"),
                api_url: None,
                notification_ips: None,
            },
        ];
        for g in gateways {
            let plain = serde_json::to_value(&g).unwrap();
            let sealed = seal_json(t, "gateway", plain.clone()).unwrap();
            assert!(!sealed.to_string().contains("secret-1"), "{sealed}");
            assert_eq!(open_json(t, "gateway", sealed.clone()).unwrap(), plain);
            assert!(open_json(TenantId::new(), "gateway", sealed).is_err(), "bound to its tenant");
        }
        let plain = serde_json::to_value(fiscal()).unwrap();
        let sealed = seal_json(t, "fiscal", plain.clone()).unwrap();
        assert!(!sealed.to_string().contains("atol-password"), "{sealed}");
        assert_eq!(open_json(t, "fiscal", sealed).unwrap(), plain);
    }
}
