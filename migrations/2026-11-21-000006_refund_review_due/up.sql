-- A held refund request is overdue after the tenant's review deadline (business
-- days): refund.review_overdue fires once. The scheduler finds due ones through the
-- partial index, whatever the number of refunds stored.
ALTER TABLE refunds
    ADD COLUMN review_due_at timestamptz,
    ADD COLUMN overdue_notified_at timestamptz;
CREATE INDEX refunds_review_due ON refunds (review_due_at)
    WHERE status = 'pending_review' AND overdue_notified_at IS NULL;
