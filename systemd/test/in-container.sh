#!/bin/bash
# The operator's view of the Debian package under a real systemd. Runs INSIDE the throwaway
# container booted by boot-check.sh, as the unit boot-check.service (started after
# multi-user.target; its SuccessAction=/FailureAction= power the container off).
#
# Usage: in-container.sh RESULTS_DIR DEB
#   Writes RESULTS_DIR/report.txt: one line per check,
#     PASS <n> <name>: <evidence>      or      FAIL <n> <name>: <evidence>
#   optionally followed by indented evidence lines ("    ..."), then a final line "END".
#   Other files there: trace.log (set -x of this script), journal.txt (both units' journal),
#   boot.txt, enable.log, dpkg-*.log, metrics.txt.
#
# Timeline (the waits overlap the checks, so a run takes about the agent's WatchdogSec + 20 s):
#   install, enable --now; checks 1-5 and 10, which leave the daemons alone; the server's watchdog
#   window (its WatchdogSec + 5 s) ends: its half of 6, then 9 (no warnings so far); 7 and 8
#   restart and stop the server, which leaves the agent running; the agent's watchdog window
#   ends: its half of 6; then 11 (the upgrade restarts both), 12, 14 (env-file quoting), 15 (an
#   empty TAGS= in agent.env) and 13.
#
# Journal windows are cut by __REALTIME_TIMESTAMP in jq, not with journalctl --after-cursor or
# --since: systemd 252's journalctl combined with a field match (-p err, PRIORITY=3) and
# --after-cursor misses entries (seen here: `journalctl -p err -u golectra-server
# --after-cursor=C` printed nothing while the same query without the cursor showed the <3> line).
set -u
export LC_ALL=C SYSTEMD_PAGER=

results=$1
deb=$2
report=$results/report.txt
: >"$report"
exec 2>"$results/trace.log"
set -x

BASE=http://localhost:8080
SERVER=golectra-server
AGENT=golectra-agent
# The packaged agent unit tags every metric with the host name systemd gives %H: this one.
HOST=$(uname -n)
TAG=";host=$HOST"
# Slack added to every WatchdogSec wait; bound for the agent's first report (REPORT_INTERVAL is
# 10 s, POLL_INTERVAL 2 s); bound for a counter to appear or grow after a restart.
SLACK_S=5
REPORT_BOUND_S=30
GROW_BOUND_S=15

report() { # report PASS|FAIL NUMBER NAME EVIDENCE [MORE_EVIDENCE_LINES]
    printf '%s %s %s: %s\n' "$1" "$2" "$3" "$4" >>"$report"
    if [ -n "${5:-}" ]; then
        printf '%s\n' "$5" | head -n 40 | cut -c1-400 | sed 's/^/    /' >>"$report"
    fi
}
verdict() { # verdict STATUS(0 = pass) NUMBER NAME EVIDENCE [MORE]
    if [ "$1" -eq 0 ]; then report PASS "$2" "$3" "$4" "${5:-}"; else report FAIL "$2" "$3" "$4" "${5:-}"; fi
}
oneline() { tr '\n' ' ' | sed 's/ *$//'; }

