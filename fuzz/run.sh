#!/usr/bin/env bash
# Runs the property tests of every parser of untrusted input (the callback request head
# and query, the token endpoint's answer, the env file, the token file) with many more
# cases than CI does, in rounds with fresh random seeds, until the time is up.
# Not part of CI. Usage: fuzz/run.sh [SECONDS]   (default 300)
# A failure prints the minimal failing input and exits non-zero; proptest also saves it
# under proptest-regressions/, to be committed with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-300}
cases=${CASES:-20000}
deadline=$((SECONDS + budget))
cargo test --release --locked --bin atl-token --no-run --quiet
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rounds=0
while [ "$SECONDS" -lt "$deadline" ]; do
  if ! PROPTEST_CASES=$cases cargo test --release --locked --quiet --bin atl-token prop_ >"$log" 2>&1; then
    cat "$log"
    echo "fuzz/run.sh: a property failed in round $((rounds + 1)); see the minimal input above" >&2
    exit 1
  fi
  rounds=$((rounds + 1))
done
echo "fuzz/run.sh: $rounds rounds of $cases cases for each property in ${budget}s: no failure"
