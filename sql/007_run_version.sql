-- The atlas build that ran (`0.1.0+<commit>`, as `--json` `version` gives
-- it), so a night's runs say which release made them. NULL for runs
-- recorded before this migration.
ALTER TABLE atlas.runs ADD COLUMN version TEXT;
