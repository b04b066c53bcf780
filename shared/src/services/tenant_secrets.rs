//! The tenant row's secrets sealed at rest ([`crate::sealing`]): the webhook
//! signing secrets (current and previous) and, inside the JSON settings, the
//! gateway's `api_secret` and the fiscal provider's `password`. Everything else on
//! the row stays readable to an operator with SQL.
//!
//! Each value is bound to its tenant and field (`<tenant id>/<field>`), so a value
//! copied to another tenant or field does not open.

use diesel_async::AsyncPgConnection;
use serde_json::Value;

use super::corrupt;
use crate::db::in_transaction;
use crate::db::tenants::{self as db, TenantRow};
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
/// Plain text (a row from before sealing) is sealed as it is.
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

/// Re-seals one row's secrets under the current key; true when anything changed.
fn reseal_row(k: &Keyring, row: &mut TenantRow) -> ServiceResult<bool> {
    let id = row.id;
    let changed = std::cell::Cell::new(false);
    // The stored value as it must be: re-sealed, or as it is.
    let reseal = |field: &str, stored: &str| -> ServiceResult<String> {
        match reseal_value(k, &context(id, field), stored) {
            Ok(Some(new)) => {
                changed.set(true);
                Ok(new)
            }
            Ok(None) => Ok(stored.to_owned()),
            Err(e) => Err(ServiceError::Internal(format!("tenant {id}: {field} cannot be re-sealed: {e}"))),
        }
    };
    row.webhook_secret = reseal("webhook_secret", &row.webhook_secret)?;
    if let Some(prev) = row.webhook_secret_prev.as_mut() {
        *prev = reseal("webhook_secret_prev", prev)?;
    }
    for (column, doc) in [("gateway", Some(&mut row.gateway)), ("fiscal", row.fiscal.as_mut())] {
        if let Some(doc) = doc {
            map_json(column, doc, &reseal)?;
        }
    }
    Ok(changed.get())
}

/// Seals every tenant's secrets under the current key: plain values left from
/// before sealing, and values under `BILLING_SECRETS_KEY_PREVIOUS` after a
/// rotation. Run by the API at start-up; each tenant in its own transaction under
/// a row lock, so replicas starting together do not race. Returns how many rows
/// changed.
///
/// Errors: a value neither key opens (the wrong `BILLING_SECRETS_KEY`) stops the
/// start-up with the tenant and field named.
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
