#!/usr/bin/env bash
# Quick start (README): builds the release binaries and runs a server (embedded memory store,
# dashboard on http://localhost:8080) and an agent reporting to it, until Ctrl-C.
#
#   ./scripts/run-local.sh
#   KEY=secret ADDRESS=127.0.0.1:9090 ./scripts/run-local.sh
#
# Settings come from the environment and reach both daemons as usual (see README), e.g. KEY,
# REPORT_INTERVAL, POLL_INTERVAL. Defaults of this script:
#   ADDRESS            the server's listen address (default :8080); the agent is pointed at it
#   FILE_STORAGE_PATH  .local/metrics-db.json (relative paths are relative to the repository)
#   RESTORE            true: the snapshot of the previous run is loaded
# Variables of the script itself:
#   CARGO_TARGET_DIR       where cargo builds: binaries are run from $CARGO_TARGET_DIR/release
#                          (default <repository>/target/release)
#   GOLECTRA_BIN_DIR       a directory holding both binaries: no `cargo build`, they are run
#                          as they are (the tests use the debug build)
#   GOLECTRA_START_TIMEOUT seconds the server may take to answer /ping, and the agent to be
#                          ready for SIGTERM (default 10)
#
# Ctrl-C (or SIGTERM/SIGHUP to this script) stops the agent first, so that its final report
# reaches the running server, then the server, which writes its final snapshot; each daemon gets
# exactly one SIGTERM. Each daemon runs in its own session, so the terminal's SIGINT reaches only
# this script. Another Ctrl-C while a daemon stops makes that daemon exit at once.
# Exit status: 0 after a clean stop; 1 if a daemon cannot start, exits on its own (the other one
# is then stopped cleanly) or does not stop cleanly.
set -euo pipefail

me=run-local
say() { printf '%s: %s\n' "$me" "$*" >&2; }
die() {
    say "$*"
    exit 1
}

# Paths given relative to the caller's directory are resolved before moving to the repository.
absolute() {
    case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$PWD" "$1" ;;
    esac
}
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    CARGO_TARGET_DIR=$(absolute "$CARGO_TARGET_DIR")
    export CARGO_TARGET_DIR
fi
bin_dir=${GOLECTRA_BIN_DIR:+$(absolute "$GOLECTRA_BIN_DIR")}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# --- The address: the server listens on ADDRESS, the agent and /ping use a connectable form. ---
listen=${ADDRESS:-:8080}
authority=${listen#http://}
while [ "${authority%/}" != "$authority" ]; do authority=${authority%/}; done
case $authority in
:*) host="" port=${authority#:} ;;
*:*) host=${authority%:*} port=${authority##*:} ;;
*) host="" port=$authority ;;
esac
case $port in
'' | *[!0-9]*) die "cannot tell the port of ADDRESS=$listen (expected host:port, :port or port)" ;;
esac
port=$((10#$port))
[ "$port" -gt 0 ] && [ "$port" -le 65535 ] ||
    die "ADDRESS=$listen: the port must be between 1 and 65535 (the agent needs a fixed port)"
case $host in
'' | 0.0.0.0) connect_host=127.0.0.1 shown_host=localhost ;;
'[::]') connect_host='[::1]' shown_host=localhost ;;
*) connect_host=$host shown_host=$host ;;
esac
server_url=http://$connect_host:$port
start_timeout=${GOLECTRA_START_TIMEOUT:-10}
case $start_timeout in
'' | *[!0-9]*) die "GOLECTRA_START_TIMEOUT=$start_timeout: expected whole seconds" ;;
esac

# --- The binaries. ---
if [ -z "$bin_dir" ]; then
    cargo build --release --bin golectra-server --bin golectra-agent ||
        die "cargo build failed"
    bin_dir=${CARGO_TARGET_DIR:-$repo/target}/release
fi
for binary in golectra-server golectra-agent; do
    [ -f "$bin_dir/$binary" ] && [ -x "$bin_dir/$binary" ] ||
        die "$bin_dir/$binary is missing or not executable"
done

# Each daemon gets its own session (no controlling terminal), so the terminal's SIGINT on Ctrl-C
# reaches only this script. Without setsid, job control while starting it puts the daemon in its
# own process group, which keeps the terminal's signals away as well.
# Usage: start_detached VAR=value... program; sets `started` to its PID.
start_detached() {
    if command -v setsid >/dev/null 2>&1; then
        setsid env "$@" </dev/null &
    else
        set -m
        env "$@" </dev/null &
        set +m
    fi
    started=$!
}

if [ -z "${FILE_STORAGE_PATH:-}" ]; then
    FILE_STORAGE_PATH=.local/metrics-db.json
    mkdir -p .local
fi
export FILE_STORAGE_PATH
export RESTORE=${RESTORE:-true}

