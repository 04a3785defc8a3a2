#!/usr/bin/env bash
# Benchmark: the highest call rate pcsync's redirect server (release build) answers cleanly, per
# transport. The load test (tests/load/) runs at 80 % of the figures this finds, as recorded in
# docs/benchmarks.md.
#
# For each transport it runs sipp (INVITE -> 302 -> ACK, scripts/bench/uac_302.xml, the same
# scenario and options as the load test) at rising rates, SECONDS each, and stops at the first
# rate that is not clean. A rate is clean when sipp exits 0 with every call successful (0 failed)
# AND kept the rate (successful calls / wall time >= 95 % of the target: over TCP nothing is lost,
# so an overloaded sender shows up as a lower rate, not as failures). The highest clean rate is
# then run BENCH_CONFIRM more times; if any of those is not clean, the next lower clean rate is
# confirmed instead. The result is the highest rate that was clean in every run.
#
# Per run it prints: calls ok / failed / retransmitted, wall time and achieved rate, CPU of pcsync
# and of sipp (% of one core), datagrams dropped at pcsync's UDP socket and elsewhere (the
# kernel's UDP receive-buffer errors minus pcsync's: in practice sipp's socket), and the 1-minute
# load average when the run started, so a failure says who fell behind.
#
# Usage: scripts/bench-redirect-max.sh [TRANSPORTS] [SECONDS] [RATES]
#   TRANSPORTS  comma-separated udp,tcp (default both)
#   SECONDS     per run, default 30
#   RATES       the ladder, comma-separated calls/s, default 10000,15000,...,50000
# Environment: BENCH_CONFIRM (confirmation runs of the highest clean rate, default 2),
#              BENCH_WORKERS (udp_workers, default 2, pcsync's default),
#              BENCH_ENTRIES (mapping entries, default 1000),
#              BENCH_NICE (niceness of pcsync and sipp, default -10 as root, else unchanged:
#              on a shared machine other builds would otherwise decide the figure; the load
#              test runs both at the same niceness).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/redirect-bench.sh

TRANSPORTS="${1:-udp,tcp}"
SECONDS_PER_RUN="${2:-30}"
RATES="${3:-10000,15000,20000,25000,30000,35000,40000,45000,50000}"
CONFIRM="${BENCH_CONFIRM:-2}"
WORKERS="${BENCH_WORKERS:-2}"
ENTRIES="${BENCH_ENTRIES:-1000}"
# sipp's socket buffers: the kernel caps SO_RCVBUF at net.core.rmem_max (4 MiB here) and doubles
# it for bookkeeping; the load test asks for the same.
SIPP_BUFFER=4194304
if [ -n "${BENCH_NICE:-}" ]; then NICE=$BENCH_NICE
elif [ "$(id -u)" -eq 0 ]; then NICE=-10
else NICE=0; fi

if ! command -v sipp >/dev/null 2>&1; then
  echo "bench-redirect-max: sipp not found: apt-get install -y sip-tester (as root)" >&2
  exit 1
fi

echo "bench-redirect-max: building pcsync (release)..." >&2
cargo build --release --locked --quiet --bin pcsync
PCSYNC="$PWD/target/release/pcsync"
SCENARIO="$PWD/scripts/bench/uac_302.xml"