now_us() { date +%s%6N; }
# A property of a service unit as a raw number (µs for spans and timestamps), over D-Bus.
prop() { # prop UNIT PROPERTY
    local path
    path=/org/freedesktop/systemd1/unit/$(printf '%s' "$1.service" | sed 's/-/_2d/g; s/\./_2e/g')
    busctl get-property org.freedesktop.systemd1 "$path" org.freedesktop.systemd1.Service "$2" \
        2>/dev/null | awk '{print $2}'
}
show() { systemctl show -p "$2" --value "$1.service"; }
states() { # one line of evidence about a unit
    systemctl show -p ActiveState,SubState,Result,MainPID,ExecMainStatus,NRestarts,StatusText \
        "$1.service" | oneline
}
# GET path -> sets CODE and BODY.
http() {
    local out
    out=$(mktemp)
    CODE=$(curl -sS --max-time 5 -o "$out" -w '%{http_code}' "$BASE$1" 2>>"$results/curl.log")
    BODY=$(cat "$out")
    rm -f "$out"
}
poll_count() { # the server's PollCount of this host now (empty when it has none); $1: tags
    http "/value/counter/PollCount${1-$TAG}"
    if [ "$CODE" = 200 ]; then printf '%s' "$BODY"; fi
}
is_int() { case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }
# PollCount once it is greater than $2 (or, with $2 empty, once it exists), waiting up to $1 s;
# whatever it is at the deadline otherwise.
poll_count_above() { # poll_count_above SECONDS [FLOOR]
    local deadline=$(($(date +%s) + $1)) value
    while :; do
        value=$(poll_count)
        if { is_int "$value" && { [ -z "${2:-}" ] || [ "$value" -gt "$2" ]; }; } ||
            [ "$(date +%s)" -ge "$deadline" ]; then
            printf '%s' "$value"
            return
        fi
        sleep 0.5
    done
}
# The untagged PollCount once it exists, waiting up to $1 s (empty when it never does).
poll_count_plain_within() { # poll_count_plain_within SECONDS
    local deadline=$(($(date +%s) + $1)) value
    while :; do
        value=$(poll_count "")
        if is_int "$value" || [ "$(date +%s)" -ge "$deadline" ]; then
            printf '%s' "$value"
            return
        fi
        sleep 0.5
    done
}
# Journal entries of `journalctl ARGS…` logged at or after realtime T (µs), one per line as
# "PRIORITY IDENTIFIER[PID]: MESSAGE".
jlines() { # jlines T ARGS…
    local t=$1
    shift
    journalctl -q -o json "$@" | jq -r --argjson t "$t" \
        'select((.__REALTIME_TIMESTAMP | tonumber) >= $t)
         | "\(.PRIORITY) \(.SYSLOG_IDENTIFIER // "?")[\(._PID // "?")]: \(.MESSAGE | tostring)"'
}
# The daemon's own stderr lines at or after T as "PRIORITY MESSAGE".
own_lines() { # own_lines UNIT T
    journalctl -q -o json -u "$1.service" | jq -r --argjson t "$2" \
        'select((.__REALTIME_TIMESTAMP | tonumber) >= $t and ._TRANSPORT == "stdout")
         | "\(.PRIORITY) \(.MESSAGE | tostring)"'
}
count() { grep -c . || true; }
# After a restart that returned (READY=1 arrived): PollCount at once -> $after, since a restored
# store has it before READY. The agent's next report would make up a value of a store that lost
# its data, so none is waited for; when there is none, $later tells what arrives afterwards.
after_restart() {
    local t
    after=$(poll_count) later=""
    if [ -z "$after" ]; then
        t=$(date +%s)
        later="; $(poll_count_above "$GROW_BOUND_S") $(($(date +%s) - t))s later (the agent's next report: the store had lost its data)"
    fi
}
# Sleeps until UNIT has run for its WatchdogSec plus SLACK_S (from its main process's start).
wait_past_watchdog() {
    local start wd until
    start=$(prop "$1" ExecMainStartTimestamp)
    wd=$(prop "$1" WatchdogUSec)
    is_int "$start" && is_int "$wd" || return 0
    until=$((start + wd + SLACK_S * 1000000))
    while [ "$(now_us)" -lt "$until" ]; do sleep 0.5; done
}
# "Alive past WatchdogSec": the same MainPID as at the start, active, no automatic restart, up
# longer than WatchdogSec, and a watchdog ping after the start that is recent.
watchdog_ok() { # watchdog_ok UNIT FIRST_PID -> sets WD_EVIDENCE, returns 0 when fine
    local unit=$1 pid0=$2 pid state restarts wd start last now up age
    pid=$(show "$unit" MainPID)
    state=$(show "$unit" ActiveState)
    restarts=$(show "$unit" NRestarts)
    wd=$(prop "$unit" WatchdogUSec)
    start=$(prop "$unit" ExecMainStartTimestamp)
    last=$(prop "$unit" WatchdogTimestamp)
    now=$(now_us)
    up=$(((now - ${start:-0}) / 1000000))
    age=$(((now - ${last:-0}) / 1000000))
    WD_EVIDENCE="$unit: $state, MainPID $pid (at start $pid0), up ${up}s, WatchdogSec $((${wd:-0} / 1000000))s, NRestarts=$restarts, last watchdog ping ${age}s ago"
    [ "$state" = active ] && [ "$pid" = "$pid0" ] && [ "$restarts" = 0 ] && [ "${wd:-0}" -gt 0 ] &&
        [ "$up" -gt $((wd / 1000000)) ] && [ "$last" -gt $((start + 1000000)) ] &&
        [ "$age" -le $((wd / 1000000)) ]
}

