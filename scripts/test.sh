#!/usr/bin/env bash
# The project's test command (see README): style checks, then every test, including the
# root end-to-end tests against a real wharfd, the real docker CLI and a real dockerd.
# Ends with one "N passed, N failed" line totalling every cargo test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --all-targets --quiet -- -D warnings
cargo build --bins --quiet
scripts/make-images.sh target/test-images >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace -- --test-threads=2 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
passed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | paste -sd+ | bc)
failed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | paste -sd+ | bc)
echo "${passed:-0} passed, ${failed:-0} failed"
exit "$rc"
