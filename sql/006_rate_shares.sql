-- A client's request rate is shared by every process working it, on any
-- machine: each live process is a member (its lease renewed twice a
-- second) and takes its part of the client's rate_limit_per_sec; a member
-- whose lease ran out (its process died) gives its part back. What a
-- member's pacing learnt from 429s is kept with it, for processes that join.
CREATE TABLE atlas.rate_members (
    client         TEXT NOT NULL,
    worker         TEXT NOT NULL,
    lease_until    TIMESTAMPTZ NOT NULL,
    learnt_per_sec DOUBLE PRECISION,
    PRIMARY KEY (client, worker)
);

-- A pause a server asked of a client (a 429, a Retry-After, rate-limit
-- headers at 0), obeyed by every process until it is over.
CREATE TABLE atlas.client_pauses (
    client       TEXT PRIMARY KEY,
    paused_until TIMESTAMPTZ NOT NULL
);
