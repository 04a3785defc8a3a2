#!/usr/bin/env bash
# Benchmark: pcsync's SIP redirect server against Kamailio 5.6 as a stateless, htable-based 302
# redirect server with the same mapping, in the same run, under the same sipp load
# (INVITE -> 302 -> ACK over UDP on loopback, fixed rates, bounded in count and time).
#
# Per server and rate it prints: calls ok / failed / retransmitted (sipp's counters), the
# server's CPU time per call (utime+stime summed over all its processes, from /proc/PID/stat),
# and p50/p99 response time from a paced latency probe (examples/sip_latency.rs, microseconds)
# running during the load. The headline ratio is pcsync CPU per call / Kamailio CPU per call.
#
# Usage: scripts/bench-redirect.sh [RATES] [SECONDS]
#   RATES    comma-separated calls/s, default 5000,10000,20000,35000
#   SECONDS  per rate, default 10
# Environment: BENCH_WORKERS (worker threads/processes of each server, default 2),
#              BENCH_ENTRIES (mapping entries, default 1000).
# Needs root only to install kamailio and sip-tester when they are missing (apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/redirect-bench.sh

RATES="${1:-5000,10000,20000,35000}"
SECONDS_PER_RATE="${2:-10}"
WORKERS="${BENCH_WORKERS:-2}"
ENTRIES="${BENCH_ENTRIES:-1000}"
PROBE_RATE=200

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
[ -x /usr/sbin/kamailio ] || need+=(kamailio)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench-redirect: missing Debian packages: ${need[*]} (apt-get install -y ${need[*]}, as root)" >&2
    exit 1
  fi
  # Never let the package start a system-wide kamailio.
  policy=/usr/sbin/policy-rc.d; created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; created=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
  if [ "$created" = 1 ]; then rm -f "$policy"; fi
fi

echo "bench-redirect: building pcsync (release)..." >&2
cargo build --release --quiet --bin pcsync --example sip_latency
PCSYNC="$PWD/target/release/pcsync"
PROBE="$PWD/target/release/examples/sip_latency"
SCENARIO="$PWD/scripts/bench/uac_302.xml"
KAM_MODULES=$(dirname "$(find /usr/lib -name sl.so -path '*kamailio*' | head -1)")

WORK=$(mktemp -d /tmp/pcsync-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else echo "bench-redirect: kept $WORK" >&2; fi
}
trap cleanup EXIT

# --- the mapping, identical for both servers -------------------------------------------------
redirect_bench_mapping "$WORK" "$ENTRIES"

PCS_PORT=$(free_port)
KAM_PORT=$(free_port)

redirect_bench_config "$WORK" "127.0.0.1:$PCS_PORT" "" "$WORKERS" >"$WORK/pcsync.toml"

# Kamailio: stateless (sl) 302 with the same Contact, the mapping in an htable.
cat >"$WORK/kamailio.cfg" <<EOF
#!KAMAILIO
debug=0
log_stderror=yes
memdbg=5
memlog=5
fork=yes
children=$WORKERS
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:$KAM_PORT
mpath="$KAM_MODULES/"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "htable.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
modparam("htable", "htable", "map=>size=12;")

event_route[htable:mod-init] {
$(cat "$WORK/htable.cfg")
}

request_route {
	if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
	if (is_method("ACK")) { exit; }
	if (is_method("OPTIONS")) { sl_send_reply("200", "OK"); exit; }
	\$var(key) = \$(rU{s.tolower}) + "@" + \$(rd{s.tolower});
	\$var(pool) = \$sht(map=>\$var(key));
	if (\$var(pool) != \$null && \$var(pool) != 0) {
		# The idiomatic Kamailio redirect: sl builds the 3xx Contact from the new R-URI.
		\$ru = "sip:" + \$rU + "@" + \$var(pool) + ":5061;transport=tls";
		sl_send_reply("302", "Moved Temporarily");
		exit;
	}
	sl_send_reply("404", "Not Found");
	exit;
}
EOF

start_pcsync() {
  "$PCSYNC" --config "$WORK/pcsync.toml" -q redirect >"$WORK/pcsync.log" 2>&1 &
  PCS_PID=$!
  PIDS+=("$PCS_PID")
  wait_ready "$PCSYNC" "$PCS_PORT"
}

start_kamailio() {
  mkdir -p "$WORK/kam-run"
  /usr/sbin/kamailio -f "$WORK/kamailio.cfg" -DD -E -m 64 -M 8 -Y "$WORK/kam-run" \
    -P "$WORK/kam-run/kamailio.pid" >"$WORK/kamailio.log" 2>&1 &
  KAM_PID=$!
  PIDS+=("$KAM_PID")
  wait_ready "$PCSYNC" "$KAM_PORT"
}

