#!/usr/bin/env bash
# Benchmark of the nightly fleet: PAIRS (client, route) pairs x DAYS days on
# the sample API at LATENCY_MS per request, one page per day: `atlas sync
# --all` against the same pairs run one `atlas sync` after another (each on
# a fresh database), on the first night (tables created) and the next one
# (a new day and the lookback day), with the ideal `requests x latency /
# threads` beside them.
#   scripts/bench-fleet.sh                  40 pairs x 2 days, 100 ms, 8 threads
# Env: PAIRS (even), DAYS, LATENCY_MS, THREADS, DB_LATENCY_MS (each way), EACH=0
# (skip the one-sync-per-pair runs), HISTORY=N (the `sync --all` database
# starts with N nights already loaded for every pair: a scrap, its two
# slices done and its run each night before the first one, as written by a
# build that recorded no loaded span), ATLAS_BIN (another build to
# measure), DATABASE_URL (else scripts/pg.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/pg.sh
. "$ROOT/scripts/pg.sh"

PAIRS=${PAIRS:-40}
DAYS=${DAYS:-2}
LATENCY_MS=${LATENCY_MS:-100}
THREADS=${THREADS:-8}
DB_LATENCY_MS=${DB_LATENCY_MS:-0}
EACH=${EACH:-1}
HISTORY=${HISTORY:-0}
PER_DAY=50
WORK=$ROOT/target/bench-fleet
API_PID=""
PROXY_PID=""

cleanup() {
    local rc=$?
    trap - EXIT
    set +e # a killed API's status must not end the cleanup early
    [[ -n $API_PID ]] && kill "$API_PID" 2>/dev/null && wait "$API_PID" 2>/dev/null
    [[ -n $PROXY_PID ]] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null
    stop_postgres_if_started || true
    exit "$rc"
}
trap cleanup EXIT

ensure_postgres
ensure_psql
cargo build --release --bins -q
mkdir -p "$WORK"
ATLAS=${ATLAS_BIN:-$ROOT/target/release/atlas}

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
if ((DB_LATENCY_MS > 0)); then
    start_latency_proxy "$DATABASE_URL" "$DB_LATENCY_MS" "$WORK/proxy.out"
fi
fresh() { # a fresh database for one measurement; prints its URL as the timed runs see it
    psql_admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" 2>/dev/null
    local url; url=$(pg_db_url "$1")
    "$ATLAS" --config "$WORK/atlas.json" --database-url "$url" init >/dev/null
    if ((DB_LATENCY_MS > 0)); then via_proxy "$url"; else echo "$url"; fi
}
export ATLAS_THREADS=$THREADS

pairs() { # every (client, route) of the config, one per line
    python3 - "$WORK/atlas.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
for c in sorted(cfg["clients"]):
    for r in sorted(cfg["routes"]):
        print(c, r)
PY
}
all() { # url, json out, sync flags...: one `sync --all`; prints its seconds (peak RSS in out.rss)
    local url=$1 out=$2; shift 2
    local t0 t1; t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$out.rss" \
        "$ATLAS" --plain --config "$WORK/atlas.json" --database-url "$url" sync --all --json "$@" \
        >"$out" 2>>"$WORK/all.err" || true
    t1=$(date +%s.%N)
    python3 -c "print($t1 - $t0)"
}
each() { # url, sync flags...: one `atlas sync` per pair, one after another; prints the seconds
    local url=$1; shift
    ((EACH)) || { echo 0; return; }
    local t0 t1; t0=$(date +%s.%N)
    while read -r c r; do
        "$ATLAS" --plain --config "$WORK/atlas.json" --database-url "$url" sync --client "$c" \
            --route "$r" "$@" >/dev/null 2>&1 || true
    done < <(pairs)
    t1=$(date +%s.%N)
    python3 -c "print($t1 - $t0)"
}

# First night (tables created, nothing loaded yet), then the next night:
# one new day plus the default lookback day, again PAIRS x DAYS requests
# when DAYS is 2.
NEXT=$(date -d "$UNTIL + 1 day" +%F)
URL=$(fresh atlas_bench_fleet_all)
if ((HISTORY > 0)); then
    psql -X -q -v ON_ERROR_STOP=1 "$(pg_db_url atlas_bench_fleet_all)" -v nights="$HISTORY" -v pairs="$PAIRS" -v first="$FROM" <<'SQL'
