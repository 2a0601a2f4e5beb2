#!/usr/bin/env bash
# PostgreSQL helper for atlas' scripts.
#
# Source it (`. scripts/pg.sh`) and call `ensure_postgres`, which sets and
# exports DATABASE_URL to a reachable server, trying in order:
#   1. DATABASE_URL, if already set (fails if that server is not reachable);
#   2. the local server postgres://postgres@127.0.0.1:5432/postgres;
#   3. a private cluster under target/pg/ of the project (data/, run/, log),
#      started with pg_ctl on 127.0.0.1 port 25432 (ATLAS_PG_PORT overrides;
#      the next free port is taken if it is in use), trust auth, superuser
#      `postgres`. PostgreSQL's server package is installed with apt-get when
#      initdb/pg_ctl cannot be found.
# ATLAS_PG_FORCE_PRIVATE=1 skips steps 1 and 2.
# `stop_postgres_if_started` stops the private cluster if ensure_postgres
# started it (call it from an EXIT trap). `ensure_psql` makes `psql` available.
# `pg_db_url NAME` is the URL of database NAME on DATABASE_URL's server.
# `start_latency_proxy URL MS OUT` starts target/release/atlas-latency-proxy
# (built already) in front of URL's server, MS ms each way, its output in
# OUT; sets PROXY_PID (stop it in the EXIT trap) and `via_proxy URL` prints
# URL with its host and port replaced by the proxy's.
#
# Run directly, it is also a small tool:
#   scripts/pg.sh start   # ensure_postgres, leave it running, print the URL
#   scripts/pg.sh stop    # stop the private cluster under target/pg if running
#   scripts/pg.sh status  # tell whether the private cluster is running
set -euo pipefail

ATLAS_ROOT="${ATLAS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
ATLAS_PG_LOCAL_URL="postgres://postgres@127.0.0.1:5432/postgres"
# Set by ensure_postgres when it starts the private cluster.
ATLAS_PG_STARTED="${ATLAS_PG_STARTED:-0}"
ATLAS_PG_BINDIR="${ATLAS_PG_BINDIR:-}"
ATLAS_PG_RUNAS="${ATLAS_PG_RUNAS:-}"
ATLAS_PG_BASE="${ATLAS_PG_BASE:-}"

_pg_log() { printf 'pg.sh: %s\n' "$*" >&2; }

# Runs apt-get install for the given Debian packages, as root or through sudo.
_pg_apt_install() {
    local -a sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            _pg_log "error: the Debian package(s) $* are needed, and installing them needs root or sudo."
            _pg_log "Install them yourself: apt-get update && apt-get install -y --no-install-recommends $*"
            return 1
        fi
    fi
    _pg_log "installing Debian package(s): $*"
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >&2 \
        || ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "$@" >&2; then
        _pg_log "error: could not install $*; install it yourself (apt-get install -y $*) and run again."
        return 1
    fi
}

# True if something accepts TCP connections on 127.0.0.1:$1.
_pg_port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True if the server behind the URL $1 is reachable. With $2 = login, a real
# login is required when psql exists (not just a server accepting connections).
_pg_reachable() {
    local url=$1 mode=${2:-}
    if [[ $mode == login ]] && command -v psql >/dev/null 2>&1; then
        PGCONNECT_TIMEOUT=5 psql -X -w -q -At "$url" -c 'select 1' >/dev/null 2>&1 </dev/null
    elif command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -t 5 -d "$url" </dev/null
    elif command -v psql >/dev/null 2>&1; then
        PGCONNECT_TIMEOUT=5 psql -X -w -q -At "$url" -c 'select 1' >/dev/null 2>&1 </dev/null
    else
        return 1
    fi
}

# Prints the directory holding initdb and pg_ctl: PATH first, then the highest
# /usr/lib/postgresql/*/bin (or the one of version $1 if given and present).
_pg_find_bindir() {
    local want=${1:-} d p
    if [[ -n $want && -x /usr/lib/postgresql/$want/bin/initdb && -x /usr/lib/postgresql/$want/bin/pg_ctl ]]; then
        printf '%s\n' "/usr/lib/postgresql/$want/bin"
        return 0
    fi
    if p=$(command -v initdb 2>/dev/null); then
        p=$(readlink -f "$p")
        d=$(dirname "$p")
        if [[ -x $d/pg_ctl ]]; then
            printf '%s\n' "$d"
            return 0
        fi
    fi
    d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    if [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]]; then
        printf '%s\n' "$d"
        return 0
    fi
    return 1
}

