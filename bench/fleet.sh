#!/usr/bin/env bash
# A fleet of simulated agents against one server (docs/performance.md, "Fleet").
#
#   bench/fleet.sh [--agents 1000] [--duration 60s] [--store memory|postgres|both] [--threads 8] [--cpus 2]
#
# For each store it builds the release server and the simulator (server/examples/fleet_load),
# starts a fresh server with default settings (memory store in an empty directory; PostgreSQL in
# a new empty database next to GOLECTRA_BENCH_DSN, default
# postgres://postgres@127.0.0.1:5432/test, dropped afterwards), and runs N agents: each its own
# keep-alive connection from its own loopback address (127.10.x.y), its own host=sim-<i> tag,
# the agent's default metric set (27 runtime gauges, RandomValue, TotalMemory, FreeMemory,
# CPUutilization1..--cpus, PollCount) and one gzip batch with an Idempotency-Key every 10 s
# (the default REPORT_INTERVAL; PollCount +5 for POLL_INTERVAL=2s), the start times spread over
# the first interval, which is the warm-up. Over the measured --duration after it, it prints the
# server's CPU (utime+stime from /proc/<pid>/stat) as % of one core, its RSS at the end, the
# report latency p50/p99/max, and for PostgreSQL the CPU of the database's backends; then the
# stored metric count and whether every agent's PollCount;host=sim-<i> on the server equals
# the deltas it delivered. Server settings in the environment (MAX_CONNECTIONS, WORKERS, …)
# reach the server: above about 1 000 agents raise MAX_CONNECTIONS (default 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

agents=1000; duration=60s; store=both; threads=8; cpus=2
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) agents=$2; shift 2;;
    --duration) duration=$2; shift 2;;
    --store) store=$2; shift 2;;
    --threads) threads=$2; shift 2;;
    --cpus) cpus=$2; shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
case "$store" in memory|postgres|both) ;; *) echo "--store $store: expected memory, postgres or both" >&2; exit 2;; esac
dsn=${GOLECTRA_BENCH_DSN:-postgres://postgres@127.0.0.1:5432/test}
if [ "$agents" -ge 1024 ] && [ -z "${MAX_CONNECTIONS:-}" ]; then
  echo "note: $agents agents and the /metrics and snapshot reads need more than MAX_CONNECTIONS=1024 (the default): idle agents will be evicted; set MAX_CONNECTIONS" >&2
fi

command -v python3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3; }

cargo build --release --quiet --bin golectra-server --example fleet_load
server_bin=$root/target/release/golectra-server
sim_bin=$root/target/release/examples/fleet_load
work=$(mktemp -d)
server_pid=
fresh_dsn=
stop_server() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  server_pid=
}
drop_db() {
  if [ -n "$fresh_dsn" ]; then "$sim_bin" drop-db "$dsn" "$fresh_dsn" || true; fi
  fresh_dsn=
}
cleanup() { stop_server; drop_db; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() { # args: extra server flags; sets server_pid, port, dir
  port=$(free_port)
  dir=$(mktemp -d -p "$work")
  (cd "$dir" && exec "$server_bin" -a "127.0.0.1:$port" "$@" 2>"$dir/server.log") &
  server_pid=$!
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/ping" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "server did not start:"; cat "$dir/server.log"; exit 1
}

failed=0
run_store() { # name, server flags...
  local name=$1; shift
  start_server "$@"
  echo "== $name: idle RSS $(awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$server_pid/status")"
  local pg=()
  [ -n "$fresh_dsn" ] && pg=(--pg-dsn "$fresh_dsn")
  "$sim_bin" run --server "127.0.0.1:$port" --agents "$agents" --duration "$duration" \
    --threads "$threads" --cpus "$cpus" --pid "$server_pid" "${pg[@]}" || { echo "!! $name: FAILED"; failed=1; }
  local warnings; warnings=$(grep -c -E ' (WARN|ERROR) ' "$dir/server.log" || true)
  [ "$warnings" = 0 ] || { echo "!! $name: $warnings warnings/errors in the server log, the first:"; grep -m3 -E ' (WARN|ERROR) ' "$dir/server.log"; }
  stop_server
}

echo "bench/fleet.sh --agents $agents --duration $duration --store $store; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ "$store" = memory ] || [ "$store" = both ]; then
  run_store memory
fi
if [ "$store" = postgres ] || [ "$store" = both ]; then
  fresh_dsn=$("$sim_bin" fresh-db "$dsn")
  run_store "postgres ($dsn, a fresh database)" -d "$fresh_dsn"
  drop_db
fi
exit "$failed"
