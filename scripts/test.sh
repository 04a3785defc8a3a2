#!/usr/bin/env bash
# The one command that runs every test of pcsync on a fresh Debian machine:
# installs the real servers the integration tests use (scripts/deps.sh; as root) and the cargo
# tools it runs (scripts/cargo-tools.sh, into .tools/), checks formatting, lints, documentation,
# the build on the pinned rust-version, the dependency policy (deny.toml) and unused
# dependencies, then runs the unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi

tools="$(scripts/cargo-tools.sh)"

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings (default features, then failpoints)" >&2
cargo clippy --locked --all-targets -- -D warnings
cargo clippy --locked --all-targets --features failpoints -- -D warnings
echo "== cargo doc --no-deps (warnings are errors)" >&2
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --document-private-items
# rust-version in Cargo.toml is the toolchain this command builds with. The machine has one
# toolchain and cannot fetch another, so when that toolchain is the pinned version the builds above
# already are the check; a machine whose stable has moved on checks with the pinned toolchain if
# rustup has it, and otherwise says how to get it.
msrv="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)"
active="$(rustc --version | sed -n 's/^rustc \([0-9]*\.[0-9]*\).*/\1/p')"
echo "== rust-version $msrv (active toolchain: $active)" >&2
if [ "$active" != "$msrv" ]; then
  if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
    echo "scripts/test.sh: the active Rust is $active but Cargo.toml pins rust-version $msrv, which is not installed: rustup toolchain install $msrv" >&2
    exit 1
  fi
  rustup run "$msrv" cargo check --locked --all-targets --features failpoints
fi
echo "== cargo deny check bans licenses sources (deny.toml)" >&2
"$tools/cargo-deny" check bans licenses sources
if [ "${PCSYNC_DENY_ADVISORIES:-0}" = 1 ]; then
  # Needs the RustSec advisory database from GitHub, which CI cannot reach.
  "$tools/cargo-deny" check advisories
fi
echo "== cargo machete (unused dependencies)" >&2
"$tools/cargo-machete"
# The crash-recovery tests need a pcsync binary with failpoints compiled in (FAILPOINTS=name=return
# aborts the process there); the feature changes nothing else.
# The load test (tests/load/) measures the redirector at a rate that only means something for an
# optimised build: build it first and hand its path over (tests never call cargo).
echo "== cargo build --release --bin pcsync (for the load test)" >&2
cargo build --release --locked --bin pcsync
echo "== cargo test --features failpoints" >&2
PCSYNC_LOAD_BIN="$PWD/target/release/pcsync" cargo test --locked --features failpoints
