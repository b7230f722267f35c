-- Gauges and counters live in separate tables, each keyed by name alone: a metric is
-- identified by (type, name), and the table is the type. A gauge and a counter may therefore
-- share a name without colliding.
CREATE TABLE golectra_gauges (
    name       text PRIMARY KEY CHECK (octet_length(name) BETWEEN 1 AND 255),
    value      double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE golectra_counters (
    name       text PRIMARY KEY CHECK (octet_length(name) BETWEEN 1 AND 255),
    delta      bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
