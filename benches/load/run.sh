#!/usr/bin/env bash
# dhcp-load (benches/src/bin/dhcp-load.rs) against our server and Kea, one after the other,
# same topology and clients as benches/perfdhcp/run.sh, plus perfdhcp at rates both reach so
# the two generators can be compared side by side. Needs root. Results and the method:
# docs/performance.md.
#
#   benches/load/run.sh [SERVER...]     SERVER: ours-static ours-dynamic kea (default: all three),
#                                       ours-static-b1 (batching off: the A/B baseline)
#
# Per server: fresh start (pinned to core $SRV_CPU), warm-up (every client gets a lease once),
# then, with the generator pinned to core $CLI_CPU:
#   lat   : 3 x 10 s at 1,000 DORA/s (latency percentiles, server CPU)
#   cmp   : perfdhcp (-x t, 5 s) and dhcp-load (5 s) at 1,000/s and $CMP_RATE/s
#   fixed : 3 x 10 s at each of $FIXED (CPU per DORA at rates Kea cannot sustain)
#   search: 5 s probes doubling from $START, bisection to 5 %, then 3 x 10 s at the best
#           probe rate, stepping down 10 % until the median holds (< 1 % drops, >= 97 % of
#           the rate offered)
# Everything this script creates (namespaces, processes) is removed on exit.
#
# Environment: OUT [/tmp/vmdhcp-load/<date>] CLIENTS [10000] SRV_CPU [1] CLI_CPU [0]
#   SRV_NS [vmdhcp-load-srv] CLI_NS [vmdhcp-load-cli] START [8000] FIXED ["20000 40000"]
#   CMP_RATE [5000] PHASES ["lat cmp fixed search"] OURS_BIN LOAD_BIN (prebuilt binaries)
#   RECV_BUFFER (SO_RCVBUF of our server; default: the kernel's, as Kea gets)
#   QUIET_PCT [25] QUIET_WAIT [120] (wait for a quiet machine before each run)
#   PRIO ["nice -n -15"] (priority of servers, dhcp-load and perfdhcp; e.g. "chrt -f 10")
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SRV_NS=${SRV_NS:-vmdhcp-load-srv}
CLI_NS=${CLI_NS:-vmdhcp-load-cli}
SRV_IF=veth-srv
CLI_IF=veth-cli
SRV_IP=10.99.0.1
CLI_IP=10.99.0.2
SRV_CPU=${SRV_CPU:-1}
CLI_CPU=${CLI_CPU:-0}
CLIENTS=${CLIENTS:-10000}
START=${START:-8000}
FIXED=${FIXED:-20000 40000}
CMP_RATE=${CMP_RATE:-5000}
# Servers and generators run with priority PRIO (every server alike), so other work on a
# shared machine does not preempt them for tens of milliseconds and overflow the socket
# buffers. "chrt -f 10" (real-time) isolates them best; the kernel's RT throttling still
# leaves other tasks 5 % of each core.
read -r -a PRIO <<<"${PRIO:-nice -n -15}"
PHASES=${PHASES:-lat cmp fixed search}
OUT=${OUT:-/tmp/vmdhcp-load/$(date +%Y%m%d-%H%M%S)}
WORK=$OUT/work
SERVERS=("$@")
[ ${#SERVERS[@]} -gt 0 ] || SERVERS=(ours-static ours-dynamic kea)

die() { echo "load/run.sh: $*" >&2; exit 1; }
say() { echo "== $(date +%T) $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, port 67)"
for s in "${SERVERS[@]}"; do
  case "$s" in ours-static|ours-dynamic|ours-static-b1|kea) ;; *) die "unknown server '$s'" ;; esac
done
command -v perfdhcp >/dev/null && command -v kea-dhcp4 >/dev/null \
  || die "perfdhcp and kea-dhcp4 are needed: apt-get install kea-admin kea-dhcp4-server"

if [ -z "${OURS_BIN:-}" ] || [ -z "${LOAD_BIN:-}" ]; then
  say "building dhcp-bench-server and dhcp-load (release)"
  (cd "$ROOT" && cargo build --release --quiet -p vmdhcp-benches --bin dhcp-bench-server --bin dhcp-load)
  OURS_BIN=${OURS_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/dhcp-bench-server}
  LOAD_BIN=${LOAD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/dhcp-load}
fi

SERVER_PID=
created_ns=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$SERVER_PID" ] && stop_server
  for ns in "${created_ns[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    sleep 0.3
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for ns in "$SRV_NS" "$CLI_NS"; do
  ip netns list | grep -qw "$ns" && die "namespace $ns exists (another run?)"
done
mkdir -p "$WORK/logs" "$WORK/run"
ip netns add "$SRV_NS"; created_ns+=("$SRV_NS")
ip netns add "$CLI_NS"; created_ns+=("$CLI_NS")
ip link add "$SRV_IF" netns "$SRV_NS" type veth peer name "$CLI_IF" netns "$CLI_NS"
for ns in "$SRV_NS" "$CLI_NS"; do ip -n "$ns" link set lo up; done
ip -n "$SRV_NS" addr add "$SRV_IP/16" dev "$SRV_IF"
ip -n "$CLI_NS" addr add "$CLI_IP/16" dev "$CLI_IF"
ip -n "$SRV_NS" link set "$SRV_IF" up
ip -n "$CLI_NS" link set "$CLI_IF" up
sleep 1

start_server() {
  local label=$1 log=$WORK/logs/$1.out pin=("${PRIO[@]}" taskset -c "$SRV_CPU")
  case "$label" in
    ours-*)
      local leases=${label#ours-} batch=32
      case "$leases" in *-b1) leases=${leases%-b1}; batch=1 ;; esac
      # Kernel-default socket buffers, as Kea gets (RECV_BUFFER=bytes sets SO_RCVBUF).
      ip netns exec "$SRV_NS" "${pin[@]}" "$OURS_BIN" --interface "$SRV_IF" --batch "$batch" \
        --leases "$leases" --clients "$CLIENTS" ${RECV_BUFFER:+--recv-buffer "$RECV_BUFFER"} >"$log" 2>&1 & ;;
    kea)
      sed -e "s|@SRV_IF@|$SRV_IF|g" -e "s|@WORK@|$WORK|g" "$HERE/../perfdhcp/conf/kea-dhcp4.json" > "$WORK/run/kea-dhcp4.json"
      ip netns exec "$SRV_NS" env KEA_PIDFILE_DIR="$WORK/run" KEA_LOCKFILE_DIR="$WORK/run" \
        "${pin[@]}" kea-dhcp4 -c "$WORK/run/kea-dhcp4.json" >"$log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 50); do
    ip netns exec "$SRV_NS" ss -uln 2>/dev/null | grep -q ':67 ' && break
    sleep 0.2
  done
  sleep 0.5
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; die "$label did not start"; }
}

stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 25); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# Other work on a shared machine skews results: wait (at most QUIET_WAIT s) until the machine
# is less than QUIET_PCT % busy over 2 s; the busy % seen is kept with the run.
QUIET_PCT=${QUIET_PCT:-25}; QUIET_WAIT=${QUIET_WAIT:-120}
busy_pct() {
  local a b
  a=($(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)); sleep 2
  b=($(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat))
  echo $(( 100 * (b[0]-a[0]) / ( (b[0]-a[0]) + (b[1]-a[1]) + 1 ) ))
}
wait_quiet() {
  local start=$SECONDS busy
  while :; do
    busy=$(busy_pct)
    [ "$busy" -lt "$QUIET_PCT" ] && break
    [ $((SECONDS - start)) -ge "$QUIET_WAIT" ] && { echo "   (not quiet: ${busy}% busy, running anyway)" >&2; break; }
  done
  BUSY_BEFORE=$busy
}

# load LABEL PHASE RATE SECONDS [extra dhcp-load args] -> appends a JSON line, prints it
load() {
  local label=$1 phase=$2 rate=$3 secs=$4; shift 4
  [ "$phase" = warmup ] || wait_quiet
  echo "   $label $phase $rate/s ${secs}s (machine ${BUSY_BEFORE:-?}% busy before)" >&2
  ip netns exec "$CLI_NS" "${PRIO[@]}" taskset -c "$CLI_CPU" "$LOAD_BIN" --relay "$CLI_IP" --server "$SRV_IP" \
    --clients "$CLIENTS" --rate "$rate" --duration "$secs" --server-pid "$SERVER_PID" \
    --label "$label/$phase" "$@" | tee -a "$OUT/$label/load.jsonl"
}
holds() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); sys.exit(0 if j["drop_pct"] < 1 and j["sent_ratio"] >= 0.97 else 1)' "$1"; }

for label in "${SERVERS[@]}"; do
  mkdir -p "$OUT/$label"
  say "$label"
  start_server "$label"
  load "$label" warmup 5000 60 --count "$CLIENTS" >/dev/null
  for phase in $PHASES; do
    case "$phase" in
      lat) for _ in 1 2 3; do load "$label" lat 1000 10 >/dev/null; done ;;
      cmp)
        for r in 1000 "$CMP_RATE"; do
          "${PRIO[@]}" python3 "$HERE/../perfdhcp/measure.py" once --label "$label" --pid "$SERVER_PID" --out "$OUT/perfdhcp" \
            --cli-ns "$CLI_NS" --cli-if "$CLI_IF" --cli-cpu "$CLI_CPU" --clients "$CLIENTS" \
            --rate "$r" --period 5 --xt --quiet 60 --quiet-wait 1 >> "$OUT/$label/perfdhcp.jsonl"
          load "$label" cmp "$r" 5 >/dev/null
        done ;;
      fixed) for r in $FIXED; do for _ in 1 2 3; do load "$label" fixed "$r" 10 >/dev/null; done; done ;;
      search)
        lo=0; hi=0; rate=$START
        while :; do
          if holds "$(load "$label" probe "$rate" 5)"; then
            lo=$rate; [ "$hi" -gt 0 ] && break; rate=$((rate * 2)); [ $rate -gt 1024000 ] && break
          else
            hi=$rate; [ "$lo" -gt 0 ] && break; rate=$((rate / 2)); [ $rate -lt 500 ] && break
          fi
        done
        while [ "$lo" -gt 0 ] && [ "$hi" -gt 0 ] && [ $(( (hi - lo) * 100 / lo )) -gt 5 ]; do
          rate=$(( (lo + hi) / 2 ))
          if holds "$(load "$label" probe "$rate" 5)"; then lo=$rate; else hi=$rate; fi
        done
        for _ in 1 2 3 4; do
          rows=$(for _ in 1 2 3; do load "$label" "confirm-$lo" "$lo" 10; done)
          med=$(python3 -c 'import json,sys,statistics as s; r=[json.loads(l) for l in sys.stdin if l.strip()]; print(json.dumps({k: s.median(x[k] for x in r) for k in ("drop_pct","sent_ratio","dora_per_s","srv_cpu_pct","srv_cpu_us_per_dora","dora_p99_ms")}))' <<<"$rows")
          if holds "$med"; then echo "{\"label\":\"$label/sustained\",\"rate\":$lo,\"median\":$med}" | tee -a "$OUT/$label/load.jsonl"; break; fi
          lo=$(( lo * 9 / 10 ))
        done ;;
    esac
  done
  stop_server
done
python3 "$HERE/table.py" "$OUT" | tee "$OUT/table.md"
