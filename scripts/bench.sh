#!/usr/bin/env bash
# Benchmarks of the load path on the bundled sample API, each into a fresh
# database, each printing its figure next to the ceiling it is compared with:
#   scripts/bench.sh [load]      60 days x 5,000 = 300k records, pages of 500;
#                                ceilings: one `\copy` stream and two concurrent
#                                streams (copy2) of the same rows, same run
#   scripts/bench.sh oneday      1 day x 5,000 in pages of 100, 200 ms per request,
#                                then the next day with that history (page 1 asked
#                                for with its likely followers, speculative_pages);
#                                ceiling: threads x page / latency
#   scripts/bench.sh backfill    10 years of daily slices of 10 records (3,653
#                                slices); figure: slices/s (goal 1,000)
#   scripts/bench.sh bigpage     30 days x 10,000 in pages of 10,000 (5.7 MB each);
#                                figure: peak RSS against the memory budget + 32 MiB
#   scripts/bench.sh grown       the load scenario into an empty raw table, then
#                                into one already holding GROWN_ROWS (5M) rows;
#                                figure: grown rate / empty rate (goal 0.7)
# Env (each scenario has its defaults): DAYS PER_DAY PAGE_SIZE LATENCY_MS
#   ATLAS_ARGS (e.g. "--threads 16"), PARALLEL_PAGES (true|false; unset =
#   the route leaves the key out), SPECULATIVE_PAGES (the same), RERUN=1 (also
#   time a second scrap of the same period: all duplicates), GROWN_ROWS,
#   ATLAS_BIN (default target/release/atlas, built first), PERF=1 (perf record
#   of each run into target/bench/<label>.perf.data: give ATLAS_BIN a binary
#   with symbols, e.g. built with CARGO_PROFILE_RELEASE_STRIP=false
#   CARGO_TARGET_DIR=target/prof cargo build --release), DATABASE_URL (else
#   found by scripts/pg.sh), DB_LATENCY_MS (default 0: when set, atlas and
#   the \copy streams it is compared with both reach PostgreSQL through
#   atlas-latency-proxy, that many ms each way: a database across the network).
# CPU-s are user+sys of the atlas process (GNU time): on a shared machine they
# say more than the wall rate.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/pg.sh
. "$ROOT/scripts/pg.sh"

SCENARIO=${1:-load}
case $SCENARIO in
load) d=(60 5000 500 0) ;;
oneday) d=(1 5000 100 200) ;;
backfill) d=(3653 10 100 0) ;;
bigpage) d=(30 10000 10000 0) ;;
grown) d=(60 5000 500 0) ;;
*) echo "bench.sh: unknown scenario '$SCENARIO' (load, oneday, backfill, bigpage, grown)" >&2; exit 2 ;;
esac
DAYS=${DAYS:-${d[0]}}
PER_DAY=${PER_DAY:-${d[1]}}
PAGE_SIZE=${PAGE_SIZE:-${d[2]}}
LATENCY_MS=${LATENCY_MS:-${d[3]}}
ATLAS_ARGS=${ATLAS_ARGS:-}
PARALLEL_PAGES=${PARALLEL_PAGES:-}
SPECULATIVE_PAGES=${SPECULATIVE_PAGES:-}
RERUN=${RERUN:-0}
PERF=${PERF:-0}
GROWN_ROWS=${GROWN_ROWS:-5000000}
DB_LATENCY_MS=${DB_LATENCY_MS:-0}
# One database per run of this script: two at once do not drop each other's.
BENCH_DB=atlas_bench_$$
WORK=$ROOT/target/bench
API_PID=""
PROXY_PID=""

cleanup() {
    local rc=$?
    trap - EXIT
    set +e # a killed API's status must not end the cleanup early
    [[ -n $API_PID ]] && kill "$API_PID" 2>/dev/null && wait "$API_PID" 2>/dev/null
    [[ -n $PROXY_PID ]] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null
    [[ -n ${DATABASE_URL:-} ]] && psql -X -q "$DATABASE_URL" \
        -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1
    stop_postgres_if_started || true
    exit "$rc"
}
trap cleanup EXIT

command -v /usr/bin/time >/dev/null || { echo "bench.sh: needs GNU time (apt-get install time)" >&2; exit 2; }
ensure_postgres
ensure_psql
if [[ -n ${ATLAS_BIN:-} ]]; then
    cargo build --release --bin atlas-sample-api --bin atlas-latency-proxy -q
else
    cargo build --release --bins -q
fi
mkdir -p "$WORK"

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }
URL=$(pg_db_url "$BENCH_DB")
# SLOW_URL: the same database as the load sees it (through the proxy when
# DB_LATENCY_MS > 0); URL stays direct for setup and checks.
SLOW_URL=$URL
if ((DB_LATENCY_MS > 0)); then
    start_latency_proxy "$URL" "$DB_LATENCY_MS" "$WORK/proxy.out"
    SLOW_URL=$(via_proxy "$URL")
fi

