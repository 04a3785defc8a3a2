# Shared by scripts/demo.sh, scripts/bench-reconcile.sh and scripts/soak-daemon.sh: the
# slapd.conf of a throwaway OpenLDAP shaped like AD (the configuration naming context is its own
# database, not glued under the domain), loaded with schemas/ from the repository.
#
#   slapd_conf WORK ADMIN_PASSWORD SYNCPROV [SERVICE_DN]   > "$WORK/slapd.conf"
#
# WORK holds the pidfile and the two database directories (created here). The admin is
# cn=admin,dc=contoso,dc=com, rootdn of both databases. SYNCPROV=1 loads the syncprov overlay,
# so `pcsync run` watches with syncrepl; 0 leaves it out (the agent then polls). Any bound user
# reads everything but passwords. SERVICE_DN, an account with a userPassword in the data, gets
# AD's limits: 1,000 entries per unpaged search or page, no limit on a paged search as a whole.

slapd_conf() {
  local work=$1 password=$2 syncprov=$3 service=${4:-} repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  mkdir -p "$work/db-config" "$work/db-domain"
  echo "include /etc/ldap/schema/core.schema"
  echo "include /etc/ldap/schema/cosine.schema"
  echo "include /etc/ldap/schema/inetorgperson.schema"
  echo "include \"$repo/schemas/msrtcsip.schema\""
  echo "pidfile \"$work/slapd.pid\""
  echo "modulepath /usr/lib/ldap"
  echo "moduleload back_mdb"
  if [ "$syncprov" = 1 ]; then echo "moduleload syncprov"; fi
  echo "access to dn.base=\"\" by * read"
  echo "access to dn.base=\"cn=Subschema\" by * read"
  _slapd_database "cn=Configuration,dc=contoso,dc=com" db-config "" "$work" "$syncprov" "$service"
  _slapd_database "dc=contoso,dc=com" db-domain "rootpw \"$password\"" "$work" "$syncprov" "$service"
}

_slapd_database() { # suffix dir rootpw-line work syncprov service-dn
  printf 'database mdb\nsuffix "%s"\nrootdn "cn=admin,dc=contoso,dc=com"\n%s\n' "$1" "$3"
  printf 'directory "%s/%s"\nmaxsize 17179869184\nsizelimit unlimited\n' "$4" "$2"
  if [ -n "$6" ]; then
    printf 'limits dn.exact="%s" size.soft=1000 size.hard=1000 size.prtotal=unlimited\n' "$6"
  fi
  printf 'index objectClass eq\nindex msRTCSIP-PrimaryUserAddress eq,pres,sub\n'
  printf 'index entryUUID,entryCSN eq\n'
  printf 'access to attrs=userPassword by anonymous auth by * none\n'
  printf 'access to * by users read by * none\n'
  if [ "$5" = 1 ]; then
    printf 'overlay syncprov\nsyncprov-checkpoint 100 1\nsyncprov-sessionlog 1000\n'
  fi
}

# Starts slapd with WORK/slapd.conf on a free loopback port (random ones until it answers) and
# sets `url` and `slapd_pid`; the caller stops it by that PID. Every wait is bounded.
#
#   slapd_serve WORK
slapd_serve() {
  local work=$1 attempt port
  slapd_pid=
  for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    url="ldap://127.0.0.1:$port"
    /usr/sbin/slapd -d none -f "$work/slapd.conf" -h "$url/" 2>>"$work/slapd.log" &
    slapd_pid=$!
    for _ in $(seq 1 200); do
      if ldapsearch -x -H "$url" -b "" -s base '(objectClass=*)' 1.1 >/dev/null 2>&1; then return 0; fi
      if ! kill -0 "$slapd_pid" 2>/dev/null; then break; fi
      sleep 0.05
    done
    kill "$slapd_pid" 2>/dev/null || true
    wait "$slapd_pid" 2>/dev/null || true
    slapd_pid=
  done
  echo "slapd did not start; log:" >&2
  tail -20 "$work/slapd.log" >&2
  return 1
}
