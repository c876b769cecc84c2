-- Signed checkpoints of the audit chain: at `seq` the chain's head was `hash`, attested at
-- `ts_ms` by the server's report-signing key (Ed25519 over
-- "yunwei-audit-checkpoint\n{seq}\n{hash}\n{ts_ms}", hex). `key_id` is the public key in hex.
-- The database holds no secret: rewriting audit_log breaks these signatures.
CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    hash      TEXT NOT NULL,
    ts_ms     BIGINT NOT NULL,
    key_id    TEXT NOT NULL,
    signature TEXT NOT NULL
);
