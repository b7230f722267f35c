#!/usr/bin/env bash
# Benchmark: gzipped batches of 100 metrics (50 gauges, 50 counters) from 32 keep-alive
# clients (wrk) into the PostgreSQL store of a release build; prints samples/s and the CPU time
# per sample of the server process and of the PostgreSQL processes.
#
# usage: bench/postgres-batch.sh [same|distinct]
#   same      every request carries the same 100 names (all clients hit the same rows; default)
#   distinct  each of 32 bodies has its own names (clients hit different rows)
# env: BASE_DSN (default postgres://postgres@127.0.0.1:5432/postgres), DURATION (20s),
#      CONNECTIONS (32), THREADS (2), WORKERS (server default), PORT (18080)
set -euo pipefail
mode=${1:-same}
base_dsn=${BASE_DSN:-postgres://postgres@127.0.0.1:5432/postgres}
duration=${DURATION:-20s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
port=${PORT:-18080}
db=golectra_bench
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q -p golectra-server --manifest-path "$root/Cargo.toml"
psql "$base_dsn" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
dsn=${base_dsn%/*}/$db

count=1; [ "$mode" = distinct ] && count=32
python3 - "$work" "$count" <<'PY'
import gzip, json, sys
out, count = sys.argv[1], int(sys.argv[2])
for b in range(count):
    prefix = "" if count == 1 else f"c{b}_"
    items = [{"id": f"{prefix}gauge{i}", "type": "gauge", "value": i * 1.5 + 0.25} for i in range(50)]
    items += [{"id": f"{prefix}counter{i}", "type": "counter", "delta": i + 1} for i in range(50)]
    with open(f"{out}/body-{b}.json.gz", "wb") as f:
        f.write(gzip.compress(json.dumps(items).encode(), 6))
PY

args=(-a "127.0.0.1:$port" -d "$dsn")
[ -n "${WORKERS:-}" ] && args+=(-w "$WORKERS")
RUST_LOG=warn "$root/target/release/golectra-server" "${args[@]}" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/ping" >/dev/null && break
  sleep 0.1
done
# Warm-up: fill the pool, prepare the statements, create the rows.
BODIES=$work wrk -t"$threads" -c"$connections" -d3s -s "$root/bench/lua/gzip-batch.lua" \
  "http://127.0.0.1:$port" >/dev/null

ticks() { # utime + stime of the given pids, in clock ticks
  local sum=0 pid f
  for pid in "$@"; do
    f=$(cut -d')' -f2- "/proc/$pid/stat" 2>/dev/null) || continue
    set -- $f
    sum=$((sum + ${12} + ${13}))
  done
  echo $sum
}
backends=$(psql "$base_dsn" -qAtc "SELECT pid FROM pg_stat_activity WHERE datname = '$db' AND application_name = 'golectra-server'")
all_pg=$(pgrep -d' ' -u postgres postgres || true)
s0=$(ticks "$server_pid"); b0=$(ticks $backends); p0=$(ticks $all_pg)
BODIES=$work wrk -t"$threads" -c"$connections" -d"$duration" --latency \
  -s "$root/bench/lua/gzip-batch.lua" "http://127.0.0.1:$port" | tee "$work/wrk.out"
s1=$(ticks "$server_pid"); b1=$(ticks $backends); p1=$(ticks $all_pg)

requests=$(awk '/requests in/{print $1}' "$work/wrk.out")
secs=$(awk '/requests in/{gsub("s,","",$4); print $4}' "$work/wrk.out")
hz=$(getconf CLK_TCK)
python3 - "$requests" "$secs" "$hz" "$((s1 - s0))" "$((b1 - b0))" "$((p1 - p0))" "$(echo $backends | wc -w)" <<'PY'
import sys
req, secs, hz = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
server, backends, allpg, nb = (int(x) for x in sys.argv[4:8])
samples = req * 100
print(f"samples/s: {samples / secs:,.0f}  ({req / secs:,.0f} batches/s, {samples:,} samples in {secs:.1f} s)")
print(f"server CPU per sample: {server / hz / samples * 1e6:.2f} us")
print(f"PostgreSQL CPU per sample: {backends / hz / samples * 1e6:.2f} us in {nb} backends, "
      f"{allpg / hz / samples * 1e6:.2f} us in all postgres processes")
PY
count=$(psql "$dsn" -qAtc "SELECT count(*) FROM golectra_counters")
echo "rows: $count counters; server log warnings: $(grep -c . "$work/server.log" || true)"
