-- Contract evidence the server keeps itself: scheduled inspections (巡检) it ran, one row per
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
-- Events a person records against a contract (通报 by an authority, a late report, help outside
-- the contract, a vendor-caused security incident): the evidence of manual deductions, bonuses
-- and veto items. Appended only.
CREATE TABLE contract_events (
    id           INTEGER PRIMARY KEY,
    contract_id  TEXT NOT NULL,
    category     TEXT NOT NULL,
    at_ms        BIGINT NOT NULL,
    evidence     TEXT NOT NULL,
    recorded_by  TEXT NOT NULL,
    recorded_ms  BIGINT NOT NULL
);
CREATE INDEX contract_events_time ON contract_events (contract_id, at_ms);
