#!/usr/bin/env bash
# Builds the installable packages into $OUT (default target/dist):
#   atlas_<version>_<arch>.deb: /usr/bin/atlas, its man page atlas(1), the
#     systemd units atlas-sync.service + atlas-sync.timer (nightly
#     `atlas sync --all`), /etc/atlas/atlas.env (secrets, mode 600, kept on
#     upgrade), and in /usr/share/doc/atlas: copyright, changelog.gz (from
#     CHANGELOG.md, by scripts/deb/changelog.py), README.md, CHANGELOG.md,
#     docs/*.md and atlas.example.json. The .deb must pass lintian with no
#     error (warnings are printed);
#   atlas-<version>-windows-x86_64.zip: atlas/atlas.exe, atlas-task.xml
#     (the nightly task for `schtasks /Create /XML`), atlas-task.ps1,
#     atlas-notify.ps1 (a notify command: e-mail or webhook), the
#     example config and README.md. The x86_64-pc-windows-gnu target and
#     the MinGW linker are installed when missing (scripts/windows-toolchain.sh).
# Env: ATLAS_BIN (package this binary instead of a release build), ATLAS_EXE
#      (the same for atlas.exe), OUT, COMPRESS (dpkg-deb compressor: xz by
#      default, gzip, zstd or none), MAINTAINER (the .deb's Maintainer field
#      and changelog signature).
# Needs dpkg-deb and python3; dpkg-shlibdeps (dpkg-dev), help2man and
# lintian are installed with apt-get when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/target/dist}
COMPRESS=${COMPRESS:-xz}
MAINTAINER=${MAINTAINER:-Atlas Data Flow contributors <atlas@example.org>}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
command -v dpkg-deb >/dev/null || { echo "package.sh: needs dpkg-deb (apt-get install dpkg)" >&2; exit 2; }
ARCH=$(dpkg --print-architecture)

# need COMMAND PACKAGE: installs the Debian PACKAGE when COMMAND is missing.
need() {
    command -v "$1" >/dev/null && return 0
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "package.sh: installing $2 (for $1)" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 \
        && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "$2" >&2 \
        || { echo "package.sh: could not install $2; install it and run again" >&2; exit 2; }
}
need dpkg-shlibdeps dpkg-dev
need help2man help2man
need lintian lintian

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
DOC=$PKG/usr/share/doc/atlas
# The newest release's date: the changelog's and the man page's date, so
# two builds of one version give the same files.
RELEASED=$(sed -n 's/^## [^ ]* (\([0-9-]*\))$/\1/p' CHANGELOG.md | head -1)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date -u -d "$RELEASED" +%s)}

install -D -m 755 "$BIN" "$PKG/usr/bin/atlas"
# The compiler's version notes: no use in a package (lintian says so).
if command -v strip >/dev/null; then strip --remove-section=.comment "$PKG/usr/bin/atlas"; fi
install -D -m 644 scripts/deb/atlas-sync.service "$PKG/lib/systemd/system/atlas-sync.service"
install -D -m 644 scripts/deb/atlas-sync.timer "$PKG/lib/systemd/system/atlas-sync.timer"
# Secrets (database URL, API tokens): readable by root only; systemd reads
# the file as root before atlas starts. lintian's override says the same.
install -D -m 600 scripts/deb/atlas.env "$PKG/etc/atlas/atlas.env"
install -D -m 644 scripts/deb/atlas.lintian-overrides "$PKG/usr/share/lintian/overrides/atlas"
install -D -m 644 scripts/deb/copyright "$DOC/copyright"
install -D -m 644 scripts/deb/atlas.example.json "$DOC/atlas.example.json"
install -D -m 644 README.md CHANGELOG.md -t "$DOC"
install -D -m 644 docs/*.md -t "$DOC/docs"
python3 scripts/deb/changelog.py CHANGELOG.md "$VERSION" "$MAINTAINER" | gzip -9n >"$DOC/changelog.gz"
mkdir -p "$PKG/usr/share/man/man1"
help2man --no-info --section=1 --version-string="$VERSION" \
    --name="load paginated JSON APIs into PostgreSQL raw tables" \
    --include=scripts/deb/atlas.h2m "$BIN" | gzip -9n >"$PKG/usr/share/man/man1/atlas.1.gz"

mkdir -p "$PKG/DEBIAN" "$STAGE/debian"
echo /etc/atlas/atlas.env >"$PKG/DEBIAN/conffiles"
# Checksums of every file but the conffile, as dh_md5sums writes them.
(cd "$PKG" && find usr lib -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$PKG/DEBIAN/md5sums"
echo "Source: atlas" >"$STAGE/debian/control" # dpkg-shlibdeps wants one
DEPENDS=$(cd "$STAGE" && dpkg-shlibdeps -O "$PKG/usr/bin/atlas" | sed -n 's/^shlibs:Depends=//p')
cat >"$PKG/DEBIAN/control" <<CONTROL
Package: atlas
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
Depends: $DEPENDS
Section: utils
Priority: optional
Description: load paginated JSON APIs into idempotent PostgreSQL raw tables
 Atlas Data Flow is a command-line ETL: it pulls JSON records from
 paginated HTTP APIs per client and route over a date period and loads
 them into PostgreSQL raw tables (JSONB payload + SHA-256 hash). Ships
 systemd units that run "atlas sync --all" nightly; configure
 /etc/atlas/atlas.json first.
CONTROL
cat >"$PKG/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
echo "atlas: put the config in /etc/atlas/atlas.json (example: /usr/share/doc/atlas/atlas.example.json),"
echo "       secrets in /etc/atlas/atlas.env, then: systemctl enable --now atlas-sync.timer"
POSTINST
chmod 755 "$PKG/DEBIAN/postinst"
DEB=$OUT/atlas_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Z"$COMPRESS" --build "$PKG" "$DEB" >/dev/null
# Errors fail the build; warnings are shown. COMPRESS=none (quick local
# builds, the test) is uncompressed on purpose: lintian's two errors about
# that are left out then.
LINTIAN=(lintian --fail-on error)
if [[ $COMPRESS == none ]]; then
    LINTIAN+=(--suppress-tags uses-no-compression-for-control-tarball,uses-no-compression-for-data-tarball)
fi
if ! "${LINTIAN[@]}" "$DEB" >&2; then
    echo "package.sh: lintian found errors in $DEB (above); the .deb is removed" >&2
    rm -f "$DEB"
    exit 1
fi
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
