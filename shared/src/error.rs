//! Errors of the service layer.
//!
//! Rule: a service returns [`ServiceError`]. Expected outcomes a caller can act on
//! (not found, conflict, invalid input, not supported) carry a stable machine code
//! and a human detail that is safe to show; everything else (database, broker,
//! gateway transport) is `Internal`-like and is rendered without internals while the
//! full chain goes to the logs. The API maps each variant to one HTTP status.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// 401: the caller could not be authenticated (a provider callback with a
    /// missing or wrong signature).
    #[error("{detail}")]
    Unauthenticated { code: &'static str, detail: String },
    /// 404: the id does not exist for this tenant (foreign ids look the same).
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// 409: the request conflicts with the current state.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// 422: the request is well-formed but not acceptable.
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    /// 501: a documented capability that is not built yet.
    #[error("{detail}")]
    NotSupported { detail: String },
    /// 502: the payment provider refused or failed a call we had to make now.
    #[error("payment provider error: {0}")]
    Gateway(crate::gateways::GatewayError),
    /// 503: a dependency (the broker) is not reachable; nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] DieselError),
    #[error("database pool error: {0}")]
    Pool(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn unauthenticated(code: &'static str, detail: impl Into<String>) -> Self {
        ServiceError::Unauthenticated { code, detail: detail.into() }
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        ServiceError::NotFound { code, detail: detail.into() }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        ServiceError::Conflict { code, detail: detail.into() }
    }

    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        ServiceError::Invalid { code, detail: detail.into() }
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        ServiceError::Invalid { code: "validation_failed", detail: detail.into() }
    }

    pub fn not_supported(detail: impl Into<String>) -> Self {
        ServiceError::NotSupported { detail: detail.into() }
    }

    /// True when the database refused a write because of a unique index.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, ServiceError::Database(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)))
    }

    /// The constraint a unique, check or foreign-key violation names, if that is
    /// what this is.
    pub fn violated_constraint(&self) -> Option<&str> {
        match self {
            ServiceError::Database(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::ForeignKeyViolation,
                info,
            )) => info.constraint_name(),
            _ => None,
        }
    }

    /// Serialization failures and deadlocks: the whole transaction may be retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            ServiceError::Database(DieselError::DatabaseError(kind, info)) => {
                matches!(kind, DatabaseErrorKind::SerializationFailure) || info.message().contains("deadlock detected")
            }
            _ => false,
        }
    }
}

/// A gateway the tenant's settings name but no adapter serves is a documented
/// capability not built yet (501); every other gateway failure is a 502.
impl From<crate::gateways::GatewayError> for ServiceError {
    fn from(e: crate::gateways::GatewayError) -> Self {
        match e {
            crate::gateways::GatewayError::Unsupported(detail) => ServiceError::NotSupported { detail },
            other => ServiceError::Gateway(other),
        }
    }
}

impl From<crate::domain::money::MoneyError> for ServiceError {
    fn from(e: crate::domain::money::MoneyError) -> Self {
        ServiceError::invalid(e.code(), e.to_string())
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ServiceError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        ServiceError::Pool(e.to_string())
    }
}
