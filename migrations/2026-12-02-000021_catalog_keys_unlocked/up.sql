-- Every write naming a tenant took `FOR KEY SHARE` on that one tenant row (the
-- foreign key's check), and every purchase, activation and renewal did the same on
-- its plan's and price's rows: with concurrent writers of one tenant (provider
-- notifications, a renewal batch, purchases) each new locker turned the row's lock
-- into a new multixact, written to the WAL with the row's page (bench/all.sh's
-- webhook run created more than one multixact per notification). The foreign keys
-- to `tenants`, and those from subscriptions and payments to `plans` and
-- `plan_prices`, are dropped; what they guarded is kept otherwise: a tenant, plan
-- or price is never deleted, truncated or renumbered (the triggers below refuse
-- it; a price ends by `canceled_at`), every id written comes from an authenticated
-- tenant or its catalog read in the same request, and the audit (`billing-api
-- audit`, invariant `references_exist`) finds rows naming none.
CREATE FUNCTION never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are never deleted or renumbered (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'plans', 'plan_prices'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE DELETE ON %I FOR EACH ROW EXECUTE FUNCTION never_deleted()',
                       t || '_never_deleted', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OF id ON %I FOR EACH ROW '
                       'WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION never_deleted()',
                       t || '_never_renumbered', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION never_deleted()',
                       t || '_never_truncated', t);
    END LOOP;
END $$;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_tenant_id_fkey;
ALTER TABLE plans DROP CONSTRAINT plans_tenant_id_fkey;
ALTER TABLE customers DROP CONSTRAINT customers_tenant_id_fkey;
ALTER TABLE payment_methods DROP CONSTRAINT payment_methods_tenant_id_fkey;
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_tenant_id_fkey;
ALTER TABLE payments DROP CONSTRAINT payments_tenant_id_fkey;
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_tenant_id_fkey;
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_tenant_id_fkey;
ALTER TABLE gateway_events DROP CONSTRAINT gateway_events_tenant_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_tenant_id_fkey;
ALTER TABLE maintenance_extensions DROP CONSTRAINT maintenance_extensions_tenant_id_fkey;
ALTER TABLE refunds DROP CONSTRAINT refunds_tenant_id_fkey;
ALTER TABLE receipts DROP CONSTRAINT receipts_tenant_id_fkey;
ALTER TABLE partners DROP CONSTRAINT partners_tenant_id_fkey;
ALTER TABLE partner_commissions DROP CONSTRAINT partner_commissions_tenant_id_fkey;
ALTER TABLE invoice_counters DROP CONSTRAINT invoice_counters_tenant_id_fkey;
ALTER TABLE invoices DROP CONSTRAINT invoices_tenant_id_fkey;
ALTER TABLE invoice_payments DROP CONSTRAINT invoice_payments_tenant_id_fkey;
ALTER TABLE acts DROP CONSTRAINT acts_tenant_id_fkey;
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_plan_id_fkey;
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_price_id_fkey;
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_scheduled_plan_id_fkey;
ALTER TABLE payments DROP CONSTRAINT payments_plan_id_fkey;
ALTER TABLE payments DROP CONSTRAINT payments_price_id_fkey;
