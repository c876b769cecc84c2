-- Acknowledge links are single use: the SHA-256 of each link used, with what it acknowledged
-- and for whom. A second use of the same link finds its row and acknowledges nothing.
CREATE TABLE ack_links_used (
    token_hash TEXT PRIMARY KEY,
    group_id   TEXT NOT NULL,
    actor      TEXT NOT NULL,
    used_ms    BIGINT NOT NULL
);
