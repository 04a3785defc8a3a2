#!/usr/bin/env bash
# The one command that runs every test of pcsync on a fresh Debian machine:
# installs the real servers the integration tests use (scripts/deps.sh; as root), checks
# formatting and lints, then runs the unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings (default features, then failpoints)" >&2
cargo clippy --locked --all-targets -- -D warnings
cargo clippy --locked --all-targets --features failpoints -- -D warnings
# The crash-recovery tests need a pcsync binary with failpoints compiled in (FAILPOINTS=name=return
# aborts the process there); the feature changes nothing else.
# The load test (tests/load/) measures the redirector at a rate that only means something for an
# optimised build: build it first and hand its path over (tests never call cargo).
echo "== cargo build --release --bin pcsync (for the load test)" >&2
cargo build --release --locked --bin pcsync
echo "== cargo test --features failpoints" >&2
PCSYNC_LOAD_BIN="$PWD/target/release/pcsync" cargo test --locked --features failpoints