# Runs a command as the cluster's owner (ATLAS_PG_RUNAS when we are root).
_pg_as() {
    if [[ -z $ATLAS_PG_RUNAS ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u "$ATLAS_PG_RUNAS" -- "$@")
    else
        local cmd
        cmd=$(printf '%q ' "$@")
        (cd / && su -s /bin/bash -c "$cmd" "$ATLAS_PG_RUNAS")
    fi
}

# When root: picks the system user that owns the private cluster (initdb and
# the server refuse to run as root), creating `atlaspg` if there is no
# `postgres` user.
_pg_pick_runas() {
    ATLAS_PG_RUNAS=""
    [[ $(id -u) -eq 0 ]] || return 0
    if id -u postgres >/dev/null 2>&1; then
        ATLAS_PG_RUNAS=postgres
    else
        if ! id -u atlaspg >/dev/null 2>&1; then
            _pg_log "creating system user atlaspg to own the private PostgreSQL cluster"
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin atlaspg || return 1
        fi
        ATLAS_PG_RUNAS=atlaspg
    fi
}

# Sets ATLAS_PG_BASE: target/pg of the project, or, when root and the cluster's
# owner cannot reach it (a project under /root, say), a folder in /var/tmp.
_pg_pick_base() {
    local base=$ATLAS_ROOT/target/pg
    mkdir -p "$base"
    if [[ -n $ATLAS_PG_RUNAS ]]; then
        chown -R "$ATLAS_PG_RUNAS:" "$base"
        if ! _pg_as test -w "$base" -a -x "$base"; then
            local sum
            sum=$(printf '%s' "$ATLAS_ROOT" | cksum | cut -d' ' -f1)
            base=/var/tmp/atlas-pg-$sum
            _pg_log "user $ATLAS_PG_RUNAS cannot reach $ATLAS_ROOT/target/pg; using $base instead"
            mkdir -p "$base"
            chown -R "$ATLAS_PG_RUNAS:" "$base"
        fi
    fi
    ATLAS_PG_BASE=$base
}

_pg_private_url() { printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$1"; }

# Step 3: the private cluster.
_pg_start_private() {
    _pg_pick_runas || return 1
    _pg_pick_base || return 1
    local base=$ATLAS_PG_BASE
    local data=$base/data run=$base/run log=$base/log
    local version=""
    [[ -f $data/PG_VERSION ]] && version=$(<"$data/PG_VERSION")

    if ! ATLAS_PG_BINDIR=$(_pg_find_bindir "$version"); then
        _pg_log "initdb/pg_ctl not found; installing PostgreSQL"
        _pg_apt_install postgresql || return 1
        if ! ATLAS_PG_BINDIR=$(_pg_find_bindir "$version"); then
            _pg_log "error: postgresql is installed but initdb/pg_ctl are not in PATH nor under /usr/lib/postgresql/*/bin"
            return 1
        fi
        # The package may have created the postgres user just now.
        _pg_pick_runas || return 1
        _pg_pick_base || return 1
        base=$ATLAS_PG_BASE data=$ATLAS_PG_BASE/data run=$ATLAS_PG_BASE/run log=$ATLAS_PG_BASE/log
    fi
    local bin=$ATLAS_PG_BINDIR
    if [[ -n $version ]]; then
        local have
        have=$("$bin/pg_ctl" --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/')
        if [[ $have != "$version" ]]; then
            _pg_log "error: $data was made by PostgreSQL $version but the server found is $have ($bin)."
            _pg_log "Remove it (rm -rf '$base') to start afresh, or install postgresql-$version."
            return 1
        fi
    fi

    # Already running (left by an earlier run)? Use it, but do not stop it.
    if [[ -f $data/postmaster.pid ]] && _pg_as "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        local port
        port=$(sed -n 4p "$data/postmaster.pid")
        DATABASE_URL=$(_pg_private_url "$port")
        export DATABASE_URL
        _pg_log "private PostgreSQL in $data is already running on port $port; using it (stop it with scripts/pg.sh stop)"
        return 0
    fi

    if [[ ! -f $data/PG_VERSION ]]; then
        _pg_log "creating a private PostgreSQL cluster in $data"
        rm -rf "$data"
        mkdir -p "$data"
        [[ -z $ATLAS_PG_RUNAS ]] || chown "$ATLAS_PG_RUNAS:" "$data"
        chmod 700 "$data"
        if ! _pg_as "$bin/initdb" -D "$data" -U postgres --auth=trust \
            --encoding=UTF8 --no-locale >"$base/initdb.log" 2>&1; then
            cat "$base/initdb.log" >&2
            _pg_log "error: initdb failed (log above, also in $base/initdb.log)"
            return 1
        fi
        # A throwaway development cluster: trade durability for speed.
        local sockdir=$run
        # Unix socket paths are limited to ~107 bytes; use TCP only if too long.
        (( ${#sockdir} < 90 )) || sockdir=""
        {
            printf '\n# added by scripts/pg.sh\n'
            printf "listen_addresses = '127.0.0.1'\n"
            printf "unix_socket_directories = '%s'\n" "${sockdir//\'/\'\'}"
            printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n'
            printf 'max_connections = 200\n'
        } >>"$data/postgresql.conf"
    else
        _pg_log "reusing the private PostgreSQL cluster in $data"
    fi
    mkdir -p "$run"
    touch "$log"
    [[ -z $ATLAS_PG_RUNAS ]] || chown "$ATLAS_PG_RUNAS:" "$run" "$log"

    # The default port sits below Linux's ephemeral range (32768-60999), where
    # an outgoing connection could hold it; a port that still fails to bind
    # is skipped too.
    local port=${ATLAS_PG_PORT:-25432} tries=0
    while :; do
        if _pg_port_in_use "$port"; then
            _pg_log "port $port is taken, trying $((port + 1))"
        else
            _pg_log "starting private PostgreSQL on 127.0.0.1:$port (log: $log)"
            if _pg_as "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "-p $port" start >&2; then
                break
            fi
            if ! tail -n 20 "$log" | grep -q "could not bind\|could not create any TCP/IP sockets"; then
                tail -n 30 "$log" >&2 || true
                _pg_log "error: the private PostgreSQL did not start (log above, also in $log)"
                return 1
            fi
            _pg_log "port $port could not be bound, trying $((port + 1))"
        fi
        tries=$((tries + 1))
        if (( tries > 100 )); then
            _pg_log "error: no free port found from ${ATLAS_PG_PORT:-25432} on; set ATLAS_PG_PORT"
            return 1
        fi
        port=$((port + 1))
    done
    ATLAS_PG_STARTED=1
    DATABASE_URL=$(_pg_private_url "$port")
    export DATABASE_URL
}

# Sets and exports DATABASE_URL to a reachable PostgreSQL server.
ensure_postgres() {
    if [[ ${ATLAS_PG_FORCE_PRIVATE:-0} != 1 ]]; then
        if [[ -n ${DATABASE_URL:-} ]]; then
            if _pg_reachable "$DATABASE_URL"; then
                export DATABASE_URL
                return 0
            fi
            _pg_log "error: DATABASE_URL is set but its server is not reachable: $DATABASE_URL"
            _pg_log "Start that server, fix DATABASE_URL, or unset it to use a local or private server."
            return 1
        fi
        if _pg_reachable "$ATLAS_PG_LOCAL_URL" login; then
            DATABASE_URL=$ATLAS_PG_LOCAL_URL
            export DATABASE_URL
            return 0
        fi
        if _pg_port_in_use 5432; then
            _pg_log "a server on 127.0.0.1:5432 did not let postgres in without a password; using a private cluster"
        fi
    fi
    if [[ $ATLAS_PG_STARTED == 1 && -n ${DATABASE_URL:-} ]] && _pg_reachable "$DATABASE_URL"; then
        return 0
    fi
    _pg_start_private
}

# Stops the private cluster if ensure_postgres started it.
stop_postgres_if_started() {
    [[ $ATLAS_PG_STARTED == 1 ]] || return 0
    ATLAS_PG_STARTED=0
    _pg_log "stopping the private PostgreSQL in $ATLAS_PG_BASE/data"
    _pg_as "$ATLAS_PG_BINDIR/pg_ctl" -D "$ATLAS_PG_BASE/data" -m fast -w stop >&2 \
        || _pg_log "warning: pg_ctl stop failed (see $ATLAS_PG_BASE/log)"
}

# Makes psql available (installs postgresql-client if missing).
# The URL of database $1 on the server of DATABASE_URL.
pg_db_url() {
    python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$DATABASE_URL" "$1"
}

start_latency_proxy() {
    local url=$1 ms=$2 out=$3 hostport
    hostport=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print((p.hostname or "127.0.0.1") + ":" + str(p.port or 5432))' "$url")
    "$ATLAS_ROOT/target/release/atlas-latency-proxy" 127.0.0.1:0 "$hostport" "$ms" >"$out" 2>&1 &
    PROXY_PID=$!
    for _ in $(seq 100); do grep -q '^listening on' "$out" && break; sleep 0.1; done
    ATLAS_PROXY=$(sed -n 's/^listening on //p' "$out")
    [[ -n $ATLAS_PROXY ]] || { _pg_log "latency proxy did not start"; cat "$out" >&2; return 1; }
}

via_proxy() {
    python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); a = p.netloc.rsplit("@", 1); n = (a[0] + "@" if len(a) == 2 else "") + sys.argv[2]; print(u.urlunsplit(p._replace(netloc=n)))' "$1" "$ATLAS_PROXY"
}

ensure_psql() {
    command -v psql >/dev/null 2>&1 && return 0
    if [[ -n $ATLAS_PG_BINDIR && -x $ATLAS_PG_BINDIR/psql ]]; then
        PATH=$ATLAS_PG_BINDIR:$PATH
        export PATH
        return 0
    fi
    _pg_apt_install postgresql-client || return 1
    command -v psql >/dev/null 2>&1 || {
        _pg_log "error: psql is still missing after installing postgresql-client"
        return 1
    }
}

_pg_main() {
    case ${1:-} in
        start)
            ensure_postgres
            printf 'export DATABASE_URL=%q\n' "$DATABASE_URL"
            ;;
        stop | status)
            local base=$ATLAS_ROOT/target/pg sum
            if [[ ! -f $base/data/PG_VERSION ]]; then
                sum=$(printf '%s' "$ATLAS_ROOT" | cksum | cut -d' ' -f1)
                base=/var/tmp/atlas-pg-$sum
            fi
            if [[ ! -f $base/data/PG_VERSION ]]; then
                _pg_log "no private cluster under $ATLAS_ROOT/target/pg"
                [[ $1 == stop ]] && return 0
                return 3
            fi
            # As root, act as the data directory's owner.
            if [[ $(id -u) -eq 0 ]]; then
                ATLAS_PG_RUNAS=$(stat -c %U "$base/data")
                [[ $ATLAS_PG_RUNAS != root ]] || ATLAS_PG_RUNAS=""
            fi
            ATLAS_PG_BINDIR=$(_pg_find_bindir "$(<"$base/data/PG_VERSION")") || {
                _pg_log "error: pg_ctl not found"
                return 1
            }
            if [[ $1 == stop ]]; then
                if _pg_as "$ATLAS_PG_BINDIR/pg_ctl" -D "$base/data" status >/dev/null 2>&1; then
                    _pg_as "$ATLAS_PG_BINDIR/pg_ctl" -D "$base/data" -m fast -w stop
                else
                    _pg_log "the private cluster in $base/data is not running"
                fi
            else
                _pg_as "$ATLAS_PG_BINDIR/pg_ctl" -D "$base/data" status
            fi
            ;;
        *)
            printf 'usage: %s start|stop|status   (or source it and call ensure_postgres)\n' "$0" >&2
            return 2
            ;;
    esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    _pg_main "$@"
fi
