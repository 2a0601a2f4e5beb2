-- A span of days every one of which a done slice of the pair has loaded,
-- as its last sync found it. Done slices stay done and scraps are never
-- deleted, so the span stays true: a sync reads the slices of the pair's
-- scraps reaching before or past it only, and deciding a pair no longer
-- grows with its nights of history. NULL until a sync records one.
ALTER TABLE atlas.sync_pairs
    ADD COLUMN loaded_from DATE,
    ADD COLUMN loaded_to DATE,
    ADD CONSTRAINT sync_pairs_loaded CHECK (
        (loaded_from IS NULL) = (loaded_to IS NULL) AND loaded_from <= loaded_to);
-- The pair's scraps past the span, and before it.
CREATE INDEX scraps_pair_to ON atlas.scraps (client, route, period_to);
CREATE INDEX scraps_pair_from ON atlas.scraps (client, route, period_from);
