#!/usr/bin/env bash
# Benchmark: bench/postgres-batch.sh against a primary with a synchronous streaming standby,
# then the same primary with the standby asynchronous, then alone (standby stopped), in one run.
# The two clusters are the test bed of docs/postgresql.md ("A replicated test bed"): fresh
# PostgreSQL 15 clusters in a temporary directory, on free ports, run as user postgres; the
# machine's own cluster is not touched. Needs root and /usr/lib/postgresql/15/bin.
#
# usage: bench/postgres-replicated.sh [same|distinct]
# env: DURATION (10s), and what bench/postgres-batch.sh takes (CONNECTIONS, THREADS, WORKERS)
set -euo pipefail
mode=${1:-same}
export DURATION=${DURATION:-10s}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=/usr/lib/postgresql/15/bin
dir=$(mktemp -d /tmp/golectra-bench-replica-XXXXXX)
chown postgres:postgres "$dir"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
primary=$(free_port); standby=$(free_port)
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  for c in standby primary; do
    [ -f "$dir/$c/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir/$c" stop -m immediate -w >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT

# The recipe (docs/postgresql.md, "A replicated test bed").
as_pg "$bin/initdb" -D "$dir/primary" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
cat >>"$dir/primary/postgresql.conf" <<EOF
port = $primary
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
wal_level = replica
max_wal_senders = 4
EOF
as_pg "$bin/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w start >/dev/null
as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres -D "$dir/standby" -R -X stream -c fast
echo "port = $standby" >>"$dir/standby/postgresql.conf"
as_pg "$bin/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -w start >/dev/null
psql_primary() { psql "postgres://postgres@127.0.0.1:$primary/postgres" -qAtc "$1"; }
replication() {
  psql_primary "ALTER SYSTEM SET synchronous_standby_names = '$1'" && psql_primary "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 100); do
    [ "$(psql_primary "SELECT coalesce((SELECT sync_state FROM pg_stat_replication), 'none')")" = "$2" ] && return 0
    sleep 0.1
  done
  echo "the standby did not become $2" >&2; exit 1
}

run() {
  echo "=== $1"
  BASE_DSN="postgres://postgres@127.0.0.1:$primary/postgres" PORT=$(free_port) \
    "$root/bench/postgres-batch.sh" "$mode" | grep -E 'samples/s|CPU per sample|Latency  |99%'
}
replication '*' sync
run "synchronous standby (synchronous_standby_names = '*')"
replication '' async
run "asynchronous standby"
as_pg "$bin/pg_ctl" -D "$dir/standby" stop -m fast -w >/dev/null
run "primary alone (standby stopped)"
