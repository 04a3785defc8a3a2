#!/usr/bin/env bash
# Installs the cargo subcommands the test command runs besides the compiler (cargo-deny for the
# dependency policy in deny.toml, cargo-machete for unused dependencies) into the project's own
# .tools/ directory, from crates.io, at pinned versions. Idempotent: a tool already there at the
# pinned version is kept, so only the first run on a checkout pays for the build. Debug builds:
# both tools run in seconds either way, and a debug build takes a fraction of a release build's
# CPU time. Prints the path of the bin directory on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

root="$PWD/.tools"
# name version extra-install-flags
tools=(
  "cargo-deny 0.20.2 --no-default-features"
  "cargo-machete 0.9.2"
)

for spec in "${tools[@]}"; do
  read -r name version flags <<<"$spec"
  stamp="$root/.installed-$name-$version"
  if [ -x "$root/bin/$name" ] && [ -e "$stamp" ]; then
    continue
  fi
  echo "scripts/cargo-tools.sh: installing $name $version into .tools/ (first run only)" >&2
  # shellcheck disable=SC2086 # flags is a word list on purpose
  if ! cargo install --quiet --locked --debug --root "$root" --target-dir "$root/build" \
    --version "=$version" $flags "$name" >&2; then
    echo "scripts/cargo-tools.sh: cannot install $name $version from crates.io" >&2
    exit 1
  fi
  touch "$stamp"
done
# The build directory is only needed while installing.
rm -rf "$root/build"
echo "$root/bin"
