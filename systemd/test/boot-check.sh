#!/bin/bash
# Installs the Debian package in a throwaway Debian bookworm container that boots a real
# systemd (systemd-nspawn), and drives it there as an operator would: see in-container.sh for the
# checks. Run as root; used by server/tests/it/real_systemd.rs.
#
# Usage: systemd/test/boot-check.sh
#   Prints the report (lines "PASS <n> <name>: …" / "FAIL <n> <name>: …", indented evidence, a
#   final "END"), then "==== diagnostics ====" and the container's logs.
#   Exit: 0 every check passed; 1 a check failed, or the run broke (timeout, incomplete report);
#   77 this machine cannot run it (not root, a tool missing, or systemd-nspawn cannot boot).
#
# Environment:
#   GOLECTRA_BIN_DIR     binaries to package (default <target>/debug; build them first)
#   GOLECTRA_TEST_CACHE  cache directory (default /var/cache/golectra-test): the debootstrapped
#                        rootfs-bookworm-<hash of suite, mirror and packages>, the lock, the
#                        per-run copies (runs/) and the last run's results (last-results/).
#                        Clearing it is safe when no run is active: rm -rf /var/cache/golectra-test
#   BOOT_CHECK_TIMEOUT   seconds for the whole run once the lock is held (default 360: a cold
#                        debootstrap included)
#   BOOT_CHECK_LOCK_WAIT seconds to wait for a concurrent run to finish (default 600)
#   DEBIAN_MIRROR        default http://deb.debian.org/debian
#
# Isolation and cleanup: every run boots a fresh copy of the cached rootfs (cp -a: ~1 s; measured
# faster than nspawn --ephemeral, ~3 s, on ext4) with --private-network (loopback only). The copy,
# the container's processes (found by its PID namespace, killed by PID) and the nspawn process are
# removed on every exit path: success, failure, timeout, SIGTERM/SIGINT. Leftovers of a run that
# was SIGKILLed are removed by the next run (under the lock; the lock's descriptor is inherited by
# this script's children, so an orphaned nspawn keeps the lock until its container powers off,
# within its RuntimeMaxSec=). The cache is only ever renamed into place complete, so an
# interrupted debootstrap never leaves a half cache.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
bin_dir=${GOLECTRA_BIN_DIR:-$target/debug}
cache=${GOLECTRA_TEST_CACHE:-/var/cache/golectra-test}
budget=${BOOT_CHECK_TIMEOUT:-360}
lock_wait=${BOOT_CHECK_LOCK_WAIT:-600}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
packages=systemd,systemd-sysv,dbus,curl,procps,jq
# Seconds kept in reserve after the in-container run for the orderly halt and the cleanup.
reserve=20

log() { echo "boot-check: $*" >&2; }
skip() {
    log "SKIP: $*"
    exit 77
}

[ "$(id -u)" = 0 ] || skip "not root (systemd-nspawn and debootstrap need root)"
for tool in debootstrap systemd-nspawn dpkg-deb dpkg-shlibdeps flock findmnt timeout; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is missing (Debian packages: debootstrap, systemd-container, dpkg-dev, util-linux, coreutils)"
done
if [ ! -x "$bin_dir/golectra-server" ] || [ ! -x "$bin_dir/golectra-agent" ]; then
    log "no binaries in $bin_dir: run cargo build --workspace first"
    exit 1
fi

mkdir -p "$cache/runs" /run/systemd/nspawn
exec 9>"$cache/lock"
log "waiting for the lock $cache/lock (at most ${lock_wait}s)"
flock -w "$lock_wait" 9 || { log "another run held $cache/lock for ${lock_wait}s"; exit 1; }
t_start=$(date +%s)
deadline=$((t_start + budget))
remaining() { echo $((deadline - $(date +%s))); }

