//! The served OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    admin, balance, customers, invoices, partners, payments, plans, receipts, refunds, service, subscriptions, usage,
    webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Billing service",
        description = include_str!("events.md"),
        license(name = "Apache-2.0")
    ),
    paths(
        admin::create_tenant, admin::patch_tenant, admin::rotate_keys, admin::get_clock, admin::set_clock,
        admin::list_dead_letters, admin::replay_dead_letters, admin::resend_receipt, admin::record_maintenance,
        plans::create_plan, plans::list_plans, plans::get_plan, plans::add_price, plans::cancel_price, plans::archive_plan,
        customers::create_customer, customers::list_customers, customers::get_customer, customers::patch_customer,
        customers::get_entitlements, balance::get_balance, balance::create_top_up,
        subscriptions::create_subscription, subscriptions::list_subscriptions, subscriptions::get_subscription,
        subscriptions::cancel_subscription, subscriptions::resume_subscription, subscriptions::pay_subscription,
        subscriptions::extend_subscription, subscriptions::change_plan, subscriptions::terminate_subscription,
        usage::report_usage,
        refunds::request_refund, refunds::list_refunds, refunds::approve_refund, refunds::reject_refund,
        refunds::retry_refund, receipts::list_receipts,
        payments::list_payments, payments::get_payment, payments::pay_payment,
        partners::create_partner, partners::list_partners, partners::get_statement,
        invoices::list_invoices, invoices::get_invoice, invoices::get_invoice_pdf, invoices::mark_paid,
        invoices::import_statement, invoices::get_act, invoices::get_act_pdf,
        webhooks::cloudpayments_notification, webhooks::yookassa_notification, webhooks::atol_callback,
        service::healthz, service::readyz, service::metrics,
    ),
    components(schemas(billing_shared::services::plans::QuotaInput)),
    modifiers(&Security, &Problems),
    tags(
        (name = "operator", description = "Operators of the billing service (BILLING_ADMIN_TOKEN)"),
        (name = "catalog", description = "Plans and versioned prices"),
        (name = "customers", description = "Customers and entitlements"),
        (name = "subscriptions", description = "Purchases and the subscription lifecycle"),
        (name = "usage", description = "Usage events and quotas"),
        (name = "payments", description = "Payments"),
        (name = "partners", description = "Partners and their commission statements"),
        (name = "invoices", description = "Invoices for bank transfer, bank statement imports and closing acts"),
        (name = "refunds", description = "Refund requests, decided by the tenant's refund rules, and their review"),
        (name = "receipts", description = "54-FZ receipts registered with the tenant's ATOL Online account"),
        (name = "webhooks", description = "Provider callbacks, authenticated by the provider's scheme"),
        (name = "service", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |desc: &str| {
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(desc)).build())
        };
        components.add_security_scheme("tenant_key", bearer("A tenant's API key"));
        components.add_security_scheme("operator_token", bearer("BILLING_ADMIN_TOKEN"));
    }
}

/// Every error answer is declared as `application/problem+json` (the `Problem`
/// schema), and each operation lists the errors every request can meet: 401 when
/// it needs a key or token, 429 (`rate_limited`) when a key's rate applies, 400
/// (`malformed_json`) and 413 (`payload_too_large`) when it takes a body, 422
/// (`validation_failed`) when it takes a body or parameters.
struct Problems;

impl Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let problem = |description: &str| {
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
            RefOr::T(ResponseBuilder::new().description(description).content(PROBLEM_JSON, content).build())
        };
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten();
            for op in operations {
                for param in op.parameters.iter_mut().flatten() {
                    if let RefOr::T(param) = param
                        && param.name == "Idempotency-Key"
                    {
                        param.schema = Some(idempotency_key());
                    }
                }
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let takes_input = op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let responses = &mut op.responses.responses;
                for (status, response) in responses.iter_mut() {
                    if let (true, RefOr::T(r)) = (status.as_str() >= "400", response)
                        && let Some(content) = r.content.shift_remove("application/json")
                    {
                        r.content.insert(PROBLEM_JSON.to_owned(), content);
                    }
                }
                let mut add = |status: &str, description: &str| {
                    responses.entry(status.to_owned()).or_insert_with(|| problem(description));
                };
                if secured {
                    add("401", "Missing or unknown key or token");
                    add("429", "Too many requests for this key (`rate_limited`, with `Retry-After`)");
                }
                if op.request_body.is_some() {
                    add("400", "The body is not well-formed JSON (`malformed_json`)");
                    add("413", "Body over 16 MiB (`payload_too_large`)");
                }
                if takes_input {
                    add("422", "Invalid input (`validation_failed` or a more specific code)");
                }
            }
        }
    }
}

/// `Idempotency-Key`: 1..255 visible ASCII characters (else 422 `invalid_idempotency_key`).
fn idempotency_key() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    utoipa::openapi::RefOr::T(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(255))
            .pattern(Some("^[!-~]+$"))
            .into(),
    )
}

/// The media type of every error answer (RFC 9457).
const PROBLEM_JSON: &str = "application/problem+json";

#[cfg(test)]
mod tests {
    use super::*;

    /// The served contract is reviewed like code: `billing-api/openapi.json` is its
    /// snapshot, and any change to the document fails here until the snapshot is
    /// regenerated (`UPDATE_OPENAPI_SNAPSHOT=1 cargo test -p billing-api openapi`)
    /// and the diff committed.
    #[test]
    fn every_error_answer_is_problem_json_and_common_errors_are_declared() {
        let doc = ApiDoc::openapi();
        let customers = doc.paths.paths.get("/v1/customers").and_then(|p| p.post.as_ref()).unwrap();
        for status in ["400", "401", "413", "422", "429"] {
            let Some(utoipa::openapi::RefOr::T(r)) = customers.responses.responses.get(status) else {
                panic!("POST /v1/customers does not declare {status}");
            };
            assert_eq!(r.content.keys().collect::<Vec<_>>(), vec![PROBLEM_JSON], "{status}");
        }
        let json = doc.to_json().unwrap();
        assert!(!json.contains(r##""application/json":{"schema":{"$ref":"#/components/schemas/Problem"}}"##));
    }

    #[test]
    fn the_served_openapi_matches_its_reviewed_snapshot() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let served = ApiDoc::openapi().to_pretty_json().unwrap() + "\n";
        if std::env::var_os("UPDATE_OPENAPI_SNAPSHOT").is_some() {
            std::fs::write(path, &served).unwrap();
        }
        let reviewed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            served == reviewed,
            "the served OpenAPI differs from billing-api/openapi.json: review the change, then run \
             UPDATE_OPENAPI_SNAPSHOT=1 cargo test -p billing-api openapi and commit the file"
        );
    }
}
