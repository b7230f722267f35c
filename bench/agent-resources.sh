#!/usr/bin/env bash
# Measures the release agent's resident memory and CPU use at its default intervals
# (poll 2 s, report 10 s) while it reports to a local golectra-server.
#
#   bench/agent-resources.sh [SECONDS]        (default 60)
#
# SERVER_BIN=path uses an existing server binary instead of building the release one.
# CPU is measured twice: from /proc/PID/stat (utime+stime, all threads, clock ticks) and from
# /proc/PID/task/*/schedstat (nanoseconds on CPU per live thread), over the window after a
# 5 s warm-up; "% of one core" = CPU time / wall time.
set -euo pipefail

DURATION=${1:-60}
WARMUP=5
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

cargo build --release -q -p golectra-agent
AGENT_BIN=$ROOT/target/release/golectra-agent
if [[ -z "${SERVER_BIN:-}" ]]; then
    cargo build --release -q -p golectra-server
    SERVER_BIN=$ROOT/target/release/golectra-server
fi

WORK=$(mktemp -d)
SERVER_PID=""
AGENT_PID=""
cleanup() {
    [[ -n "$AGENT_PID" ]] && kill "$AGENT_PID" 2>/dev/null || true
    [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

env -u ADDRESS -u KEY -u REPORT_INTERVAL -u POLL_INTERVAL -u RATE_LIMIT \
    "$SERVER_BIN" -a 127.0.0.1:0 -f "$WORK/db.json" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
    ADDR=$(sed -n 's/.*listening on \(http:\/\/[^ ]*\).*/\1/p' "$WORK/server.log")
    [[ -n "$ADDR" ]] && break
    sleep 0.1
done
[[ -n "${ADDR:-}" ]] || { echo "server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }

env -u KEY -u REPORT_INTERVAL -u POLL_INTERVAL -u RATE_LIMIT -u RUST_LOG \
    "$AGENT_BIN" -a "$ADDR" 2>"$WORK/agent.log" &
AGENT_PID=$!

ticks() { awk '{print $14 + $15}' "/proc/$AGENT_PID/stat"; }
sched_ns() { cat /proc/"$AGENT_PID"/task/*/schedstat | awk '{s += $1} END {print s}'; }
now_ns() { date +%s%N; }

sleep "$WARMUP"
T0=$(now_ns); K0=$(ticks); S0=$(sched_ns)
sleep "$DURATION"
T1=$(now_ns); K1=$(ticks); S1=$(sched_ns)
RSS_KB=$(awk '/^VmRSS:/ {print $2}' "/proc/$AGENT_PID/status")
HWM_KB=$(awk '/^VmHWM:/ {print $2}' "/proc/$AGENT_PID/status")
THREADS=$(awk '/^Threads:/ {print $2}' "/proc/$AGENT_PID/status")
HZ=$(getconf CLK_TCK)
POLLS=$(curl -s "$ADDR/value/counter/PollCount" || echo "?")

awk -v rss="$RSS_KB" -v hwm="$HWM_KB" -v t0="$T0" -v t1="$T1" -v k0="$K0" -v k1="$K1" \
    -v s0="$S0" -v s1="$S1" -v hz="$HZ" -v threads="$THREADS" -v polls="$POLLS" \
    -v dur="$DURATION" 'BEGIN {
    wall = (t1 - t0) / 1e9
    printf "golectra-agent (release), default intervals, %d s window after warm-up\n", dur
    printf "  RSS now      %.2f MiB (peak %.2f MiB), %d threads\n", rss / 1024, hwm / 1024, threads
    printf "  CPU schedstat %.4f %% of one core (%.1f ms in %.1f s)\n", (s1 - s0) / 1e9 / wall * 100, (s1 - s0) / 1e6, wall
    printf "  CPU stat      %.4f %% of one core (%d ticks of 1/%d s)\n", (k1 - k0) / hz / wall * 100, k1 - k0, hz
    printf "  server PollCount %s\n", polls
}'
