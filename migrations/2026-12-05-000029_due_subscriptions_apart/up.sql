-- A renewal's two updates of its subscription without new index entries (issue 15,
-- part 4; bench/README "The scheduler's list apart from the subscriptions").
--
-- The scheduler's claim (renewal payment linked, `due_at` cleared) and the period
-- move (`due_at` set to the next instant) both changed `due_at`, which the partial
-- index `subscriptions_due` indexed: neither could be a heap-only (HOT) update, so
-- each wrote an entry into every index of the table (five for the claim, six for the
-- period move), most of them on random leaf pages of uuid keys, each page's first
-- change after a checkpoint a full-page image in the WAL. 500 claimed rows wrote
-- 13 MB of WAL and took 36-45 ms; with no indexed column changed and room on the
-- page, 0.2 MB and 5 ms.
--
-- `due_at` stays the subscription's own column, the one truth every use case writes
-- (services::subscriptions::set_due_at). The scheduler's work list, ordered by due
-- instant, is now `due_subscriptions`: one row per subscription with a `due_at`,
-- kept equal to it by the triggers below in the writing transaction itself, like an
-- index (the audit's `due_subscriptions_follow` checks it). The claim reads it in
-- due order and locks the subscriptions it names (db::subscriptions::claim_due).
--
-- Room for the new versions: subscriptions' pages are filled to half by inserts
-- (new pages only; existing pages gain room as vacuum frees them). A renewal cohort
-- (subscriptions created the same day) sits on consecutive pages and is claimed
-- together: every row of a page gets a new version in one statement, which fits
-- only in half-full pages (at 80 % a page has room for a quarter of them).
--
-- Dropping the index first takes the subscriptions' ACCESS EXCLUSIVE lock before
-- anything else (no lock upgrade behind readers later): their reads and writes wait
-- until the migration commits, the list being filled from the table under it (a
-- second or two per million subscriptions). A pod of the previous release claims
-- through the dropped index's column with a scan of the table until it is replaced.
-- A list row already there (only a list that drifted, which the audit reports) is
-- kept rather than failing the subscription's write.
SET LOCAL lock_timeout = '3s';
DROP INDEX subscriptions_due;
CREATE TABLE due_subscriptions (
    due_at timestamptz NOT NULL,
    subscription_id uuid NOT NULL,
    PRIMARY KEY (due_at, subscription_id)
);
CREATE FUNCTION due_subscriptions_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.due_at IS NOT NULL THEN
        DELETE FROM due_subscriptions WHERE due_at = OLD.due_at AND subscription_id = OLD.id;
    END IF;
    IF NEW.due_at IS NOT NULL THEN
        INSERT INTO due_subscriptions (due_at, subscription_id) VALUES (NEW.due_at, NEW.id) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER subscriptions_due_inserted AFTER INSERT ON subscriptions
    FOR EACH ROW WHEN (NEW.due_at IS NOT NULL) EXECUTE FUNCTION due_subscriptions_follow();
CREATE TRIGGER subscriptions_due_moved AFTER UPDATE OF due_at ON subscriptions
    FOR EACH ROW WHEN (OLD.due_at IS DISTINCT FROM NEW.due_at) EXECUTE FUNCTION due_subscriptions_follow();
INSERT INTO due_subscriptions (due_at, subscription_id) SELECT due_at, id FROM subscriptions WHERE due_at IS NOT NULL;
ALTER TABLE subscriptions SET (fillfactor = 50);
