#!/usr/bin/env bash
# The project's test command (see README): style checks, then every test, including the
# root end-to-end tests against a real wharfd, the real docker CLI and a real dockerd, then
# docker-py's integration suite against a wharfd of its own.
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
# The docker-py stage: docker-py's own integration tests against a wharfd of their own
# (exclusions and their reasons in tests/docker-py/exclusions.txt).
scripts/docker-py.sh 2>&1 | tee -a "$log"
py_rc=${PIPESTATUS[0]}
set -e
passed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | paste -sd+ | bc)
failed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | paste -sd+ | bc)
py=$(grep -E '^docker-py: [0-9]+ passed' "$log" | tail -n1)
py_passed=$(echo "$py" | sed -E 's/^docker-py: ([0-9]+) passed.*/\1/')
py_failed=$(echo "$py" | sed -E 's/.* ([0-9]+) failed.*/\1/')
if [ -z "$py" ]; then py_passed=0; py_failed=1; fi
echo "cargo: ${passed:-0} passed, ${failed:-0} failed; ${py:-docker-py: did not run}"
echo "$((${passed:-0} + py_passed)) passed, $((${failed:-0} + py_failed)) failed"
[ "$rc" -eq 0 ] && [ "$py_rc" -eq 0 ]
