-- Whether the fiscal provider itself reported the receipt's current attempt
-- failed (a `fail` report, or the document refused at registration) (issue 16,
-- resending a receipt): only then may an operator's resend send a new document
-- `<id>-<attempt + 1>`. A receipt that failed because its job gave up (attempt
-- still processing, an answer lost, "already exists" without a uuid) keeps it
-- false: its attempt may be alive at the provider, so a resend resumes it.
ALTER TABLE receipts ADD COLUMN attempt_failed boolean NOT NULL DEFAULT false;
