-- Kept in step with PostgreSQL's 0023 (several replicas, issue 19). SQLite is single-node:
-- a second server on the same data directory is refused by a lock file, so no lease is ever
-- contended and batches are numbered by their rowid order, which is commit order here.
CREATE TABLE leader_lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    epoch      BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    acquired_ms BIGINT NOT NULL
);
INSERT INTO leader_lease (name, holder, epoch, expires_ms, acquired_ms) VALUES ('leader', '', 0, 0, 0);
ALTER TABLE batches ADD COLUMN commit_id BIGINT;
