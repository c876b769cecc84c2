-- Late data merges into an hour's rollups, never replaces them (`store/rollup.rs`).
--
-- `rollups.last_ms` is the time of the sample `last` holds, so a merged late sample replaces
-- `last` only when it is later (NULL in rows written before this migration: kept as it is).
ALTER TABLE rollups ADD COLUMN last_ms BIGINT;
-- Whether a dirty hour is rebuilt from the raw window (1: every batch of the hour is still
-- there) or only has its KPIs derived again from its stored, merged rollups (0).
ALTER TABLE rollup_dirty ADD COLUMN rebuild BIGINT NOT NULL DEFAULT 1;
-- Hours before `sealed_before_ms` may have lost raw batches to retention: their late samples
-- are merged into the stored rollups at ingest. It only moves forward. A store that has pruned
-- raw batches before this migration starts sealed up to its newest rolled-up hour (merging is
-- exact where a rebuild would be too; rebuilding where raw data is missing is not).
CREATE TABLE rollup_horizon (
    id               BIGINT PRIMARY KEY CHECK (id = 1),
    sealed_before_ms BIGINT NOT NULL
);
INSERT INTO rollup_horizon (id, sealed_before_ms)
SELECT 1, CASE
    WHEN EXISTS (SELECT 1 FROM agents WHERE pruned_seq > 0)
        THEN COALESCE((SELECT MAX(hour_ms) FROM rollups) + 3600000, 0)
    ELSE 0
END;
