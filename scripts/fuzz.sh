#!/usr/bin/env bash
# Runs each cargo-fuzz target of pcsync for a bounded time (default 60 s each), starting from the
# corpus committed under fuzz/corpus/<target>/ (new finds are added there; commit the useful ones).
# Works on the stable toolchain through RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly flags).
# Installs cargo-fuzz into .tools/ (project-local) when it is missing.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   FUZZ_RUNS=1000000 scripts/fuzz.sh 600   # also stop each target after that many executions
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(parse_respond tcp_framer sip_uri dn config_text config_structured)
fi

TOOLS="$PWD/.tools"
if ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$TOOLS/bin/cargo-fuzz" ]; then
  echo "fuzz.sh: installing cargo-fuzz into $TOOLS" >&2
  cargo install --locked --root "$TOOLS" cargo-fuzz
fi
export PATH="$TOOLS/bin:$PATH"
export RUSTC_BOOTSTRAP=1

for target in "${TARGETS[@]}"; do
  echo "== fuzz $target for ${SECONDS_PER_TARGET}s" >&2
  mkdir -p "fuzz/corpus/$target"
  cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -timeout=10 -print_final_stats=1 \
    ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"}
done
