#!/bin/sh
# Installs Golectra on a systemd host without a package manager: both binaries, both units, the
# example env files (never overwriting existing ones) and the docs. Also builds the staging
# tree of the Debian package (build-deb.sh calls it with DESTDIR).
#
# Usage: systemd/install.sh            (after `cargo build --release`)
# Settings (environment):
#   DESTDIR          staging root prepended to every path (default: empty = the live system)
#   PREFIX           installation prefix (default: /usr)
#   BINDIR           binaries (default: $PREFIX/bin)
#   UNITDIR          units (default: $PREFIX/lib/systemd/system)
#   SYSCONFDIR       configuration root; env files go to $SYSCONFDIR/golectra (default: /etc)
#   DOCDIR           documentation (default: $PREFIX/share/doc/golectra)
#   GOLECTRA_BIN_DIR where the built binaries are (default: <repo>/target/release)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr}
BINDIR=${BINDIR:-$PREFIX/bin}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
SYSCONFDIR=${SYSCONFDIR:-/etc}
DOCDIR=${DOCDIR:-$PREFIX/share/doc/golectra}
GOLECTRA_BIN_DIR=${GOLECTRA_BIN_DIR:-$repo/target/release}

for daemon in golectra-server golectra-agent; do
    if [ ! -x "$GOLECTRA_BIN_DIR/$daemon" ]; then
        echo "install.sh: $GOLECTRA_BIN_DIR/$daemon not found: run 'cargo build --release' first (or set GOLECTRA_BIN_DIR)" >&2
        exit 1
    fi
done

for daemon in golectra-server golectra-agent; do
    install -D -m 0755 "$GOLECTRA_BIN_DIR/$daemon" "$DESTDIR$BINDIR/$daemon"
    # The units name /usr/bin and /etc/golectra; other locations are written into the copy.
    install -d -m 0755 "$DESTDIR$UNITDIR"
    sed -e "s|^ExecStart=/usr/bin/|ExecStart=$BINDIR/|" \
        -e "s|^EnvironmentFile=-/etc/golectra/|EnvironmentFile=-$SYSCONFDIR/golectra/|" \
        "$here/$daemon.service" > "$DESTDIR$UNITDIR/$daemon.service"
    chmod 0644 "$DESTDIR$UNITDIR/$daemon.service"
done

# Env files may hold the signing key and a database password: root-only. An existing file is
# the operator's configuration and is left alone; the new example goes next to it.
install -d -m 0755 "$DESTDIR$SYSCONFDIR/golectra"
for env in server.env agent.env; do
    target="$DESTDIR$SYSCONFDIR/golectra/$env"
    if [ -e "$target" ]; then
        install -m 0600 "$here/$env" "$target.example"
        echo "kept $SYSCONFDIR/golectra/$env; the current example is $SYSCONFDIR/golectra/$env.example"
    else
        install -m 0600 "$here/$env" "$target"
    fi
done

install -d -m 0755 "$DESTDIR$DOCDIR"
install -m 0644 "$here/copyright" "$DESTDIR$DOCDIR/copyright"
for doc in "$repo/README.md" "$repo/docs/readme-operations.md"; do
    if [ -f "$doc" ]; then
        install -m 0644 "$doc" "$DESTDIR$DOCDIR/$(basename "$doc")"
    fi
done

echo "installed golectra-server and golectra-agent under ${DESTDIR:-/}"
if [ -z "$DESTDIR" ]; then
    cat <<NEXT
next steps:
  edit $SYSCONFDIR/golectra/server.env and $SYSCONFDIR/golectra/agent.env
  systemctl daemon-reload && systemctl enable --now golectra-server golectra-agent
  journalctl -u golectra-server -u golectra-agent -f
NEXT
fi
