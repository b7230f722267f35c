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
  # The agent first, so that its final report reaches a running server; then the server, which
  # writes its final snapshot.
  if [ -n "$agent_pid" ]; then kill -TERM "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
}
trap stop INT TERM EXIT
FILE_STORAGE_PATH="${FILE_STORAGE_PATH:-.local/metrics-db.json}" RESTORE="${RESTORE:-true}" \
  ./target/release/golectra-server &
server_pid=$!
./target/release/golectra-agent &
agent_pid=$!
echo "dashboard: http://localhost:8080  (Ctrl-C stops both daemons)"
wait
