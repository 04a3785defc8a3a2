#!/usr/bin/env bash
# Installs what pcsync's build, tests and demo need on a Debian machine: the Kerberos headers and
# clang that ldap3's gssapi feature compiles against, slapd and ldap-utils (the real directory in
# the tests), Samba's AD DC packages and the name-resolution wrappers (the real Active Directory
# in the tests, one DC and a replicating pair with a KDC), sip-tester (sipp, the real SIP peer);
# with --demo only the build packages, slapd and ldap-utils. Idempotent: does nothing when
# everything is present. Installing needs root; without it, says what to install and fails.
set -euo pipefail

# `scripts/deps.sh --demo` installs only what scripts/demo.sh needs (slapd, ldap-utils).
profile=test
if [ "${1:-}" = "--demo" ]; then profile=demo; fi

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
# A package by name: for packages that install no command of their own (Samba's modules).
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
have slapd || need+=(slapd)
have ldapsearch || need+=(ldap-utils)
# Building pcsync: ldap3's gssapi feature (Kerberos binds) links MIT Kerberos' GSSAPI and
# generates its bindings with bindgen, which needs libclang; a C compiler (cc) for the crates
# that build C code.
for pkg in libkrb5-dev libclang-dev clang; do
  have_pkg "$pkg" || need+=("$pkg")
done
if [ "$profile" = test ]; then
  have sipp || need+=(sip-tester)
  # Samba AD DC (tests/it/common/samba.rs). samba-ad-provision, samba-dsdb-modules and
  # samba-vfs-modules are only Recommends of samba, and provisioning fails without them.
  # setpriv (util-linux) makes the test DC die with the test run (--pdeathsig).
  for pkg in samba samba-ad-provision samba-dsdb-modules samba-vfs-modules; do
    have_pkg "$pkg" || need+=("$pkg")
  done
  have setpriv || need+=(util-linux)
  # The two-DC fixture (tests/it/common/samba_pair.rs): DC names resolve through nss_wrapper and
  # resolv_wrapper, preloaded through environment variables instead of editing /etc/hosts.
  for pkg in libnss-wrapper libresolv-wrapper; do
    have_pkg "$pkg" || need+=("$pkg")
  done
  # tests/it/faults.rs: prlimit (util-linux) for a file size limit, mount for a small tmpfs.
  have prlimit || need+=(util-linux)
  have mount || need+=(mount)
fi

# Debian would start a freshly installed slapd on port 389, and smbd/nmbd/samba-ad-dc, through
# invoke-rc.d. The tests run their own servers (the Samba DC on 389/636, which only one process
# can hold) and must not inherit a system one: block service starts during the install
# (policy-rc.d exit 101 = "action forbidden"), and remove the block afterwards.
stop_system_samba() {
  # A system Samba started some other way (an older install, a machine image) would hold the
  # DC's fixed ports 389/636. Stop only the daemons recorded in Samba's own pidfiles.
  local daemon
  for daemon in samba smbd nmbd winbindd; do
    if [ -x "/usr/sbin/$daemon" ] && start-stop-daemon --status --pidfile "/run/samba/$daemon.pid" \
      --exec "/usr/sbin/$daemon" >/dev/null 2>&1; then
      echo "scripts/deps.sh: stopping the system $daemon (the tests run their own Samba DC)" >&2
      start-stop-daemon --stop --quiet --oknodo --retry 10 --pidfile "/run/samba/$daemon.pid" \
        --exec "/usr/sbin/$daemon" || true
    fi
  done
}

if [ ${#need[@]} -eq 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then stop_system_samba; fi
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/deps.sh: missing Debian packages: ${need[*]}" >&2
  echo "  install them as root: apt-get install -y ${need[*]}   (or run this script as root)" >&2
  exit 1
fi

policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
echo "scripts/deps.sh: installing ${need[*]}" >&2
if ! apt-get install -y -q "${need[@]}" >/dev/null; then
  # A fresh machine may have no package lists yet.
  apt-get update -q >/dev/null
  apt-get install -y -q "${need[@]}" >/dev/null
fi
stop_system_samba
