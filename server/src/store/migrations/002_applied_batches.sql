-- Tokens of recently applied counter writes. A write whose connection broke while it was
-- committing is retried with the same token; finding the token means the first attempt did
-- commit, so the retry applies nothing and counters are never incremented twice. Rows older
-- than a few minutes are deleted by the servers (BRIN keeps that delete cheap).
CREATE TABLE golectra_applied_batches (
    token      bigint PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX golectra_applied_batches_applied_at ON golectra_applied_batches USING brin (applied_at);
