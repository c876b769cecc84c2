-- The assessment's lifecycle (contracts with a `lifecycle:` block): appeals (申诉) by the
-- vendor against a deduction of a period's draft report, their review (复核), the parties'
-- sign-off (签认). Appeals and their decisions are evidence: the assessment applies a decision
-- from decided_ms on. Rows are inserted, a pending appeal is decided once, never deleted.
CREATE TABLE appeals (
    id               TEXT PRIMARY KEY,
    report_id        BIGINT NOT NULL REFERENCES reports (id),
    contract_id      TEXT NOT NULL,
    period           TEXT NOT NULL,
    start_ms         BIGINT NOT NULL,
    end_ms           BIGINT NOT NULL,
    -- JSON of the target (yunwei_sla::assess::AppealTarget).
    target           TEXT NOT NULL,
    reason           TEXT NOT NULL,
    filed_by         TEXT NOT NULL,
    filed_ms         BIGINT NOT NULL,
    -- pending | upheld | overturned | adjusted
    status           TEXT NOT NULL,
    -- Thousandths: the points an adjusted line counts, the minutes an adjusted outage counts.
    approved_points_milli  BIGINT,
    approved_minutes_milli BIGINT,
    decided_by       TEXT,
    decided_ms       BIGINT,
    decision_reason  TEXT
);
CREATE INDEX appeals_period ON appeals (contract_id, period);
-- Files the appellant attached, byte for byte, with their SHA-256.
CREATE TABLE appeal_attachments (
    appeal_id    TEXT NOT NULL REFERENCES appeals (id),
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    bytes        BLOB NOT NULL,
    PRIMARY KEY (appeal_id, name)
);
-- Who signed a period's assessment off (签认) for which party, when, and which version they
-- saw. One row per party and period.
CREATE TABLE report_signoffs (
    contract_id TEXT NOT NULL,
    period      TEXT NOT NULL,
    role        TEXT NOT NULL,
    signed_by   TEXT NOT NULL,
    signed_ms   BIGINT NOT NULL,
    report_id   BIGINT NOT NULL REFERENCES reports (id),
    PRIMARY KEY (contract_id, period, role)
);
-- Mail to the party that must act next (the draft issued, an appeal to review, a decision, a
-- signature due), zh-CN and English, with a link to the console; delivered by the server's
-- report loop through notify.smtp, retried like report mail, kept as evidence of who was told.
CREATE TABLE lifecycle_mail (
    id          INTEGER PRIMARY KEY,
    contract_id TEXT NOT NULL,
    period      TEXT NOT NULL,
    step        TEXT NOT NULL,
    -- JSON list of addresses.
    to_addrs    TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    -- pending | sent | failed
    status      TEXT NOT NULL,
    due_ms      BIGINT NOT NULL,
    attempts    BIGINT NOT NULL,
    sent_ms     BIGINT,
    last_error  TEXT
);
CREATE INDEX lifecycle_mail_due ON lifecycle_mail (status, due_ms);
