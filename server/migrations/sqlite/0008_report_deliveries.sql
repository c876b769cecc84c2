-- Email delivery of scheduled reports: one row per archived report to mail (its recipients as
-- they were when it was queued), and one row per attempt (time, result), kept as evidence of
-- who was sent which report when. A row is created once per report (primary key), so a
-- delivered report is never mailed again after a restart.
CREATE TABLE report_deliveries (
    report_id   BIGINT PRIMARY KEY REFERENCES reports (id),
    contract_id TEXT NOT NULL,
    to_addrs    TEXT NOT NULL,
    cc_addrs    TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    due_ms      BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    status      TEXT NOT NULL,
    sent_ms     BIGINT,
    last_error  TEXT
);
CREATE INDEX report_deliveries_due ON report_deliveries (status, due_ms);
CREATE TABLE report_delivery_attempts (
    id           INTEGER PRIMARY KEY,
    report_id    BIGINT NOT NULL REFERENCES reports (id),
    attempt      BIGINT NOT NULL,
    attempted_ms BIGINT NOT NULL,
    ok           BIGINT NOT NULL,
    code         BIGINT,
    error        TEXT,
    target       TEXT NOT NULL
);
CREATE INDEX report_delivery_attempts_report ON report_delivery_attempts (report_id, attempted_ms);
