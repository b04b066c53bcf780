-- Two of a renewal's updates without new index entries (issue 15, part 4;
-- bench/README "A renewal's attempt and receipt updated in place"). An update that
-- changes no indexed column, and finds room on the row's page, is a heap-only
-- tuple (HOT): no index gets an entry for it. A renewal updates its attempt twice
-- (claimed: `sent`; settled) and its receipt twice (the provider's document id
-- recorded; registered).
--
-- * `payment_attempts_open` (payment_id, for statuses without an outcome) made every
--   status change an index change. Every lookup of a payment's attempts is served
--   by the unique (payment_id, attempt_no) index (a payment has a handful); the
--   one query that asked for open attempts of every payment is the test clock's
--   "is any work due" check, which now scans the table (the clock is for tests and
--   demos, never on in production).
-- * `receipts_provider_uuid` made the provider's document id an index change. It
--   served one lookup: ATOL's callback, which names the document by its uuid. The
--   callback also carries the `external_id` we sent (`<receipt id>-<attempt>`), so
--   the receipt is now found by its primary key and the uuid compared with the
--   stored one (services::receipts::hint).
-- * Room for the new versions: the pages of both tables are filled to 80 % by
--   inserts (new pages only; existing pages gain room as vacuum frees them).
SET LOCAL lock_timeout = '3s';
DROP INDEX payment_attempts_open;
DROP INDEX receipts_provider_uuid;
ALTER TABLE payment_attempts SET (fillfactor = 80);
ALTER TABLE receipts SET (fillfactor = 80);
