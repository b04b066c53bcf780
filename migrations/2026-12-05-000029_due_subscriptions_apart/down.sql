SET LOCAL lock_timeout = '3s';
ALTER TABLE subscriptions RESET (fillfactor);
CREATE INDEX subscriptions_due ON subscriptions (due_at) WHERE due_at IS NOT NULL;
DROP TRIGGER subscriptions_due_moved ON subscriptions;
DROP TRIGGER subscriptions_due_inserted ON subscriptions;
DROP FUNCTION due_subscriptions_follow();
DROP TABLE due_subscriptions;
