#!/usr/bin/env bash
# Benchmark of adaptive pacing (no rate configured): PAGES pages from the
# sample API limited to RATE requests in any rolling second (429 +
# Retry-After: 1 beyond), with THREADS fetchers. Prints the wall time
# against pages / RATE (the server's own limit), and the 429s among the
# requests the server saw. Targets: wall <= 1.3 x pages / RATE, 429s <= 10%.
#   scripts/bench-pacing.sh                 100 pages, 3/s, 8 fetchers
# Env: PAGES (even), RATE, THREADS, DATABASE_URL (else scripts/pg.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/pg.sh
. "$ROOT/scripts/pg.sh"

PAGES=${PAGES:-100}
RATE=${RATE:-3}
THREADS=${THREADS:-8}
WORK=$ROOT/target/bench-pacing
DB=atlas_bench_pacing
API_PID=""

cleanup() {
    local rc=$?
    trap - EXIT
    set +e # a killed API's status must not end the cleanup early
    [[ -n $API_PID ]] && kill "$API_PID" 2>/dev/null && wait "$API_PID" 2>/dev/null
    stop_postgres_if_started || true
    exit "$rc"
}
trap cleanup EXIT

ensure_postgres
ensure_psql
cargo build --release --bins -q
rm -rf "$WORK" && mkdir -p "$WORK"
ATLAS=$ROOT/target/release/atlas

psql -X -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" 2>/dev/null
URL=$(pg_db_url "$DB")

# Two pages of 5 records a day.
"$ROOT/target/release/atlas-sample-api" --port 0 --per-day 10 --page-size 5 --rate-limit "$RATE" \
    --retry-after 1 --request-log "$WORK/requests.log" >"$WORK/api.out" 2>&1 &
API_PID=$!
for _ in $(seq 100); do grep -q '^listening on' "$WORK/api.out" && break; sleep 0.1; done
API=$(sed -n 's/^listening on //p' "$WORK/api.out")
cat >"$WORK/atlas.json" <<JSON
{ "clients": { "2151": { "name": "Bench", "base_url": "$API/page" } },
  "routes": { "pedidos": { "path": "/pedidos", "records": "/data",
    "date_params": { "start": "data_inicial", "end": "data_final", "format": "%Y-%m-%d" },
    "slice_days": 1, "date_field": "/data_pedido",
    "pagination": { "type": "page", "param": "page", "start": 1, "size_param": "por_pagina", "size": 5, "total_pages": "/total_paginas" } } } }
JSON
A() { "$ATLAS" --plain --config "$WORK/atlas.json" --database-url "$URL" "$@"; }
A init >/dev/null
TO=$(date -d "2025-01-01 + $((PAGES / 2 - 1)) days" +%F)
ID=$(A scrap create --client 2151 --route pedidos --from 2025-01-01 --to "$TO" 2>/dev/null)
t0=$(date +%s.%N)
A scrap run "$ID" --threads "$THREADS" --json >"$WORK/run.json" 2>"$WORK/run.err" || true
t1=$(date +%s.%N)
python3 - "$WORK/run.json" "$WORK/requests.log" "$t0" "$t1" "$PAGES" "$RATE" "$THREADS" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
lines = [l.split() for l in open(sys.argv[2]) if l.strip()]
t0, t1, pages, rate, threads = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
refused = sum(1 for l in lines if l[1] == "429")
first = min(int(l[0]) for l in lines)
burst = sum(1 for l in lines if l[1] == "429" and int(l[0]) < first + 1000)
ideal = pages / rate
print(f"{pages} pages, server {rate}/s, {threads} fetchers, no configured rate: exit {run['exit_code']}, pages {run['pages']}")
print(f"wall {t1 - t0:.1f} s = {(t1 - t0) / ideal:.2f} x pages/rate ({ideal:.1f} s; target <= 1.3)")
print(f"requests {len(lines)}, 429 {refused} = {100 * refused / len(lines):.1f}% (target <= 10%); {burst} in the first second")
PY
psql -X -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
