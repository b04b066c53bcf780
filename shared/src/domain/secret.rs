//! A secret (API secret, password, webhook signing secret, connection URL with
//! credentials) that never prints: `Debug` and `Display` show `***`, so a secret
//! inside any logged or debug-printed structure stays hidden.
//!
//! Serde reads and writes the plain value: configuration is stored as JSON and the
//! secrets a tenant is given once (API key, webhook secret) are answered as JSON.
//! Only `expose` gives the text, at the point where it is used (signing, HTTP
//! auth).

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret's text.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret's text; call it only where the secret is used.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when empty or only whitespace (a setting left blank).
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl utoipa::PartialSchema for Secret {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Password)))
            .into()
    }
}

impl utoipa::ToSchema for Secret {}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_prints_but_round_trips_through_json() {
        let s = Secret::new("sk_live_123");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            secret: Secret,
        }
        assert!(!format!("{:?}", Holder { secret: s.clone() }).contains("sk_live"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"sk_live_123\"");
        assert_eq!(serde_json::from_str::<Secret>(&json).unwrap(), s);
    }
}
