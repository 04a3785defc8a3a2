#!/usr/bin/env bash
# Installs what pcsync's tests and demo need on a Debian machine: slapd and ldap-utils (the real
# directory in the tests), sip-tester (sipp, the real SIP peer). Idempotent: does nothing when
# everything is present. Installing needs root; without it, says what to install and fails.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have slapd || need+=(slapd)
have ldapsearch || need+=(ldap-utils)
have sipp || need+=(sip-tester)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/deps.sh: missing Debian packages: ${need[*]}" >&2
  echo "  install them as root: apt-get install -y ${need[*]}   (or run this script as root)" >&2
  exit 1
fi

# Debian starts a freshly installed slapd on port 389 through invoke-rc.d. The tests run their
# own slapd on free ports and must not inherit a system one, so block service starts during the
# install (policy-rc.d exit 101 = "action forbidden"), and remove the block afterwards.
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
