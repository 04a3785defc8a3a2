#!/usr/bin/env bash
# Benchmark: `pcsync audit verify` and a filtered `pcsync audit list` over generated audit logs of
# SMALL (default 100000) and LARGE (default 1000000) records with a valid hash chain, rotated into
# 64 MiB segments by pcsync's own writer (examples/audit_generate.rs). Baselines in the same run:
# `cat | sha256sum` over the same segment files (reading and hashing every byte, what verify must
# do at least) and `grep -F` for the list filter's SIP URI. Prints wall times (best of RUNS), the
# ratios, and peak RSS at both sizes (streamed reading keeps it flat).
#
# Then the recovery look over the LARGE log: before it writes, every run asks the log for the
# swaps a crashed run left open. Timed as `pcsync reconcile` (a dry run against a small slapd
# with the contoso fixture) with the log anchored in its state dir (the anchor and the last line
# are read) and, as the baseline in the same run, without an anchor (the whole log is read and
# verified, which is what every run, and every daemon tick, did before the anchor).
#
#   scripts/bench-audit.sh [LARGE] [RUNS] [SMALL]
#
# Needs GNU time (/usr/bin/time), sha256sum, grep, awk, slapd, slapadd and ldapsearch
# (scripts/deps.sh), and release builds of pcsync and the generator (built here). Everything
# lives in a temp dir, removed on exit; the slapd started here is stopped by its PID.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
. scripts/lib/slapd.sh

large=${1:-1000000}
runs=${2:-3}
small=${3:-100000}
for tool in /usr/bin/time sha256sum grep awk /usr/sbin/slapd ldapsearch; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "bench-audit: $tool not found; run scripts/deps.sh (apt-get install time coreutils grep gawk slapd ldap-utils)" >&2
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

echo "== building pcsync and the audit log generator (release)" >&2
cargo build --release --locked --quiet --bin pcsync --example audit_generate
pcsync=$PWD/target/release/pcsync
generate=$PWD/target/release/examples/audit_generate

# The filter: one well-known user's before-images (the generator cycles through 10,000 URIs).
uri='sip:wk0042@contoso.com'

min() { awk -v x="$1" -v y="$2" 'BEGIN { print (y < x ? y : x) }'; }
max() { awk -v x="$1" -v y="$2" 'BEGIN { print (y > x ? y : x) }'; }
timed() { # out-file command...
  local out=$1
  shift
  /usr/bin/time -f '%e %M' -o "$out" "$@"
}

