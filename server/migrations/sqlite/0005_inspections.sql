-- Scheduled inspections (巡检) the server ran for a contract: one row per obligation
-- (contract, kind, scheduled time), with the checklist result as JSON. Evidence for the SLA
-- engine's inspection deductions.
CREATE TABLE inspections (
    id           INTEGER PRIMARY KEY,
    contract_id  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    scheduled_ms BIGINT NOT NULL,
    done_ms      BIGINT NOT NULL,
    ok           BIGINT NOT NULL,
    result       TEXT NOT NULL,
    UNIQUE (contract_id, kind, scheduled_ms)
);
CREATE INDEX inspections_time ON inspections (contract_id, scheduled_ms);
