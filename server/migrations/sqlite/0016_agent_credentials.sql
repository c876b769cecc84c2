-- An agent's token can be revoked (`yunwei-server agent revoke ID`): from revoked_ms on, its
-- batches are refused (the writer checks this column in the transaction that would store
-- them, so a running server, and every replica sharing the database, refuses the next one).
-- NULL: the token works.
ALTER TABLE agents ADD COLUMN revoked_ms BIGINT;

-- The enrollment secret made by `yunwei-server enrollment rotate` (its SHA-256 only). While
-- this row exists it is the only secret enrollment accepts; the config file's
-- `enrollment_secret` is ignored. One row at most.
CREATE TABLE enrollment_secret (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    secret_hash TEXT NOT NULL,
    rotated_ms BIGINT NOT NULL
);
