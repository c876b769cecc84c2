-- Kept in step with PostgreSQL's 0021 (acknowledgements received by a follower replica, issue
-- 19). SQLite is one node with no followers, so the table stays empty there.
CREATE TABLE ack_requests (
    id            INTEGER PRIMARY KEY,
    group_id      TEXT NOT NULL,
    action        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    via           TEXT NOT NULL,
    episode_ms    BIGINT,
    audit_ts_ms   BIGINT,
    audit_entry   TEXT,
    requested_by  TEXT NOT NULL,
    requested_ms  BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    claimed_epoch BIGINT,
    outcome       TEXT,
    done_ms       BIGINT
);
