#!/usr/bin/env bash
# Runs atlas' test suite against a real PostgreSQL: finds or starts one with
# scripts/pg.sh (DATABASE_URL, else 127.0.0.1:5432, else a private cluster
# under target/pg, stopped again at exit), exports DATABASE_URL (each test
# makes and drops its own throwaway database on that server), then runs
# `cargo test --all-targets` with any extra arguments passed through, then
# scripts/check-structure.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/pg.sh
. "$ROOT/scripts/pg.sh"

trap 'stop_postgres_if_started || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_postgres
export DATABASE_URL

# The manager's tests drive the real binary in tmux (they fail, naming
# tmux, when it is missing): install it when it is not there.
if ! command -v tmux >/dev/null 2>&1; then
    _pg_apt_install tmux || printf 'test.sh: tmux is missing and could not be installed: the manager tests will fail\n' >&2
fi
printf 'test.sh: DATABASE_URL=%s\n' "$DATABASE_URL" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#g'

rc=0
cargo test --all-targets "$@" || rc=$?
# The repository's shape: file sizes, import cycles, README length, SPEC
# references, links and the module map (scripts/check-structure.sh).
bash "$ROOT/scripts/check-structure.sh" || rc=1
exit "$rc"
