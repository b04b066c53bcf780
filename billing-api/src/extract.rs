//! Request extractors: tenant and operator authentication, strict JSON bodies and
//! the `Idempotency-Key` header.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data};
use actix_web::{FromRequest, HttpRequest};
use billing_shared::clock::real_now;
use billing_shared::services::idempotency::IdempotentRequest;
use billing_shared::services::tenants::{self, Tenant};
use billing_shared::signing::same_secret;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

type LocalFuture<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

fn state_of(req: &HttpRequest) -> Result<Data<AppState>, ApiError> {
    req.app_data::<Data<AppState>>().cloned().ok_or_else(ApiError::internal)
}

/// The token of `Authorization: Bearer <token>` (scheme in any case), if sent.
pub(crate) fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The tenant whose API key is in `Authorization: Bearer <key>` (looked up through
/// this process's cache: no database round trip on a hit).
pub struct TenantAuth(pub Arc<Tenant>);

impl FromRequest for TenantAuth {
    type Error = ApiError;
    type Future = LocalFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = state_of(req);
        let token = bearer(req);
        Box::pin(async move {
            let state = state?;
            let token = token
                .ok_or_else(|| ApiError::unauthorized("missing bearer token (Authorization: Bearer <api key>)"))?;
            tenants::authenticate(&state.pool, &token, real_now())
                .await?
                .map(TenantAuth)
                .ok_or_else(|| ApiError::unauthorized("unknown or expired API key"))
        })
    }
}

/// An operator call: `Authorization: Bearer <BILLING_ADMIN_TOKEN>`.
pub struct AdminAuth;

impl FromRequest for AdminAuth {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = (|| {
            let state = state_of(req)?;
            let Some(expected) = &state.admin_token else {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "operator_api_disabled",
                    "operator endpoints are disabled: BILLING_ADMIN_TOKEN is not set",
                ));
            };
            let given = bearer(req).ok_or_else(|| ApiError::unauthorized("missing operator bearer token"))?;
            if same_secret(&given, expected.expose()) {
                Ok(AdminAuth)
            } else {
                Err(ApiError::unauthorized("wrong operator token"))
            }
        })();
        std::future::ready(result)
    }
}

/// A JSON body parsed strictly: malformed JSON is 400 `malformed_json`, a document
/// of the wrong shape is 422 `validation_failed` naming the offending field. The raw
/// bytes are kept for the idempotency fingerprint.
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = Bytes::from_request(req, payload);
        Box::pin(async move {
            let raw = bytes
                .await
                .map_err(|e| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.to_string()))?;
            let value = parse_json(&raw)?;
            Ok(JsonBody { value, raw })
        })
    }
}

/// A request body as `T`: it must be a JSON object (serde would also take an array
/// for a struct); a number written with a zero fraction (`30.0`) counts as the
/// integer it equals, as JSON Schema says. Errors: 400 `malformed_json`, 422
/// `validation_failed`.
pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    use serde_json::error::Category;
    let classify = |e: serde_json::Error| match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("body is not valid JSON: {e}"))
        }
        Category::Data => ApiError::validation(e.to_string()),
    };
    let value = match serde_json::from_slice::<T>(raw) {
        Ok(v) => v,
        Err(e) if e.classify() == Category::Data => {
            // The slow path, for errors only: integral floats made integers.
            let mut doc: serde_json::Value = serde_json::from_slice(raw).map_err(classify)?;
            if !integral_floats_to_integers(&mut doc) {
                return Err(classify(e));
            }
            T::deserialize(doc).map_err(classify)?
        }
        Err(e) => return Err(classify(e)),
    };
    if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::validation("body must be a JSON object"));
    }
    if has_escaped_nul(raw) {
        // PostgreSQL text and jsonb cannot hold U+0000.
        return Err(ApiError::validation("text must not contain U+0000 (NUL)"));
    }
    Ok(value)
}

/// True when a JSON string in `raw` holds `\u0000` (an escape, not a literal
/// backslash followed by `u0000`). Raw NUL bytes are not valid JSON at all, nor
/// is `\U` (the body has been parsed by then). A vectorised substring search:
/// a usage batch's megabytes are scanned in well under a millisecond.
fn has_escaped_nul(raw: &[u8]) -> bool {
    memchr::memmem::find_iter(raw, b"\\u0000")
        .any(|i| raw[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 0)
}

/// Rewrites every number with a zero fraction (`5.0`) as an integer; true when
/// any was.
fn integral_floats_to_integers(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                // Exact: |f| < 2^53, so the conversion loses nothing.
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                *v = Value::from(i);
                true
            }
            _ => false,
        },
        Value::Array(items) => items.iter_mut().fold(false, |any, i| integral_floats_to_integers(i) | any),
        Value::Object(map) => map.values_mut().fold(false, |any, i| integral_floats_to_integers(i) | any),
        _ => false,
    }
}

/// The `Idempotency-Key` header with what identifies the request.
pub struct Idempotency {
    key: Option<String>,
    method: String,
    path: String,
}

impl Idempotency {
    /// The request to deduplicate, if a key was sent.
    pub fn request(&self, scope: impl Into<String>, body: &[u8]) -> Result<Option<IdempotentRequest>, ApiError> {
        self.key
            .as_deref()
            .map(|key| IdempotentRequest::new(scope.into(), key, &self.method, &self.path, body))
            .transpose()
            .map_err(ApiError::from)
    }
}

impl FromRequest for Idempotency {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let key = req.headers().get("Idempotency-Key").map(|v| v.to_str().map(str::to_owned));
        std::future::ready(match key {
            Some(Err(_)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_idempotency_key",
                "Idempotency-Key must be ASCII",
            )),
            other => Ok(Idempotency {
                key: other.and_then(Result::ok),
                method: req.method().to_string(),
                path: req.path().to_owned(),
            }),
        })
    }
}

/// The middleware refusing U+0000 (`%00`) in a request's path or query before any
/// handler sees it: PostgreSQL text cannot hold it. A path holding it names no
/// resource (404 `not_found`); a query holding it is 422 `validation_failed`.
pub async fn refuse_nul(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    use actix_web::ResponseError as _;
    let has_nul = |s: &str| s.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0');
    let refusal = if has_nul(req.path()) {
        ApiError::not_found("a path holding U+0000 (NUL) names no resource")
    } else if has_nul(req.query_string()) {
        ApiError::validation("query: text must not contain U+0000 (NUL)")
    } else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    Ok(req.into_response(refusal.error_response()).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::has_escaped_nul;

    #[test]
    fn finds_escaped_nul_but_not_an_escaped_backslash() {
        assert!(has_escaped_nul(br#"{"email": "a\u0000@b.ru"}"#));
        assert!(has_escaped_nul(br#"{"a": "\\\u0000"}"#));
        assert!(!has_escaped_nul(br#"{"a": "\\u0000"}"#));
        assert!(!has_escaped_nul(br#"{"a": "u0000"}"#));
    }
}
