-- Archived performance-assessment reports. Immutable: regenerating a contract's period adds
-- version N+1 and keeps the earlier ones. `envelope` is the signed canonical JSON (report +
-- integrity block); each rendered file is kept byte for byte in report_files (the PDF depends
-- on the font file, so re-rendering later could differ).
CREATE TABLE reports (
    id           INTEGER PRIMARY KEY,
    contract_id  TEXT NOT NULL,
    period       TEXT NOT NULL,
    start_ms     BIGINT NOT NULL,
    end_ms       BIGINT NOT NULL,
    version      BIGINT NOT NULL,
    lang         TEXT NOT NULL,
    generated_ms BIGINT NOT NULL,
    score_milli  BIGINT NOT NULL,
    grade        TEXT NOT NULL,
    provisional  BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    origin       TEXT NOT NULL,
    envelope     BLOB NOT NULL,
    UNIQUE (contract_id, period, version)
);
CREATE INDEX reports_contract ON reports (contract_id, end_ms);
CREATE TABLE report_files (
    report_id BIGINT NOT NULL REFERENCES reports (id),
    format    TEXT NOT NULL,
    bytes     BLOB NOT NULL,
    PRIMARY KEY (report_id, format)
);
