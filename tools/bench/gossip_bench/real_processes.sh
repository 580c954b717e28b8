#!/usr/bin/env bash
# The "20 real processes on loopback" row of the gossip benchmark (issue 3, "Benchmark (in tools/)").
#
# Builds the `oklog` target, starts N (default 20) `oklog ingeststore` processes on 127.0.0.1, each
# with its own free ports and a temporary data directory, each given only the first node as -peer,
# with -cluster.preset lan. Then measures:
#   1. join: time from the last process start until every node's GET /cluster lists N alive members;
#   2. quiet cluster, over QUIET_S (30) seconds after a SETTLE_S (5) pause: bytes and packets sent per
#      node per second from /metrics (oklog_gossip_bytes_sent_total, _packets_sent_total,
#      _stream_bytes_sent_total), and false positives: /cluster of every node polled every second,
#      every sighting of a member not `alive` counted, plus the oklog_gossip_suspicions_total delta;
#   3. crash: kill -9 of one non-seed node (by the PID this script started), then time until each
#      survivor's /cluster lists it `dead` (median and max over the survivors).
# Prints the figures beside memberlist's (../shared/reference/swim.md §0 and §2.2, LAN, N=20, same
# machine) and the issue's targets, then stops every node with SIGTERM, waits, and removes the
# temporary directory. Only 127.0.0.1 traffic. Bounded: every wait has a deadline; the measured part
# takes about a minute and at most ~2.5 minutes (the build before it is not counted).
#
# Usage: tools/bench/gossip_bench/real_processes.sh [--no-build]
# Environment: BUILD_DIR (default <repo>/build-gossip20), OKLOG_BINARY (skips the build when set),
#   N (20), QUIET_S (30), SETTLE_S (5), KEEP_LOGS=1 (keep the temp dir, its path is printed).
# Needs: cmake + ninja (for the build), curl, jq, ss.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-gossip20}
N=${N:-20}
QUIET_S=${QUIET_S:-30}
SETTLE_S=${SETTLE_S:-5}
JOIN_TIMEOUT_S=30
CRASH_TIMEOUT_S=45
STOP_TIMEOUT_S=15

die() { echo "real_processes: $*" >&2; exit 1; }
for tool in curl jq ss; do command -v "$tool" >/dev/null || die "needs $tool"; done

# ---- build ----
build=1
[[ ${1:-} == --no-build ]] && build=0
[[ -n ${OKLOG_BINARY:-} ]] && build=0
if ((build)); then
  echo "building oklog in $BUILD_DIR ..." >&2
  if [[ ! -f $BUILD_DIR/build.ninja ]]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2 || die "cmake configure failed"
  fi
  cmake --build "$BUILD_DIR" -j2 --target oklog >&2 || die "build failed"
fi
BIN=${OKLOG_BINARY:-$(find "$BUILD_DIR" -maxdepth 3 -type f -name oklog -perm -u+x | head -1)}
[[ -x $BIN ]] || die "no oklog binary (looked in $BUILD_DIR)"

# ---- time (microseconds, no subprocess) ----
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }
secs() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1e6 }'; }

