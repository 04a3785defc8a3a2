#!/usr/bin/env bash
# Benchmark: `pcsync reconcile` (dry run) and `pcsync inventory` over a generated directory,
# each against `ldapsearch` paging the same attributes over the same two bases with the same
# filter to /dev/null (`-E pr=500/noprompt`), bound as the same least-privilege service account,
# on the same slapd, in the same run. Runs alternate (baseline, pcsync, pcsync, baseline, ...)
# and the figures are medians. Targets (docs/benchmarks.md, issue 18): reconcile <= 1.0x its
# baseline with peak RSS <= 32 MiB, inventory <= 1.2x, on the AD-shaped fixture at 200,000 users.
#
#   scripts/bench-reconcile.sh [--fixture ad|flat] [USERS] [RUNS]
#
# --fixture: ad (default; scripts/lib/bench-fixture.sh describes both) or flat (the first
# benchmark's fixture). USERS defaults to 200000, RUNS to 5 (after one warm-up round).
#
# Needs slapd, slapadd and ldapsearch (scripts/deps.sh), GNU time (/usr/bin/time), awk, and a
# release build (built here). As root, slapd and both clients run at niceness -10 (the same for
# both sides), so that other builds on a shared machine do not decide the figure; the load average
# is printed either way. Everything lives in a temp dir; the slapd started here is stopped by its
# PID on exit. PCSYNC_BENCH_KEEP=DIR keeps the loaded database in DIR and reuses it when it
# matches (fixture and size), which saves the slapadd of a large directory between runs.
# PCSYNC_BENCH_BIN=PATH measures that pcsync binary instead of building one (another commit's
# release build, to see what a change bought against a baseline of the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/slapd.sh
. scripts/lib/bench-fixture.sh

fixture=ad
if [ "${1:-}" = --fixture ]; then
  fixture=${2:?--fixture needs ad or flat}
  shift 2
fi
case $fixture in ad | flat) ;; *) echo "bench-reconcile: unknown fixture $fixture (ad or flat)" >&2; exit 2 ;; esac
users=${1:-200000}
runs=${2:-5}
for tool in slapd slapadd ldapsearch /usr/bin/time awk; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
    echo "bench-reconcile: $tool not found; run scripts/deps.sh (apt-get install slapd ldap-utils time)" >&2
    exit 1
  fi
done
slapadd=$(command -v slapadd || echo /usr/sbin/slapadd)
slapd=$(command -v slapd || echo /usr/sbin/slapd)
nice=()
if [ "$(id -u)" = 0 ]; then nice=(nice -n -10); fi

work=$(mktemp -d)
slapd_pid=
cleanup() {
  if [ -n "$slapd_pid" ]; then kill "$slapd_pid" 2>/dev/null || true; wait "$slapd_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${PCSYNC_BENCH_BIN:-}" ]; then
  pcsync=$(realpath "$PCSYNC_BENCH_BIN")
else
  echo "== building pcsync (release)" >&2
  cargo build --release --locked --quiet
  pcsync=$PWD/target/release/pcsync
fi

# The database: loaded here, or reused from PCSYNC_BENCH_KEEP when it holds this fixture.
data=${PCSYNC_BENCH_KEEP:-$work/data}
mkdir -p "$data"
stamp="$fixture $users"
if [ ! -f "$data/loaded" ] || [ "$(cat "$data/loaded")" != "$stamp" ]; then
  rm -rf "$data/db-config" "$data/db-domain" "$data/loaded"
  admin_pw="bench-$RANDOM$RANDOM"
  service_pw="svc-$RANDOM$RANDOM"
  printf '%s' "$admin_pw" >"$data/admin.pw"
  printf '%s' "$service_pw" >"$data/service.pw"
  chmod 600 "$data/admin.pw" "$data/service.pw"
  slapd_conf "$data" "$admin_pw" 0 "$BENCH_SERVICE_DN" >"$data/slapd.conf"
  echo "== generating and loading the $fixture fixture, $users users" >&2
  bench_config_ldif "$fixture" "$users" >"$work/config.ldif"
  "$slapadd" -q -f "$data/slapd.conf" -b "cn=Configuration,dc=contoso,dc=com" -l "$work/config.ldif"
  bench_domain_ldif "$fixture" "$users" "$service_pw" | "$slapadd" -q -f "$data/slapd.conf" -b "dc=contoso,dc=com"
  echo "$stamp" >"$data/loaded"
fi

# A free port: try random ones until slapd starts and answers.
for attempt in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 40000))
  url="ldap://127.0.0.1:$port"
  "${nice[@]}" "$slapd" -d none -f "$data/slapd.conf" -h "$url/" 2>>"$work/slapd.log" &
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

