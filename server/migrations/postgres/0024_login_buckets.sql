-- The per-source login limit's token buckets, kept in the store so that on several replicas
-- (issue 19) the limit holds for the whole cluster: each replica's own bucket
-- (`http.rate_limit`, in memory) answers a flood before the store, and the attempts it lets
-- through draw from this shared bucket as well. `source` is the client address (an IPv6
-- client's /64); `tokens` the bucket's content at `last_ms`; `taken` whether the last attempt
-- found a token. Rows of buckets that have filled up again are deleted now and then.
CREATE TABLE login_buckets (
    source  TEXT PRIMARY KEY,
    tokens  DOUBLE PRECISION NOT NULL,
    last_ms BIGINT NOT NULL,
    taken   BOOLEAN NOT NULL
);
CREATE INDEX login_buckets_last ON login_buckets (last_ms);
