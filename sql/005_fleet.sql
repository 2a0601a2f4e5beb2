-- The scrap a pair's sync is loading: `atlas sync --all` processes that
-- find the pair's lock taken, or a scrap of it still in progress, join that
-- scrap (its slices are shared through their leases) instead of deciding
-- another period for the pair.
ALTER TABLE atlas.sync_pairs
    ADD COLUMN scrap_id BIGINT REFERENCES atlas.scraps (id) ON DELETE SET NULL;