# ---- state and cleanup ----
TMP=$(mktemp -d "${TMPDIR:-/tmp}/oklog-gossip20.XXXXXX")
declare -a PIDS=() API=() FAST=() DURABLE=() BULK=() CLUSTER=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local live=()
  for p in "${PIDS[@]}"; do [[ -n $p ]] && kill -0 "$p" 2>/dev/null && live+=("$p"); done
  if ((${#live[@]})); then
    kill -TERM "${live[@]}" 2>/dev/null
    local deadline=$(($(now_us) + STOP_TIMEOUT_S * 1000000)) left
    while :; do
      left=()
      for p in "${live[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
      ((${#left[@]} == 0)) && break
      if (($(now_us) > deadline)); then
        echo "real_processes: ${#left[@]} node(s) still up ${STOP_TIMEOUT_S}s after SIGTERM; SIGKILL ${left[*]}" >&2
        kill -KILL "${left[@]}" 2>/dev/null
        break
      fi
      sleep 0.1
    done
    wait "${live[@]}" 2>/dev/null
  fi
  if [[ ${KEEP_LOGS:-0} == 1 ]]; then echo "logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- ports: below the kernel's ephemeral range, not in use by any TCP or UDP socket ----
read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range
declare -A used=()
while read -r p; do used[$p]=1; done < <(ss -Htanu | awk '{ n = split($5, a, ":"); print a[n] }')
next_port=$((10000 + RANDOM % (eph_lo - 10000 - 5 * N - 1000)))
free_port() {
  while [[ -n ${used[$next_port]:-} ]]; do next_port=$((next_port + 1)); done
  PORT=$next_port
  used[$next_port]=1
  next_port=$((next_port + 1))
}
for ((i = 0; i < N; i++)); do
  free_port; API[i]=$PORT
  free_port; FAST[i]=$PORT
  free_port; DURABLE[i]=$PORT
  free_port; BULK[i]=$PORT
  free_port; CLUSTER[i]=$PORT
done
SEED=127.0.0.1:${CLUSTER[0]}
name_of() { echo "127.0.0.1:${CLUSTER[$1]}"; }

start_node() {
  local i=$1 d=$TMP/node$1
  mkdir -p "$d"
  "$BIN" ingeststore \
    -api "127.0.0.1:${API[i]}" \
    -ingest.fast "127.0.0.1:${FAST[i]}" \
    -ingest.durable "127.0.0.1:${DURABLE[i]}" \
    -ingest.bulk "127.0.0.1:${BULK[i]}" \
    -cluster "127.0.0.1:${CLUSTER[i]}" \
    -cluster.preset lan \
    -peer "$SEED" \
    -ingest.path "$d/ingest" \
    -store.path "$d/store" \
    >"$d/log" 2>&1 </dev/null &
  PIDS[i]=$!
}
check_alive() {  # every started node (but the one we killed) still running
  for ((i = 0; i < N; i++)); do
    [[ $i == "${VICTIM:-x}" ]] && continue
    if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
      echo "real_processes: node $i (pid ${PIDS[i]}) exited; its log:" >&2
      tail -20 "$TMP/node$i/log" >&2
      exit 1
    fi
  done
}

# One round over the given nodes' GET /cluster, in one curl process (requests one after another).
# Prints per answering node: self, alive, members not alive other than $2, and the state of member $2.
poll_cluster() {
  local target=$1 urls=() i
  shift
  for i in "$@"; do urls+=("http://127.0.0.1:${API[i]}/cluster"); done
  curl -s --max-time 2 -w '\n' "${urls[@]}" 2>/dev/null |
    jq -r --arg t "$target" '[.self,
        ([.members[] | select(.state == "alive")] | length),
        ([.members[] | select(.state != "alive" and .name != $t)] | length),
        (([.members[] | select(.name == $t) | .state] | first) // "-")] | @tsv' 2>/dev/null
}

# /metrics of node $1: "time_us bytes packets stream_bytes suspicions streams".
metrics_of() {
  local t body
  t=$(now_us)
  body=$(curl -s --max-time 2 "http://127.0.0.1:${API[$1]}/metrics") || return 1
  awk -v t="$t" '
    $1 == "oklog_gossip_bytes_sent_total" { b = $2 }
    $1 == "oklog_gossip_packets_sent_total" { p = $2 }
    $1 == "oklog_gossip_stream_bytes_sent_total" { s = $2 }
    $1 == "oklog_gossip_suspicions_total" { u = $2 }
    $1 == "oklog_gossip_streams_total" { c = $2 }
    END { printf "%s %.0f %.0f %.0f %.0f %.0f\n", t, b, p, s, u, c }' <<<"$body"
}

ALL=()
for ((i = 0; i < N; i++)); do ALL+=("$i"); done
RUN_START=$(now_us)

# ---- 1. start, join ----
start_node 0
deadline=$(($(now_us) + 15000000))
until curl -s --max-time 1 "http://127.0.0.1:${API[0]}/cluster" | jq -e .self >/dev/null 2>&1; do
  check_alive
  (($(now_us) > deadline)) && die "seed node did not answer GET /cluster within 15 s"
  sleep 0.05
done
FIRST_START=$(now_us)
for ((i = 1; i < N; i++)); do start_node "$i"; done
LAST_START=$(now_us)

JOIN_US=""
rounds=0 round_us_total=0
deadline=$((LAST_START + JOIN_TIMEOUT_S * 1000000))
while (($(now_us) < deadline)); do
  r0=$(now_us)
  full=$(poll_cluster none "${ALL[@]}" | awk -v n="$N" '$2 == n { c++ } END { print c + 0 }')
  t=$(now_us)
  rounds=$((rounds + 1)) round_us_total=$((round_us_total + t - r0))
  if ((full == N)); then JOIN_US=$((t - LAST_START)); break; fi
  check_alive
  sleep 0.05
done
if [[ -z $JOIN_US ]]; then
  echo "real_processes: not every node saw $N alive within ${JOIN_TIMEOUT_S}s; node 1 sees:" >&2
  curl -s "http://127.0.0.1:${API[1]}/cluster" >&2
  exit 1
fi
JOIN_ROUND_MS=$((round_us_total / rounds / 1000))
echo "join: all $N nodes list $N alive $(secs "$JOIN_US") s after the last start ($(secs $((JOIN_US + LAST_START - FIRST_START))) s after the first non-seed start); poll round ${JOIN_ROUND_MS} ms" >&2

# ---- 2. quiet cluster: traffic and false positives ----
sleep "$SETTLE_S"
check_alive
declare -a M0=()
for i in "${ALL[@]}"; do M0[i]=$(metrics_of "$i") || die "no /metrics from node $i"; done
Q_START=$(now_us)
Q_END=$((Q_START + QUIET_S * 1000000))
fp_sightings=0 fp_rounds=0 fp_missing=0
while :; do
  r0=$(now_us)
  out=$(poll_cluster none "${ALL[@]}")
  fp_rounds=$((fp_rounds + 1))
  # A member not alive on any node, or a node not listing all N alive, is a false positive here.
  read -r bad answered < <(awk -v n="$N" '{ a++; if ($2 != n) b += n - $2 } END { print b + 0, a + 0 }' <<<"$out")
  fp_sightings=$((fp_sightings + bad))
  fp_missing=$((fp_missing + N - answered))
  check_alive
  next=$((r0 + 1000000))
  ((next >= Q_END)) && break
  sleep "$(secs $((next - $(now_us))))" 2>/dev/null || true
done
rem=$((Q_END - $(now_us)))
((rem > 0)) && sleep "$(secs "$rem")"
declare -a M1=()
for i in "${ALL[@]}"; do M1[i]=$(metrics_of "$i") || die "no /metrics from node $i"; done
# Per node rates; mean and max over nodes.
QUIET=$(for i in "${ALL[@]}"; do echo "${M0[i]} ${M1[i]}"; done | awk '
  { dt = ($7 - $1) / 1e6
    b = ($8 - $2) / dt; p = ($9 - $3) / dt; s = ($10 - $4) / dt
    sb += b; sp += p; ss += s; susp += $11 - $5; streams += $12 - $6
    if (b + s > mx) mx = b + s; n++ }
  END { printf "%.1f %.2f %.1f %.1f %.1f %d %d\n", (sb + ss) / n, sp / n, sb / n, ss / n, mx, susp, streams }')
read -r Q_TOTAL Q_PKT Q_UDP Q_TCP Q_MAX Q_SUSP Q_STREAMS <<<"$QUIET"
echo "quiet ${QUIET_S}s: ${Q_TOTAL} B/s per node (UDP ${Q_UDP} B/s in ${Q_PKT} pkt/s, TCP ${Q_TCP} B/s, ${Q_STREAMS} TCP streams opened); max node ${Q_MAX} B/s; not-alive sightings ${fp_sightings} in ${fp_rounds} rounds, suspicions counted ${Q_SUSP}, unanswered polls ${fp_missing}" >&2

# ---- 3. crash: kill -9 of one non-seed node ----
VICTIM=$((1 + RANDOM % (N - 1)))
VNAME=$(name_of "$VICTIM")
SURV=()
for i in "${ALL[@]}"; do ((i != VICTIM)) && SURV+=("$i"); done
declare -A DEAD_AT=() SUSPECT_AT=()
others_bad=0 rounds=0 round_us_total=0
T_KILL=$(now_us)
{ kill -KILL "${PIDS[VICTIM]}"; wait "${PIDS[VICTIM]}"; } 2>/dev/null  # quiet: no "Killed" job notice
deadline=$((T_KILL + CRASH_TIMEOUT_S * 1000000))
while ((${#DEAD_AT[@]} < ${#SURV[@]})) && (($(now_us) < deadline)); do
  r0=$(now_us)
  out=$(poll_cluster "$VNAME" "${SURV[@]}")
  t=$(now_us)
  rounds=$((rounds + 1)) round_us_total=$((round_us_total + t - r0))
  while IFS=$'\t' read -r self alive bad state; do
    [[ -z $self ]] && continue
    others_bad=$((others_bad + bad))
    [[ $state == suspect && -z ${SUSPECT_AT[$self]:-} ]] && SUSPECT_AT[$self]=$((t - T_KILL))
    [[ $state == dead && -z ${DEAD_AT[$self]:-} ]] && DEAD_AT[$self]=$((t - T_KILL))
  done <<<"$out"
  check_alive
  sleep 0.05
done
CRASH_ROUND_MS=$((round_us_total / (rounds > 0 ? rounds : 1) / 1000))
CRASH_SEEN=${#DEAD_AT[@]}
stats() {  # "median max" in seconds of the microsecond values on stdin
  sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "- -"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.2f %.2f\n", m / 1e6, v[NR] / 1e6 }'
}
read -r C_MED C_MAX < <(for k in "${!DEAD_AT[@]}"; do echo "${DEAD_AT[$k]}"; done | stats)
read -r S_FIRST _ < <(for k in "${!SUSPECT_AT[@]}"; do echo "${SUSPECT_AT[$k]}"; done | sort -n | head -1 | stats)
echo "crash: node $VICTIM ($VNAME) seen dead by $CRASH_SEEN of ${#SURV[@]} survivors: median $C_MED s, max $C_MAX s; first suspect sighting $S_FIRST s; other members seen not alive $others_bad; poll round ${CRASH_ROUND_MS} ms" >&2
crash_note=""
((CRASH_SEEN < ${#SURV[@]})) && crash_note=" UNDETECTED by $((${#SURV[@]} - CRASH_SEEN)) after ${CRASH_TIMEOUT_S} s"

MEASURED_S=$(secs $(($(now_us) - RUN_START)))

# memberlist 0.2.2, LAN defaults, this machine (swim.md §2.2): join, dead at all survivors, quiet traffic.
case $N in
  5) ML_JOIN="0.20 (max 0.20)" ML_CRASH="5.98 (max 7.0)" ML_QUIET="~98 B/s, 2.0 pkt/s (UDP 81 + TCP ≈ 17)" ;;
  20) ML_JOIN="0.60 (max 0.80)" ML_CRASH="7.99 (max 9.8)" ML_QUIET="~116 B/s, 2.0 pkt/s (UDP 81 + TCP ≈ 35)" ;;
  50) ML_JOIN="1.05, 1 of 5 runs > 60 s" ML_CRASH="8.97 (max 10.9)" ML_QUIET="~111 B/s, 2.0 pkt/s (UDP 81 + TCP ≈ 30)" ;;
  *) ML_JOIN="not measured" ML_CRASH="not measured" ML_QUIET="not measured" ;;
esac

# ---- the table (same style as gossip_bench) ----
echo
echo "gossip real_processes: $N oklog ingeststore processes on 127.0.0.1, -cluster.preset lan, real time (memberlist: real loopback, swim.md §2.2)"
echo
echo "| N | join: all see all, s after last start | memberlist | crash: dead at all survivors, s median (max) | memberlist | target |"
echo "|---|---|---|---|---|---|"
echo "| $N | $(secs "$JOIN_US") | $ML_JOIN | $C_MED ($C_MAX)$crash_note, 1 kill, $CRASH_SEEN survivors | $ML_CRASH | median ≤ 6 s at N=5, ≤ 9 s at N=50 |"
echo
echo "| N | false positives, quiet ${QUIET_S} s: not-alive sightings (polls every 1 s) | suspicions counted | other members not alive during the crash run | memberlist |"
echo "|---|---|---|---|---|"
echo "| $N | $fp_sightings in $fp_rounds rounds | $Q_SUSP | $others_bad | 0 |"
echo
echo "| N | quiet cluster: B/s sent per node (UDP + TCP) | UDP pkt/s | UDP B/s | TCP B/s | max node B/s | memberlist | target |"
echo "|---|---|---|---|---|---|---|---|"
echo "| $N | $Q_TOTAL | $Q_PKT | $Q_UDP | $Q_TCP | $Q_MAX | $ML_QUIET | ≤ 100 B/s |"
echo
echo "poll rounds: join ${JOIN_ROUND_MS} ms, crash ${CRASH_ROUND_MS} ms (times are taken at the end of the round that first saw the state); TCP streams opened in the quiet window: $Q_STREAMS; first suspect sighting after the kill: $S_FIRST s (memberlist: 2.58)"
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || rev="$rev + uncommitted changes in src/"
echo "measured part: $MEASURED_S s; binary $BIN built from $rev"