echo booted >"$results/booted"
boot_state=$(timeout 60 systemctl is-system-running --wait 2>&1)
printf 'boot: system %s; failed units: %s\n' "$boot_state" \
    "$(systemctl --failed --no-legend | oneline)" >"$results/boot.txt"

# ---- install and start, as the postinst message says ----
t0=$(now_us)
dpkg -i "$deb" >"$results/dpkg-install.log" 2>&1
echo "dpkg -i: exit $?" >>"$results/boot.txt"
timeout 120 systemctl enable --now "$SERVER" "$AGENT" >"$results/enable.log" 2>&1
echo "systemctl enable --now: exit $?" >>"$results/boot.txt"

# 1. Both units active: Type=notify, so "active" means READY=1 arrived.
srv_pid=$(show "$SERVER" MainPID)
agt_pid=$(show "$AGENT" MainPID)
ok=0
for u in "$SERVER" "$AGENT"; do
    [ "$(show "$u" Type)" = notify ] && [ "$(show "$u" ActiveState)" = active ] &&
        [ "$(show "$u" SubState)" = running ] || ok=1
done
verdict $ok 1 units-active "Type=$(show "$SERVER" Type)/$(show "$AGENT" Type); $SERVER: $(states "$SERVER") | $AGENT: $(states "$AGENT")" \
    "$(cat "$results/enable.log")"

# 2. The server answers.
http /ping
[ "$CODE" = 200 ]
verdict $? 2 ping "GET $BASE/ping -> $CODE ${BODY:0:80}"

# 3. The agent's metrics arrive, tagged with the host name (the unit's TAGS=host=%H), and
# nothing arrives under the plain names.
t=$(date +%s)
deadline=$((t + REPORT_BOUND_S))
while :; do
    pc=$(poll_count)
    http "/value/gauge/Alloc$TAG"
    alloc_code=$CODE alloc=$BODY
    if { [ -n "$pc" ] && [ "$alloc_code" = 200 ]; } || [ "$(date +%s)" -ge "$deadline" ]; then break; fi
    sleep 0.5
done
http /value/counter/PollCount
plain_pc=$CODE
http /value/gauge/Alloc
plain_alloc=$CODE
[ -n "$pc" ] && [ "$alloc_code" = 200 ] && [ "$plain_pc" = 404 ] && [ "$plain_alloc" = 404 ]
verdict $? 3 agent-metrics-arrive "after $(($(date +%s) - t))s (bound ${REPORT_BOUND_S}s): GET /value/counter/PollCount$TAG -> ${pc:-<none>}, GET /value/gauge/Alloc$TAG -> $alloc_code ${alloc:0:40}; untagged PollCount -> $plain_pc, Alloc -> $plain_alloc; unit Environment: $(show "$AGENT" Environment)" \
    "$(journalctl -q -u "$AGENT" -n 6 --no-hostname)"

# 4. The standard process_* metrics.
http /metrics
printf '%s\n' "$BODY" >"$results/metrics.txt"
metrics_code=$CODE
missing="" found=""
for m in process_cpu_seconds_total process_resident_memory_bytes process_virtual_memory_bytes \
    process_start_time_seconds process_open_fds process_max_fds; do
    line=$(grep -E "^$m( |\{)" "$results/metrics.txt" | head -n 1)
    if [ -n "$line" ]; then found="$found $line;"; else missing="$missing $m"; fi
done
start_s=$(($(prop "$SERVER" ExecMainStartTimestamp) / 1000000))
exported=$(awk '$1 == "process_start_time_seconds" {printf "%d", $2}' "$results/metrics.txt")
start_ok=1
if is_int "$exported" && [ $((exported - start_s)) -le 60 ] && [ $((start_s - exported)) -le 60 ]; then start_ok=0; fi
[ "$metrics_code" = 200 ] && [ -z "$missing" ] && [ $start_ok -eq 0 ]
verdict $? 4 process-metrics "GET /metrics -> $metrics_code; missing:${missing:- none}; process_start_time_seconds=${exported:-<none>} vs the unit's ExecMainStartTimestamp $start_s; unit: ProcSubset=$(show "$SERVER" ProcSubset) ProtectProc=$(show "$SERVER" ProtectProc)" \
    "found:${found:- nothing}"

