#!/usr/bin/env bash
# Builds the installable packages into $OUT (default target/dist):
#   atlas_<version>_<arch>.deb: /usr/bin/atlas, the systemd units
#     atlas-sync.service + atlas-sync.timer (nightly `atlas sync --all`),
#     /etc/atlas/atlas.env (secrets, mode 600, kept on upgrade), and
#     /usr/share/doc/atlas/{README.md,atlas.example.json};
#   atlas-<version>-windows-x86_64.zip: atlas/atlas.exe, atlas-task.xml
#     (the nightly task for `schtasks /Create /XML`), atlas-task.ps1,
#     atlas-notify.ps1 (a notify command: e-mail or webhook), the
#     example config and README.md. The x86_64-pc-windows-gnu target and
#     the MinGW linker are installed when missing (scripts/windows-toolchain.sh).
# Env: ATLAS_BIN (package this binary instead of a release build), ATLAS_EXE
#      (the same for atlas.exe), OUT, COMPRESS (dpkg-deb compressor: xz by
#      default, gzip, zstd or none).
# Needs dpkg-deb (Debian's dpkg) and python3 (for the zip).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/target/dist}
COMPRESS=${COMPRESS:-xz}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
command -v dpkg-deb >/dev/null || { echo "package.sh: needs dpkg-deb (apt-get install dpkg)" >&2; exit 2; }
ARCH=$(dpkg --print-architecture)

BIN=${ATLAS_BIN:-}
if [[ -z $BIN ]]; then
    cargo build --release --bin atlas -q
    BIN=$ROOT/target/release/atlas
fi
[[ -x $BIN ]] || { echo "package.sh: no executable at $BIN" >&2; exit 2; }

mkdir -p "$OUT"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
PKG=$STAGE/atlas
install -D -m 755 "$BIN" "$PKG/usr/bin/atlas"
install -D -m 644 scripts/deb/atlas-sync.service "$PKG/lib/systemd/system/atlas-sync.service"
install -D -m 644 scripts/deb/atlas-sync.timer "$PKG/lib/systemd/system/atlas-sync.timer"
install -D -m 600 scripts/deb/atlas.env "$PKG/etc/atlas/atlas.env"
install -D -m 644 scripts/deb/atlas.example.json "$PKG/usr/share/doc/atlas/atlas.example.json"
install -D -m 644 README.md "$PKG/usr/share/doc/atlas/README.md"
mkdir -p "$PKG/DEBIAN"
echo /etc/atlas/atlas.env >"$PKG/DEBIAN/conffiles"
cat >"$PKG/DEBIAN/control" <<CONTROL
Package: atlas
Version: $VERSION
Architecture: $ARCH
Maintainer: Atlas Data Flow maintainers <atlas@localhost>
Depends: libc6
Section: utils
Priority: optional
Description: Atlas Data Flow: paginated JSON APIs into idempotent PostgreSQL raw tables
 One command-line ETL: pulls JSON records from paginated HTTP APIs per
 client and route over a date period and loads them into PostgreSQL raw
 tables (JSONB payload + SHA-256 hash). Ships systemd units that run
 "atlas sync --all" nightly; configure /etc/atlas/atlas.json first.
CONTROL
cat >"$PKG/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
echo "atlas: put the config in /etc/atlas/atlas.json (example: /usr/share/doc/atlas/atlas.example.json),"
echo "       secrets in /etc/atlas/atlas.env, then: systemctl enable --now atlas-sync.timer"
POSTINST
chmod 755 "$PKG/DEBIAN/postinst"
DEB=$OUT/atlas_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Z"$COMPRESS" --build "$PKG" "$DEB" >/dev/null
echo "$DEB"

EXE=${ATLAS_EXE:-}
if [[ -z $EXE ]]; then
    # shellcheck source=scripts/windows-toolchain.sh
    . "$ROOT/scripts/windows-toolchain.sh"
    ensure_windows_toolchain
    cargo build --release --bin atlas --target "$WINDOWS_TARGET" -q
    EXE=$ROOT/target/$WINDOWS_TARGET/release/atlas.exe
fi
[[ -f $EXE ]] || { echo "package.sh: no atlas.exe at $EXE" >&2; exit 2; }
ZIP=$OUT/atlas-$VERSION-windows-x86_64.zip
rm -f "$ZIP"
python3 - "$ZIP" "$ROOT" "$EXE" <<'PY'
import sys, zipfile
out, root, exe = sys.argv[1:4]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    z.write(exe, "atlas/atlas.exe")
    z.write(f"{root}/scripts/atlas-task.xml", "atlas/atlas-task.xml")
    z.write(f"{root}/scripts/atlas-task.ps1", "atlas/atlas-task.ps1")
    z.write(f"{root}/scripts/atlas-notify.ps1", "atlas/atlas-notify.ps1")
    z.write(f"{root}/scripts/deb/atlas.example.json", "atlas/atlas.example.json")
    z.write(f"{root}/README.md", "atlas/README.md")
PY
echo "$ZIP"
