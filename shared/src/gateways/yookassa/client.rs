//! YooKassa API v3 calls (GATEWAYS.md §2): `POST /v3/payments`, `GET
//! /v3/payments/{id}`, `POST /v3/payments/{id}/capture` and `/cancel`, `POST
//! /v3/refunds`, `GET /v3/refunds/{id}`. HTTP Basic auth with the shop id and
//! secret key, JSON bodies, an `Idempotence-Key` on every POST.
//!
//! A timeout, a broken connection, HTTP 5xx, 408, 429, the `202` "processing"
//! answer, or an unreadable 200 is [`GatewayError::Unknown`]: the request may have
//! been carried out, and it is settled by sending the same request with the same
//! key again (YooKassa answers a repeated key with the first request's result) or
//! by fetching the object. HTTP 401/403 (credentials) and any other 4xx are the
//! provider refusing our request ([`GatewayError::Refused`]); a 404 on a `GET` is
//! "no such object".

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{Amount, ErrorBody, Payment, Refund};
use crate::config::Secret;
use crate::gateways::GatewayError;
use crate::provider_http::outcome_unknown;

/// The shop a call is made for.
#[derive(Debug, Clone)]
pub struct Account {
    /// The shop id (Basic auth user).
    pub shop_id: String,
    /// The secret key (Basic auth password).
    pub api_secret: Secret,
    /// `https://api.yookassa.ru/v3/` or a simulator's equivalent (ends before `payments`).
    pub base_url: String,
}

impl Account {
    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url.trim_end_matches('/'))
    }
}

/// The HTTP side of the adapter; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl Client {
    /// The adapter's calls over `http` (a [`crate::provider_http::client`], whose
    /// timeout makes an outcome unknown).
    pub fn new(http: reqwest::Client) -> Self {
        Client { http }
    }

    /// One call; `Ok(None)` is a 404.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        account: &Account,
        method: Method,
        path: &str,
        idempotence_key: Option<&str>,
        body: Option<&B>,
    ) -> Result<Option<T>, GatewayError> {
        let mut req = self
            .http
            .request(method.clone(), account.url(path))
            .basic_auth(&account.shop_id, Some(account.api_secret.expose()));
        if let Some(key) = idempotence_key {
            req = req.header("Idempotence-Key", key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let what = format!("{method} {path}");
        let res = req.send().await.map_err(|e| GatewayError::Unknown(format!("{what}: {e}")))?;
        let status = res.status();
        if status == StatusCode::ACCEPTED {
            return Err(GatewayError::Unknown(format!("{what}: still processing (HTTP 202)")));
        }
        if outcome_unknown(status) {
            return Err(GatewayError::Unknown(format!("{what}: HTTP {status}")));
        }
        let bytes = res.bytes().await.map_err(|e| GatewayError::Unknown(format!("{what}: reading answer: {e}")))?;
        if status == StatusCode::NOT_FOUND && method == Method::GET {
            return Ok(None);
        }
        if !status.is_success() {
            let error: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
            let why = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                format!("{what}: credentials refused (HTTP {status}, {})", error.summary())
            } else {
                format!("{what}: HTTP {status}, {}", error.summary())
            };
            return Err(GatewayError::Refused(why));
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| GatewayError::Unknown(format!("{what}: unreadable answer: {e}")))
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        account: &Account,
        path: &str,
        key: &str,
        body: &B,
    ) -> Result<T, GatewayError> {
        self.call(account, Method::POST, path, Some(key), Some(body))
            .await?
            .ok_or_else(|| GatewayError::Refused(format!("POST {path}: HTTP 404")))
    }

    async fn get<T: DeserializeOwned>(&self, account: &Account, path: &str) -> Result<Option<T>, GatewayError> {
        self.call::<(), T>(account, Method::GET, path, None, None).await
    }

    /// `POST /v3/payments` under `key` (our attempt id).
    pub async fn create_payment<B: Serialize>(
        &self,
        account: &Account,
        key: &str,
        body: &B,
    ) -> Result<Payment, GatewayError> {
        self.post(account, "payments", key, body).await
    }

    /// `GET /v3/payments/{id}`; `None` when YooKassa does not know it.
    pub async fn payment(&self, account: &Account, id: &str) -> Result<Option<Payment>, GatewayError> {
        self.get(account, &format!("payments/{}", path_segment(id)?)).await
    }

    /// `POST /v3/payments/{id}/capture` of `amount` (key `capture-<id>`: once per payment).
    pub async fn capture(&self, account: &Account, id: &str, amount: Amount) -> Result<Payment, GatewayError> {
        let path = format!("payments/{}/capture", path_segment(id)?);
        self.post(account, &path, &format!("capture-{id}"), &super::wire::CapturePayment { amount }).await
    }

    /// `POST /v3/payments/{id}/cancel` (key `cancel-<id>`).
    pub async fn cancel(&self, account: &Account, id: &str) -> Result<Payment, GatewayError> {
        let path = format!("payments/{}/cancel", path_segment(id)?);
        self.post(account, &path, &format!("cancel-{id}"), &serde_json::json!({})).await
    }

    /// `POST /v3/refunds` under `key` (our refund's execution try).
    pub async fn create_refund<B: Serialize>(
        &self,
        account: &Account,
        key: &str,
        body: &B,
    ) -> Result<Refund, GatewayError> {
        self.post(account, "refunds", key, body).await
    }

    /// `GET /v3/refunds/{id}`; `None` when YooKassa does not know it.
    pub async fn refund(&self, account: &Account, id: &str) -> Result<Option<Refund>, GatewayError> {
        self.get(account, &format!("refunds/{}", path_segment(id)?)).await
    }
}

/// An object id as one URL path segment: YooKassa ids are UUID-like
/// (`[0-9a-f-]`); anything else is refused before a request is built from it.
fn path_segment(id: &str) -> Result<&str, GatewayError> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(id)
    } else {
        Err(GatewayError::Refused(format!("{id:?} is not a YooKassa object id")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_cannot_escape_their_path() {
        assert!(path_segment("2d1f6b1e-000f-5000-9000-1b68e7b15f3f").is_ok());
        for bad in ["", "../payments", "a/b", "a?b=c", "id%2F", &"a".repeat(65)] {
            assert!(path_segment(bad).is_err(), "{bad}");
        }
    }
}
