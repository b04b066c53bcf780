-- Console sessions signed out before they expired (issue 16, the ops console):
-- a session cookie is stateless (issue time, a random id and an HMAC keyed by the
-- operator token), so signing out records its id here and every replica refuses
-- it until it would have expired anyway. Rows past `expires_at` are removed at
-- the next sign-out.
CREATE TABLE console_signed_out (
    session_id text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
