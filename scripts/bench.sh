#!/usr/bin/env bash
# Benchmark of the load path on the bundled sample API: loads DAYS x PER_DAY
# records with `atlas scrap run` into a fresh database, then measures the
# COPY limit in the same run (the loaded rows exported and COPYed into a
# fresh identical table), and prints records/s, peak RSS, CPU and the ratio.
#   scripts/bench.sh                         60 days x 5000 = 300k records, pages of 500
#   DAYS=600 scripts/bench.sh                3M records (memory check)
#   ATLAS_ARGS="--writers 4" scripts/bench.sh
#   RERUN=1 scripts/bench.sh                 also time a second scrap of the same period (all duplicates)
# Env: DAYS PER_DAY PAGE_SIZE LATENCY_MS ATLAS_ARGS RERUN, DATABASE_URL (else found by scripts/pg.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/pg.sh
. "$ROOT/scripts/pg.sh"

DAYS=${DAYS:-60}
PER_DAY=${PER_DAY:-5000}
PAGE_SIZE=${PAGE_SIZE:-500}
LATENCY_MS=${LATENCY_MS:-0}
ATLAS_ARGS=${ATLAS_ARGS:-}
RERUN=${RERUN:-0}
BENCH_DB=atlas_bench
WORK=$ROOT/target/bench
API_PID=""

cleanup() {
    local rc=$?
    trap - EXIT
    [[ -n $API_PID ]] && kill "$API_PID" 2>/dev/null && wait "$API_PID" 2>/dev/null
    stop_postgres_if_started || true
    exit "$rc"
}
trap cleanup EXIT

command -v /usr/bin/time >/dev/null || { echo "bench.sh: needs GNU time (apt-get install time)" >&2; exit 2; }
ensure_postgres
ensure_psql
cargo build --release --bins -q
mkdir -p "$WORK"

db_url() { # URL of database $1 on the same server
    python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$DATABASE_URL" "$1"
}
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }
psql_admin -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "CREATE DATABASE $BENCH_DB" 2>/dev/null
URL=$(db_url "$BENCH_DB")

"$ROOT/target/release/atlas-sample-api" --port 0 --per-day "$PER_DAY" --page-size "$PAGE_SIZE" \
    --latency-ms "$LATENCY_MS" --threads 16 >"$WORK/api.out" 2>&1 &
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
    "date_field": "/data_pedido" } }
}
JSON
A=("$ROOT/target/release/atlas" --config "$WORK/atlas.json" --database-url "$URL" --error-log "$WORK/erros.log")
FROM=2025-01-01
TO=$(date -d "$FROM + $((DAYS - 1)) days" +%F)
"${A[@]}" init >/dev/null

run_once() { # run_once <label>: one scrap of the whole period, timed
    local id
    id=$("${A[@]}" scrap create --client 2151 --route pedidos --from "$FROM" --to "$TO" 2>/dev/null)
    psql_admin -d "$BENCH_DB" -c CHECKPOINT >/dev/null 2>&1 || psql -X -q "$URL" -c CHECKPOINT >/dev/null
    # shellcheck disable=SC2086
    /usr/bin/time -v -o "$WORK/$1.time" "${A[@]}" scrap run "$id" --json $ATLAS_ARGS >"$WORK/$1.json" 2>"$WORK/$1.err"
    python3 - "$1" "$WORK/$1.json" "$WORK/$1.time" <<'PY'
import json, re, sys
label, js, tf = sys.argv[1:]
s = json.load(open(js)); t = open(tf).read()
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", t))
wall = s["elapsed_secs"]
print(f"{label:8} records={s['records_fetched']:,} inserted={s['inserted']:,} duplicates={s['duplicates']:,} "
      f"wall={wall:.2f}s rate={s['records_fetched']/wall:,.0f} rec/s peak_rss={rss:.1f}MiB "
      f"cpu={cpu:.2f}s ({cpu/max(s['records_fetched'],1)*1e5:.2f} cpu-s/100k) settings={s['settings']}")
open(f"{tf}.rate", "w").write(str(s['records_fetched']/wall))
PY
}

echo "bench: $DAYS days x $PER_DAY records, pages of $PAGE_SIZE, latency ${LATENCY_MS} ms, args '${ATLAS_ARGS}'"
run_once first
[[ $RERUN == 1 ]] && run_once rerun

# COPY limit in the same run: the loaded rows, exported, COPYed into a fresh identical table.
psql -X -q -v ON_ERROR_STOP=1 "$URL" <<'SQL' >/dev/null
DROP TABLE IF EXISTS copy_limit;
CREATE TABLE copy_limit (
    id BIGSERIAL PRIMARY KEY,
    data_coleta TIMESTAMP DEFAULT NOW() NOT NULL,
    data_referencia DATE NOT NULL,
    payload JSONB NOT NULL,
    hash_conteudo TEXT,
    CONSTRAINT uq_copy_limit_hash UNIQUE (hash_conteudo)
);
CREATE INDEX idx_copy_limit_data_referencia ON copy_limit (data_referencia);
SQL
psql -X -q -v ON_ERROR_STOP=1 "$URL" -c "\\copy (SELECT data_referencia, payload, hash_conteudo FROM dados_raw_cliente_2151_pedidos) TO '$WORK/copy.tsv'"
psql -X -q "$URL" -c CHECKPOINT >/dev/null
t0=$(date +%s.%N)
psql -X -q -v ON_ERROR_STOP=1 "$URL" -c "\\copy copy_limit (data_referencia, payload, hash_conteudo) FROM '$WORK/copy.tsv'"
t1=$(date +%s.%N)
n=$(wc -l <"$WORK/copy.tsv")
python3 - "$n" "$t0" "$t1" "$(cat "$WORK/first.time.rate")" <<'PY'
import sys
n, t0, t1, rate = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
copy = n / (t1 - t0)
print(f"copy     records={n:,} wall={t1-t0:.2f}s rate={copy:,.0f} rec/s")
print(f"ratio    atlas / COPY = {rate / copy:.2f}")
PY
rm -f "$WORK/copy.tsv"
