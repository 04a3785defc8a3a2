#!/usr/bin/env bash
# Benchmark: `pcsync reconcile` (dry run) over a generated directory of N SIP-enabled users
# (default 200000), against the baseline of `ldapsearch` paging the same attributes to /dev/null,
# in the same run on the same slapd. Prints wall times (best of RUNS), the ratio, and pcsync's
# peak RSS. Target (docs/benchmarks.md): ratio <= 1.2, peak RSS <= 64 MiB.
#
#   scripts/bench-reconcile.sh [USERS] [RUNS]
#
# Needs slapd, slapadd and ldapsearch (scripts/deps.sh), GNU time (/usr/bin/time), awk, and a
# release build (built here). Everything lives in a temp dir; the slapd started here is stopped by
# its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/slapd.sh

users=${1:-200000}
runs=${2:-3}
for tool in /usr/sbin/slapd slapadd ldapsearch /usr/bin/time awk; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
    echo "bench-reconcile: $tool not found; run scripts/deps.sh (apt-get install slapd ldap-utils time)" >&2
    exit 1
  fi
done
slapadd=$(command -v slapadd || echo /usr/sbin/slapadd)

work=$(mktemp -d)
slapd_pid=
cleanup() {
  if [ -n "$slapd_pid" ]; then kill "$slapd_pid" 2>/dev/null || true; wait "$slapd_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building pcsync (release)" >&2
cargo build --release --locked --quiet
pcsync=target/release/pcsync

pool='CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com'
password="bench-$RANDOM$RANDOM"
printf '%s' "$password" >"$work/admin.pw"
chmod 600 "$work/admin.pw"
slapd_conf "$work" "$password" 0 >"$work/slapd.conf"

echo "== generating $users SIP-enabled users" >&2
{
  cat tests/fixtures/contoso-domain.ldif
  echo
  awk -v n="$users" -v pool="$pool" 'BEGIN {
    for (i = 1; i <= n; i++) {
      u = sprintf("user%06d", i)
      printf "dn: cn=%s,OU=Users,DC=contoso,DC=com\nobjectClass: top\nobjectClass: person\n", u
      printf "objectClass: organizationalPerson\nobjectClass: user\ncn: %s\nsn: %s\n", u, u
      printf "displayName: Bench User %06d\nmsRTCSIP-PrimaryUserAddress: sip:%s@contoso.com\n", i, u
      printf "msRTCSIP-UserEnabled: TRUE\nmsRTCSIP-PrimaryHomeServer: %s\nmsRTCSIP-OptionFlags: 257\n\n", pool
    }
  }'
} >"$work/domain.ldif"
echo "== loading with slapadd" >&2
"$slapadd" -q -f "$work/slapd.conf" -b "cn=Configuration,dc=contoso,dc=com" -l tests/fixtures/contoso-config.ldif
"$slapadd" -q -f "$work/slapd.conf" -b "dc=contoso,dc=com" -l "$work/domain.ldif"
rm -f "$work/domain.ldif"

# A free port: try random ones until slapd starts and answers.
for attempt in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 40000))
  url="ldap://127.0.0.1:$port"
  /usr/sbin/slapd -d none -f "$work/slapd.conf" -h "$url/" 2>>"$work/slapd.log" &
  slapd_pid=$!
  for _ in $(seq 1 200); do
    if ldapsearch -x -H "$url" -b "" -s base '(objectClass=*)' 1.1 >/dev/null 2>&1; then break 2; fi
    if ! kill -0 "$slapd_pid" 2>/dev/null; then break; fi
    sleep 0.05
  done
  kill "$slapd_pid" 2>/dev/null || true
  wait "$slapd_pid" 2>/dev/null || true
  slapd_pid=
done
if [ -z "$slapd_pid" ]; then
  echo "bench-reconcile: slapd did not start; log:" >&2
  tail -20 "$work/slapd.log" >&2
  exit 1
fi

# The attributes reconcile's scan reads (src/model/mod.rs attr::DETECTION): the baseline pages
# exactly those, over the same two bases, with the same page size.
attrs=(objectClass msRTCSIP-PrimaryUserAddress)
filter='(msRTCSIP-PrimaryUserAddress=*)'
baseline() {
  for base in "CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com" "dc=contoso,dc=com"; do
    ldapsearch -x -H "$url" -D "cn=admin,dc=contoso,dc=com" -y "$work/admin.pw" -LLL \
      -E pr=500/noprompt -b "$base" "$filter" "${attrs[@]}" >/dev/null
  done
}
export -f baseline
export url work filter
reconcile() {
  PCSYNC__DIRECTORY__URL="$url" PCSYNC__DIRECTORY__BIND_PASSWORD_FILE="$work/admin.pw" \
    PCSYNC__AUDIT__PATH="$work/audit.jsonl" PCSYNC__STATE__DIR="$work/state" \
    /usr/bin/time -f '%e %U %S %M' -o "$work/time.out" \
    "$pcsync" --config config/openldap.toml reconcile >"$work/plan.txt" || [ $? -eq 2 ]
}

echo "== warming up" >&2
attrs_list="${attrs[*]}"
export attrs_list
# The baseline in a child shell so GNU time measures it (both searches) the same way.
run_baseline() {
  /usr/bin/time -f '%e %U %S %M' -o "$work/base.out" bash -c 'attrs=($attrs_list); baseline'
}
run_baseline
reconcile
best_base=999999
best_pcsync=999999
cpu_base=999999
cpu_pcsync=999999
peak_kib=0
for run in $(seq 1 "$runs"); do
  run_baseline
  reconcile
  # GNU time prefixes "Command exited with non-zero status 2" (a dry run with changes).
  read -r bsecs buser bsys _ < <(tail -1 "$work/base.out")
  read -r secs user sys kib < <(tail -1 "$work/time.out")
  bcpu=$(awk -v u="$buser" -v s="$bsys" 'BEGIN { printf "%.2f", u + s }')
  pcpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  echo "run $run: ldapsearch ${bsecs}s (cpu ${bcpu}s), pcsync reconcile ${secs}s (cpu ${pcpu}s), peak RSS $((kib / 1024)) MiB" >&2
  min() { awk -v x="$1" -v y="$2" 'BEGIN { print (y < x ? y : x) }'; }
  best_base=$(min "$best_base" "$bsecs")
  best_pcsync=$(min "$best_pcsync" "$secs")
  cpu_base=$(min "$cpu_base" "$bcpu")
  cpu_pcsync=$(min "$cpu_pcsync" "$pcpu")
  [ "$kib" -gt "$peak_kib" ] && peak_kib=$kib
done
tail -1 "$work/plan.txt" >&2
ratio=$(awk -v p="$best_pcsync" -v b="$best_base" 'BEGIN { printf "%.2f", p / b }')
echo "users=$users runs=$runs ldapsearch_best=${best_base}s pcsync_best=${best_pcsync}s ratio=$ratio peak_rss_mib=$((peak_kib / 1024)) client_cpu_ldapsearch=${cpu_base}s client_cpu_pcsync=${cpu_pcsync}s"
