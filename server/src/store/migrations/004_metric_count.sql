-- How many gauges and counters are stored, kept exact by triggers (docs/postgresql.md, "Size
-- limit"), so that MAX_METRICS is checked without counting the tables. One row: every
-- statement that inserts new names adds them to it and holds its row lock until commit, so
-- concurrent writers of new names, on any server, take turns and each sees the others'
-- committed count. Writes that only update stored names leave the row alone.
--
-- After the inserts of a statement the trigger adds them up and, when the session sets
-- golectra.max_metrics (every golectra-server does, from MAX_METRICS) and the total passes it,
-- raises SQLSTATE GL001: the whole statement, its idempotency key and write token included, is
-- undone. DETAIL carries "limit stored adding" for the server's message. Deletes and TRUNCATE
-- (an operator pruning metrics by hand) are counted too.
LOCK TABLE golectra_gauges, golectra_counters IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE golectra_metric_count (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    gauges   bigint NOT NULL,
    counters bigint NOT NULL
);
INSERT INTO golectra_metric_count (gauges, counters)
VALUES ((SELECT count(*) FROM golectra_gauges), (SELECT count(*) FROM golectra_counters));

CREATE FUNCTION golectra_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    added bigint;
    held  bigint;
    cap   bigint;
BEGIN
    SELECT count(*) INTO added FROM inserted;
    IF added = 0 THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'golectra_gauges' THEN
        UPDATE golectra_metric_count SET gauges = gauges + added RETURNING gauges INTO held;
    ELSE
        UPDATE golectra_metric_count SET counters = counters + added RETURNING counters INTO held;
    END IF;
    cap := nullif(current_setting('golectra.max_metrics', true), '')::bigint;
    IF cap IS NOT NULL AND held > cap THEN
        RAISE EXCEPTION 'MAX_METRICS is % for %: % stored, % new', cap, TG_TABLE_NAME, held - added, added
            USING ERRCODE = 'GL001', TABLE = TG_TABLE_NAME,
                  DETAIL = format('%s %s %s', cap, held - added, added);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION golectra_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    removed bigint;
BEGIN
    SELECT count(*) INTO removed FROM deleted;
    IF removed = 0 THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'golectra_gauges' THEN
        UPDATE golectra_metric_count SET gauges = gauges - removed;
    ELSE
        UPDATE golectra_metric_count SET counters = counters - removed;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION golectra_count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'golectra_gauges' THEN
        UPDATE golectra_metric_count SET gauges = 0;
    ELSE
        UPDATE golectra_metric_count SET counters = 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER golectra_gauges_inserted AFTER INSERT ON golectra_gauges
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION golectra_count_inserted();
CREATE TRIGGER golectra_counters_inserted AFTER INSERT ON golectra_counters
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION golectra_count_inserted();
CREATE TRIGGER golectra_gauges_deleted AFTER DELETE ON golectra_gauges
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION golectra_count_deleted();
CREATE TRIGGER golectra_counters_deleted AFTER DELETE ON golectra_counters
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION golectra_count_deleted();
CREATE TRIGGER golectra_gauges_truncated AFTER TRUNCATE ON golectra_gauges
    FOR EACH STATEMENT EXECUTE FUNCTION golectra_count_truncated();
CREATE TRIGGER golectra_counters_truncated AFTER TRUNCATE ON golectra_counters
    FOR EACH STATEMENT EXECUTE FUNCTION golectra_count_truncated();
