DROP INDEX refunds_review_due;
ALTER TABLE refunds DROP COLUMN review_due_at, DROP COLUMN overdue_notified_at;
