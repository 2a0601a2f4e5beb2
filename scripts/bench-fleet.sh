#!/usr/bin/env bash
# Benchmark of the nightly fleet: PAIRS (client, route) pairs x DAYS days on
# the sample API at LATENCY_MS per request, one page per day: `atlas sync
# --all` against the same pairs run one `atlas sync` after another, each on
# a fresh database, with the ideal `requests x latency / threads` beside them.
#   scripts/bench-fleet.sh                  40 pairs x 2 days, 100 ms, 8 threads
# Env: PAIRS (even), DAYS, LATENCY_MS, THREADS, DATABASE_URL (else scripts/pg.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/pg.sh
. "$ROOT/scripts/pg.sh"

PAIRS=${PAIRS:-40}
DAYS=${DAYS:-2}
LATENCY_MS=${LATENCY_MS:-100}
THREADS=${THREADS:-8}
PER_DAY=50
WORK=$ROOT/target/bench-fleet
API_PID=""

cleanup() {
    local rc=$?
    trap - EXIT
    [[ -n $API_PID ]] && kill "$API_PID" 2>/dev/null && wait "$API_PID" 2>/dev/null
    stop_postgres_if_started || true
    exit "$rc"
}
trap cleanup EXIT

ensure_postgres
ensure_psql
cargo build --release --bins -q
mkdir -p "$WORK"
ATLAS=$ROOT/target/release/atlas

db_url() { # URL of database $1 on the same server
    python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$DATABASE_URL" "$1"
}
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }

"$ROOT/target/release/atlas-sample-api" --port 0 --per-day "$PER_DAY" --page-size "$PER_DAY" \
    --latency-ms "$LATENCY_MS" >"$WORK/api.out" 2>&1 &
API_PID=$!
for _ in $(seq 100); do grep -q '^listening on' "$WORK/api.out" && break; sleep 0.1; done
API=$(sed -n 's/^listening on //p' "$WORK/api.out")
[[ -n $API ]] || { echo "sample API did not start" >&2; exit 1; }

# PAIRS/2 clients x 2 routes.
python3 - "$WORK/atlas.json" "$API" "$PAIRS" "$PER_DAY" <<'PY'
import json, sys
out, api, pairs, per_day = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def route(name):
    return {"path": f"/{name}", "records": "/data",
            "date_params": {"start": "data_inicial", "end": "data_final", "format": "%Y-%m-%d"},
            "slice_days": 1,
            "pagination": {"type": "page", "param": "page", "start": 1, "size_param": "por_pagina",
                           "size": per_day, "total_pages": "/total_paginas"},
            "date_field": "/data_pedido"}
cfg = {"clients": {str(1000 + i): {"name": f"C{i}", "base_url": f"{api}/page"} for i in range(pairs // 2)},
       "routes": {"pedidos": route("pedidos"), "notas": route("notas")}}
json.dump(cfg, open(out, "w"), indent=1)
PY

FROM=2025-03-01
UNTIL=$(date -d "$FROM + $((DAYS - 1)) days" +%F)
fresh() { # a fresh database for one measurement; prints its URL
    psql_admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" 2>/dev/null
    local url; url=$(db_url "$1")
    "$ATLAS" --config "$WORK/atlas.json" --database-url "$url" init >/dev/null
    echo "$url"
}
export ATLAS_THREADS=$THREADS

URL=$(fresh atlas_bench_fleet_all)
t0=$(date +%s.%N)
"$ATLAS" --plain --config "$WORK/atlas.json" --database-url "$URL" sync --all \
    --from "$FROM" --until "$UNTIL" --json >"$WORK/all.json" 2>"$WORK/all.err" || true
t1=$(date +%s.%N)

URL2=$(fresh atlas_bench_fleet_one)
t2=$(date +%s.%N)
python3 - "$WORK/atlas.json" <<'PY' | while read -r c r; do
import json, sys
cfg = json.load(open(sys.argv[1]))
for c in sorted(cfg["clients"]):
    for r in sorted(cfg["routes"]):
        print(c, r)
PY
    "$ATLAS" --plain --config "$WORK/atlas.json" --database-url "$URL2" sync --client "$c" --route "$r" \
        --from "$FROM" --until "$UNTIL" >/dev/null 2>&1 || true
done
t3=$(date +%s.%N)

python3 - "$WORK/all.json" "$t0" "$t1" "$t2" "$t3" "$PAIRS" "$DAYS" "$LATENCY_MS" "$THREADS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t0, t1, t2, t3 = map(float, sys.argv[2:6])
pairs, days, lat, threads = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
requests = pairs * days
ideal = requests * lat / 1000 / threads
print(f"{pairs} pairs x {days} days, {lat} ms/request, {threads} threads: {requests} requests, ideal {ideal:.2f} s")
print(f"sync --all            {t1 - t0:7.2f} s  ({(t1 - t0) / ideal:.2f}x ideal)  inserted {r['totals']['inserted']}  exit {r['exit_code']}")
print(f"one sync per pair     {t3 - t2:7.2f} s  ({(t3 - t2) / ideal:.2f}x ideal)")
PY
psql_admin -c "DROP DATABASE IF EXISTS atlas_bench_fleet_all WITH (FORCE)" -c "DROP DATABASE IF EXISTS atlas_bench_fleet_one WITH (FORCE)" 2>/dev/null
