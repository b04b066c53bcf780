//! Errors as RFC 9457 problem details.
//!
//! Rule: every error response is `application/problem+json` with a stable `code`.
//! Client errors say what to fix; server errors say nothing internal (the whole
//! error chain goes to the log instead).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use billing_shared::error::ServiceError;
use serde::Serialize;
use utoipa::ToSchema;

/// A problem details document (RFC 9457) with a machine-readable `code`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:problem:billing:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable code, e.g. `plan_not_found`, `validation_failed`, `idempotency_key_reused`.
    pub code: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), detail: detail.into() }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", detail)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the service failed to handle the request; it has been logged",
        )
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:problem:billing:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        res.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Unauthenticated { code, detail } => ApiError::new(StatusCode::UNAUTHORIZED, code, detail),
            ServiceError::NotFound { code, detail } => ApiError::new(StatusCode::NOT_FOUND, code, detail),
            ServiceError::Conflict { code, detail } => ApiError::new(StatusCode::CONFLICT, code, detail),
            ServiceError::Invalid { code, detail } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail),
            ServiceError::Unavailable(detail) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "dependency_unavailable", detail)
            }
            ServiceError::NotSupported { detail } => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_supported", detail)
            }
            ServiceError::Gateway(g) => {
                tracing::error!(error = %g, "payment provider call failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "gateway_error",
                    "the payment provider could not be reached or refused the call",
                )
            }
            // A deadlock or serialization failure with a concurrent request: the
            // transaction was rolled back whole, so the same request (same
            // Idempotency-Key) can be sent again.
            other if other.is_retryable() => {
                tracing::warn!(error = %other, "request rolled back by a concurrent one");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "concurrent_update",
                    "the request collided with a concurrent change and nothing of it was written; send it again",
                )
            }
            other => {
                tracing::error!(error = %other, error_debug = ?other, "request failed");
                ApiError::internal()
            }
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        ApiError::database_unavailable(&e)
    }
}

impl From<diesel::ConnectionError> for ApiError {
    fn from(e: diesel::ConnectionError) -> Self {
        ApiError::database_unavailable(&e)
    }
}

impl ApiError {
    /// 503 `database_unavailable`: no connection could be had (`e` is logged).
    pub(crate) fn database_unavailable(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "no database connection");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is not reachable; retry later",
        )
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    use super::*;

    fn database(kind: DatabaseErrorKind, message: &str) -> ServiceError {
        ServiceError::Database(DieselError::DatabaseError(kind, Box::new(message.to_owned())))
    }

    #[test]
    fn a_transaction_rolled_back_by_a_concurrent_one_is_503_to_send_again() {
        for e in [
            database(DatabaseErrorKind::SerializationFailure, "could not serialize access"),
            database(DatabaseErrorKind::Unknown, "deadlock detected"),
        ] {
            let api = ApiError::from(e);
            assert_eq!((api.status, api.code.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "concurrent_update"));
        }
        let other = ApiError::from(database(DatabaseErrorKind::Unknown, "relation does not exist"));
        assert_eq!((other.status, other.code.as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"));
    }
}
