//! Ids that cross layers and sit side by side in signatures, as distinct types:
//! a tenant's id cannot be passed where a customer's, subscription's or payment's
//! is expected (`find(conn, tenant_id, id)` with the two swapped does not compile).
//!
//! Each is a UUID (v7 when we mint it), shown and read as the UUID's text, stored
//! in `uuid` columns (`db::ids` maps them).

/// Declares UUID newtypes.
macro_rules! uuid_id {
    ($($(#[$meta:meta])* $name:ident;)+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A new time-ordered id (UUID v7).
            pub fn new() -> Self {
                $name(uuid::Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(id: uuid::Uuid) -> Self {
                $name(id)
            }
        }

        impl From<$name> for uuid::Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid)))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    )+};
}

uuid_id! {
    /// A tenant: one SaaS product using the service.
    TenantId;
    /// A tenant's customer.
    CustomerId;
    /// A customer's subscription to a plan.
    SubscriptionId;
    /// A payment (purchase, renewal, upgrade, extension, top-up, overage).
    PaymentId;
    /// A tenant's partner, who earns a commission on the payments of the
    /// customers attributed to them.
    PartnerId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_and_print_as_their_uuid() {
        let id = TenantId::new();
        assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
        assert_eq!(serde_json::to_value(id).unwrap(), serde_json::json!(id.0.to_string()));
        assert_eq!(serde_json::from_value::<TenantId>(serde_json::json!(id.0.to_string())).unwrap(), id);
        assert!("not-a-uuid".parse::<CustomerId>().is_err());
    }
}
