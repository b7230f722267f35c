#!/bin/sh
# Builds the Debian package golectra_<version>_<arch>.deb: both binaries in /usr/bin, both
# units in /usr/lib/systemd/system, the env files in /etc/golectra as conffiles, and the docs.
# The staging tree is made by install.sh, so the package and a script install are the same
# layout. Needs dpkg-deb and dpkg-shlibdeps (package dpkg-dev).
#
# Usage: systemd/build-deb.sh [OUTDIR]        (default OUTDIR: <target dir>/debian)
#   Without GOLECTRA_BIN_DIR it runs `cargo build --release` first; with it, the binaries in that
#   directory are packaged as they are (tests use the debug build).
#   DEB_COMPRESSOR: dpkg-deb's -Z (default xz; the tests use none to save time).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
target=${CARGO_TARGET_DIR:-$repo/target}
out=${1:-$target/debian}

if [ -z "${GOLECTRA_BIN_DIR:-}" ]; then
    cargo build --release --locked --manifest-path "$repo/Cargo.toml" \
        -p golectra-server -p golectra-agent
    GOLECTRA_BIN_DIR=$target/release
fi

# The package version is the one the binary reports: `golectra-server 0.1.0 (commit …)`.
version=$("$GOLECTRA_BIN_DIR/golectra-server" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/debian/golectra
DESTDIR=$root PREFIX=/usr UNITDIR=/usr/lib/systemd/system SYSCONFDIR=/etc \
    GOLECTRA_BIN_DIR=$GOLECTRA_BIN_DIR sh "$here/install.sh" >/dev/null

install -d -m 0755 "$root/DEBIAN"
# Shared-library dependencies, computed the Debian way from the binaries themselves.
printf 'Source: golectra\n\nPackage: golectra\nArchitecture: any\n' > "$stage/debian/control"
depends=$(cd "$stage" && dpkg-shlibdeps -O debian/golectra/usr/bin/golectra-server \
    debian/golectra/usr/bin/golectra-agent | sed -n 's/^shlibs:Depends=//p')

cat > "$root/DEBIAN/control" <<CONTROL
Package: golectra
Version: $version
Architecture: $arch
Maintainer: Golectra developers <golectra@users.noreply.github.com>
Depends: $depends
Section: net
Priority: optional
Homepage: https://github.com/vshulcz/Golectra
Installed-Size: $(du -sk "$root" | cut -f1)
Description: self-hosted metrics server and agent
 golectra-server stores gauges and counters pushed over HTTP, shows them on a dashboard and
 exposes them to Prometheus; golectra-agent samples host and process metrics and pushes them.
 Both run as hardened systemd services configured in /etc/golectra/*.env.
CONTROL
printf '/etc/golectra/server.env\n/etc/golectra/agent.env\n' > "$root/DEBIAN/conffiles"

# Maintainer scripts: reload unit files; restart running services on upgrade so the new binaries
# run; on removal stop the services and disable them (the enable symlinks in
# /etc/systemd/system/*.wants would otherwise dangle once the unit files are gone; `disable`
# needs the unit files, so it runs in prerm). A reinstall after a removal is therefore not
# enabled again by itself: enable it as after a first install. Nothing is enabled or started on
# first install. Purge also removes the data in the state directory.
cat > "$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    if [ -n "$2" ]; then
        systemctl try-restart golectra-server.service golectra-agent.service || true
    else
        echo "golectra: edit /etc/golectra/*.env, then: systemctl enable --now golectra-server golectra-agent"
    fi
fi
SCRIPT
cat > "$root/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop golectra-agent.service golectra-server.service || true
    fi
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable golectra-agent.service golectra-server.service || true
    fi
fi
SCRIPT
cat > "$root/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    # The memory store's snapshot, the audit file and the agent's state file (DynamicUser keeps
    # them under private/).
    rm -rf /var/lib/private/golectra /var/lib/golectra \
        /var/lib/private/golectra-agent /var/lib/golectra-agent
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
SCRIPT
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/golectra_${version}_${arch}.deb"
dpkg-deb --root-owner-group "-Z${DEB_COMPRESSOR:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
