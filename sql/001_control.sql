-- Control schema: scraps (one client/route/period job), their runs, and the
-- slices a period is cut into. Slices are the unit of work, claim and resume.
CREATE TABLE atlas.scraps (
    id          BIGSERIAL PRIMARY KEY,
    client      TEXT NOT NULL,
    route       TEXT NOT NULL,
    raw_table   TEXT NOT NULL,
    period_from DATE NOT NULL,
    period_to   DATE NOT NULL,
    slice_days  INTEGER NOT NULL CHECK (slice_days > 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (period_from <= period_to)
);
CREATE INDEX scraps_client_route ON atlas.scraps (client, route);

CREATE TABLE atlas.runs (
    id             BIGSERIAL PRIMARY KEY,
    scrap_id       BIGINT NOT NULL REFERENCES atlas.scraps (id) ON DELETE CASCADE,
    worker         TEXT NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at    TIMESTAMPTZ,
    -- running | done | failed | interrupted | aborted
    status         TEXT NOT NULL DEFAULT 'running',
    pages          BIGINT NOT NULL DEFAULT 0,
    records        BIGINT NOT NULL DEFAULT 0,
    inserted       BIGINT NOT NULL DEFAULT 0,
    duplicates     BIGINT NOT NULL DEFAULT 0,
    out_of_period  BIGINT NOT NULL DEFAULT 0,
    undated        BIGINT NOT NULL DEFAULT 0,
    retries        BIGINT NOT NULL DEFAULT 0,
    slices_done    INTEGER NOT NULL DEFAULT 0,
    slices_failed  INTEGER NOT NULL DEFAULT 0,
    settings       JSONB NOT NULL DEFAULT '{}',
    error          TEXT
);
CREATE INDEX runs_scrap ON atlas.runs (scrap_id);

CREATE TABLE atlas.slices (
    id             BIGSERIAL PRIMARY KEY,
    scrap_id       BIGINT NOT NULL REFERENCES atlas.scraps (id) ON DELETE CASCADE,
    slice_from     DATE NOT NULL,
    slice_to       DATE NOT NULL,
    -- pending | running | done | failed
    status         TEXT NOT NULL DEFAULT 'pending',
    pages          BIGINT NOT NULL DEFAULT 0,
    records        BIGINT NOT NULL DEFAULT 0,
    inserted       BIGINT NOT NULL DEFAULT 0,
    duplicates     BIGINT NOT NULL DEFAULT 0,
    out_of_period  BIGINT NOT NULL DEFAULT 0,
    undated        BIGINT NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    last_run_id    BIGINT REFERENCES atlas.runs (id) ON DELETE SET NULL,
    worker         TEXT,
    lease_until    TIMESTAMPTZ,
    done_at        TIMESTAMPTZ,
    UNIQUE (scrap_id, slice_from),
    CHECK (slice_from <= slice_to)
);
CREATE INDEX slices_claim ON atlas.slices (scrap_id, status);