# ---- cleanup helpers ----
# Unmounts whatever is mounted below DIR (an interrupted debootstrap leaves proc/sys mounts),
# then removes DIR without ever crossing into another file system.
remove_tree() {
    local dir=$1 m
    [ -e "$dir" ] || return 0
    findmnt -rn -o TARGET | awk -v d="$dir/" 'index($0, d) == 1' | sort -r |
        while read -r m; do umount -l "$m" || true; done
    rm -rf --one-file-system "$dir"
}
# SIGKILLs every process in the PID namespace NS ("pid:[inode]"), the container's init first
# (which makes the kernel kill the rest of the namespace too).
kill_namespace() {
    local ns=$1 p
    [ -n "$ns" ] || return 0
    for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ]; then
            kill -KILL "${p#/proc/}" 2>/dev/null || true
        fi
    done
}
# Removes the leftovers of earlier runs that could not clean up (SIGKILL). Only called with the
# lock held, so no other run is active.
remove_stale_runs() {
    local old
    for old in "$cache"/runs/* "$cache"/.tmp-rootfs-*; do
        [ -e "$old" ] || continue
        log "removing the leftover $old"
        if [ -f "$old/pidns" ]; then kill_namespace "$(cat "$old/pidns")"; fi
        remove_tree "$old"
    done
}

nspawn_pid="" pidns="" run="" machine="golectra-check-$$" child="" tmp_rootfs=""
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; fi
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill_namespace "$pidns"
        kill -KILL "$nspawn_pid" 2>/dev/null
        wait "$nspawn_pid" 2>/dev/null
    fi
    kill_namespace "$pidns"
    [ -n "$tmp_rootfs" ] && remove_tree "$tmp_rootfs"
    [ -n "$run" ] && remove_tree "$run"
    rmdir "/run/systemd/nspawn/propagate/$machine" 2>/dev/null
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 143' INT TERM
# Runs a command in the background and waits for it, so that a SIGTERM to this script is
# handled at once (bash runs traps only between foreground commands).
bg() {
    "$@" &
    child=$!
    local rc=0
    wait "$child" || rc=$?
    child=""
    return "$rc"
}

remove_stale_runs

# ---- 1. the cached rootfs ----
key=$(printf '%s\n' "$suite" "$mirror" "$packages" | sha256sum | cut -c1-12)
rootfs=$cache/rootfs-$suite-$key
if [ -d "$rootfs" ]; then
    log "rootfs: cached $rootfs"
else
    tmp_rootfs=$(mktemp -d "$cache/.tmp-rootfs-XXXXXX")
    t=$(date +%s)
    log "rootfs: debootstrap $suite ($packages) into $tmp_rootfs"
    if ! bg timeout --kill-after=10 $(($(remaining) - 150)) debootstrap --variant=minbase \
        --include="$packages" "$suite" "$tmp_rootfs/root" "$mirror" >"$tmp_rootfs.log" 2>&1; then
        tail -n 20 "$tmp_rootfs.log" >&2
        rm -f "$tmp_rootfs.log"
        log "debootstrap failed (network? see above)"
        exit 1
    fi
    rm -f "$tmp_rootfs.log"
    mv "$tmp_rootfs/root" "$rootfs"
    remove_tree "$tmp_rootfs"
    tmp_rootfs=""
    log "rootfs: built in $(($(date +%s) - t))s: $rootfs"
fi

# ---- 2. a throwaway copy, with the check installed ----
run=$(mktemp -d "$cache/runs/run-XXXXXX")
t=$(date +%s)
bg cp -a "$rootfs" "$run/root"
root=$run/root
mkdir -p "$run/results" "$run/deb"
chmod 0755 "$run/results"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
install -m 0755 "$here/in-container.sh" "$root/usr/local/sbin/boot-check"
in_container_limit=$(($(remaining) - reserve - 10))
cat >"$root/etc/systemd/system/boot-check.service" <<UNIT
[Unit]
Description=Golectra boot check (systemd/test/in-container.sh)
After=multi-user.target
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=exec
ExecStart=/usr/local/sbin/boot-check /mnt/results /mnt/deb/golectra.deb
RuntimeMaxSec=$in_container_limit

[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/boot-check.service \
    "$root/etc/systemd/system/multi-user.target.wants/boot-check.service"
log "copy: $(($(date +%s) - t))s"

# ---- 3. the package, from the binaries under test ----
t=$(date +%s)
deb=$(GOLECTRA_BIN_DIR=$bin_dir DEB_COMPRESSOR=none sh "$repo/systemd/build-deb.sh" "$run/debian" |
    tail -n 1)
mv "$deb" "$run/deb/golectra.deb"
log "package: $(basename "$deb") in $(($(date +%s) - t))s"

# ---- 4. boot, wait for the poweroff (bounded), read the results ----
t=$(date +%s)
systemd-nspawn -D "$root" --machine="$machine" --register=no --keep-unit --private-network \
    --boot --console=pipe --bind="$run/results:/mnt/results" --bind-ro="$run/deb:/mnt/deb" \
    </dev/null >"$run/console.log" 2>&1 &
nspawn_pid=$!
our_ns=$(readlink /proc/self/ns/pid)
timed_out=0
while kill -0 "$nspawn_pid" 2>/dev/null; do
    if [ -z "$pidns" ]; then
        for p in $(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null); do
            ns=$(readlink "/proc/$p/ns/pid" 2>/dev/null) || continue
            if [ "$ns" != "$our_ns" ]; then
                pidns=$ns
                echo "$pidns" >"$run/pidns"
            fi
        done
    fi
    if [ "$(remaining)" -le "$reserve" ]; then
        timed_out=1
        break
    fi
    sleep 0.5
done
if [ $timed_out = 1 ]; then
    log "TIMEOUT: the container ran past the budget of ${budget}s; halting it"
    kill -TERM "$nspawn_pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
    kill_namespace "$pidns"
    kill -KILL "$nspawn_pid" 2>/dev/null || true
fi
nspawn_rc=0
wait "$nspawn_pid" || nspawn_rc=$?
nspawn_pid=""
kill_namespace "$pidns"
log "container: exit $nspawn_rc after $(($(date +%s) - t))s; whole run $(($(date +%s) - t_start))s"

rm -rf "$cache/last-results"
cp -r "$run/results" "$cache/last-results"
cp "$run/console.log" "$cache/last-results/console.log"

if [ ! -e "$run/results/booted" ]; then
    tail -n 40 "$run/console.log" >&2
    if [ $timed_out = 1 ]; then
        log "the check never started in the container (console above)"
        exit 1
    fi
    skip "systemd-nspawn did not boot the container (exit $nspawn_rc; console above)"
fi

cat "$run/results/report.txt"
echo "==== diagnostics ===="
for f in boot.txt enable.log dpkg-install.log dpkg-upgrade.log dpkg-remove.log journal.txt; do
    if [ -f "$run/results/$f" ]; then
        echo "---- $f ----"
        cat "$run/results/$f"
    fi
done
echo "---- trace.log (last 60 lines) ----"
tail -n 60 "$run/results/trace.log" 2>/dev/null || true
echo "(everything above is kept in $cache/last-results/)"

if [ $timed_out = 1 ] || [ "$(tail -n 1 "$run/results/report.txt")" != END ]; then
    log "the report is incomplete"
    exit 1
fi
if grep -q '^FAIL ' "$run/results/report.txt"; then exit 1; fi
exit 0
