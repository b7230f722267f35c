#!/usr/bin/env bash
# Memory and page sizes of a large store (docs/performance.md, "Store size").
#
#   bench/store-size.sh [--metrics 1000000] [--batch 10000] [--only off,capped,uncapped]
#
# For each history setting (off; on with the default HISTORY_MAX_BYTES; on and uncapped) it
# starts a fresh release server (memory store, no snapshot during the run), fills --metrics new
# gauge names through POST /updates batches of --batch, lets the history sampler run twice, and
# prints the server's VmRSS and VmHWM (from /proc/<pid>/status), the history's counters, and the
# size and time of GET /, GET /metrics (plain and gzip) and GET /api/v1/snapshot. At the end of
# each fill the store holds MAX_METRICS gauges exactly (the limit is set to --metrics), and one
# more new name must be refused with 409 while a stored one is still written.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

metrics=1000000; batch=10000; only=off,capped,uncapped
while [ $# -gt 0 ]; do
  case "$1" in
    --metrics) metrics=$2; shift 2;;
    --batch) batch=$2; shift 2;;
    --only) only=$2; shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done

cargo build --release --quiet --bin golectra-server
server_bin=$root/target/release/golectra-server
work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
status_kib() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
scrape() { curl -s "http://127.0.0.1:$port/metrics" | awk -v n="$1" '$1==n {print $2}'; }

# The batches: names of 20 bytes (bench.metric.NNNNNNN), values 0.5.
python3 - "$work" "$metrics" "$batch" <<'PY'
import json, sys
work, metrics, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for n, start in enumerate(range(0, metrics, batch)):
    items = [{"id": f"bench.metric.{i:07d}", "type": "gauge", "value": 0.5}
             for i in range(start, min(start + batch, metrics))]
    with open(f"{work}/batch-{n:05d}.json", "w") as f:
        json.dump(items, f)
PY

echo "$metrics gauge names in batches of $batch; $(nproc) cores; $(date -u +%FT%TZ)"
run() { # name, extra env...
  local name=$1; shift
  port=$(free_port)
  local dir; dir=$(mktemp -d -p "$work")
  (cd "$dir" && exec env ADDRESS="127.0.0.1:$port" STORE_INTERVAL=3600 MAX_METRICS="$metrics" \
    HISTORY_INTERVAL=2s "$@" "$server_bin" 2>"$dir/server.log") &
  server_pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ping" >/dev/null && break; sleep 0.05; done
  local idle; idle=$(status_kib "$server_pid" VmRSS)
  local started; started=$(date +%s.%N)
  for f in "$work"/batch-*.json; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
      --data-binary "@$f" "http://127.0.0.1:$port/updates/")
    [ "$code" = 200 ] || { echo "fill: $f answered $code"; cat "$dir/server.log"; exit 1; }
  done
  local filled; filled=$(date +%s.%N)
  sleep 5   # two history samples
  local rss hwm; rss=$(status_kib "$server_pid" VmRSS); hwm=$(status_kib "$server_pid" VmHWM)
  local refused stored
  refused=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/update/gauge/one.more/1")
  stored=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/update/gauge/bench.metric.0000000/2")
  local page; page=$(curl -s -o /dev/null -w '%{size_download} B in %{time_total} s' "http://127.0.0.1:$port/?q=metric.00001")
  local home; home=$(curl -s -o /dev/null -w '%{size_download} B in %{time_total} s' "http://127.0.0.1:$port/")
  local plain; plain=$(curl -s -o /dev/null -w '%{size_download} B in %{time_total} s' "http://127.0.0.1:$port/metrics")
  local zipped; zipped=$(curl -s -o /dev/null -H 'Accept-Encoding: gzip' -w '%{size_download} B' "http://127.0.0.1:$port/metrics")
  local snap; snap=$(curl -s -o /dev/null -w '%{size_download} B in %{time_total} s' "http://127.0.0.1:$port/api/v1/snapshot")
  local series untracked hbytes
  series=$(scrape golectra_history_series); untracked=$(scrape golectra_history_untracked_metrics)
  hbytes=$(scrape golectra_history_bytes)
  local after_rss after_hwm; after_rss=$(status_kib "$server_pid" VmRSS); after_hwm=$(status_kib "$server_pid" VmHWM)
  printf '%s\n' "$name: filled in $(awk -v a="$started" -v b="$filled" 'BEGIN {printf "%.1f s", b - a}'); idle RSS $(mib "$idle"); filled RSS $(mib "$rss"), HWM $(mib "$hwm"); after the reads RSS $(mib "$after_rss"), HWM $(mib "$after_hwm")"
  printf '  %s\n' "history: ${series:-0} series, ${untracked:-0} untracked, ${hbytes:-0} B counted" \
    "one more new name: $refused; a stored name: $stored" \
    "GET / $home; GET /?q=metric.00001 $page" \
    "GET /metrics $plain ($zipped gzip); GET /api/v1/snapshot $snap"
  kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
}

want() { [[ ",$only," == *",$1,"* ]]; }
if want off; then run "history off" HISTORY_POINTS=0; fi
if want capped; then run "history on, HISTORY_MAX_BYTES default (128MiB)"; fi
if want uncapped; then run "history on, uncapped (HISTORY_MAX_BYTES=8GiB)" HISTORY_MAX_BYTES=8GiB; fi
