//! `Idempotency-Key` handling.
//!
//! The key is claimed with an INSERT in the same database transaction as the effect,
//! and the response is stored in that transaction too. A concurrent request with the
//! same key waits on the unique index until the first one commits, then replays its
//! answer; a crash before commit leaves no key and no effect. Same key with another
//! body: `idempotency_key_reused`. Answers that carry secrets are never stored: their
//! replay is refused with 409.

use diesel_async::AsyncPgConnection;
use serde_json::Value;

use crate::db::idempotency as db;
use crate::error::{ServiceError, ServiceResult};
use crate::signing::sha256;

pub const MAX_KEY_LEN: usize = 255;

/// A request that carried an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct IdempotentRequest {
    /// The tenant id, or `admin` for operator calls.
    pub scope: String,
    pub key: String,
    pub method: String,
    pub path: String,
    pub request_hash: Vec<u8>,
}

impl IdempotentRequest {
    /// Fingerprints a request: JSON bodies in canonical form (sorted keys), so that
    /// re-serialising the same document is the same body.
    pub fn new(scope: String, key: &str, method: &str, path: &str, body: &[u8]) -> ServiceResult<Self> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ServiceError::invalid(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1..255 visible ASCII characters",
            ));
        }
        let canonical = match serde_json::from_slice::<Value>(body) {
            Ok(v) => serde_json::to_vec(&canonical_json(v)).unwrap_or_else(|_| body.to_vec()),
            Err(_) => body.to_vec(),
        };
        let mut material = Vec::with_capacity(canonical.len() + path.len() + method.len() + 2);
        material.extend_from_slice(method.as_bytes());
        material.push(b' ');
        material.extend_from_slice(path.as_bytes());
        material.push(b'\n');
        material.extend_from_slice(&canonical);
        Ok(IdempotentRequest {
            scope,
            key: key.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            request_hash: sha256(&material).to_vec(),
        })
    }
}

/// The same document with every object's keys sorted.
fn canonical_json(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().map(|(k, v)| (k, canonical_json(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical_json).collect()),
        other => other,
    }
}

/// What claiming a key found.
#[derive(Debug)]
pub enum Claim {
    /// First use: run the effect, then [`complete`].
    Fresh,
    /// Seen before with the same request: answer this.
    Replay { status: u16, body: Value },
}

pub async fn claim(conn: &mut AsyncPgConnection, req: &IdempotentRequest) -> ServiceResult<Claim> {
    if db::claim(conn, &req.scope, &req.key, &req.method, &req.path, &req.request_hash).await? {
        return Ok(Claim::Fresh);
    }
    let (hash, status, body) = db::stored(conn, &req.scope, &req.key).await?;
    if hash != req.request_hash {
        return Err(ServiceError::invalid(
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        ));
    }
    match body {
        Some(body) => {
            let status = u16::try_from(status).map_err(|e| super::corrupt("idempotent answer status", e))?;
            Ok(Claim::Replay { status, body })
        }
        None => Err(ServiceError::conflict(
            "idempotent_replay_unavailable",
            "the first answer to this request carried secrets and is not stored; it cannot be replayed",
        )),
    }
}

/// Stores the answer of a fresh request (`None`: carries secrets, not stored).
pub async fn complete(
    conn: &mut AsyncPgConnection,
    req: &IdempotentRequest,
    status: u16,
    body: Option<&Value>,
) -> ServiceResult<()> {
    Ok(db::complete(conn, &req.scope, &req.key, i32::from(status), body).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_key_order_but_not_values() {
        let a = IdempotentRequest::new("t".into(), "k", "POST", "/v1/x", br#"{"a":1,"b":{"c":2,"d":3}}"#).unwrap();
        let b = IdempotentRequest::new("t".into(), "k", "POST", "/v1/x", br#"{"b":{"d":3,"c":2},"a":1}"#).unwrap();
        let c = IdempotentRequest::new("t".into(), "k", "POST", "/v1/x", br#"{"a":1,"b":{"c":2,"d":4}}"#).unwrap();
        let d = IdempotentRequest::new("t".into(), "k", "POST", "/v1/y", br#"{"a":1,"b":{"c":2,"d":3}}"#).unwrap();
        assert_eq!(a.request_hash, b.request_hash);
        assert_ne!(a.request_hash, c.request_hash);
        assert_ne!(a.request_hash, d.request_hash);
        assert!(IdempotentRequest::new("t".into(), "", "POST", "/", b"").is_err());
        assert!(IdempotentRequest::new("t".into(), "a b", "POST", "/", b"").is_err());
    }
}