CLK_TCK=$(getconf CLK_TCK)
RESULTS="$WORK/results.txt"
: >"$RESULTS"

run_one() { # name pid port rate
  local name=$1 pid=$2 port=$3 rate=$4
  local calls=$((rate * SECONDS_PER_RATE))
  local stats="$WORK/sipp-$name-$rate.csv"
  local lport
  lport=$(free_port)
  local before after
  before=$(cpu_ticks "$pid")
  local probe_count=$((PROBE_RATE * SECONDS_PER_RATE))
  "$PROBE" "127.0.0.1:$port" sip:persistentchat@contoso.com "$PROBE_RATE" "$probe_count" >"$WORK/probe-$name-$rate.txt" &
  local probe_pid=$!
  set +e
  timeout $((SECONDS_PER_RATE + 60)) sipp -sf "$SCENARIO" -s persistentchat -key domain contoso.com \
    -i 127.0.0.1 -p "$lport" -t u1 -r "$rate" -rp 1000 -l $((rate * 2)) -m "$calls" \
    -timeout $((SECONDS_PER_RATE + 30))s -nostdin -recv_timeout 5000 \
    -buff_size 1048576 -trace_stat -stf "$stats" -fd 1 -trace_err -error_file "$WORK/sipp-$name-$rate.err" \
    "127.0.0.1:$port" >/dev/null 2>&1
  set -e
  wait "$probe_pid" || true
  after=$(cpu_ticks "$pid")
  python3 - "$name" "$rate" "$stats" "$WORK/probe-$name-$rate.txt" "$before" "$after" "$CLK_TCK" >>"$RESULTS" <<'PY'
import csv, sys
name, rate, stats, probe, before, after, tck = sys.argv[1:]
rows = list(csv.reader(open(stats), delimiter=';'))
head, last = rows[0], rows[-1]
col = lambda n: int(last[head.index(n)])
ok, failed, retrans = col("SuccessfulCall(C)"), col("FailedCall(C)"), col("Retransmissions(C)")
elapsed = last[head.index("ElapsedTime(C)")]
p = dict(kv.split("=") for kv in open(probe).read().split())
cpu_s = (int(after) - int(before)) / int(tck)
per_call = cpu_s / max(ok, 1) * 1e6
print(f"{name} {rate} {ok} {failed} {retrans} {cpu_s:.2f} {per_call:.1f} {p['p50_us']} {p['p99_us']} {p['lost']} {elapsed}")
PY
}

IFS=',' read -r -a RATE_LIST <<<"$RATES"
start_pcsync
start_kamailio
echo "bench-redirect: pcsync on 127.0.0.1:$PCS_PORT (pid $PCS_PID), kamailio on 127.0.0.1:$KAM_PORT (pid $KAM_PID), $WORKERS workers each, $ENTRIES mappings" >&2
for rate in "${RATE_LIST[@]}"; do
  echo "bench-redirect: $rate calls/s for ${SECONDS_PER_RATE}s: pcsync..." >&2
  run_one pcsync "$PCS_PID" "$PCS_PORT" "$rate"
  echo "bench-redirect: $rate calls/s for ${SECONDS_PER_RATE}s: kamailio..." >&2
  run_one kamailio "$KAM_PID" "$KAM_PORT" "$rate"
done

python3 - "$RESULTS" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print(f"{'server':<9} {'rate/s':>7} {'ok':>8} {'failed':>7} {'retrans':>8} {'cpu s':>6} {'cpu/call us':>11} {'p50 us':>7} {'p99 us':>7} {'probe lost':>10}")
by = {}
for name, rate, ok, failed, retrans, cpu, per, p50, p99, lost, elapsed in rows:
    by[(name, rate)] = (float(per), int(ok), int(failed), int(p99))
    print(f"{name:<9} {rate:>7} {ok:>8} {failed:>7} {retrans:>8} {cpu:>6} {per:>11} {p50:>7} {p99:>7} {lost:>10}")
print()
print(f"{'rate/s':>7} {'pcsync/kamailio cpu per call':>29} {'pcsync failed %':>16} {'p99 pcsync/kamailio':>20}")
for (name, rate) in sorted({k for k in by if k[0] == 'pcsync'}, key=lambda k: int(k[1])):
    p, k = by[("pcsync", rate)], by.get(("kamailio", rate))
    if not k:
        continue
    ratio = p[0] / k[0] if k[0] else float('nan')
    fail = 100.0 * p[2] / max(p[1] + p[2], 1)
    p99 = f"{p[3]}/{k[3]}"
    print(f"{rate:>7} {ratio:>29.2f} {fail:>16.3f} {p99:>20}")
PY