# 5. journald parsed the <N> prefix: PRIORITY comes from it, MESSAGE has neither the prefix nor
# a timestamp. The version line quotes the build time ("built 2026-…Z"): that quote is removed
# before the search.
ok=0 ev="" more=""
for u in "$SERVER" "$AGENT"; do
    lines=$(own_lines "$u" "$t0")
    n=$(printf '%s\n' "$lines" | count)
    info=$(printf '%s\n' "$lines" | grep -c '^6 ')
    prefixed=$(printf '%s\n' "$lines" | grep -E '^[0-7] <' | head -n 3)
    stamped=$(printf '%s\n' "$lines" | sed -E 's/built [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z//' |
        grep -E '[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}' | head -n 3)
    badprio=$(printf '%s\n' "$lines" | grep -vE '^[0-7] ' | grep . | head -n 3)
    ev="$ev $u: $n lines, $info at PRIORITY=6;"
    if [ "$n" -eq 0 ] || [ "$info" -eq 0 ] || [ -n "$prefixed$stamped$badprio" ]; then
        ok=1
        more="$more$u lines still carrying <N>: ${prefixed:-none}
$u lines with a timestamp: ${stamped:-none}
$u lines without a PRIORITY: ${badprio:-none}
"
    fi
    more="$more$u, first lines (PRIORITY MESSAGE):
$(printf '%s\n' "$lines" | head -n 3)
"
done
verdict $ok 5 journald-priority "journalctl -u … -o json, the daemons' own lines:$ev" "$more"