WORK=$(mktemp -d /tmp/pcsync-bench-max.XXXXXX)
PCS_PID=""
cleanup() {
  if [ -n "$PCS_PID" ]; then
    kill -TERM "$PCS_PID" 2>/dev/null || true
    wait "$PCS_PID" 2>/dev/null || true
  fi
  if [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else echo "bench-redirect-max: kept $WORK" >&2; fi
}
trap cleanup EXIT

redirect_bench_mapping "$WORK" "$ENTRIES"
PORT=$(free_port)
redirect_bench_config "$WORK" "127.0.0.1:$PORT" "127.0.0.1:$PORT" "$WORKERS" >"$WORK/pcsync.toml"
nice -n "$NICE" "$PCSYNC" --config "$WORK/pcsync.toml" -q redirect >"$WORK/pcsync.log" 2>&1 &
PCS_PID=$!
wait_ready "$PCSYNC" "$PORT"
CLK_TCK=$(getconf CLK_TCK)
echo "bench-redirect-max: pcsync on 127.0.0.1:$PORT (pid $PCS_PID), $WORKERS UDP workers, $ENTRIES mappings, ${SECONDS_PER_RUN}s per run, niceness $NICE" >&2

rcvbuf_errors() { awk '/^Udp: [0-9]/ { print $6 }' /proc/net/snmp; }

printf '%-4s %7s %9s %7s %8s %7s %9s %7s %7s %8s %8s %5s %s\n' \
  transport rate ok failed retrans wall_s achieved pcs_cpu sipp_cpu pcs_drop oth_drop load1 verdict

# run_one TRANSPORT RATE: prints one row; returns 0 when clean.
run_one() {
  local transport=$1 rate=$2 flag
  case $transport in udp) flag=u1 ;; tcp) flag=t1 ;; *) echo "unknown transport $transport" >&2; exit 1 ;; esac
  local calls=$((rate * SECONDS_PER_RUN)) lport stats="$WORK/stat.csv" times="$WORK/time.txt"
  lport=$(free_port)
  rm -f "$stats"
  local load1 ticks0 drops0 errs0
  load1=$(cut -d' ' -f1 /proc/loadavg)
  ticks0=$(cpu_ticks "$PCS_PID"); drops0=$(udp_drops "$PORT"); errs0=$(rcvbuf_errors)
  local rc=0
  timeout $((SECONDS_PER_RUN * 2 + 90)) /usr/bin/time -f '%e %U %S' -o "$times" \
    nice -n "$NICE" sipp -sf "$SCENARIO" -s persistentchat -key domain contoso.com \
    -i 127.0.0.1 -p "$lport" -t "$flag" -r "$rate" -rp 1000 -l $((rate * 2)) -m "$calls" \
    -timeout $((SECONDS_PER_RUN * 2 + 60))s -timeout_error -nostdin -recv_timeout 32s \
    -buff_size "$SIPP_BUFFER" -trace_stat -stf "$stats" -fd 1 \
    "127.0.0.1:$PORT" >/dev/null 2>"$WORK/sipp.err" || rc=$?
  local ticks1 drops1 errs1
  ticks1=$(cpu_ticks "$PCS_PID"); drops1=$(udp_drops "$PORT"); errs1=$(rcvbuf_errors)
  python3 - "$transport" "$rate" "$calls" "$rc" "$stats" "$times" "$((ticks1 - ticks0))" "$CLK_TCK" \
    "$((drops1 - drops0))" "$((errs1 - errs0))" "$load1" <<'PY'
import csv, sys
transport, rate, calls, rc, stats, times, ticks, tck, pdrop, errs, load1 = sys.argv[1:]
rate, calls, rc = int(rate), int(calls), int(rc)
try:
    rows = list(csv.reader(open(stats), delimiter=';'))
    head, last = rows[0], rows[-1]
    col = lambda n: int(last[head.index(n)])
    ok, failed, retrans = col("SuccessfulCall(C)"), col("FailedCall(C)"), col("Retransmissions(C)")
except (OSError, IndexError, ValueError):
    ok, failed, retrans = 0, calls, 0
try:
    wall, user, sys_ = (float(x) for x in open(times).read().split()[-3:])
except (OSError, ValueError):
    wall, user, sys_ = float("nan"), 0.0, 0.0
achieved = ok / wall if wall > 0 else 0.0
pcs_cpu = 100.0 * int(ticks) / int(tck) / wall if wall > 0 else 0.0
sipp_cpu = 100.0 * (user + sys_) / wall if wall > 0 else 0.0
other = max(int(errs) - int(pdrop), 0)
clean = rc == 0 and failed == 0 and ok == calls and achieved >= 0.95 * rate
print(f"{transport:<4} {rate:>7} {ok:>9} {failed:>7} {retrans:>8} {wall:>7.1f} {achieved:>9.0f} "
      f"{pcs_cpu:>6.0f}% {sipp_cpu:>7.0f}% {pdrop:>8} {other:>8} {load1:>5} {'clean' if clean else 'NOT clean'}",
      flush=True)
sys.exit(0 if clean else 1)
PY
}

IFS=',' read -r -a TRANSPORT_LIST <<<"$TRANSPORTS"
IFS=',' read -r -a RATE_LIST <<<"$RATES"
SUMMARY=()
for transport in "${TRANSPORT_LIST[@]}"; do
  clean=()
  for rate in "${RATE_LIST[@]}"; do
    if run_one "$transport" "$rate"; then clean+=("$rate"); else break; fi
  done
  best=""
  # Confirm from the top down: the result is a rate clean in every one of its runs.
  for ((i = ${#clean[@]} - 1; i >= 0; i--)); do
    rate=${clean[$i]} ok=1
    for ((c = 0; c < CONFIRM; c++)); do
      if ! run_one "$transport" "$rate"; then ok=0; break; fi
    done
    if [ "$ok" = 1 ]; then best=$rate; break; fi
  done
  SUMMARY+=("$transport: highest clean rate ${best:-none} calls/s (clean in $((CONFIRM + 1)) of $((CONFIRM + 1)) runs of ${SECONDS_PER_RUN}s)")
done
echo
printf '%s\n' "${SUMMARY[@]}"
echo "pcsync RSS at the end: $(awk '/^VmRSS/ { print $2, $3 }' "/proc/$PCS_PID/status")"
