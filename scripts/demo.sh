#!/usr/bin/env bash
# End-to-end demo of atlas: builds it, starts the bundled sample API, loads
# two weeks of its orders into a fresh database `atlas_demo_<n>` (see
# pick_demo_db) and shows the result. Needs only a Rust toolchain;
# PostgreSQL is found or set up by scripts/pg.sh (DATABASE_URL, else
# 127.0.0.1:5432, else a private cluster under target/pg). The demo database
# is kept afterwards for inspection.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/pg.sh
. "$ROOT/scripts/pg.sh"

DEMO_DB="" # atlas_demo_<n>, chosen by pick_demo_db
# Written on each demo database: the next run may drop only a database
# carrying it (and only when nobody is connected to it).
DEMO_MARK="atlas demo database (scripts/demo.sh); dropped and recreated by a later demo run when unused"
DEMO_DIR=target/demo
CONFIG=$DEMO_DIR/atlas.json
ATLAS_BIN=$ROOT/target/release/atlas
API_BIN=$ROOT/target/release/atlas-sample-api
API_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $API_PID ]] && kill -0 "$API_PID" 2>/dev/null; then
        kill "$API_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 50; i++)); do
            kill -0 "$API_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$API_PID" 2>/dev/null || true
        wait "$API_PID" 2>/dev/null || true
    fi
    stop_postgres_if_started || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n== %s\n' "$*"; }

