-- Idempotency keys of applied writes (docs/postgresql.md, "Idempotency keys"). A keyed write
-- records its key here in the same statement or transaction as the write itself; a later
-- write with the same key applies nothing (a repeat when its fingerprint matches, refused
-- otherwise). `gauge`/`counter` hold what a single-metric write stored, for its repeats'
-- replies (NULL for batches); `token` is the write token of the statement that recorded the
-- key, so that a retry of that very statement after a broken connection recognises its own
-- key. Rows older than the retention count as absent and are deleted by the servers now and
-- then (BRIN keeps that delete cheap).
CREATE TABLE golectra_idempotency_keys (
    key         text PRIMARY KEY CHECK (octet_length(key) BETWEEN 1 AND 255),
    fingerprint bytea NOT NULL,
    gauge       double precision,
    counter     bigint,
    token       bigint,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX golectra_idempotency_keys_applied_at ON golectra_idempotency_keys USING brin (applied_at);
