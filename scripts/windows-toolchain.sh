#!/usr/bin/env bash
# What building and running atlas.exe from Linux needs, installed when
# missing. Source it (`. scripts/windows-toolchain.sh`), then call:
#   ensure_windows_target  the Rust target x86_64-pc-windows-gnu (rustup) and
#                          its linker, Debian's gcc-mingw-w64-x86-64 (also
#                          ring's C compiler);
#   ensure_wine            Debian's wine64; sets WINE to its loader.
# Debian packages go through scripts/pg.sh's apt helper (root or sudo).
set -euo pipefail

WINDOWS_TARGET=x86_64-pc-windows-gnu
# shellcheck source=scripts/pg.sh
. "$(dirname "${BASH_SOURCE[0]}")/pg.sh"

_win_log() { printf 'windows-toolchain: %s\n' "$*" >&2; }

ensure_windows_target() {
    if ! rustup target list --installed 2>/dev/null | grep -qx "$WINDOWS_TARGET"; then
        _win_log "adding the Rust target $WINDOWS_TARGET"
        rustup target add "$WINDOWS_TARGET" >&2 || {
            _win_log "error: rustup target add $WINDOWS_TARGET failed"
            return 1
        }
    fi
    if ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
        _pg_apt_install gcc-mingw-w64-x86-64 || return 1
    fi
}

ensure_wine() {
    # Debian's wine64 puts its loader in /usr/lib/wine; the `wine` package
    # (not needed) would add /usr/bin/wine.
    local w
    for w in "${WINE:-}" /usr/lib/wine/wine64 "$(command -v wine64 2>/dev/null || true)"; do
        if [[ -n $w && -x $w ]]; then
            WINE=$w
            return 0
        fi
    done
    _pg_apt_install wine64 || return 1
    if [[ ! -x /usr/lib/wine/wine64 ]]; then
        _win_log "error: wine64 is installed but /usr/lib/wine/wine64 is missing"
        return 1
    fi
    WINE=/usr/lib/wine/wine64
}
