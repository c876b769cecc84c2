-- Notifications: alert groups with their timers, the delivery queue, the log of every delivery
-- attempt (evidence of who was told when), acknowledgements, silences, and a server secret.
CREATE TABLE notify_groups (
    group_key  TEXT PRIMARY KEY,
    group_id   TEXT NOT NULL,
    state      TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX notify_groups_id ON notify_groups (group_id);

CREATE TABLE notify_queue (
    id            INTEGER PRIMARY KEY,
    group_id      TEXT NOT NULL,
    receiver      TEXT NOT NULL,
    channel       TEXT NOT NULL,
    target_index  BIGINT NOT NULL,
    payload       TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    due_ms        BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    fallback_done BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX notify_queue_due ON notify_queue (due_ms);

CREATE TABLE notify_log (
    id           INTEGER PRIMARY KEY,
    queue_id     BIGINT NOT NULL,
    group_id     TEXT NOT NULL,
    receiver     TEXT NOT NULL,
    channel      TEXT NOT NULL,
    target       TEXT NOT NULL,
    tier         BIGINT NOT NULL,
    status       TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    attempted_ms BIGINT NOT NULL,
    ok           BIGINT NOT NULL,
    code         BIGINT,
    error        TEXT
);
CREATE INDEX notify_log_group ON notify_log (group_id, attempted_ms);
CREATE INDEX notify_log_time ON notify_log (attempted_ms);

CREATE TABLE notify_acks (
    id       INTEGER PRIMARY KEY,
    group_id TEXT NOT NULL,
    action   TEXT NOT NULL,
    actor    TEXT NOT NULL,
    via      TEXT NOT NULL,
    at_ms    BIGINT NOT NULL
);
CREATE INDEX notify_acks_group ON notify_acks (group_id, at_ms);

CREATE TABLE silences (
    id         TEXT PRIMARY KEY,
    matchers   TEXT NOT NULL,
    starts_ms  BIGINT NOT NULL,
    ends_ms    BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    comment    TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE notify_secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Maintenance windows and other exclusions, requested by the operator and approved or rejected
-- by the office's reviewer. Approved rows mute notifications while active and are the SLA
-- engine's exclusion evidence. `recurrence` is an optional time interval (JSON) within from..to.
CREATE TABLE exclusions (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    matchers       TEXT NOT NULL,
    from_ms        BIGINT NOT NULL,
    to_ms          BIGINT NOT NULL,
    recurrence     TEXT,
    reason         TEXT NOT NULL,
    requested_by   TEXT NOT NULL,
    requested_ms   BIGINT NOT NULL,
    status         TEXT NOT NULL,
    reviewed_by    TEXT,
    reviewed_ms    BIGINT,
    review_comment TEXT
);
CREATE INDEX exclusions_time ON exclusions (status, from_ms, to_ms);
