-- The office owns membership: which hosts (agent ids) and probes (`<agent id>/<probe name>`)
-- count for which system of a contract, and since when. Agents' labels only propose it.
--
-- One row per assignment, `[from_ms, to_ms)`; `to_ms` NULL while it lasts. Rows are never
-- deleted; an unassignment sets `to_ms` and who ended it.
CREATE TABLE memberships (
    id          INTEGER PRIMARY KEY,
    contract_id TEXT NOT NULL,
    system_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    from_ms     BIGINT NOT NULL,
    to_ms       BIGINT,
    assigned_by TEXT NOT NULL,
    assigned_ms BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    ended_by    TEXT,
    ended_ms    BIGINT,
    end_reason  TEXT
);
CREATE INDEX memberships_contract ON memberships (contract_id, kind, subject);
-- Every subject the membership pass has looked at, per contract: a subject is proposed from its
-- labels (and, with `contracts.auto_assign_from_labels`, assigned) only the first time it is
-- seen, so later label changes never move it.
CREATE TABLE membership_seen (
    contract_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    seen_ms     BIGINT NOT NULL,
    PRIMARY KEY (contract_id, kind, subject)
);