# --- Signals: the handler only records the request; the stop itself runs in the main flow. ---
server_pid=""
agent_pid=""
requested=""     # the first signal received (INT, TERM, HUP)
stopping_pid=""  # the daemon that has its SIGTERM and is being waited for
on_signal() {
    if [ -n "$stopping_pid" ]; then
        say "$1 while stopping: stopping at once"
        kill -TERM "$stopping_pid" 2>/dev/null || true
    fi
    requested=${requested:-$1}
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP

# Waits for a child even when signals interrupt `wait`; sets `status` to its exit status.
reap() {
    local pid=$1
    while :; do
        status=0
        wait "$pid" || status=$?
        # After an interrupted wait the child still exists (perhaps as a zombie): wait again.
        kill -0 "$pid" 2>/dev/null || return 0
    done
}

# Whether process $2 runs program $1 and catches SIGTERM, i.e. a signal now takes its orderly way
# (until the daemon has installed its handler, SIGTERM would simply kill it).
handles_term() {
    local comm mask
    comm=$(cat "/proc/$2/comm" 2>/dev/null) || return 1
    [ "$comm" = "${1:0:15}" ] || return 1
    mask=$(sed -n 's/^SigCgt:[[:space:]]*//p' "/proc/$2/status" 2>/dev/null) || return 1
    [ -n "$mask" ] && (((16#$mask >> 14) & 1))
}

# Waits until daemon $1 (PID $2) catches SIGTERM, at most $start_timeout seconds; fails early if
# it exits. Without /proc there is nothing to look at: a short pause stands in.
wait_handles_term() {
    local deadline=$((SECONDS + start_timeout))
    if [ ! -r /proc/self/status ]; then
        sleep 0.5
        return 0
    fi
    until handles_term "$1" "$2"; do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.02
    done
}

# Stops one daemon with exactly one SIGTERM and waits for it; returns 1 unless it exits 0.
stop_daemon() {
    local name=$1 pid=$2
    [ -n "$pid" ] || return 0
    wait_handles_term "$name" "$pid" || true
    if kill -0 "$pid" 2>/dev/null; then
        stopping_pid=$pid
        kill -TERM "$pid" 2>/dev/null || true
    fi
    reap "$pid"
    stopping_pid=""
    if [ "$status" -ne 0 ]; then
        say "$name exited with status $status while stopping"
        return 1
    fi
}

# The agent first, so that its final report reaches a running server; then the server, which
# writes its final snapshot. Runs once: also on any unexpected exit of this script.
stopped=""
stop_all() {
    [ -z "$stopped" ] || return 0
    stopped=1
    local rc=0
    stop_daemon golectra-agent "$agent_pid" || rc=1
    agent_pid=""
    stop_daemon golectra-server "$server_pid" || rc=1
    server_pid=""
    return "$rc"
}
finish() {
    local rc=$?
    trap - EXIT
    stop_all || rc=1
    exit "$rc"
}
trap finish EXIT

# A stop requested while starting: stop what runs and leave with 0.
leave_if_requested() {
    if [ -n "$requested" ]; then
        say "received SIG$requested during start-up: stopping"
        stop_all || exit 1
        exit 0
    fi
}

# Whether the server answers GET /ping with 200.
ping() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 1 "$server_url/ping" 2>/dev/null
    else
        local tcp_host=${connect_host#[}
        tcp_host=${tcp_host%]}
        (
            exec 3<>"/dev/tcp/$tcp_host/$port" || exit 1
            printf 'GET /ping HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' \
                "$connect_host" "$port" >&3
            IFS=' ' read -r -t 1 _ code _ <&3 || exit 1
            [ "$code" = 200 ]
        ) 2>/dev/null
    fi
}

# --- Start-up. ---
start_detached "ADDRESS=$listen" "$bin_dir/golectra-server"
server_pid=$started
deadline=$((SECONDS + start_timeout))
until ping; do
    leave_if_requested
    if ! kill -0 "$server_pid" 2>/dev/null; then
        reap "$server_pid"
        server_pid=""
        die "golectra-server exited during start-up with status $status (see its log above)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        die "golectra-server does not answer $server_url/ping after ${start_timeout}s: stopping it"
    fi
    sleep 0.1
done
leave_if_requested

start_detached "ADDRESS=$server_url" "$bin_dir/golectra-agent"
agent_pid=$started
# The banner once the agent can be stopped cleanly as well.
if ! wait_handles_term golectra-agent "$agent_pid"; then
    leave_if_requested
    if ! kill -0 "$agent_pid" 2>/dev/null; then
        reap "$agent_pid"
        agent_pid=""
        die "golectra-agent exited during start-up with status $status (see its log above)"
    fi
    die "golectra-agent did not start within ${start_timeout}s"
fi
leave_if_requested
echo "dashboard: http://$shown_host:$port  (Ctrl-C stops both daemons)"

# --- Running: until a signal, or until a daemon exits on its own. ---
# A one-second tick bounds the wait should a signal land just before `wait` starts.
while [ -z "$requested" ]; do
    sleep 1 </dev/null &
    tick_pid=$!
    exited=""
    code=0
    wait -n -p exited "$server_pid" "$agent_pid" "$tick_pid" || code=$?
    kill "$tick_pid" 2>/dev/null || true
    wait "$tick_pid" 2>/dev/null || true
    [ -z "$requested" ] || break
    case $exited in
    "$agent_pid") agent_pid="" name=golectra-agent ;;
    "$server_pid") server_pid="" name=golectra-server ;;
    *) continue ;;
    esac
    say "$name exited on its own with status $code: stopping the other daemon"
    stop_all || true
    exit 1
done
stop_all || exit 1
exit 0
