ALTER TABLE receipts DROP COLUMN attempt_failed;
