#!/usr/bin/env bash
# Load benchmark of golectra-server against the nginx ceiling, in one run on this machine.
#
#   bench/run.sh [--duration 10s] [--connections 32] [--threads 2] [--only NULL,S1,S1T,S1X,S1K,S1LAT,S2,S2T,S2X,S2K,S3,SYNC,SYNCK,PG,PGK,BIG]
#
# For every scenario it starts a fresh release server, warms up, runs wrk with keep-alive and
# prints req/s, samples/s, p50/p99 latency, the server's CPU time per request and per sample
# (utime+stime from /proc/<pid>/stat) and its RSS. nginx (`return 200 "ok"`) runs in the same
# run as the HTTP ceiling so results can be read as ratios on a noisy machine.
# PG needs PostgreSQL (GOLECTRA_BENCH_DSN, default postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

duration=10s; connections=32; threads=2; only="NGINX,NULL,S1,S1T,S1X,S1K,S1LAT,S2,S2T,S2X,S2K,S3,SYNC,SYNCK,PG,PGK,BIG"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2;;
    --connections) connections=$2; shift 2;;
    --threads) threads=$2; shift 2;;
    --only) only="NGINX,$2"; shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
dsn=${GOLECTRA_BENCH_DSN:-postgres://postgres@127.0.0.1:5432/test}

# Tools: wrk and nginx from Debian.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

cargo build --release --quiet --bin golectra-server --example null_server
server_bin=$root/target/release/golectra-server
null_bin=$root/target/release/examples/null_server
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

clk=$(getconf CLK_TCK)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# A fixed gzip batch of 100 metrics: 50 gauges and 50 counters.
mkdir -p "$work/bodies"
python3 - "$work/bodies/body-0.json.gz" <<'PY'
import gzip, json, sys
items = [{"id": f"g{i}", "type": "gauge", "value": i * 1.5} for i in range(50)]
items += [{"id": f"c{i}", "type": "counter", "delta": i + 1} for i in range(50)]
open(sys.argv[1], "wb").write(gzip.compress(json.dumps(items).encode(), 6))
PY
export BODIES=$work/bodies

# TLS scenarios (S1T, S2T): a self-signed ECDSA P-256 certificate made for this run.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
scheme=http
start_server() { # args: extra server flags; sets server_pid, port
  port=$(free_port)
  local dir; dir=$(mktemp -d -p "$work")
  (cd "$dir" && exec "$server_bin" -a "127.0.0.1:$port" "$@" 2>"$dir/server.log") &
  server_pid=$!; pids+=("$server_pid")
  for _ in $(seq 1 100); do curl -skf "$scheme://127.0.0.1:$port/ping" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "server did not start:"; cat "$dir/server.log"; exit 1
}
stop_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# run_wrk NAME PID URL SCRIPT SAMPLES_PER_REQUEST
run_wrk() {
  local name=$1 pid=$2 url=$3 script=$4 per=$5
  wrk -t"$threads" -c"$connections" -d3s -s "$script" "$url" >/dev/null 2>&1 || true  # warm-up
  local before; before=$(cpu_ticks "$pid")
  local out; out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$script" "$url")
  local after; after=$(cpu_ticks "$pid")
  local rps; rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  last_rps=$rps
  local total; total=$(awk '/requests in/ {print $1}' <<<"$out")
  local p50; p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  local p99; p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local errors; errors=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")
  python3 - "$name" "$rps" "$total" "$p50" "$p99" "$before" "$after" "$clk" "$per" "$(rss_kib "$pid")" "${nginx_rps:-0}" "$errors" <<'PY'
import sys
name, rps, total, p50, p99, before, after, clk, per, rss, nginx_rps, errors = sys.argv[1:]
rps, total, per = float(rps), float(total), float(per)
cpu_us = (int(after) - int(before)) / int(clk) * 1e6
line = f"{name:<5} {rps:>10,.0f} req/s"
if per > 1:
    line += f" {rps * per:>12,.0f} samples/s"
line += f"  p50 {p50:>8} p99 {p99:>8}  CPU {cpu_us / total:6.2f} us/req"
if per > 1:
    line += f" {cpu_us / total / per:5.3f} us/sample"
line += f"  RSS {int(rss) / 1024:6.1f} MiB"
if float(nginx_rps) > 0 and name != "NGINX":
    line += f"  {rps / float(nginx_rps):5.2f} x nginx"
if errors.strip():
    line += f"  !! {errors.strip()}"
print(line)
PY
}

want() { [[ ",$only," == *",$1,"* ]]; }
echo "wrk -t$threads -c$connections -d$duration, keep-alive; $(nproc) cores; $(date -u +%FT%TZ)"

# Reference: nginx return 200.
if want NGINX; then
  nport=$(free_port)
  sed "s/__PORT__/$nport/" bench/nginx.conf > "$work/nginx.conf"
  nginx -p "$work" -c "$work/nginx.conf" & nginx_master=$!; pids+=("$nginx_master")
  sleep 0.5
  nginx_worker=$(pgrep -P "$nginx_master" | head -n1)
  run_wrk NGINX "$nginx_worker" "http://127.0.0.1:$nport" bench/lua/value-text.lua 1
  nginx_rps=$last_rps
  stop_pid "$nginx_master"
fi

if want NULL; then
  # The stack's own ceiling: vendored tiny_http, same workers, answering "ok" to everything.
  port=$(free_port)
  "$null_bin" "127.0.0.1:$port" 8 & null_pid=$!; pids+=("$null_pid")
  sleep 0.3
  run_wrk NULL "$null_pid" "http://127.0.0.1:$port" bench/lua/update-text.lua 1
  stop_pid "$null_pid"
fi
if want S1; then
  start_server; echo "idle RSS $(rss_kib "$server_pid") KiB"
  run_wrk S1 "$server_pid" "http://127.0.0.1:$port" bench/lua/update-text.lua 1
  stop_pid "$server_pid"
fi
# Keyed variants: every request carries a fresh Idempotency-Key. The key table is allowed to
# hold them all, so the RSS difference to S1/S2 over the keys held is the memory per key.
keys_held() { curl -s "http://127.0.0.1:$port/metrics" | awk '$1=="golectra_idempotency_keys" {print $2}'; }
# Over TLS: the same requests on keep-alive HTTPS connections (one handshake per connection).
tls_flags=(--tls-cert-file "$work/tls.crt" --tls-key-file "$work/tls.key")
if want S1T; then
  scheme=https start_server "${tls_flags[@]}"
  run_wrk S1T "$server_pid" "https://127.0.0.1:$port" bench/lua/update-text.lua 1
  stop_pid "$server_pid"
fi
if want S1X; then  # S1K's control: the same requests, the key under a header the server ignores
  start_server
  KEY_HEADER=X-Bench-Id run_wrk S1X "$server_pid" "http://127.0.0.1:$port" bench/lua/update-text-keyed.lua 1
  stop_pid "$server_pid"
fi
if want S1K; then
  start_server --idempotency-max-keys 100000000
  run_wrk S1K "$server_pid" "http://127.0.0.1:$port" bench/lua/update-text-keyed.lua 1
  echo "S1K   keys held $(keys_held), RSS $(rss_kib "$server_pid") KiB"
  stop_pid "$server_pid"
fi
if want S1LAT; then
  start_server
  run_wrk S1LAT "$server_pid" "http://127.0.0.1:$port" bench/lua/update-text-paced.lua 1
  stop_pid "$server_pid"
fi
if want S2; then
  start_server
  run_wrk S2 "$server_pid" "http://127.0.0.1:$port" bench/lua/gzip-batch.lua 100
  stop_pid "$server_pid"
fi
if want S2T; then
  scheme=https start_server "${tls_flags[@]}"
  run_wrk S2T "$server_pid" "https://127.0.0.1:$port" bench/lua/gzip-batch.lua 100
  stop_pid "$server_pid"
fi
if want S2X; then  # S2K's control
  start_server
  KEY_HEADER=X-Bench-Id run_wrk S2X "$server_pid" "http://127.0.0.1:$port" bench/lua/gzip-batch-keyed.lua 100
  stop_pid "$server_pid"
fi
if want S2K; then
  start_server --idempotency-max-keys 100000000
  run_wrk S2K "$server_pid" "http://127.0.0.1:$port" bench/lua/gzip-batch-keyed.lua 100
  echo "S2K   keys held $(keys_held), RSS $(rss_kib "$server_pid") KiB"
  stop_pid "$server_pid"
fi
if want S3; then
  start_server
  curl -sf -X POST "http://127.0.0.1:$port/update/gauge/m1/42" >/dev/null
  run_wrk S3 "$server_pid" "http://127.0.0.1:$port" bench/lua/value-text.lua 1
  stop_pid "$server_pid"
fi
if want SYNC; then
  start_server -i 0
  run_wrk SYNC "$server_pid" "http://127.0.0.1:$port" bench/lua/update-text.lua 1
  stop_pid "$server_pid"
fi
if want SYNCK; then  # SYNC with a key on every write: the key file is written with each snapshot
  start_server -i 0 --idempotency-max-keys 100000000
  run_wrk SYNCK "$server_pid" "http://127.0.0.1:$port" bench/lua/update-text-keyed.lua 1
  stop_pid "$server_pid"
fi
if want PG; then
  start_server -d "$dsn"
  run_wrk PG "$server_pid" "http://127.0.0.1:$port" bench/lua/gzip-batch.lua 100
  stop_pid "$server_pid"
fi
if want PGK; then
  start_server -d "$dsn"
  run_wrk PGK "$server_pid" "http://127.0.0.1:$port" bench/lua/gzip-batch-keyed.lua 100
  stop_pid "$server_pid"
fi
if want BIG; then
  # 1 000 000 distinct metrics: RSS, final snapshot time, restore time.
  start_server -i 1h
  python3 - "$port" <<'PY'
import gzip, json, sys, urllib.request
port = sys.argv[1]
for b in range(100):
    items = [{"id": f"metric_{b}_{i}", "type": "gauge" if i % 2 else "counter",
              **({"value": i * 0.5} if i % 2 else {"delta": i})} for i in range(10000)]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/updates", data=gzip.compress(json.dumps(items).encode(), 1),
                                 headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
PY
  echo "BIG   1,000,000 metrics stored: RSS $(( $(rss_kib "$server_pid") / 1024 )) MiB"
  big_dir=$(readlink "/proc/$server_pid/cwd")
  stop_pid "$server_pid"
  grep -o 'final snapshot: .*' "$big_dir/server.log" | sed 's/^/BIG   /'
  : > "$big_dir/restore.log"
  (cd "$big_dir" && exec "$server_bin" -a "127.0.0.1:$(free_port)" -r -i 1h 2>"$big_dir/restore.log") & restore_pid=$!; pids+=("$restore_pid")
  for _ in $(seq 1 200); do grep -q 'listening on' "$big_dir/restore.log" && break; sleep 0.05; done
  grep -o 'restored .*' "$big_dir/restore.log" | sed 's/^/BIG   /'
  echo "BIG   after restore: RSS $(( $(rss_kib "$restore_pid") / 1024 )) MiB"
  stop_pid "$restore_pid"
fi
