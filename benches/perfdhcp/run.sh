#!/usr/bin/env bash
# perfdhcp load test: our server (dhcp-bench-server on the dhcp-server library) against
# kea-dhcp4 (memfile, persist false) and dnsmasq (leasefile-ro), one after the other in the
# same run, with the same 10,000 perfdhcp clients. Needs root. Results and the method:
# docs/performance.md.
#
#   benches/perfdhcp/run.sh [SERVER...]      SERVER: ours-static ours-dynamic kea dnsmasq (default: all)
#
# Topology: netns $SRV_NS (veth-srv 10.99.0.1/16) <-veth-> netns $CLI_NS (veth-cli 10.99.0.2/16).
# Nothing else is attached to them: no traffic leaves the two namespaces. perfdhcp runs as a
# relay agent in $CLI_NS; each server runs alone in $SRV_NS. Server pinned to core $SRV_CPU,
# perfdhcp and the warm-up to core $CLI_CPU. Everything this script starts or creates is
# removed on exit, Ctrl-C included.
#
# Environment (defaults in brackets):
#   OUT [/tmp/vmdhcp-perfdhcp/<date>]  results: <server>/{runs.csv,summary.json,raw/}, table.md
#   OURS_BIN [build it with cargo]     a prebuilt dhcp-bench-server
#   CLIENTS [10000] SRV_CPU [1] CLI_CPU [0] SRV_NS [vmdhcp-bench-srv] CLI_NS [vmdhcp-bench-cli]
#   MEASURE_ARGS                       extra measure.py options, e.g. "--period 10 --repeats 1"
#   NO_INSTALL=1                       do not apt-get install missing packages
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SRV_NS=${SRV_NS:-vmdhcp-bench-srv}
CLI_NS=${CLI_NS:-vmdhcp-bench-cli}
SRV_IF=veth-srv
CLI_IF=veth-cli
SRV_IP=10.99.0.1
CLI_IP=10.99.0.2
SRV_CPU=${SRV_CPU:-1}
CLI_CPU=${CLI_CPU:-0}
CLIENTS=${CLIENTS:-10000}
OUT=${OUT:-/tmp/vmdhcp-perfdhcp/$(date +%Y%m%d-%H%M%S)}
WORK=$OUT/work
SERVERS=("$@")
[ ${#SERVERS[@]} -gt 0 ] || SERVERS=(ours-static ours-dynamic kea dnsmasq)

die() { echo "perfdhcp/run.sh: $*" >&2; exit 1; }
say() { echo "== $(date +%T) $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, port 67); try: sudo $0 $*"
for s in "${SERVERS[@]}"; do
  case "$s" in ours-static|ours-dynamic|kea|dnsmasq) ;; *) die "unknown server '$s'" ;; esac
done

# --- packages -------------------------------------------------------------------------------
need=()
command -v perfdhcp >/dev/null || need+=(kea-admin)
command -v kea-dhcp4 >/dev/null || need+=(kea-dhcp4-server)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v python3 >/dev/null || need+=(python3)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  [ "${NO_INSTALL:-}" = 1 ] && die "missing packages: ${need[*]}"
  say "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ "$(nproc)" -ge 2 ] || echo "warning: fewer than 2 CPUs; server and perfdhcp will share one" >&2

# --- our server -----------------------------------------------------------------------------
if [ -z "${OURS_BIN:-}" ]; then
  command -v cargo >/dev/null || die "cargo not found: build dhcp-bench-server and set OURS_BIN"
  say "building dhcp-bench-server (release)"
  (cd "$ROOT" && cargo build --release --quiet -p vmdhcp-benches --bin dhcp-bench-server)
  OURS_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/dhcp-bench-server
fi
[ -x "$OURS_BIN" ] || die "not executable: $OURS_BIN"

# --- clean-up, whatever happens ---------------------------------------------------------------
SERVER_PID=
created_ns=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$SERVER_PID" ] && stop_server
  for ns in "${created_ns[@]}"; do
    # Anything still running inside our namespaces was started by this script.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    sleep 0.3
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  [ ${#created_ns[@]} -gt 0 ] && say "removed namespaces ${created_ns[*]}"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- topology -------------------------------------------------------------------------------
for ns in "$SRV_NS" "$CLI_NS"; do
  ip netns list | grep -qw "$ns" && die "namespace $ns exists (another run?); remove it with 'ip netns del $ns'"
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
for _ in $(seq 20); do
  ip -n "$CLI_NS" -br link show "$CLI_IF" | grep -qw UP && break
  sleep 0.1
done
ip -n "$CLI_NS" -br link show "$CLI_IF" | grep -qw UP || die "$CLI_IF did not come up"
say "topology: $SRV_NS ($SRV_IF $SRV_IP) <-> $CLI_NS ($CLI_IF $CLI_IP)"

# --- servers --------------------------------------------------------------------------------
render() {  # template -> file with this run's interface and work directory
  sed -e "s|@SRV_IF@|$SRV_IF|g" -e "s|@WORK@|$WORK|g" "$1" > "$2"
}

start_server() {
  local label=$1 log=$WORK/logs/$1.out
  local pin=(taskset -c "$SRV_CPU")
  case "$label" in
    ours-static|ours-dynamic)
      ip netns exec "$SRV_NS" "${pin[@]}" "$OURS_BIN" --interface "$SRV_IF" \
        --leases "${label#ours-}" --clients "$CLIENTS" >"$log" 2>&1 &
      ;;
    kea)
      render "$HERE/conf/kea-dhcp4.json" "$WORK/run/kea-dhcp4.json"
      ip netns exec "$SRV_NS" env KEA_PIDFILE_DIR="$WORK/run" KEA_LOCKFILE_DIR="$WORK/run" \
        "${pin[@]}" kea-dhcp4 -c "$WORK/run/kea-dhcp4.json" >"$log" 2>&1 &
      ;;
    dnsmasq)
      render "$HERE/conf/dnsmasq.conf" "$WORK/run/dnsmasq.conf"
      ip netns exec "$SRV_NS" "${pin[@]}" dnsmasq -k -C "$WORK/run/dnsmasq.conf" >"$log" 2>&1 &
      ;;
  esac
  # `ip netns exec` and `taskset` exec the server: $! is the server's own pid.
  SERVER_PID=$!
  for _ in $(seq 50); do
    ip netns exec "$SRV_NS" ss -uln 2>/dev/null | grep -q ':67 ' && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.2
  done
  sleep 0.5
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; die "$label did not start"; }
  say "$label running, pid $SERVER_PID ($(head -c 120 "$log" | head -1))"
}

stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 25); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# --- measurements ---------------------------------------------------------------------------
say "results in $OUT; machine: $(nproc) CPUs, $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg)"
{
  echo "perfdhcp: $(perfdhcp -v 2>&1 | head -1)"
  echo "kea-dhcp4: $(kea-dhcp4 -v 2>&1 | head -1)"
  echo "dnsmasq: $(dnsmasq -v 2>&1 | head -1)"
  echo "ours: $OURS_BIN (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
} > "$OUT/versions.txt"
for label in "${SERVERS[@]}"; do
  say "$label"
  start_server "$label"
  say "$label warm-up: every client gets a lease once"
  ip netns exec "$CLI_NS" taskset -c "$CLI_CPU" python3 "$HERE/warmup.py" --clients "$CLIENTS" \
    --server "$SRV_IP" --relay "$CLI_IP" | tee "$WORK/logs/$label.warmup.json" >&2 \
    || die "$label: warm-up did not lease every client"
  # shellcheck disable=SC2086 # MEASURE_ARGS is a list of options
  python3 "$HERE/measure.py" run --label "$label" --pid "$SERVER_PID" --out "$OUT" \
    --cli-ns "$CLI_NS" --cli-if "$CLI_IF" --cli-cpu "$CLI_CPU" --clients "$CLIENTS" ${MEASURE_ARGS:-}
  stop_server
  tail -n 3 "$WORK/logs/$label.out" > "$OUT/$label/server.log" 2>/dev/null || true
done
python3 "$HERE/measure.py" table "$OUT" | tee "$OUT/table.md"