# Quotes a word for display (and copy-paste) only when it needs it.
quote() {
    if [[ $1 =~ ^[A-Za-z0-9_./:@%=+,-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# A command as one line, hiding a password in URLs.
fmt_cmd() {
    local out="" a
    for a in "$@"; do out+="${out:+ }$(quote "$a")"; done
    printf '%s\n' "$out" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#g'
}

# Prints a command before it is run, like `set -x`.
show() { printf '+ %s\n' "$(fmt_cmd "$@")"; }

atlas() { "$ATLAS_BIN" "$@"; }

# url_with_db URL DB: the same connection with database DB.
url_with_db() {
    local url=$1 db=$2
    case $url in
        postgres://* | postgresql://*)
            local scheme=${url%%://*} rest=${url#*://} query=""
            if [[ $rest == *\?* ]]; then
                query="?${rest#*\?}"
                rest=${rest%%\?*}
            fi
            printf '%s://%s/%s%s\n' "$scheme" "${rest%%/*}" "$db" "$query"
            ;;
        *=*) # key=value form: a later dbname wins
            printf '%s dbname=%s\n' "$url" "$db"
            ;;
        *)
            printf 'demo.sh: cannot parse DATABASE_URL: %s\n' "$url" >&2
            return 1
            ;;
    esac
}

psql_admin() { psql -X -w -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }
psql_value() { psql -X -w -q -At -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }

# Sets DEMO_DB to a fresh database atlas_demo_<n>, for the first n where one
# of these holds: no such database exists (it is created and marked); or it
# exists, carries DEMO_MARK (an earlier demo made it) and a plain DROP
# DATABASE succeeds, which PostgreSQL refuses (after waiting up to 5 s) while
# anyone is connected to it (it is then recreated). A database the demo did not create is never
# dropped, and one in use is never forced: the next n is tried instead.
pick_demo_db() {
    local n db mark
    for ((n = 1; n <= 100; n++)); do
        db=atlas_demo_$n
        # Empty when there is no such database, else "+" and its comment.
        mark=$(psql_value -c "select '+' || coalesce(shobj_description(oid, 'pg_database'), '') from pg_database where datname = '$db'")
        if [[ -n $mark ]]; then
            if [[ $mark != "+$DEMO_MARK" ]]; then
                echo "$db exists and was not created by the demo: left alone"
                continue
            fi
            show psql "$DATABASE_URL" -c "DROP DATABASE $db"
            if ! psql_admin -c "DROP DATABASE $db" 2>/dev/null; then
                echo "$db (an earlier demo's) is in use: left alone"
                continue
            fi
        fi
        show psql "$DATABASE_URL" -c "CREATE DATABASE $db"
        # Another demo may have taken the name meanwhile: try the next one.
        psql_admin -c "CREATE DATABASE $db" 2>/dev/null || continue
        psql_admin -c "COMMENT ON DATABASE $db IS '$DEMO_MARK'"
        DEMO_DB=$db
        return 0
    done
    echo "demo.sh: atlas_demo_1 to atlas_demo_100 are all taken or in use; drop some of them" >&2
    return 1
}

step "1. Build atlas and the sample API"
command -v cargo >/dev/null 2>&1 || {
    echo "demo.sh: cargo not found; install a Rust toolchain (https://rustup.rs)" >&2
    exit 1
}
show cargo build --release --bins
cargo build --release --bins

step "2. PostgreSQL and a fresh demo database"
ensure_postgres
ensure_psql
echo "server: $DATABASE_URL"
pick_demo_db
DEMO_URL=$(url_with_db "$DATABASE_URL" "$DEMO_DB")
echo "demo database: $DEMO_URL"

step "3. Start the sample API"
mkdir -p "$DEMO_DIR"
API_OUT=$DEMO_DIR/sample-api.out
API_LOG=$DEMO_DIR/sample-api.log
: >"$API_OUT"
show target/release/atlas-sample-api --port 0 --per-day 200 --page-size 100
"$API_BIN" --port 0 --per-day 200 --page-size 100 >"$API_OUT" 2>"$API_LOG" &
API_PID=$!
line=""
deadline=$(($(date +%s%N) / 1000000 + 10000))
until IFS= read -r line <"$API_OUT"; do
    if ! kill -0 "$API_PID" 2>/dev/null; then
        api_rc=0
        wait "$API_PID" || api_rc=$?
        echo "demo.sh: the sample API exited (status $api_rc) before saying where it listens; its output:" >&2
        cat "$API_OUT" "$API_LOG" >&2
        exit 1
    fi
    if (($(date +%s%N) / 1000000 > deadline)); then
        echo "demo.sh: the sample API did not print 'listening on http://...' within 10 s; its output:" >&2
        cat "$API_OUT" "$API_LOG" >&2
        exit 1
    fi
    sleep 0.05
done
if [[ ! $line =~ ^listening\ on\ (http://[^[:space:]]+) ]]; then
    echo "demo.sh: unexpected first line from the sample API: $line" >&2
    exit 1
fi
API_URL=${BASH_REMATCH[1]%/}
echo "sample API (pid $API_PID) at $API_URL"

step "4. Write the config $CONFIG"
cat >"$CONFIG" <<EOF
{
  "clients": { "2151": { "name": "Loja Exemplo", "base_url": "$API_URL/page", "routes": ["pedidos"] } },
  "routes": {
    "pedidos": {
      "path": "/pedidos",
      "records": "/data",
      "date_params": { "start": "data_inicial", "end": "data_final", "format": "%Y-%m-%d" },
      "slice_days": 1,
      "pagination": { "type": "page", "param": "page", "start": 1, "size_param": "por_pagina", "size": 100, "total_pages": "/total_paginas" },
      "date_field": "/data_pedido"
    }
  }
}
EOF
cat "$CONFIG"

step "5. Run atlas"
A=(--config "$CONFIG" --database-url "$DEMO_URL")
show atlas "${A[@]}" init
atlas "${A[@]}" init

create=(scrap create --client 2151 --route pedidos --from 2025-01-01 --to 2025-01-15)
# shellcheck disable=SC2016 # a literal $( shown to the reader
printf '+ id=$(%s)\n' "$(fmt_cmd atlas "${A[@]}" "${create[@]}")"
id=$(atlas "${A[@]}" "${create[@]}")
id=${id//[[:space:]]/}
if [[ -z $id ]]; then
    echo "demo.sh: 'scrap create' printed no id" >&2
    exit 1
fi
echo "id=$id"

show atlas "${A[@]}" scrap list
atlas "${A[@]}" scrap list
show atlas "${A[@]}" scrap run "$id"
atlas "${A[@]}" scrap run "$id"
show atlas "${A[@]}" scrap show "$id"
atlas "${A[@]}" scrap show "$id"

query='select count(*), count(distinct hash_conteudo), min(data_referencia), max(data_referencia) from dados_raw_cliente_2151_pedidos'
show psql "$DEMO_URL" -c "$query"
psql -X -w "$DEMO_URL" -c "$query"

step "Done"
echo "The database $DEMO_DB is kept. Inspect it with:"
printf '  %s\n' "$(fmt_cmd psql "$DEMO_URL")"
echo "  (then e.g.: \\dt   or   select * from dados_raw_cliente_2151_pedidos limit 5;)"
echo "atlas itself: target/release/atlas --config $CONFIG --database-url <url> --help"
if [[ $ATLAS_PG_STARTED == 1 ]]; then
    echo "The private PostgreSQL (data in ${ATLAS_PG_BASE#"$ROOT"/}) is stopped when this script exits;"
    if [[ ${ATLAS_PG_FORCE_PRIVATE:-0} == 1 ]]; then
        echo "start it again with: ATLAS_PG_FORCE_PRIVATE=1 scripts/pg.sh start   (prints its URL; its port may differ)"
    else
        echo "start it again with: scripts/pg.sh start   (prints its URL; its port may differ)"
    fi
    echo "and stop it with: scripts/pg.sh stop"
fi
echo "The sample API is stopped when this script exits."
