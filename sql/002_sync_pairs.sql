-- Registry of (client, route) pairs that `atlas sync` has run for. A pair's
-- id is the second key of the sync's advisory lock
-- (pg_try_advisory_lock(<atlas sync class>, id)): ids are unique, so two
-- pairs never share a lock, unlike a 32-bit hash of their names.
CREATE TABLE atlas.sync_pairs (
    id         SERIAL PRIMARY KEY,
    client     TEXT NOT NULL,
    route      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (client, route)
);
