#!/usr/bin/env bash
# The Windows build tested for real, under Wine (Debian's wine64), against
# the sample API (its own .exe, under Wine too) and the real PostgreSQL:
#   1. installs what is missing: the Rust target x86_64-pc-windows-gnu,
#      MinGW (gcc-mingw-w64-x86-64), wine64 (scripts/windows-toolchain.sh);
#   2. cross-builds atlas.exe and atlas-sample-api.exe (a debug build
#      without debuginfo: the quickest to build and link);
#   3. in a Wine prefix under target/wine, installs them as the zip would be
#      unpacked, in C:\Program Files\Atlas, with atlas.json there (written
#      as PowerShell 5.1's Set-Content -Encoding UTF8 does: BOM, CRLF) and
#      the error log, the metrics file and the notify command's output in
#      C:\ProgramData\Atlas, the working directory;
#   4. runs atlas.exe --version, init, check,
#      scrap create, scrap run and sync --all --json, checking exit codes,
#      the rows (exactly what the API holds), the error log, that secrets
#      stay hidden, and that a console whose code page is not UTF-8 gets
#      plain lines with their accents whole (a UTF-8 one gets the emoji);
#   5. imports scripts/atlas-task.xml with Wine's schtasks and runs its
#      action as Task Scheduler would (scripts/wine/runtask.c): the daily
#      log is written, atlas's exit code is the task's (0, then 2 for a
#      config saved in Latin-1).
# PostgreSQL comes from scripts/pg.sh (DATABASE_URL, the local server, or a
# private cluster); the test makes and drops its own database.
# Debian 12's Wine (8.0) lacks bcryptprimitives.dll, which Rust's std needs
# (Wine has it from 8.13): the prefix gets a stand-in built from
# scripts/wine/bcryptprimitives.c. Nothing of it goes into the zip.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/windows-toolchain.sh
. "$ROOT/scripts/windows-toolchain.sh"

T0=$SECONDS
PASSED=0
WORK=$ROOT/target/wine
OUTDIR=$WORK/out
DB_NAME=""
WINESERVER=""

_say() { printf 'test-windows: %s\n' "$*" >&2; }

ok() {
    PASSED=$((PASSED + 1))
    _say "ok   $*"
}

# fail WHAT [FILES...]: says what failed, shows the files, exits 1.
fail() {
    _say "FAIL $1"
    shift
    local f
    for f in "$@"; do
        if [[ -f $f ]]; then
            printf -- '--- %s\n' "$f" >&2
            cat "$f" >&2
        fi
    done
    printf 'windows: %d passed, 1 failed\n' "$PASSED"
    exit 1
}