# What each command reads (src/model/mod.rs): reconcile's scan attr::DETECTION, inventory's
# attr::SEARCHED. Each baseline pages exactly those, over the same bases, with the same filter.
reconcile_attrs="objectClass msRTCSIP-PrimaryUserAddress"
inventory_attrs="objectClass cn displayName msRTCSIP-PrimaryUserAddress msRTCSIP-UserEnabled msRTCSIP-PrimaryHomeServer msRTCSIP-TargetHomeServer msRTCSIP-OwnerUrn msRTCSIP-OptionFlags msRTCSIP-Line msRTCSIP-ApplicationOptions"
container="CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"
export url container BENCH_SERVICE_DN data

# timed NAME COMMAND...: runs COMMAND under GNU time, appends "NAME wall user sys maxrss_kib".
# Output goes to /dev/null, as ldapsearch's does, except the plan's (a few lines).
timed() {
  local name=$1 out=/dev/null rc=0
  shift
  [ "$name" = reconcile ] && out=$work/plan.txt
  "${nice[@]}" /usr/bin/time -f '%e %U %S %M' -o "$work/time.out" "$@" >"$out" 2>"$work/stderr.txt" || rc=$?
  # A dry run with changes pending exits 2.
  if [ $rc -ne 0 ] && { [ "$name" != reconcile ] || [ $rc -ne 2 ]; }; then
    echo "bench-reconcile: $name failed (exit $rc):" >&2
    tail -5 "$work/stderr.txt" >&2
    exit 1
  fi
  echo "$name $(tail -1 "$work/time.out")" >>"$work/times"
}
# baseline ATTRS...: both bases in one child shell, so that time measures both searches.
baseline() {
  timed "$1" bash -c 'for base in "$container" "dc=contoso,dc=com"; do
      ldapsearch -x -H "$url" -D "$BENCH_SERVICE_DN" -y "$data/service.pw" -LLL \
        -E pr=500/noprompt -b "$base" "(msRTCSIP-PrimaryUserAddress=*)" "$@" >/dev/null || exit 1
    done' baseline "${@:2}"
}
# pcsync_run NAME SUBCOMMAND: pcsync bound as the service account, paging by 500.
pcsync_run() {
  timed "$1" env PCSYNC__DIRECTORY__URL="$url" PCSYNC__DIRECTORY__BIND_DN="$BENCH_SERVICE_DN" \
    PCSYNC__DIRECTORY__BIND_PASSWORD_FILE="$data/service.pw" PCSYNC__DIRECTORY__PAGE_SIZE=500 \
    PCSYNC__AUDIT__PATH="$work/audit.jsonl" PCSYNC__STATE__DIR="$work/state" \
    "$pcsync" --config config/openldap.toml "$2"
}
# One round: each pair in both orders, so that neither side always runs second.
round() {
  # shellcheck disable=SC2086
  if [ "$1" = 1 ]; then
    baseline ldapsearch_r $reconcile_attrs
    pcsync_run reconcile reconcile
    pcsync_run inventory inventory
    baseline ldapsearch_i $inventory_attrs
  else
    pcsync_run reconcile reconcile
    baseline ldapsearch_r $reconcile_attrs
    baseline ldapsearch_i $inventory_attrs
    pcsync_run inventory inventory
  fi
}

echo "== warming up" >&2
round 1
: >"$work/times"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$runs"); do
  round $((run % 2))
  echo "run $run: $(tail -4 "$work/times" | awk '{ printf "%s %ss  ", $1, $2 }')" >&2
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
plan=$(tail -1 "$work/plan.txt")

# Medians per command and column, then the ratios.
awk -v fixture="$fixture" -v users="$users" -v runs="$runs" -v load_start="$load_start" \
  -v load_end="$load_end" -v plan="$plan" '
  function median(name, col,   n, i, j, t, v) {
    n = 0
    for (i = 1; i <= count[name]; i++) v[++n] = val[name, i, col]
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  function peak(name,   i, m) { m = 0; for (i = 1; i <= count[name]; i++) if (val[name, i, 4] > m) m = val[name, i, 4]; return m }
  { c = ++count[$1]; for (k = 2; k <= 5; k++) val[$1, c, k - 1] = $k }
  END {
    printf "fixture=%s users=%d runs=%d loadavg_start=\"%s\" loadavg_end=\"%s\"\n", fixture, users, runs, load_start, load_end
    printf "%-12s %8s %8s %8s %9s\n", "command", "wall_s", "user_s", "sys_s", "peak_MiB"
    split("ldapsearch_r reconcile ldapsearch_i inventory", names, " ")
    for (i = 1; i <= 4; i++) {
      n = names[i]
      printf "%-12s %8.2f %8.2f %8.2f %9.1f\n", n, median(n, 1), median(n, 2), median(n, 3), peak(n) / 1024
    }
    printf "reconcile_ratio=%.2f inventory_ratio=%.2f reconcile_peak_rss_mib=%.1f inventory_peak_rss_mib=%.1f\n",
      median("reconcile", 1) / median("ldapsearch_r", 1), median("inventory", 1) / median("ldapsearch_i", 1),
      peak("reconcile") / 1024, peak("inventory") / 1024
    printf "plan: %s\n", plan
  }' "$work/times"
