#!/usr/bin/env bash
# Builds the release binaries and runs a server (embedded memory store, dashboard on
# http://localhost:8080) and an agent reporting to it, until Ctrl-C. Extra settings can be
# passed through the environment (see README), e.g. KEY=secret ./scripts/run-local.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin golectra-server --bin golectra-agent
mkdir -p .local
server_pid=""
agent_pid=""
stop() {
  trap - INT TERM EXIT
  [ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT
FILE_STORAGE_PATH="${FILE_STORAGE_PATH:-.local/metrics-db.json}" RESTORE="${RESTORE:-true}" \
  ./target/release/golectra-server &
server_pid=$!
./target/release/golectra-agent &
agent_pid=$!
echo "dashboard: http://localhost:8080  (Ctrl-C stops both daemons)"
wait
