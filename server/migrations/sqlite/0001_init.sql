-- yunwei schema v1 (SQLite). Times are Unix milliseconds, UTC.
CREATE TABLE agents (
    agent_id      TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    enrolled_ms   BIGINT NOT NULL,
    hostname      TEXT NOT NULL,
    os            TEXT NOT NULL,
    kernel        TEXT NOT NULL,
    arch          TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    labels        TEXT NOT NULL,
    first_seen_ms BIGINT,
    last_seen_ms  BIGINT,
    last_seq      BIGINT NOT NULL DEFAULT 0,
    interval_ms   BIGINT NOT NULL DEFAULT 15000,
    pruned_seq    BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE series (
    id         INTEGER PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    name       TEXT NOT NULL,
    labels     TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    UNIQUE (agent_id, name, labels)
);
CREATE INDEX series_name ON series (name);
CREATE TABLE batches (
    agent_id    TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    min_ts      BIGINT NOT NULL,
    max_ts      BIGINT NOT NULL,
    samples     BIGINT NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (agent_id, seq)
) WITHOUT ROWID;
CREATE INDEX batches_agent_ts ON batches (agent_id, min_ts);
CREATE INDEX batches_min_ts ON batches (min_ts);
CREATE TABLE rollups (
    series_id BIGINT NOT NULL,
    hour_ms   BIGINT NOT NULL,
    min       DOUBLE PRECISION NOT NULL,
    max       DOUBLE PRECISION NOT NULL,
    sum       DOUBLE PRECISION NOT NULL,
    count     BIGINT NOT NULL,
    last      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series_id, hour_ms)
) WITHOUT ROWID;
CREATE INDEX rollups_hour ON rollups (hour_ms);
CREATE TABLE rollup_dirty (
    hour_ms BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);
CREATE TABLE status_intervals (
    id       INTEGER PRIMARY KEY,
    kind     TEXT NOT NULL,
    subject  TEXT NOT NULL,
    state    TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms   BIGINT NOT NULL
);
CREATE INDEX status_intervals_subject ON status_intervals (kind, subject, start_ms);
CREATE INDEX status_intervals_end ON status_intervals (end_ms);
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    ts_ms       BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX events_ts ON events (ts_ms);
