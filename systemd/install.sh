#!/bin/sh
# Installs Golectra on a systemd host without a package manager: both binaries, both units, the
# example env files (never overwriting existing ones) and the docs. Also builds the staging
# tree of the Debian package (build-deb.sh calls it with DESTDIR).
#
# Usage: systemd/install.sh            (after `cargo build --release`)
#        systemd/install.sh --uninstall [--purge]
#   --uninstall stops and disables the services (on the live system), then removes the binaries,
#   the units and the docs; the env files in $SYSCONFDIR/golectra and the data in
#   /var/lib/golectra and /var/lib/golectra-agent are kept. --purge removes those too.
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

uninstall=false
purge=false
for arg in "$@"; do
    case $arg in
        --uninstall) uninstall=true ;;
        --purge) purge=true ;;
        *) echo "install.sh: unknown argument '$arg' (use --uninstall [--purge])" >&2; exit 2 ;;
    esac
done
if $purge && ! $uninstall; then
    echo "install.sh: --purge goes with --uninstall" >&2
    exit 2
fi

if $uninstall; then
    # Disabling needs the unit files, so it comes before they are removed.
    if [ -z "$DESTDIR" ] && command -v systemctl >/dev/null 2>&1; then
        if [ -d /run/systemd/system ]; then
            systemctl stop golectra-agent.service golectra-server.service || true
        fi
        systemctl disable golectra-agent.service golectra-server.service || true
    fi
    for daemon in golectra-server golectra-agent; do
        rm -f "$DESTDIR$BINDIR/$daemon" "$DESTDIR$UNITDIR/$daemon.service"
    done
    rm -rf "$DESTDIR$DOCDIR"
    if $purge; then
        rm -rf "$DESTDIR$SYSCONFDIR/golectra"
        rm -rf "$DESTDIR/var/lib/private/golectra" "$DESTDIR/var/lib/golectra" \
            "$DESTDIR/var/lib/private/golectra-agent" "$DESTDIR/var/lib/golectra-agent"
        echo "removed golectra-server and golectra-agent, their settings and data under ${DESTDIR:-/}"
    else
        echo "removed golectra-server and golectra-agent under ${DESTDIR:-/}; kept $SYSCONFDIR/golectra/*.env, /var/lib/golectra and /var/lib/golectra-agent (--purge removes them)"
    fi
    if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
    exit 0
fi

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
# The README and the manual; its links (docs/x.md) resolve in the installed docs/ directory.
install -m 0644 "$repo/README.md" "$DESTDIR$DOCDIR/README.md"
install -d -m 0755 "$DESTDIR$DOCDIR/docs"
for doc in "$repo"/docs/*.md; do
    install -m 0644 "$doc" "$DESTDIR$DOCDIR/docs/$(basename "$doc")"
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