"$ROOT/target/release/atlas-sample-api" --port 0 --per-day "$PER_DAY" --page-size "$PAGE_SIZE" \
    --latency-ms "$LATENCY_MS" >"$WORK/api.out" 2>&1 &
API_PID=$!
for _ in $(seq 100); do grep -q '^listening on' "$WORK/api.out" && break; sleep 0.1; done
API=$(sed -n 's/^listening on //p' "$WORK/api.out")
[[ -n $API ]] || { echo "sample API did not start" >&2; cat "$WORK/api.out" >&2; exit 1; }

cat >"$WORK/atlas.json" <<JSON
{
  "clients": { "2151": { "name": "Bench", "base_url": "$API/page" } },
  "routes": { "pedidos": {
    "path": "/pedidos", "records": "/data",
    "date_params": { "start": "data_inicial", "end": "data_final", "format": "%Y-%m-%d" },
    "slice_days": 1,
    "pagination": { "type": "page", "param": "page", "start": 1, "size_param": "por_pagina",
                    "size": $PAGE_SIZE, "total_pages": "/total_paginas" },
    "date_field": "/data_pedido"${PARALLEL_PAGES:+, \"parallel_pages\": $PARALLEL_PAGES}${SPECULATIVE_PAGES:+, \"speculative_pages\": $SPECULATIVE_PAGES} } }
}
JSON
A=("${ATLAS_BIN:-$ROOT/target/release/atlas}" --config "$WORK/atlas.json" --database-url "$URL" --error-log "$WORK/erros.log")
# The timed scrap run: the same, with the database as far as DB_LATENCY_MS.
SLOW_A=("${A[@]}")
SLOW_A[4]=$SLOW_URL
FROM=2025-01-01
# A period ends yesterday at the latest (atlas refuses days to come): a long
# one (backfill's 10 years) ends yesterday.
YESTERDAY=$(date -d yesterday +%F)
if [[ $(date -d "$FROM + $((DAYS - 1)) days" +%F) > $YESTERDAY ]]; then
    FROM=$(date -d "$YESTERDAY - $((DAYS - 1)) days" +%F)
fi
TO=$(date -d "$FROM + $((DAYS - 1)) days" +%F)

fresh_db() {
    psql_admin -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "CREATE DATABASE $BENCH_DB" 2>/dev/null
    "${A[@]}" init >/dev/null
}

run_once() { # run_once <label>: one scrap of the whole period, timed; prints one line
    local id
    id=$("${A[@]}" scrap create --client 2151 --route pedidos --from "$FROM" --to "$TO" 2>/dev/null)
    psql -X -q "$URL" -c CHECKPOINT >/dev/null
    local prof=()
    [[ $PERF == 1 ]] && prof=(perf record -q -F 1999 -o "$WORK/$1.perf.data" --)
    # shellcheck disable=SC2086
    /usr/bin/time -v -o "$WORK/$1.time" "${prof[@]}" "${SLOW_A[@]}" scrap run "$id" --json $ATLAS_ARGS >"$WORK/$1.json" 2>"$WORK/$1.err"
    python3 - "$1" "$WORK/$1.json" "$WORK/$1.time" <<'PY'
import json, re, sys
label, js, tf = sys.argv[1:]
s = json.load(open(js)); t = open(tf).read()
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", t))
wall = s["elapsed_secs"]
print(f"{label:8} records={s['records_fetched']:,} inserted={s['inserted']:,} duplicates={s['duplicates']:,} "
      f"slices={s['slices_done']:,} wall={wall:.2f}s rate={s['records_fetched']/wall:,.0f} rec/s "
      f"peak_rss={rss:.1f}MiB cpu={cpu:.2f}s ({cpu/max(s['records_fetched'],1)*1e5:.2f} cpu-s/100k) "
      f"settings={s['settings']}")
json.dump({"rate": s['records_fetched']/wall, "wall": wall, "rss": rss, "slices": s['slices_done'],
           "threads": s['settings'].get('threads', 8) if isinstance(s['settings'], dict) else 8},
          open(f"{tf}.sum", "w"))
PY
}
figure() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$WORK/$1.time.sum" "$2"; }

copy_ceilings() { # one and two concurrent \copy streams of the loaded rows into fresh tables
    local t
    psql -X -q -v ON_ERROR_STOP=1 "$URL" -c "\\copy (SELECT data_referencia, payload, hash_conteudo FROM dados_raw_cliente_2151_pedidos) TO '$WORK/copy.tsv'"
    local n
    n=$(wc -l <"$WORK/copy.tsv")
    split -n l/2 "$WORK/copy.tsv" "$WORK/copy.part."
    for t in copy_limit copy_limit_2x; do
        PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$URL" <<SQL >/dev/null
DROP TABLE IF EXISTS $t;
CREATE TABLE $t (
    id BIGSERIAL PRIMARY KEY,
    data_coleta TIMESTAMP DEFAULT NOW() NOT NULL,
    data_referencia DATE NOT NULL,
    payload JSONB NOT NULL,
    hash_conteudo TEXT,
    CONSTRAINT uq_${t}_hash UNIQUE (hash_conteudo)
);
CREATE INDEX idx_${t}_data_referencia ON $t (data_referencia);
SQL
    done
    psql -X -q "$URL" -c CHECKPOINT >/dev/null
    local t0 t1 t2 t3
    t0=$(date +%s.%N)
    psql -X -q -v ON_ERROR_STOP=1 "$SLOW_URL" -c "\\copy copy_limit (data_referencia, payload, hash_conteudo) FROM '$WORK/copy.tsv'"
    t1=$(date +%s.%N)
    psql -X -q "$URL" -c CHECKPOINT >/dev/null
    t2=$(date +%s.%N)
    local pids=()
    for p in "$WORK"/copy.part.*; do
        psql -X -q -v ON_ERROR_STOP=1 "$SLOW_URL" -c "\\copy copy_limit_2x (data_referencia, payload, hash_conteudo) FROM '$p'" &
        pids+=($!)
    done
    wait "${pids[@]}"
    t3=$(date +%s.%N)
    python3 - "$n" "$t0" "$t1" "$t2" "$t3" "$(figure first rate)" <<'PY'
import sys
n = int(sys.argv[1]); t0, t1, t2, t3, rate = map(float, sys.argv[2:])
copy, copy2 = n / (t1 - t0), n / (t3 - t2)
print(f"copy     records={n:,} wall={t1-t0:.2f}s rate={copy:,.0f} rec/s (one \\copy stream)")
print(f"copy2    records={n:,} wall={t3-t2:.2f}s rate={copy2:,.0f} rec/s (two concurrent \\copy streams)")
print(f"ratio    atlas / copy = {rate / copy:.2f}   atlas / copy2 = {rate / copy2:.2f} (goal 0.9)")
PY
    rm -f "$WORK/copy.tsv" "$WORK"/copy.part.*
}

echo "bench $SCENARIO: $DAYS days x $PER_DAY records, pages of $PAGE_SIZE, latency ${LATENCY_MS} ms, database ${DB_LATENCY_MS} ms away, parallel_pages ${PARALLEL_PAGES:-default}, args '${ATLAS_ARGS}'"
fresh_db
case $SCENARIO in
load)
    run_once first
    [[ $RERUN == 1 ]] && run_once rerun
    copy_ceilings
    ;;
oneday)
    run_once first
    # The next night: the same number of days right after, with the pair's history.
    FROM=$(date -d "$TO + 1 day" +%F)
    TO=$(date -d "$FROM + $((DAYS - 1)) days" +%F)
    run_once next
    python3 - "$(figure first rate)" "$(figure next rate)" "$(figure first threads)" "$PAGE_SIZE" "$LATENCY_MS" <<'PY'
import sys
rate, nrate = float(sys.argv[1]), float(sys.argv[2])
threads, page, lat = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ceiling = threads * page / (lat / 1000)
print(f"ceiling  threads x page / latency = {threads} x {page} / {lat} ms = {ceiling:,.0f} rec/s")
print(f"ratio    first night / ceiling = {rate / ceiling:.2f}   next night / ceiling = {nrate / ceiling:.2f} (goal 0.8)")
PY
    ;;
backfill)
    run_once first
    python3 - "$(figure first slices)" "$(figure first wall)" <<'PY'
