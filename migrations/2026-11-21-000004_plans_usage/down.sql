DROP TABLE maintenance_extensions;
DROP TABLE usage_counters;
DROP TABLE usage_events;
DROP TABLE trials;
DROP INDEX subscriptions_one_pending;
DROP INDEX subscriptions_one_live;
CREATE UNIQUE INDEX subscriptions_one_live ON subscriptions (customer_id)
    WHERE status IN ('pending_payment', 'trialing', 'active', 'past_due', 'suspended', 'canceled');
ALTER TABLE payments DROP COLUMN plan_change, DROP COLUMN lines;
