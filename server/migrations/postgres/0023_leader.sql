-- Several replicas on one PostgreSQL (issue 19): the leader lease, and the commit order of
-- raw batches the leader tails into its live window.
--
-- One row per lease. `epoch` is the fencing token: it grows by one each time another holder
-- takes the lease, and every singleton write checks it in its own transaction. `expires_ms`
-- is on the database's clock, so replicas' clocks need not agree.
CREATE TABLE leader_lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    epoch      BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    acquired_ms BIGINT NOT NULL
);
INSERT INTO leader_lease (name, holder, epoch, expires_ms, acquired_ms) VALUES ('leader', '', 0, 0, 0);

-- A monotonic id given to each raw batch as its transaction commits: a deferred constraint
-- trigger runs at commit time, serialises on a transaction-scoped advisory lock (held until
-- the commit is visible) and numbers the row, so ids become visible in increasing order and
-- a reader that has seen id N has seen every id below it. NOTIFY (delivered on commit) wakes
-- the leader; it polls as well, so a lost notification only delays.
CREATE SEQUENCE batch_commit_seq;
ALTER TABLE batches ADD COLUMN commit_id BIGINT;
CREATE INDEX batches_commit_id ON batches (commit_id) WHERE commit_id IS NOT NULL;
CREATE FUNCTION yunwei_number_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(947023);
    UPDATE batches SET commit_id = nextval('batch_commit_seq')
        WHERE agent_id = NEW.agent_id AND seq = NEW.seq AND commit_id IS NULL;
    PERFORM pg_notify('yunwei_batches', '');
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER batches_commit_order AFTER INSERT ON batches
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION yunwei_number_batch();

-- Who leased a queued notification to send it: the term's epoch on replicas, the process's
-- incarnation on a single node; cleared when an attempt is recorded. A row leased by another
-- term or process, with no attempt recorded, was in flight when that one stopped: sending it
-- again may repeat that send, and the dispatcher logs it as such.
ALTER TABLE notify_queue ADD COLUMN leased_by BIGINT;
