-- Console users, their sessions, API tokens, and the hash-chained audit log.
-- Times are Unix milliseconds, UTC. Flags are 0/1 integers (the same on both backends).
CREATE TABLE users (
    name             TEXT PRIMARY KEY,
    role             TEXT NOT NULL,
    password_hash    TEXT NOT NULL,
    failed_count     BIGINT NOT NULL DEFAULT 0,
    locked_until_ms  BIGINT,
    disabled         BIGINT NOT NULL DEFAULT 0,
    created_ms       BIGINT NOT NULL,
    password_set_ms  BIGINT NOT NULL
);
-- The session id is never stored, only its SHA-256.
CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_name);
CREATE TABLE api_tokens (
    token_hash  TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT,
    revoked     BIGINT NOT NULL DEFAULT 0
);
-- Append-only; each row's hash is SHA-256(prev_hash || canonical content). Never pruned.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    ts_ms     BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    result    TEXT NOT NULL,
    source    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_log_ts ON audit_log (ts_ms);
-- The newest audit row's sequence number and hash, updated in the same transaction as each
-- append, so deleting rows from the end of the chain is detected too.
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY,
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
