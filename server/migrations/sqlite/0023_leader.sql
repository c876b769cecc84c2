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

-- Who leased a queued notification to send it: the term's epoch on replicas, the process's
-- incarnation on a single node; cleared when an attempt is recorded. A row leased by another
-- term or process, with no attempt recorded, was in flight when that one stopped: sending it
-- again may repeat that send, and the dispatcher logs it as such.
ALTER TABLE notify_queue ADD COLUMN leased_by BIGINT;