# 10. systemd-analyze security (online, as an operator runs it).
ok=0 ev=""
for u in "$SERVER" "$AGENT"; do
    level=$(systemd-analyze security --no-pager "$u.service" 2>&1 |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    ev="$ev $u ${level:-<unparsed>};"
    awk -v l="${level:-99}" 'BEGIN { exit !(l <= 2.0) }' || ok=1
done
verdict $ok 10 security-exposure "overall exposure level (at most 2.0):$ev"

# ---- the server's watchdog window ----
wait_past_watchdog "$SERVER"
watchdog_ok "$SERVER" "$srv_pid"
srv_wd=$?
srv_wd_ev=$WD_EVIDENCE

# 9. No warning in the normal run: from the install until now, before any deliberate restart.
journalctl --sync
warnings=$(jlines "$t0" -p warning -u "$SERVER" -u "$AGENT")
[ -z "$warnings" ]
verdict $? 9 no-warnings "journalctl -p warning -u $SERVER -u $AGENT over the first $((($(now_us) - t0) / 1000000))s (install, start, $((($(now_us) - $(prop "$SERVER" ExecMainStartTimestamp)) / 1000000))s of running): $(printf '%s\n' "$warnings" | count) lines" \
    "$warnings"

# 7. A restart keeps the counters.
restore_ev="unit Environment: $(show "$SERVER" Environment); server.env: $(grep -E '^[[:space:]]*RESTORE=' /etc/golectra/server.env || echo 'no RESTORE line')"
before=$(poll_count)
timeout 90 systemctl restart "$SERVER"
rc=$?
new_pid=$(show "$SERVER" MainPID)
after_restart
is_int "$before" && is_int "$after" && [ "$rc" -eq 0 ] && [ "$after" -ge "$before" ]
verdict $? 7 restart-keeps-counters "PollCount $before before, ${after:-<none>} right after (systemctl restart: exit $rc, MainPID $srv_pid -> $new_pid)$later" \
    "$restore_ev"

# 8. A stop is clean and writes the final snapshot. First new data arrives (the agent's next
# report), so the final snapshot has something to write that no earlier snapshot holds.
snap=/var/lib/golectra/metrics-db.json
last=$(poll_count_above "$GROW_BOUND_S" "$after")
stop_us=$(now_us)
timeout 90 systemctl stop "$SERVER"
rc=$?
result=$(show "$SERVER" Result)
status=$(show "$SERVER" ExecMainStatus)
mtime_us=$(stat -L -c %.6Y "$snap" 2>/dev/null | tr -d .)
snap_pc=$(jq -r --arg id "PollCount$TAG" '.[] | select(.id == $id and .type == "counter") | .delta' "$snap" 2>/dev/null)
is_int "${mtime_us:-x}" && [ "$mtime_us" -ge "$stop_us" ] && is_int "$last" && is_int "$snap_pc" &&
    [ "$snap_pc" -ge "$last" ] && [ "$result" = success ] && [ "$status" = 0 ] && [ "$rc" -eq 0 ]
verdict $? 8 stop-writes-snapshot "systemctl stop: exit $rc, Result=$result, ExecMainStatus=$status; $snap written $(((${mtime_us:-0} - stop_us) / 1000))ms after the stop began, PollCount ${snap_pc:-<none>} in it, ${last:-<none>} read before the stop" \
    "$(ls -lL "$snap" 2>&1)
$(jlines "$stop_us" -u "$SERVER")"
timeout 90 systemctl start "$SERVER"

# 6. Alive past WatchdogSec: the server's half was taken at the end of its window, before the
# deliberate restarts; now the agent's, whose process has run since the start.
wait_past_watchdog "$AGENT"
watchdog_ok "$AGENT" "$agt_pid"
agt_wd=$?
[ $srv_wd -eq 0 ] && [ $agt_wd -eq 0 ]
verdict $? 6 watchdog-no-restarts "$srv_wd_ev; $WD_EVIDENCE" \
    "$(jlines "$t0" -u "$SERVER" -u "$AGENT" | grep -i watchdog | head -n 5)"

# 11. An upgrade (the same package again: the postinst try-restarts) keeps the data.
before=$(poll_count_above "$GROW_BOUND_S")
pid_before=$(show "$SERVER" MainPID)
dpkg -i "$deb" >"$results/dpkg-upgrade.log" 2>&1
rc=$?
pid_after=$(show "$SERVER" MainPID)
after_restart
is_int "$before" && is_int "$after" && [ "$rc" -eq 0 ] && [ "$after" -ge "$before" ] &&
    [ "$pid_after" != "$pid_before" ] && [ "$(show "$SERVER" ActiveState)" = active ]
verdict $? 11 upgrade-keeps-data "dpkg -i of the same package: exit $rc, server MainPID $pid_before -> $pid_after ($(show "$SERVER" ActiveState)), PollCount ${before:-<none>} before, ${after:-<none>} right after$later" \
    "$(tail -n 5 "$results/dpkg-upgrade.log")"

# 12. A bad configuration fails the unit for good (exit 2, no restart) and says why at err level.
env=/etc/golectra/server.env
cp -p "$env" "$results/server.env.orig"
echo 'STORE_INTERVAL=bogus' >>"$env"
t12=$(now_us)
timeout 90 systemctl restart "$SERVER" >/dev/null 2>&1
rc=$?
# Past RestartSec, so an (unwanted) automatic restart would have happened.
sleep $(($(prop "$SERVER" RestartUSec) / 1000000 + 2))
state=$(show "$SERVER" ActiveState) result=$(show "$SERVER" Result)
status=$(show "$SERVER" ExecMainStatus) restarts=$(show "$SERVER" NRestarts)
journalctl --sync
errs=$(jlines "$t12" -p err -u "$SERVER")
named=$(jlines "$t12" -u "$SERVER" | grep STORE_INTERVAL)
[ "$rc" -ne 0 ] && [ "$state" = failed ] && [ "$result" = exit-code ] && [ "$status" = 2 ] &&
    [ "$restarts" = 0 ] && printf '%s' "$errs" | grep -q STORE_INTERVAL
verdict $? 12 bad-config-logged-at-err "STORE_INTERVAL=bogus, systemctl restart: exit $rc; $state, Result=$result, ExecMainStatus=$status, NRestarts=$restarts; journalctl -p err -u $SERVER: $(printf '%s\n' "$errs" | grep -c STORE_INTERVAL) lines naming STORE_INTERVAL" \
    "journalctl -p err -u $SERVER (PRIORITY IDENTIFIER[PID]: MESSAGE):
${errs:-<nothing>}
every line naming STORE_INTERVAL:
${named:-<none>}"
cp -p "$results/server.env.orig" "$env"
systemctl reset-failed "$SERVER"
timeout 90 systemctl start "$SERVER"

# 14. The env files follow systemd's EnvironmentFile= rules as documented in them: a single-
# quoted value is taken verbatim (backslash, double quotes, $ and inner spaces kept), and with
# the same key on both sides the agent's signed reports are accepted.
key_text='s3cr\et "x" $HOME'
cp -p /etc/golectra/agent.env "$results/agent.env.orig"
cp -p "$env" "$results/server.env.orig14"
printf "KEY='%s'\n" "$key_text" >>"$env"
printf "KEY='%s'\n" "$key_text" >>/etc/golectra/agent.env
timeout 90 systemctl restart "$SERVER" "$AGENT"
t14=$(now_us)
environ_key() { tr '\0' '\n' <"/proc/$(show "$1" MainPID)/environ" | sed -n 's/^KEY=//p'; }
srv_key=$(environ_key "$SERVER") agt_key=$(environ_key "$AGENT")
before=$(poll_count)
grown=$(poll_count_above "$GROW_BOUND_S" "${before:-0}")
refused=$(jlines "$t14" -u "$AGENT" | grep -c 'refused' || true)
[ "$srv_key" = "$key_text" ] && [ "$agt_key" = "$key_text" ] && is_int "$grown" &&
    [ "$grown" -gt "${before:-0}" ] && [ "${refused:-0}" -eq 0 ]
verdict $? 14 env-file-quoting "KEY='$key_text' in both env files: server got [$srv_key], agent got [$agt_key]; PollCount ${before:-<none>} -> ${grown:-<no growth>} with signatures on, $refused refused reports"
cp -p "$results/agent.env.orig" /etc/golectra/agent.env
cp -p "$results/server.env.orig14" "$env"
timeout 90 systemctl restart "$SERVER" "$AGENT"

# 15. An empty TAGS= in agent.env overrides the unit's Environment="TAGS=host=%H" (settings of
# EnvironmentFile= override Environment=): the agent then sends the original's plain names.
echo 'TAGS=' >>/etc/golectra/agent.env
timeout 90 systemctl restart "$AGENT"
agt_tags=$(tr '\0' '\n' <"/proc/$(show "$AGENT" MainPID)/environ" | grep '^TAGS=' | oneline)
plain=$(poll_count_plain_within "$GROW_BOUND_S")
[ "$agt_tags" = "TAGS=" ] && is_int "$plain" && [ "$plain" -gt 0 ]
verdict $? 15 env-file-empty-tags "TAGS= in agent.env: the agent's environment has [$agt_tags]; GET /value/counter/PollCount (untagged) -> ${plain:-<none>} within ${GROW_BOUND_S}s" \
    "$(journalctl -q -u "$AGENT" -n 4 --no-hostname)"
cp -p "$results/agent.env.orig" /etc/golectra/agent.env
timeout 90 systemctl restart "$AGENT"

# 13. Removing the package stops the units and leaves no enable symlinks.
pre="$SERVER $(show "$SERVER" ActiveState), $AGENT $(show "$AGENT" ActiveState)"
dpkg -r golectra >"$results/dpkg-remove.log" 2>&1
rc=$?
links=""
for l in /etc/systemd/system/*.wants/golectra-server.service \
    /etc/systemd/system/*.wants/golectra-agent.service; do
    if [ -e "$l" ] || [ -L "$l" ]; then links="$links $l"; fi
done
procs=$(ps -eo pid=,comm= | awk '$2 == "golectra-server" || $2 == "golectra-agent"' | oneline)
post=""
for u in "$SERVER" "$AGENT"; do post="$post $u $(show "$u" ActiveState)/$(show "$u" LoadState);"; done
[ "$rc" -eq 0 ] && [ -z "$links" ] && [ -z "$procs" ] &&
    ! printf '%s' "$post" | grep -qE ' (active|activating|deactivating|reloading)/'
verdict $? 13 remove-leaves-no-symlinks "dpkg -r golectra: exit $rc; before: $pre; after (ActiveState/LoadState):$post enable symlinks left: ${links:-none}; processes left: ${procs:-none}" \
    "$(cat "$results/dpkg-remove.log")"

journalctl -q -u "$SERVER" -u "$AGENT" -o short-monotonic --no-hostname >"$results/journal.txt" 2>&1
echo END >>"$report"
