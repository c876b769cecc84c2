-- Incidents (一级–四级 = level 1–4): opened by alert groups whose labels map to a level, or by
-- hand for faults reported by phone. Their timestamps are the SLA engine's incident clocks.
CREATE TABLE incidents (
    id              TEXT PRIMARY KEY,
    group_id        TEXT,
    title           TEXT NOT NULL,
    level           BIGINT NOT NULL,
    source          TEXT NOT NULL,
    labels          TEXT NOT NULL,
    detected_ms     BIGINT NOT NULL,
    notified_ms     BIGINT,
    acknowledged_ms BIGINT,
    acknowledged_by TEXT,
    onsite_ms       BIGINT,
    restored_ms     BIGINT,
    rca             TEXT,
    created_by      TEXT NOT NULL,
    updated_ms      BIGINT NOT NULL
);
CREATE INDEX incidents_group ON incidents (group_id);
CREATE INDEX incidents_detected ON incidents (detected_ms);

-- Everything that happened to an incident: level changes, notes, acknowledgements, ...
CREATE TABLE incident_events (
    id          INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, at_ms);