declare -A result
for n in "$small" "$large"; do
  dir="$work/log-$n"
  mkdir -p "$dir"
  log="$dir/audit.jsonl"
  echo "== generating $n records" >&2
  timed "$work/gen.out" "$generate" "$log" "$n"
  read -r gen_secs _ < <(tail -1 "$work/gen.out")
  segs=("$dir"/audit.*.jsonl "$log")
  bytes=$(cat "${segs[@]}" | wc -c)
  echo "   $n records, $(( ${#segs[@]} )) segment(s), $((bytes / 1048576)) MiB, generated in ${gen_secs}s" >&2
  "$pcsync" audit --log "$log" verify >&2

  best_v=999999; best_vb=999999; best_l=999999; best_lb=999999; rss_v=0; rss_l=0
  for run in $(seq 1 "$runs"); do
    timed "$work/vb.out" bash -c 'cat "$@" | sha256sum >/dev/null' _ "${segs[@]}"
    timed "$work/v.out" "$pcsync" audit --log "$log" verify >/dev/null
    timed "$work/lb.out" bash -c 'grep -hF "\"sip_uri\":\"$0\"" "$@" | grep -cF "\"event\":\"before_image\"" >/dev/null' "$uri" "${segs[@]}"
    timed "$work/l.out" bash -c '"$0" audit --log "$1" list --sip "$2" --event before_image --format csv >/dev/null' "$pcsync" "$log" "$uri"
    read -r vb _ < <(tail -1 "$work/vb.out")
    read -r v vk < <(tail -1 "$work/v.out")
    read -r lb _ < <(tail -1 "$work/lb.out")
    read -r l lk < <(tail -1 "$work/l.out")
    echo "   run $run: verify ${v}s (sha256sum ${vb}s, peak RSS $((vk / 1024)) MiB); list ${l}s (grep ${lb}s, peak RSS $((lk / 1024)) MiB)" >&2
    best_v=$(min "$best_v" "$v"); best_vb=$(min "$best_vb" "$vb")
    best_l=$(min "$best_l" "$l"); best_lb=$(min "$best_lb" "$lb")
    rss_v=$(max "$rss_v" "$vk"); rss_l=$(max "$rss_l" "$lk")
  done
  rows=$("$pcsync" audit --log "$log" list --sip "$uri" --event before_image --format csv | tail -n +2 | wc -l)
  ratio_v=$(awk -v a="$best_v" -v b="$best_vb" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  ratio_l=$(awk -v a="$best_l" -v b="$best_lb" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  # list verifies the chain as it reads, so hashing every byte is its floor too.
  ratio_lh=$(awk -v a="$best_l" -v b="$best_vb" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  echo "records=$n segments=${#segs[@]} mib=$((bytes / 1048576)) verify_best=${best_v}s sha256sum_best=${best_vb}s verify_ratio=$ratio_v verify_peak_rss_mib=$((rss_v / 1024)) list_best=${best_l}s grep_best=${best_lb}s list_ratio_grep=$ratio_l list_ratio_sha256sum=$ratio_lh list_rows=$rows list_peak_rss_mib=$((rss_l / 1024))"
  result[$n]=$rss_v
  # The large log stays for the recovery look.
  if [ "$n" != "$large" ]; then rm -rf "$dir"; fi
done
flat=$(awk -v a="${result[$small]}" -v b="${result[$large]}" 'BEGIN { printf "%.2f", b / a }')
echo "verify peak RSS ${large} / ${small} records = $flat (1.00 = flat)"

echo "== the recovery look of a dry run over $large records: anchored vs not" >&2
log="$work/log-$large/audit.jsonl"
mkdir -p "$work/slapd"
password="bench-$RANDOM$RANDOM"
printf '%s' "$password" >"$work/slapd/admin.pw"
chmod 600 "$work/slapd/admin.pw"
slapd_conf "$work/slapd" "$password" 0 >"$work/slapd/slapd.conf"
"$slapadd" -q -f "$work/slapd/slapd.conf" -b "cn=Configuration,dc=contoso,dc=com" -l tests/fixtures/contoso-config.ldif
"$slapadd" -q -f "$work/slapd/slapd.conf" -b "dc=contoso,dc=com" -l tests/fixtures/contoso-domain.ldif
slapd_serve "$work/slapd"
pcsync_env() { # state-dir command...
  local state=$1
  shift
  PCSYNC__DIRECTORY__URL="$url" PCSYNC__DIRECTORY__BIND_PASSWORD_FILE="$work/slapd/admin.pw" \
    PCSYNC__AUDIT__PATH="$log" PCSYNC__STATE__DIR="$state" "$@"
}
reconcile() { # out-file state-dir
  local code=0
  pcsync_env "$2" /usr/bin/time -f '%e %M' -o "$1" \
    "$pcsync" --config config/openldap.toml reconcile >/dev/null 2>"$work/reconcile.err" || code=$?
  # The fixture's plan has pending swaps: exit 2. Anything else means the run did not get as
  # far as planning, so its time would measure nothing.
  if [ "$code" -ne 2 ]; then
    echo "bench-audit: the dry run exited $code (expected 2, changes pending):" >&2
    cat "$work/reconcile.err" >&2
    exit 1
  fi
}
# The anchored state dir: the log accepted as it is (it was written without an anchor).
if ! pcsync_env "$work/anchored" "$pcsync" --config config/openldap.toml audit verify --reanchor >"$work/reanchor.out" 2>&1; then
  echo "bench-audit: audit verify --reanchor failed:" >&2
  cat "$work/reanchor.out" >&2
  exit 1
fi
reconcile "$work/a.out" "$work/anchored"
best_a=999999; best_b=999999
for run in $(seq 1 "$runs"); do
  reconcile "$work/b.out" "$work/unanchored"
  reconcile "$work/a.out" "$work/anchored"
  read -r b _ < <(tail -1 "$work/b.out")
  read -r a _ < <(tail -1 "$work/a.out")
  echo "   run $run: dry run anchored ${a}s, without an anchor ${b}s" >&2
  best_a=$(min "$best_a" "$a"); best_b=$(min "$best_b" "$b")
done
if [ -e "$work/unanchored/audit-anchor.json" ]; then
  echo "bench-audit: a dry run wrote an anchor; the baseline is not what it claims" >&2
  exit 1
fi
ratio_a=$(awk -v a="$best_a" -v b="$best_b" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
echo "records=$large dry_run_anchored_best=${best_a}s dry_run_unanchored_best=${best_b}s anchored_ratio=$ratio_a"