cleanup() {
    if [[ -n $WINESERVER && -n ${WINEPREFIX:-} ]]; then
        "$WINESERVER" -k 2>/dev/null || true
    fi
    if [[ -n $DB_NAME ]]; then
        psql -X -q -w "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" \
            >/dev/null 2>&1 || true
    fi
    stop_postgres_if_started || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 1. tools
ensure_postgres
export DATABASE_URL
ensure_psql
ensure_windows_toolchain wine
WINESERVER=$(dirname "$WINE")/wineserver
T_TOOLS=$SECONDS

# ---------------------------------------------------------------- 2. build
# CARGO_PROFILE_DEV_DEBUG=0: a 40 MB atlas.exe instead of 160 MB, built and
# linked about a fifth faster, and quicker for Wine to load.
_say "cross-building atlas.exe and atlas-sample-api.exe ($WINDOWS_TARGET, debug)"
CARGO_PROFILE_DEV_DEBUG=0 cargo build -q --target "$WINDOWS_TARGET" \
    --bin atlas --bin atlas-sample-api
BUILT=$ROOT/target/$WINDOWS_TARGET/debug
mkdir -p "$WORK/tools" "$OUTDIR"
rm -f "$OUTDIR"/*
x86_64-w64-mingw32-gcc -O2 -shared -s -o "$WORK/tools/bcryptprimitives.dll" \
    scripts/wine/bcryptprimitives.c -lbcrypt
x86_64-w64-mingw32-gcc -O2 -s -o "$WORK/tools/runtask.exe" scripts/wine/runtask.c
T_BUILD=$SECONDS

# ---------------------------------------------------------------- 3. prefix
export WINEPREFIX=$WORK/prefix WINEARCH=win64 WINEDEBUG=-all
# No Mono or Gecko prompts, no desktop menu entries.
export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d"
# Wine's console writes to a terminal in the terminal's charset.
export LANG=C.UTF-8 LC_ALL=C.UTF-8
if [[ ! -f $WINEPREFIX/system.reg ]]; then
    _say "creating the Wine prefix $WINEPREFIX"
    "$WINE" wineboot --init >/dev/null 2>&1 </dev/null || true
fi
# One server for every command below (none left from an earlier run), stopped at exit.
"$WINESERVER" -k 2>/dev/null || true
"$WINESERVER" -p
C=$WINEPREFIX/drive_c
[[ -d $C/windows/system32 ]] || fail "the Wine prefix was not created"
cp "$WORK/tools/bcryptprimitives.dll" "$C/windows/system32/"
cp "$WORK/tools/runtask.exe" "$C/windows/"
INST=$C/Program\ Files/Atlas
DATA=$C/ProgramData/Atlas
TASKDIR=$C/atlas
rm -rf "$INST" "$DATA" "$TASKDIR" "$C/windows/system32/tasks/Atlas Sync"
mkdir -p "$INST" "$DATA" "$TASKDIR"
cp "$BUILT/atlas.exe" "$BUILT/atlas-sample-api.exe" "$INST/"
cp "$BUILT/atlas.exe" scripts/atlas-task.xml "$TASKDIR/"
EXE='C:\Program Files\Atlas\atlas.exe'
CONFIG='C:\Program Files\Atlas\atlas.json'
T_PREFIX=$SECONDS

# ---------------------------------------------------------------- helpers
# atlas WANT NAME ARGS...: atlas.exe under Wine in C:\ProgramData\Atlas,
# stdout and stderr to $OUTDIR/NAME.{out,err}; the exit code must be WANT.
atlas() {
    local want=$1 name=$2 code=0
    shift 2
    (cd "$DATA" && timeout 300 "$WINE" "$EXE" "$@") \
        >"$OUTDIR/$name.out" 2>"$OUTDIR/$name.err" </dev/null || code=$?
    [[ $code == "$want" ]] ||
        fail "atlas.exe $* exited $code, expected $want" "$OUTDIR/$name.out" "$OUTDIR/$name.err"
}

# has FILE TEXT: FILE contains TEXT (fixed string).
has() { grep -qF -- "$2" "$1"; }

sql() { psql -X -q -w -At "$DB_URL" -c "$1"; }

# expected FROM TO: the records the sample API holds for those days.
expected() {
    python3 -c 'import json, sys, urllib.request as u
print(json.load(u.urlopen(sys.argv[1] + "/_expected?data_inicial=" + sys.argv[2] + "&data_final=" + sys.argv[3]))["count"])' \
        "$API_URL" "$1" "$2"
}

# rows_exact N WHAT: the raw table holds exactly N rows, one per hash, each
# dated by its record.
rows_exact() {
    local t=dados_raw_cliente_2151_pedidos got distinct wrong
    got=$(sql "SELECT count(*) FROM $t")
    distinct=$(sql "SELECT count(DISTINCT hash_conteudo) FROM $t")
    wrong=$(sql "SELECT count(*) FROM $t WHERE data_referencia::text IS DISTINCT FROM payload->>'data_pedido'")
    [[ $got == "$1" && $distinct == "$1" && $wrong == 0 ]] ||
        fail "$2: $got rows ($distinct distinct hashes, $wrong misdated), expected $1"
}

# ---------------------------------------------------------------- 4. atlas.exe
TOKEN=tok-janela-7731
FROM=$(date -d '5 days ago' +%F)
TO=$(date -d '3 days ago' +%F)
YESTERDAY=$(date -d yesterday +%F)

# The sample API, under Wine too: every distinct URL answers 500 once, so
# retries and the error log are exercised.
(cd "$DATA" && exec "$WINE" 'C:\Program Files\Atlas\atlas-sample-api.exe' --port 0 \
    --per-day 7 --page-size 3 --fail-first 1 --fault-kinds 500 --auth "bearer:$TOKEN") \
    >"$OUTDIR/api.out" 2>"$OUTDIR/api.err" </dev/null &
deadline=$((SECONDS + 60))
until [[ -f $OUTDIR/api.out ]] && has "$OUTDIR/api.out" "listening on "; do
    ((SECONDS < deadline)) || fail "atlas-sample-api.exe did not start within 60 s" "$OUTDIR/api.err"
    sleep 0.2
done
API_URL=$(sed -n 's/^listening on //p' "$OUTDIR/api.out" | tr -d '\r')
ok "atlas-sample-api.exe listens on $API_URL"

DB_NAME=atlas_win_$$
psql -X -q -w "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1
psql -X -q -w "$DATABASE_URL" -c "CREATE DATABASE $DB_NAME" >/dev/null
DB_URL=$(pg_db_url "$DB_NAME")
export ATLAS_DATABASE_URL=$DB_URL ATLAS_BACKOFF_MS=20 ATLAS_BACKOFF_CAP_MS=200

# The config and the token file as Windows tools write them: atlas.json by
# Set-Content -Encoding UTF8 (BOM, CRLF), token.txt by Notepad (BOM, CRLF),
# and the task's copy by PowerShell 5.1's `>` (UTF-16 LE).
python3 - "$API_URL" "$TOKEN" "$INST" "$TASKDIR" <<'PY'
import json, sys
api, token, inst, taskdir = sys.argv[1:5]
cfg = {
    "error_log": "C:\\ProgramData\\Atlas\\erros_scraps.log",
    "metrics_file": "C:\\ProgramData\\Atlas\\atlas.prom",
    # Every run's --json object, through cmd.exe's stdin.
    "notify": {"on": ["failure", "success"], "timeout_secs": 60,
               "command": ["cmd.exe", "/d", "/c", "more > C:\\ProgramData\\Atlas\\notified.json"]},
    "clients": {
        "2151": {
            "name": "Loja São João",
            "base_url": api + "/page",
            "auth": {"type": "bearer", "token_file": "C:\\Program Files\\Atlas\\token.txt"},
        }
    },
    "routes": {
        "pedidos": {
            "path": "/pedidos",
            "records": "/data",
            "date_params": {"start": "data_inicial", "end": "data_final", "format": "%Y-%m-%d"},
            "slice_days": 1,
            "pagination": {"type": "page", "param": "page", "start": 1, "size_param": "por_pagina",
                           "size": 3, "total_pages": "/total_paginas"},
            "date_field": "/data_pedido",
        }
    },
}
text = json.dumps(cfg, indent=2, ensure_ascii=False).replace("\n", "\r\n") + "\r\n"
open(inst + "/atlas.json", "wb").write(b"\xef\xbb\xbf" + text.encode("utf-8"))
open(inst + "/token.txt", "wb").write(b"\xef\xbb\xbf" + (token + "\r\n").encode())
open(taskdir + "/atlas.json", "wb").write(b"\xff\xfe" + text.encode("utf-16-le"))
PY

atlas 0 help --help
has "$OUTDIR/help.out" "--version" || fail "--help does not list --version" "$OUTDIR/help.out"
atlas 0 version --version
grep -qE '^atlas [0-9]+\.[0-9]+\.[0-9]+ \(([0-9a-f]{12}|unknown), ' "$OUTDIR/version.out" ||
    fail "--version does not print 'atlas X.Y.Z (commit, date)'" "$OUTDIR/version.out"
ok "atlas.exe --version: $(head -1 "$OUTDIR/version.out" | tr -d '\r')"

atlas 0 init --config "$CONFIG" init
ok "init"
# The probe's request is the first to its URL: the API's 500, exit 3; the
# next check finds that URL answered.
atlas 3 check-500 --config "$CONFIG" check
has "$OUTDIR/check-500.out" "500" || has "$OUTDIR/check-500.err" "500" ||
    fail "check does not name the API's 500" "$OUTDIR/check-500.out" "$OUTDIR/check-500.err"
atlas 0 check --config "$CONFIG" check
has "$OUTDIR/check.out" 'C:\Program Files\Atlas\atlas.json' ||
    fail "check does not name the config's Windows path" "$OUTDIR/check.out"
ok "check: exit 3 on the API's 500, then 0"

atlas 0 create --config "$CONFIG" scrap create --client 2151 --route pedidos --from "$FROM" --to "$TO"
ID=$(tr -d '\r\n' <"$OUTDIR/create.out")
[[ $ID =~ ^[0-9]+$ ]] || fail "scrap create printed '$ID'" "$OUTDIR/create.out"
ok "scrap create: $ID"

atlas 0 run --config "$CONFIG" scrap run "$ID"
rows_exact "$(expected "$FROM" "$TO")" "scrap run"
grep -qF "📅 Período: $FROM até $TO" "$OUTDIR/run.out" "$OUTDIR/run.err" ||
    fail "scrap run's lines are not whole" "$OUTDIR/run.out" "$OUTDIR/run.err"
ok "scrap run: $(expected "$FROM" "$TO") rows, exactly the API's"

atlas 0 sync --config "$CONFIG" sync --all --json
python3 - "$OUTDIR/sync.out" "$YESTERDAY" <<'PY' || fail "sync --all --json" "$OUTDIR/sync.out" "$OUTDIR/sync.err"
import json, sys
j = json.load(open(sys.argv[1], encoding="utf-8"))
p = j["pairs"]
assert j["exit_code"] == 0 and len(p) == 1, j
assert p[0]["status"] == "done" and p[0]["loaded_until"] == sys.argv[2], p[0]
assert p[0]["duplicates"] > 0 and j["totals"]["pairs_ok"] == 1, j
PY
rows_exact "$(expected "$FROM" "$YESTERDAY")" "sync --all"
ok "sync --all --json: loaded up to $YESTERDAY, rows exact"

# The notify command got the same object on stdin; the metrics file has the pair.
python3 - "$OUTDIR/sync.out" "$DATA/notified.json" "$DATA/atlas.prom" <<'PY' || fail "notify command or metrics file" "$DATA/notified.json" "$DATA/atlas.prom" "$OUTDIR/sync.err"
import json, sys
printed = json.load(open(sys.argv[1], encoding="utf-8"))
assert json.load(open(sys.argv[2], encoding="utf-8")) == printed, "notified.json differs"
prom = open(sys.argv[3], encoding="utf-8").read()
assert 'atlas_last_run_exit_code{client="2151",route="pedidos"} 0\n' in prom, prom
PY
atlas 0 notify-test --config "$CONFIG" check --notify-test
grep -qE '^command +OK' "$OUTDIR/notify-test.out" || fail "check --notify-test" "$OUTDIR/notify-test.out"
ok "notify: cmd.exe got the --json object on stdin; atlas.prom written; check --notify-test OK"

LOG=$DATA/erros_scraps.log
[[ -f $LOG ]] || fail "no error log in C:\\ProgramData\\Atlas"
has "$LOG" "500" || fail "the error log does not tell the 500s" "$LOG"
grep -q $'\r$' "$LOG" || fail "the error log's lines do not end in CRLF" "$LOG"
ok "error log in C:\\ProgramData\\Atlas: $(grep -c . "$LOG") lines, CRLF"

if grep -rqF --exclude='api.*' -- "$TOKEN" "$OUTDIR" "$LOG"; then
    fail "the token reached an output or the error log"
fi
ok "the token appears in no output nor log"

# A console: Wine's, in a pseudo-terminal. Code page 850 (Western Europe's
# OEM page, what a Brazilian console starts with) gets plain lines; 65001
# (UTF-8) gets the emoji. Accents come through whole in both.
console() {
    local cp=$1 code=0
    printf '@chcp %s >nul\r\n@"%s" --config "%s" sync --all\r\n' "$cp" "$EXE" "$CONFIG" \
        >"$DATA/console.cmd"
    # Wine's console now and then never lets `cmd /c` end after atlas has
    # (seen once, at code page 65001, with the output complete): a timeout is
    # tried once more before it counts.
    local try
    for try in 1 2; do
        code=0
        (cd "$DATA" && timeout 120 script -qec "'$WINE' cmd /c 'C:\\ProgramData\\Atlas\\console.cmd'" /dev/null) \
            </dev/null | tr -d '\r' >"$OUTDIR/console-$cp.txt" || code=$?
        [[ $code == 124 && $try == 1 ]] || break
        printf 'test-windows: the console at code page %s did not end within 120 s: tried again\n' "$cp" >&2
    done
    [[ $code == 0 ]] || fail "sync --all in a console at code page $cp exited $code" "$OUTDIR/console-$cp.txt"
    has "$OUTDIR/console-$cp.txt" "Nada novo para 2151 / pedidos: carregado até $YESTERDAY" ||
        fail "code page $cp: the line or its accent is not whole" "$OUTDIR/console-$cp.txt"
    ! grep -q 'Ã' "$OUTDIR/console-$cp.txt" || fail "code page $cp: mojibake" "$OUTDIR/console-$cp.txt"
}
console 850
! grep -qP '[\x{1F300}-\x{1FAFF}\x{2600}-\x{27BF}]' "$OUTDIR/console-850.txt" ||
    fail "code page 850 got emoji" "$OUTDIR/console-850.txt"
console 65001
has "$OUTDIR/console-65001.txt" "✅ Nada novo" || fail "code page 65001 got no emoji" "$OUTDIR/console-65001.txt"
ok "console: plain at code page 850, emoji at 65001, accents whole in both"

# ---------------------------------------------------------------- 5. the task
code=0
timeout 120 "$WINE" schtasks /Create /TN "Atlas Sync" /XML 'C:\atlas\atlas-task.xml' \
    >"$OUTDIR/schtasks.out" 2>&1 </dev/null || code=$?
[[ $code == 0 && -f "$C/windows/system32/tasks/Atlas Sync" ]] ||
    fail "schtasks /Create /XML atlas-task.xml exited $code" "$OUTDIR/schtasks.out"
ok "schtasks /Create /TN \"Atlas Sync\" /XML atlas-task.xml"

# run_task WANT NAME: the task's action, as Task Scheduler starts it.
run_task() {
    local want=$1 name=$2 code=0 fields
    fields=$(python3 -c '
import sys, xml.etree.ElementTree as E
ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
e = E.parse(sys.argv[1]).getroot().find("t:Actions/t:Exec", ns)
for k in ("Command", "Arguments", "WorkingDirectory"):
    print(e.find("t:" + k, ns).text.strip())' "$TASKDIR/atlas-task.xml")
    {
        read -r TASK_COMMAND
        read -r TASK_ARGUMENTS
        read -r TASK_WORKDIR
    } <<<"$fields"
    export TASK_COMMAND TASK_ARGUMENTS TASK_WORKDIR
    timeout 300 "$WINE" 'C:\windows\runtask.exe' >"$OUTDIR/$name.out" 2>&1 </dev/null || code=$?
    [[ $code == "$want" ]] || fail "the task's action exited $code, expected $want" "$OUTDIR/$name.out"
}
run_task 0 task
shopt -s nullglob
logs=("$TASKDIR"/logs/sync-*.log)
shopt -u nullglob
((${#logs[@]} == 1)) || fail "the task wrote ${#logs[@]} logs in C:\\atlas\\logs, expected 1"
has "${logs[0]}" "Nada novo para 2151 / pedidos: carregado até $YESTERDAY" ||
    fail "the task's log lacks its line (UTF-8, accents whole)" "${logs[0]}"
! grep -qP '[\x{1F300}-\x{1FAFF}\x{2600}-\x{27BF}]' "${logs[0]}" || fail "--plain log has emoji" "${logs[0]}"
ok "the task's action: exit 0, C:\\atlas\\logs\\$(basename "${logs[0]}")"

# A config saved in Latin-1 ("ANSI"): exit 2 is the task's result, the log says why.
python3 -c 'import sys; t = open(sys.argv[1], "rb").read()[2:].decode("utf-16-le"); open(sys.argv[1], "wb").write(t.encode("latin-1"))' \
    "$TASKDIR/atlas.json"
run_task 2 task-latin1
has "${logs[0]}" "is not UTF-8: save it as UTF-8" || fail "the log does not say why" "${logs[0]}"
ok "the task's action: exit 2 for a Latin-1 atlas.json, named in the log"

_say "times: tools $((T_TOOLS - T0))s, build $((T_BUILD - T_TOOLS))s, prefix $((T_PREFIX - T_BUILD))s, tests $((SECONDS - T_PREFIX))s; total $((SECONDS - T0))s"
printf 'windows: %d passed, 0 failed\n' "$PASSED"
