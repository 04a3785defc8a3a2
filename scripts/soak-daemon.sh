#!/usr/bin/env bash
# Soak: `pcsync run` with a 1-second cron against a throwaway slapd for DURATION seconds
# (default 600), then counts missed and doubled ticks. Expected: 0 and 0.
#
#   scripts/soak-daemon.sh [DURATION_SECONDS]
#
# Every scheduled run logs "scheduled run finished" inside a span carrying its run_id, which
# starts with the UTC second the run started (YYYYMMDDTHHMMSS). Over the whole seconds between
# the first and the last cron-triggered run, a second with no run is a missed tick, a second
# with two or more a doubled tick. /metrics is scraped at the end and pcsync_runs_total is
# compared with the count from the log. Needs slapd and ldap-utils (scripts/deps.sh), curl.
# Everything lives in a temp dir; the processes started here are stopped by their PIDs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/slapd.sh

duration=${1:-600}
for tool in /usr/sbin/slapd /usr/sbin/slapadd ldapsearch curl awk; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "soak-daemon: $tool not found; run scripts/deps.sh (apt-get install slapd ldap-utils curl)" >&2
    exit 1
  fi
done

work=$(mktemp -d)
slapd_pid=
pcsync_pid=
cleanup() {
  for pid in "$pcsync_pid" "$slapd_pid"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building pcsync (release)" >&2
cargo build --release --locked --quiet
pcsync=target/release/pcsync

password="soak-$RANDOM$RANDOM"
printf '%s' "$password" >"$work/admin.pw"
chmod 600 "$work/admin.pw"
# No syncprov: the soak measures the cron trigger, with the agent polling as it did when recorded.
slapd_conf "$work" "$password" 0 >"$work/slapd.conf"
/usr/sbin/slapadd -q -f "$work/slapd.conf" -b "cn=Configuration,dc=contoso,dc=com" -l tests/fixtures/contoso-config.ldif
/usr/sbin/slapadd -q -f "$work/slapd.conf" -b "dc=contoso,dc=com" -l tests/fixtures/contoso-domain.ldif

# A free loopback port; sets url and slapd_pid (scripts/lib/slapd.sh).
slapd_serve "$work" || exit 1

sip_port=$((20000 + RANDOM % 40000))
http_port=$((20000 + RANDOM % 40000))
(
  cd "$work"
  exec env PCSYNC_LOG=info \
    PCSYNC__DIRECTORY__URL="$url" PCSYNC__DIRECTORY__BIND_PASSWORD_FILE="$work/admin.pw" \
    PCSYNC__SCHEDULE__CRON="* * * * * *" \
    PCSYNC__REDIRECTOR__UDP="127.0.0.1:$sip_port" PCSYNC__REDIRECTOR__TCP="127.0.0.1:$sip_port" \
    PCSYNC__HTTP__LISTEN="127.0.0.1:$http_port" \
    PCSYNC__AUDIT__PATH="$work/audit.jsonl" PCSYNC__STATE__DIR="$work/state" \
    "$OLDPWD/$pcsync" --config "$OLDPWD/config/openldap.toml" --log-format json run
) 2>"$work/pcsync.log" &
pcsync_pid=$!
echo "== pcsync run (PID $pcsync_pid) with a 1-second cron for ${duration}s" >&2
sleep "$duration"
metrics=$(curl -sf "http://127.0.0.1:$http_port/metrics" || true)
kill -TERM "$pcsync_pid"
code=0
wait "$pcsync_pid" || code=$?
pcsync_pid=

# One line per cron-triggered run: its start second.
grep '"scheduled run finished"' "$work/pcsync.log" | grep -i '"trigger":"cron"' |
  sed -E 's/.*"run_id":"([0-9]{8}T[0-9]{6}).*/\1/' >"$work/seconds" || true
runs=$(wc -l <"$work/seconds")
if [ "$runs" -lt 3 ]; then
  echo "soak-daemon: only $runs scheduled runs logged; log tail:" >&2
  tail -20 "$work/pcsync.log" >&2
  exit 1
fi
to_epoch() { date -u -d "$(echo "$1" | sed -E 's/(....)(..)(..)T(..)(..)(..)/\1-\2-\3 \4:\5:\6/')" +%s; }
first=$(to_epoch "$(head -1 "$work/seconds")")
last=$(to_epoch "$(tail -1 "$work/seconds")")
sort "$work/seconds" | uniq -c | awk '{ print $2, $1 }' >"$work/counts"
missed=0
doubled=0
while read -r s n; do
  if [ "$n" -gt 1 ]; then doubled=$((doubled + n - 1)); fi
done <"$work/counts"
distinct=$(wc -l <"$work/counts")
missed=$(( (last - first + 1) - distinct ))
outcomes=$(grep '"scheduled run finished"' "$work/pcsync.log" | grep -o '"outcome":"[a-z_]*"' | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
metric_runs=$(printf '%s\n' "$metrics" | awk '/^pcsync_runs_total/ { s += $2 } END { print s + 0 }')
echo "duration=${duration}s seconds_covered=$((last - first + 1)) cron_runs=$runs missed=$missed doubled=$doubled runs_total_metric=$metric_runs exit_code=$code outcomes: $outcomes"
[ "$missed" -eq 0 ] && [ "$doubled" -eq 0 ] && [ "$code" -eq 0 ]