BEGIN;
CREATE TEMP TABLE n AS
  SELECT (1000 + i)::text AS client, r AS route, k, (:'first'::date - k) AS day
  FROM generate_series(0, :pairs / 2 - 1) i, unnest(ARRAY['notas', 'pedidos']) r,
       generate_series(1, :nights) k;
INSERT INTO atlas.scraps (client, route, raw_table, period_from, period_to, slice_days, created_at)
  SELECT client, route, 'dados_raw_cliente_' || client || '_' || route, day - 1, day, 1,
         now() - make_interval(days => k)
  FROM n ORDER BY k DESC, client, route;
INSERT INTO atlas.runs (scrap_id, worker, started_at, finished_at, status, pages, records, inserted, slices_done)
  SELECT id, 'history', created_at, created_at, 'done', 2, 100, 50, 2 FROM atlas.scraps;
INSERT INTO atlas.slices (scrap_id, slice_from, slice_to, status, pages, records, inserted, duplicates, attempts, done_at, last_run_id)
  SELECT s.id, d, d, 'done', 1, 50, 25, 25, 1, s.created_at, r.id
  FROM atlas.scraps s JOIN atlas.runs r ON r.scrap_id = s.id, LATERAL (VALUES (s.period_from), (s.period_to)) v(d);
COMMIT;
ANALYZE atlas.scraps; ANALYZE atlas.slices; ANALYZE atlas.runs;
SQL
fi
URL2=$(fresh atlas_bench_fleet_one)
A1=$(all "$URL" "$WORK/all.json" --from "$FROM" --until "$UNTIL")
E1=$(each "$URL2" --from "$FROM" --until "$UNTIL")
A2=$(all "$URL" "$WORK/next.json" --until "$NEXT")
E2=$(each "$URL2" --until "$NEXT")

python3 - "$WORK/all.json" "$WORK/next.json" "$A1" "$E1" "$A2" "$E2" "$PAIRS" "$DAYS" "$LATENCY_MS" "$THREADS" "$DB_LATENCY_MS" "$HISTORY" <<'PY'
import json, sys
first, nxt = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
a1, e1, a2, e2 = map(float, sys.argv[3:7])
pairs, days, lat, threads, db_lat = map(int, sys.argv[7:12])
requests = pairs * days
ideal = requests * lat / 1000 / threads
history = int(sys.argv[12])
print(f"{pairs} pairs x {days} days, {lat} ms/request, {threads} threads, database {db_lat} ms away: {requests} requests, ideal {ideal:.2f} s"
      + (f", {history} nights of history" if history else ""))
x = lambda t: f"{t / ideal:.2f}x ideal" if ideal else "no latency: all overhead"
def rss(path):  # peak RSS in MiB (GNU time's last line, KiB)
    try:
        return int(open(path + ".rss").read().split()[-1]) / 1024
    except (OSError, ValueError, IndexError):
        return float("nan")
def slices(o, t):  # slices done by the runs, per second
    n = sum(p.get("slices_done_by_run") or 0 for p in o.get("pairs", []))
    return f"{n} slices, {n / t:.0f} slices/s, peak RSS {rss(o['_path']):.0f} MiB"
first["_path"], nxt["_path"] = sys.argv[1], sys.argv[2]
print(f"first night  sync --all         {a1:6.2f} s  ({x(a1)})  inserted {first['totals']['inserted']}  exit {first['exit_code']}  {slices(first, a1)}")
print(f"first night  one sync per pair  {e1:6.2f} s  ({x(e1)})")
print(f"next night   sync --all         {a2:6.2f} s  ({x(a2)})  inserted {nxt['totals']['inserted']}  exit {nxt['exit_code']}  {slices(nxt, a2)}")
print(f"next night   one sync per pair  {e2:6.2f} s  ({x(e2)})")
PY
psql_admin -c "DROP DATABASE IF EXISTS atlas_bench_fleet_all WITH (FORCE)" -c "DROP DATABASE IF EXISTS atlas_bench_fleet_one WITH (FORCE)" 2>/dev/null
