-- Prometheus remote write (`POST /api/v1/write`). A sender (a Prometheus, vmagent or Grafana
-- Agent) is a named identity with its own token, made by an admin; only the token's SHA-256 is
-- stored. revoked_ms NULL: the token works.
CREATE TABLE remote_write_senders (
    name       TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_ms BIGINT
);
-- Each (sender, instance label) is a host of the inventory: a row in `agents` with this
-- agent id (`r:<sender>:<16 hex digits of SHA-256(instance)>`) and no usable token. This table
-- records the provenance: which sender's feed made the host, and from which `instance`.
CREATE TABLE remote_write_hosts (
    agent_id   TEXT PRIMARY KEY,
    sender     TEXT NOT NULL,
    instance   TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    UNIQUE (sender, instance)
);
-- The newest stored point of each remote-written series, written in the transaction that
-- stores it: a later sample at or before it is never stored again (a retried request is a
-- duplicate; the same timestamp with another value is a conflict, refused and counted).
CREATE TABLE remote_write_marks (
    series_id BIGINT PRIMARY KEY,
    ts_ms     BIGINT NOT NULL,
    value     DOUBLE PRECISION NOT NULL
);
