-- A run's own lease: renewed by the run's heartbeat with its slices' leases.
-- A run still `running` whose lease has expired lost its process (killed,
-- crashed, its machine gone): any atlas process that looks closes it as
-- `aborted`. NULL for runs recorded before this migration.
ALTER TABLE atlas.runs ADD COLUMN lease_until TIMESTAMPTZ;
