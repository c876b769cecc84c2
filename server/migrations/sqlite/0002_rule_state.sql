-- Alert-rule state per group, so a restart neither forgets pending `for` timers nor re-fires.
CREATE TABLE rule_state (
    group_key  TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
