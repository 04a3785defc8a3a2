# Shared by scripts/bench-redirect.sh (pcsync vs Kamailio) and scripts/bench-redirect-max.sh
# (pcsync's highest clean rate per transport): the mapping both servers serve, pcsync's
# configuration, and the measuring helpers.
#
#   redirect_bench_mapping WORK ENTRIES    writes WORK/state/mappings.json (pcsync's last-known-good
#                                          cache) and WORK/htable.cfg (Kamailio's htable lines)
#   redirect_bench_config WORK UDP TCP WORKERS > WORK/pcsync.toml
#                                          UDP/TCP are IP:PORT or "" (off)
#   free_port                              a free loopback port
#   cpu_ticks PID                          utime+stime of PID and its children, in clock ticks
#   udp_drops PORT                         datagrams the kernel dropped at the 127.0.0.1:PORT
#                                          socket's receive buffer (/proc/net/udp "drops")
#   wait_ready PCSYNC PORT                 polls `pcsync probe` until the server on PORT answers

# persistentchat@contoso.com -> pcpool1.contoso.com (what the load asks for), plus ENTRIES-1
# others so no table is trivially small.
redirect_bench_mapping() {
  local work=$1 entries=$2
  mkdir -p "$work/state"
  python3 - "$work" "$entries" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
entries = [("persistentchat", "pcpool1.contoso.com")] + [(f"chat{i:05d}", "pcpool2.contoso.com") for i in range(1, n)]
cache = {"format": 1, "version": 1, "built_at": "2026-01-01T00:00:00Z", "entries": [
    {"sip_uri": f"sip:{u}@contoso.com", "pool": p,
     "dn": f"CN={{{i:08d}-0000-4000-8000-000000000000}},CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"}
    for i, (u, p) in enumerate(entries)]}
json.dump(cache, open(f"{work}/state/mappings.json", "w"))
with open(f"{work}/htable.cfg", "w") as f:
    for u, p in entries:
        f.write(f'\t$sht(map=>{u}@contoso.com) = "{p}";\n')
PY
  chmod 700 "$work/state"
  chmod 600 "$work/state/mappings.json"
}

# pcsync served from the last-known-good cache; the directory is deliberately unreachable (the
# start-up refresh fails fast and is logged), the cron refresh is yearly.
redirect_bench_config() {
  local work=$1 udp=$2 tcp=$3 workers=$4
  cat <<EOF
[directory]
url = "ldap://127.0.0.1:1"
base_dn = "dc=contoso,dc=com"
timeout = "1s"
[directory.layout]
endpoint_container = "CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"
[[pools]]
fqdn = "pcpool1.contoso.com"
home_server_dn = "CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"
[[pools]]
fqdn = "pcpool2.contoso.com"
home_server_dn = "CN=Lc Services,CN=Microsoft,CN=1:3,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"
[schedule]
cron = "0 0 0 1 1 *"
[redirector]
udp = "$udp"
tcp = "$tcp"
udp_workers = $workers
contact_port = 5061
contact_transport = "tls"
[state]
dir = "$work/state"
EOF
}

free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Sum of utime+stime (clock ticks) of a process and all its children (threads are included in a
# process's own counters).
cpu_ticks() {
  local root=$1 total=0 pid
  for pid in $root $(pgrep -P "$root" 2>/dev/null || true); do
    if [ -r "/proc/$pid/stat" ]; then
      # Fields after the ")" of the command name: utime is field 14, stime 15 overall.
      local rest
      rest=$(sed 's/^.*) //' "/proc/$pid/stat")
      # shellcheck disable=SC2086
      set -- $rest
      total=$((total + ${12} + ${13}))
    fi
  done
  echo "$total"
}

udp_drops() {
  local hex
  hex=$(printf '0100007F:%04X' "$1")
  awk -v a="$hex" '$2 == a { print $NF; found = 1 } END { if (!found) print 0 }' /proc/net/udp
}

wait_ready() {
  local pcsync=$1 port=$2 i
  for i in $(seq 1 100); do
    if "$pcsync" probe sip:persistentchat@contoso.com --server "127.0.0.1:$port" --timeout 200ms >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "server on port $port never answered" >&2
  return 1
}
