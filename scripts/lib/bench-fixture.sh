# The directories scripts/bench-reconcile.sh measures, generated so that anyone can rebuild them.
#
#   bench_domain_ldif ad|flat USERS SERVICE_PASSWORD   > domain.ldif   (slapadd -b dc=contoso,dc=com)
#   bench_config_ldif ad|flat USERS                    > config.ldif   (slapadd -b cn=Configuration,...)
#
# Both start from the contoso test fixture (tests/fixtures/), so a dry run plans its 4 changes.
#
# "ad" is shaped like a real AD domain (issue 18): USERS users with objectClass top, person,
# organizationalPerson, user and 15 attributes each (names, title, phone, sAMAccountName, UPN,
# mail, two proxyAddresses, four msRTCSIP-* values), DNs three OUs deep
# (CN=Ann Lee 000123,OU=Site07,OU=EMEA,OU=Users,DC=contoso,DC=com; one in sixteen in AD's
# "Last, First" form, escaped: CN=Lee\, Ann 000123), homed on the two Persistent Chat pools in
# turn; one endpoint contact per 1,000 users in the configuration naming context (a separate
# database, as AD's configuration partition is); and the least-privilege service account
# BENCH_SERVICE_DN, which the benchmark binds as (not the rootdn).
#
# "flat" is the fixture of the first benchmark: cn=userNNNNNN directly under OU=Users, eight
# attributes, no endpoints beyond the contoso one. Kept as a second row.

BENCH_SERVICE_DN='CN=svc-pcsync,OU=Service Accounts,DC=contoso,DC=com'

_bench_repo() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }

_bench_pool() { # 2 or 3
  echo "CN=Lc Services,CN=Microsoft,CN=1:$1,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"
}

bench_domain_ldif() {
  local shape=$1 users=$2 password=$3 repo
  repo=$(_bench_repo)
  cat "$repo/tests/fixtures/contoso-domain.ldif"
  echo
  printf 'dn: %s\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n' "$BENCH_SERVICE_DN"
  printf 'objectClass: user\ncn: svc-pcsync\nsn: svc-pcsync\nsAMAccountName: svc-pcsync\n'
  printf 'description: Read-only service account for pcsync (benchmark)\nuserPassword: %s\n\n' "$password"
  case $shape in
    ad) _bench_ad_users "$users" ;;
    flat) _bench_flat_users "$users" ;;
    *) echo "bench_domain_ldif: unknown fixture $shape (ad or flat)" >&2; return 1 ;;
  esac
}

bench_config_ldif() {
  local shape=$1 users=$2 repo
  repo=$(_bench_repo)
  cat "$repo/tests/fixtures/contoso-config.ldif"
  echo
  if [ "$shape" = ad ]; then
    awk -v n=$((users / 1000)) -v p2="$(_bench_pool 2)" -v p3="$(_bench_pool 3)" 'BEGIN {
      for (i = 1; i <= n; i++) {
        printf "dn: CN={%08x-5eed-4b1e-9c0d-%012x},CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com\n", i, i
        printf "objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: contact\n"
        printf "cn: {%08x-5eed-4b1e-9c0d-%012x}\nsn: endpoint\ndisplayName: Persistent Chat endpoint %04d\n", i, i, i
        printf "msRTCSIP-PrimaryUserAddress: sip:chatroom%04d@contoso.com\nmsRTCSIP-UserEnabled: TRUE\n", i
        printf "msRTCSIP-PrimaryHomeServer: %s\nmsRTCSIP-OwnerUrn: urn:application:persistentchat\n\n", (i % 2 ? p2 : p3)
      }
    }'
  fi
}

_bench_ad_users() {
  awk -v n="$1" -v p2="$(_bench_pool 2)" -v p3="$(_bench_pool 3)" 'BEGIN {
    split("Ann Bob Carla Dmitri Elif Farid Grace Hiro Ines Jonas Keiko Liam Maya Nils Olga Pedro Quinn Rosa Sven Tariq", first, " ")
    split("Lee Smith Garcia Novak Okafor Tanaka Muller Rossi Dubois Kowalski Silva Jensen Patel Nguyen Haddad Costa Berg Ivanova Moreau Kim", last, " ")
    split("AMER EMEA APAC", region, " ")
    split("Analyst Engineer Manager Consultant Designer Accountant Technician Director", title, " ")
    for (r = 1; r <= 3; r++) {
      printf "dn: OU=%s,OU=Users,DC=contoso,DC=com\nobjectClass: top\nobjectClass: organizationalUnit\nou: %s\n\n", region[r], region[r]
      for (s = 0; s < 16; s++) {
        site = (r - 1) * 16 + s
        printf "dn: OU=Site%02d,OU=%s,OU=Users,DC=contoso,DC=com\nobjectClass: top\nobjectClass: organizationalUnit\nou: Site%02d\n\n", site, region[r], site
      }
    }
    for (i = 1; i <= n; i++) {
      f = first[i % 20 + 1]; l = last[int(i / 20) % 20 + 1]
      site = i % 48; reg = region[int(site / 16) + 1]
      rdn = (i % 16 == 0) ? sprintf("%s\\, %s %06d", l, f, i) : sprintf("%s %s %06d", f, l, i)
      cn = (i % 16 == 0) ? sprintf("%s, %s %06d", l, f, i) : sprintf("%s %s %06d", f, l, i)
      login = sprintf("%s%s%06d", tolower(substr(f, 1, 1)), tolower(l), i)
      addr = sprintf("%s.%s%06d@contoso.com", tolower(f), tolower(l), i)
      printf "dn: CN=%s,OU=Site%02d,OU=%s,OU=Users,DC=contoso,DC=com\n", rdn, site, reg
      printf "objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: user\n"
      printf "cn: %s\nsn: %s\ngivenName: %s\ndisplayName: %s %s\n", cn, l, f, f, l
      printf "title: %s\ntelephoneNumber: +1 425 555 %04d\n", title[i % 8 + 1], i % 10000
      printf "sAMAccountName: %s\nuserPrincipalName: %s@contoso.com\nmail: %s\n", login, login, addr
      printf "proxyAddresses: SMTP:%s\nproxyAddresses: SIP:%s\n", addr, addr
      printf "msRTCSIP-PrimaryUserAddress: sip:%s\nmsRTCSIP-UserEnabled: TRUE\n", addr
      printf "msRTCSIP-PrimaryHomeServer: %s\nmsRTCSIP-OptionFlags: 257\n\n", (i % 2 ? p2 : p3)
    }
  }'
}

_bench_flat_users() {
  awk -v n="$1" -v pool="$(_bench_pool 2)" 'BEGIN {
    for (i = 1; i <= n; i++) {
      u = sprintf("user%06d", i)
      printf "dn: cn=%s,OU=Users,DC=contoso,DC=com\nobjectClass: top\nobjectClass: person\n", u
      printf "objectClass: organizationalPerson\nobjectClass: user\ncn: %s\nsn: %s\n", u, u
      printf "displayName: Bench User %06d\nmsRTCSIP-PrimaryUserAddress: sip:%s@contoso.com\n", i, u
      printf "msRTCSIP-UserEnabled: TRUE\nmsRTCSIP-PrimaryHomeServer: %s\nmsRTCSIP-OptionFlags: 257\n\n", pool
    }
  }'
}
