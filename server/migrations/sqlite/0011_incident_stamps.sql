-- Incident clocks with a recording time. Each stamp keeps when it was recorded and by whom
-- next to the time that counts; a stamp earlier than its recording (beyond a small tolerance)
-- or a level downgrade is a request that a reviewer other than the requester approves. Until
-- then the recorded time (or the old level) counts.
ALTER TABLE incident_events ADD COLUMN recorded_ms BIGINT NOT NULL DEFAULT 0;
UPDATE incident_events SET recorded_ms = at_ms;

-- One row per stamped clock (`notified`, `ack`, `onsite`, `restored`): `at_ms` is the time
-- that counts (also in the incidents row), `recorded_ms` / `recorded_by` when and by whom it
-- was recorded, `approved_by` / `approved_ms` the reviewer of an approved earlier time.
CREATE TABLE incident_stamps (
    incident_id TEXT NOT NULL,
    clock       TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    recorded_ms BIGINT NOT NULL,
    recorded_by TEXT NOT NULL,
    approved_by TEXT,
    approved_ms BIGINT,
    PRIMARY KEY (incident_id, clock)
);
-- Stamps made before this migration: recorded when they say, by the actor of their event.
INSERT INTO incident_stamps (incident_id, clock, at_ms, recorded_ms, recorded_by)
    SELECT i.id, 'notified', i.notified_ms, i.notified_ms,
           COALESCE((SELECT MIN(e.actor) FROM incident_events e
                     WHERE e.incident_id = i.id AND e.kind = 'notified'), 'unknown')
    FROM incidents i WHERE i.notified_ms IS NOT NULL;
INSERT INTO incident_stamps (incident_id, clock, at_ms, recorded_ms, recorded_by)
    SELECT i.id, 'ack', i.acknowledged_ms, i.acknowledged_ms,
           COALESCE(i.acknowledged_by, 'unknown')
    FROM incidents i WHERE i.acknowledged_ms IS NOT NULL;
INSERT INTO incident_stamps (incident_id, clock, at_ms, recorded_ms, recorded_by)
    SELECT i.id, 'onsite', i.onsite_ms, i.onsite_ms,
           COALESCE((SELECT MIN(e.actor) FROM incident_events e
                     WHERE e.incident_id = i.id AND e.kind = 'onsite'), 'unknown')
    FROM incidents i WHERE i.onsite_ms IS NOT NULL;
INSERT INTO incident_stamps (incident_id, clock, at_ms, recorded_ms, recorded_by)
    SELECT i.id, 'restored', i.restored_ms, i.restored_ms,
           COALESCE((SELECT MIN(e.actor) FROM incident_events e
                     WHERE e.incident_id = i.id AND e.kind = 'restored'), 'unknown')
    FROM incidents i WHERE i.restored_ms IS NOT NULL;

-- Requests to change what counts: `backdate` (a clock to an earlier `value`, ms) or `downgrade`
-- (the level to a less severe `value`). `previous` is what counts until approved.
CREATE TABLE incident_requests (
    id             TEXT PRIMARY KEY,
    incident_id    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    clock          TEXT,
    value          BIGINT NOT NULL,
    previous       BIGINT NOT NULL,
    reason         TEXT NOT NULL,
    requested_by   TEXT NOT NULL,
    requested_ms   BIGINT NOT NULL,
    status         TEXT NOT NULL,
    reviewed_by    TEXT,
    reviewed_ms    BIGINT,
    review_comment TEXT
);
CREATE INDEX incident_requests_incident ON incident_requests (incident_id);
CREATE INDEX incident_requests_status ON incident_requests (status);
