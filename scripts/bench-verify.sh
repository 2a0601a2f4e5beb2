#!/usr/bin/env bash
# Benchmark of `atlas verify` (issue: adopting existing raw tables): a raw
# table of ROWS records hashed with another serialisation, every 10th twice,
# checked with 1 and then 2 rayon threads (report only), then fixed.
#   scripts/bench-verify.sh                  1M rows
#   ROWS=200000 scripts/bench-verify.sh
# Env: ROWS, DATABASE_URL (else found by scripts/pg.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/pg.sh
. "$ROOT/scripts/pg.sh"

ROWS=${ROWS:-1000000}
BENCH_DB=atlas_bench_verify
WORK=$ROOT/target/bench-verify
TABLE=dados_raw_cliente_2151_pedidos

cleanup() {
    local rc=$?
    trap - EXIT
    stop_postgres_if_started || true
    exit "$rc"
}
trap cleanup EXIT

ensure_postgres
ensure_psql
cargo build --release --bins -q
mkdir -p "$WORK"

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }
psql_admin -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "CREATE DATABASE $BENCH_DB" 2>/dev/null
URL=$(pg_db_url "$BENCH_DB")

cat >"$WORK/atlas.json" <<JSON
{
  "clients": { "2151": { "name": "Bench", "base_url": "http://127.0.0.1:9" } },
  "routes": { "pedidos": { "path": "/pedidos", "records": "/data", "date_field": "/data_pedido",
                           "date_params": { "start": "data_inicial", "end": "data_final" } } }
}
JSON

echo "filling $TABLE with $ROWS rows (+10% duplicates)..."
psql -X -q -v ON_ERROR_STOP=1 "$URL" <<SQL
CREATE TABLE $TABLE (
    id BIGSERIAL PRIMARY KEY,
    data_coleta TIMESTAMP DEFAULT NOW() NOT NULL,
    data_referencia DATE NOT NULL,
    payload JSONB NOT NULL,
    hash_conteudo TEXT,
    CONSTRAINT uq_${TABLE}_hash UNIQUE (hash_conteudo)
);
INSERT INTO $TABLE (data_coleta, data_referencia, payload, hash_conteudo)
SELECT timestamp '2025-01-01' + g * interval '1 second', date '2025-01-01' + (g % 365),
       jsonb_build_object('id', g, 'data_pedido', to_char(date '2025-01-01' + (g % 365), 'YYYY-MM-DD'),
                          'valor', g * 1.5, 'cliente', jsonb_build_object('nome', 'Cliente ' || g, 'cidade', 'São Paulo'),
                          'itens', jsonb_build_array(jsonb_build_object('sku', 'A' || g, 'qtd', g % 7))),
       encode(sha256(convert_to(g::text, 'UTF8')), 'hex')
FROM generate_series(1, $ROWS) g;
UPDATE $TABLE SET hash_conteudo = encode(sha256(convert_to(payload::text, 'UTF8')), 'hex');
INSERT INTO $TABLE (data_coleta, data_referencia, payload, hash_conteudo)
SELECT data_coleta + interval '1 day', data_referencia, payload, 'legado-' || id FROM $TABLE WHERE id % 10 = 0;
VACUUM ANALYZE $TABLE;
SQL

verify() { # label, args...
    local label=$1; shift
    /usr/bin/time -f '%e s wall, %U s user, %S s sys, %M KiB max RSS' -o "$WORK/time.txt" \
        "$ROOT/target/release/atlas" --config "$WORK/atlas.json" --database-url "$URL" \
        verify --client 2151 --route pedidos --json "$@" >"$WORK/out.json" || true
    python3 - "$label" "$WORK/out.json" "$WORK/time.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
print(f"{sys.argv[1]:<22} {r['rows']:>9} rows  {r['rows_per_sec']:>10.0f} rows/s  "
      f"hash_differs {r['hash_differs']}  duplicates {r['duplicates']}  exit {r['exit_code']}  "
      f"| {open(sys.argv[3]).read().strip()}")
PY
}
verify "verify, 1 thread" --threads 1
verify "verify, 2 threads" --threads 2
verify "verify --fix, 2 thr" --threads 2 --fix
verify "verify after fix" --threads 2
psql_admin -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" 2>/dev/null