import sys
slices, wall = int(sys.argv[1]), float(sys.argv[2])
print(f"slices   {slices:,} in {wall:.2f}s = {slices / wall:,.0f} slices/s (goal 1,000)")
PY
    ;;
bigpage)
    run_once first
    budget=${ATLAS_MEMORY_MB:-64}
    python3 - "$(figure first rss)" "$budget" <<'PY'
import sys
rss, budget = float(sys.argv[1]), float(sys.argv[2])
print(f"memory   peak RSS {rss:.1f} MiB against budget {budget:.0f} + 32 = {budget + 32:.0f} MiB")
PY
    ;;
grown)
    run_once empty
    echo "grown:   adding $GROWN_ROWS rows dated before the period to the raw table (not timed)"
    psql -X -q -v ON_ERROR_STOP=1 "$URL" <<SQL >/dev/null
TRUNCATE dados_raw_cliente_2151_pedidos;
INSERT INTO dados_raw_cliente_2151_pedidos (data_referencia, payload, hash_conteudo)
SELECT DATE '2015-01-01' + (g % 3000), jsonb_build_object('numero', g, 'texto', repeat('x', 400)),
       encode(sha256(g::text::bytea), 'hex')
FROM generate_series(1, $GROWN_ROWS) g;
VACUUM ANALYZE dados_raw_cliente_2151_pedidos;
SQL
    run_once grown
    python3 - "$(figure empty rate)" "$(figure grown rate)" <<'PY'
import sys
empty, grown = float(sys.argv[1]), float(sys.argv[2])
print(f"ratio    grown table / empty table = {grown / empty:.2f} (goal 0.7)")
PY
    ;;
esac
