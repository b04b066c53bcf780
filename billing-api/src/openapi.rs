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
        admin::list_dead_letters, admin::replay_dead_letters, admin::record_maintenance,
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
    modifiers(&Security),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The served contract is reviewed like code: `billing-api/openapi.json` is its
    /// snapshot, and any change to the document fails here until the snapshot is
    /// regenerated (`UPDATE_OPENAPI_SNAPSHOT=1 cargo test -p billing-api openapi`)
    /// and the diff committed.
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
