UPDATE payment_attempts SET status = 'pending' WHERE status = 'refused';
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_status_check;
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_status_check
    CHECK (status IN ('pending', 'sent', 'succeeded', 'failed', 'unknown'));
DROP INDEX payment_attempts_open;
CREATE INDEX payment_attempts_open ON payment_attempts (payment_id)
    WHERE status IN ('pending', 'sent', 'unknown');
