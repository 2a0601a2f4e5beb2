#!/usr/bin/env bash
# What building and running atlas.exe from Linux needs, installed when
# missing. Source it (`. scripts/windows-toolchain.sh`), then call
# `ensure_windows_toolchain [wine]`: the Rust target x86_64-pc-windows-gnu
# (rustup), its linker and C compiler (Debian's gcc-mingw-w64-x86-64, for
# ring), and with `wine` Debian's wine64 and `script` (bsdutils, for a
# console in a pseudo-terminal); it sets WINE to Wine's loader. Debian
# packages go, in one apt-get call, through scripts/pg.sh's apt helper.
set -euo pipefail

WINDOWS_TARGET=x86_64-pc-windows-gnu
# shellcheck source=scripts/pg.sh
. "$(dirname "${BASH_SOURCE[0]}")/pg.sh"

_win_log() { printf 'windows-toolchain: %s\n' "$*" >&2; }

# Debian's wine64 puts its loader in /usr/lib/wine (the `wine` package, not
# needed, would add /usr/bin/wine).
_win_find_wine() {
    local w
    for w in "${WINE:-}" /usr/lib/wine/wine64 "$(command -v wine64 2>/dev/null || true)"; do
        if [[ -n $w && -x $w ]]; then
            WINE=$w
            return 0
        fi
    done
    return 1
}

ensure_windows_toolchain() {
    local -a need=()
    local installed
    installed=$(rustup target list --installed 2>/dev/null || true)
    if ! grep -qx "$WINDOWS_TARGET" <<<"$installed"; then
        _win_log "adding the Rust target $WINDOWS_TARGET"
        rustup target add "$WINDOWS_TARGET" >&2 || {
            _win_log "error: rustup target add $WINDOWS_TARGET failed"
            return 1
        }
    fi
    command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64)
    if [[ ${1:-} == wine ]]; then
        _win_find_wine || need+=(wine64)
        command -v script >/dev/null 2>&1 || need+=(bsdutils)
    fi
    if ((${#need[@]} > 0)); then
        _pg_apt_install "${need[@]}" || return 1
    fi
    if [[ ${1:-} == wine ]] && ! _win_find_wine; then
        _win_log "error: wine64 is installed but /usr/lib/wine/wine64 is missing"
        return 1
    fi
}
