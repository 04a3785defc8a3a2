#!/usr/bin/env bash
# pcsync in five minutes: the main job on a throwaway local directory.
#
# On a fresh Debian machine (as root) it installs slapd and ldap-utils, builds pcsync, starts a
# throwaway OpenLDAP on loopback loaded with schemas/ and the sample legacy deployment in
# config/demo/ (two SIP domains, each with its Group Chat well-known user; two Persistent Chat
# pools; one endpoint an admin made by hand), then runs: check, reconcile (the plan),
# reconcile --apply, the agent (`pcsync run`) briefly with its redirector, `pcsync probe` (the
# 302 and its Contact), and the audit review. Everything lives in a temp dir, removed at the end;
# only processes this script started are stopped, by PID.
#
# PCSYNC_BIN=path/to/pcsync skips the build (the test suite uses it). KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/slapd.sh
repo=$(pwd)

bold=""; reset=""
if [ -t 1 ]; then bold=$'\e[1m'; reset=$'\e[0m'; fi
step=0
headline() { step=$((step + 1)); printf '\n%s== %d. %s%s\n' "$bold" "$step" "$*" "$reset"; }
# Shows a command, then runs it; its exit code is returned for the caller to judge.
show() { printf '$ %s\n' "$*"; "$@"; }

headline "Install what the demo needs and build pcsync"
scripts/deps.sh --demo
if [ -n "${PCSYNC_BIN:-}" ]; then
  pcsync_bin=$PCSYNC_BIN
else
  command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
  cargo build --quiet --locked
  pcsync_bin=$repo/target/debug/pcsync
fi
echo "pcsync: $("$pcsync_bin" --version)"
pcsync() { "$pcsync_bin" --config "$repo/config/openldap.toml" "$@"; }

work=$(mktemp -d -t pcsync-demo.XXXXXX)
chmod 700 "$work"
slapd_pid=""; agent_pid=""
cleanup() {
  local pid
  for pid in $agent_pid $slapd_pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# A free loopback TCP port (nothing answers on it).
free_port() {
  local port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
  done
  echo "no free port found" >&2; return 1
}
# Waits up to $2 seconds for command $1 to succeed.
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for: $1" >&2; return 1; }
    sleep 0.1
  done
}

headline "Start a throwaway OpenLDAP on loopback with the sample legacy deployment"
admin_dn="cn=admin,dc=contoso,dc=com"
admin_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s' "$admin_pw" >"$work/admin.pw"
chmod 600 "$work/admin.pw"
# syncprov: `pcsync run` below watches the directory with syncrepl.
slapd_conf "$work" "$admin_pw" 1 >"$work/slapd.conf"
slapadd=$(command -v slapadd || echo /usr/sbin/slapadd)
slapd=$(command -v slapd || echo /usr/sbin/slapd)
"$slapadd" -q -f "$work/slapd.conf" -b "dc=contoso,dc=com" -l config/demo/10-domain.ldif
"$slapadd" -q -f "$work/slapd.conf" -b "cn=Configuration,dc=contoso,dc=com" -l config/demo/20-config.ldif
ldap_port=$(free_port)
"$slapd" -f "$work/slapd.conf" -h "ldap://127.0.0.1:$ldap_port/" -d none >"$work/slapd.log" 2>&1 &
slapd_pid=$!
wait_for "ldapsearch -x -H ldap://127.0.0.1:$ldap_port -b '' -s base" 15
echo "slapd (pid $slapd_pid) on ldap://127.0.0.1:$ldap_port: dc=contoso,dc=com and cn=Configuration,dc=contoso,dc=com"

# pcsync reads config/openldap.toml; these environment overrides point it at this directory and
# keep its state, audit log and listeners inside the temp dir.
sip_port=$(free_port)
http_port=$(free_port)
export PCSYNC__DIRECTORY__URL="ldap://127.0.0.1:$ldap_port"
export PCSYNC__DIRECTORY__BIND_PASSWORD_FILE="$work/admin.pw"
export PCSYNC__STATE__DIR="$work/state"
export PCSYNC__AUDIT__PATH="$work/audit.jsonl"
export PCSYNC__REDIRECTOR__UDP="127.0.0.1:$sip_port"
export PCSYNC__REDIRECTOR__TCP="127.0.0.1:$sip_port"
export PCSYNC__HTTP__LISTEN="127.0.0.1:$http_port"
export PCSYNC__SCHEDULE__CRON="*/2 * * * * *"
echo "overrides: $(env | grep -c '^PCSYNC__') PCSYNC__* variables (URL, password file, state, audit, listeners, cron)"

headline "pcsync check: is the directory ready?"
show pcsync check

headline "pcsync reconcile: the plan (a dry run; exit 2 = changes pending)"
code=0; show pcsync reconcile || code=$?
[ "$code" = 2 ] || { echo "expected exit 2 (changes pending), got $code" >&2; exit 1; }

headline "pcsync reconcile --apply: swap each well-known user for a legacy endpoint"
show pcsync reconcile --apply
code=0; show pcsync reconcile >/dev/null || code=$?
echo "a second dry run now exits $code (0 = in sync)"
[ "$code" = 0 ] || exit 1

headline "pcsync run: the agent (scheduled sync, live watch, redirector, health) for a few seconds"
printf '$ pcsync run &\n'
# The binary itself (not the shell function), so that $! is pcsync's own PID.
"$pcsync_bin" --config "$repo/config/openldap.toml" run >"$work/agent.log" 2>&1 &
agent_pid=$!
wait_for "(exec 3<>/dev/tcp/127.0.0.1/$http_port)" 30
show pcsync probe sip:OCSChat@contoso.com --server "127.0.0.1:$sip_port" --method OPTIONS
printf '$ curl http://127.0.0.1:%s/healthz\n' "$http_port"
exec 3<>"/dev/tcp/127.0.0.1/$http_port"
printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
sed -n '$p' <&3; echo
exec 3<&-

headline "pcsync probe: the redirector answers a legacy client with 302 and the pool's Contact"
show pcsync probe sip:ocschat@contoso.com --server "127.0.0.1:$sip_port"
show pcsync probe sip:ocschat@fabrikam.com --server "127.0.0.1:$sip_port" --transport tcp
kill "$agent_pid"
wait "$agent_pid" || { echo "pcsync run did not stop cleanly; its log:" >&2; cat "$work/agent.log" >&2; exit 1; }
agent_pid=""
echo "pcsync run stopped on SIGTERM (exit 0)"

headline "pcsync audit: what happened, and proof the log is intact"
show pcsync audit list --runs
show pcsync audit verify

headline "Clean up"
echo "stopping slapd (pid $slapd_pid) and removing $work"
