#!/usr/bin/env bash
# The project's test command (see README): style checks, then every test, including the
# root end-to-end tests against a real wharfd, the real docker CLI and a real dockerd, then
# wharf on a cgroup v2 host booted under qemu, then docker-py's and Compose v1's integration
# suites against wharfds of their own.
# Ends with one "N passed, N failed" line totalling every cargo test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --all-targets --quiet -- -D warnings
cargo build --bins --quiet
scripts/make-images.sh target/test-images >/dev/null
scripts/clients.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast -- --test-threads=2 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# The cgroup v2 stage: this host is hybrid, so a v2 host is booted under qemu for it.
scripts/cgroup2-vm.sh 2>&1 | tee -a "$log"
vm_rc=${PIPESTATUS[0]}
# The docker-py stage: docker-py's own integration tests against a wharfd of their own
# (exclusions and their reasons in tests/docker-py/exclusions.txt).
scripts/docker-py.sh 2>&1 | tee -a "$log"
py_rc=${PIPESTATUS[0]}
# The Compose v1 stage: docker-compose 1.29.2's integration tests against a wharfd of their
# own (exclusions and their reasons in tests/compose-v1/exclusions.txt).
scripts/compose-v1.sh 2>&1 | tee -a "$log"
c1_rc=${PIPESTATUS[0]}
set -e
passed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | paste -sd+ | bc)
failed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | paste -sd+ | bc)
py=$(grep -E '^docker-py: [0-9]+ passed' "$log" | tail -n1)
py_passed=$(echo "$py" | sed -E 's/^docker-py: ([0-9]+) passed.*/\1/')
py_failed=$(echo "$py" | sed -E 's/.* ([0-9]+) failed.*/\1/')
if [ -z "$py" ]; then py_passed=0; py_failed=1; fi
c1=$(grep -E '^compose-v1: [0-9]+ passed' "$log" | tail -n1)
c1_passed=$(echo "$c1" | sed -E 's/^compose-v1: ([0-9]+) passed.*/\1/')
c1_failed=$(echo "$c1" | sed -E 's/.* ([0-9]+) failed.*/\1/')
if [ -z "$c1" ]; then c1_passed=0; c1_failed=1; fi
vm=$(grep -E '^cgroup2-vm: [0-9]+ passed' "$log" | tail -n1)
vm_passed=$(echo "$vm" | sed -E 's/^cgroup2-vm: ([0-9]+) passed.*/\1/')
vm_failed=$(echo "$vm" | sed -E 's/.* ([0-9]+) failed.*/\1/')
if [ -z "$vm" ]; then vm_passed=0; vm_failed=1; fi
echo "cargo: ${passed:-0} passed, ${failed:-0} failed; ${vm:-cgroup2-vm: did not run}; ${py:-docker-py: did not run}; ${c1:-compose-v1: did not run}"
echo "$((${passed:-0} + vm_passed + py_passed + c1_passed)) passed, $((${failed:-0} + vm_failed + py_failed + c1_failed)) failed"
[ "$rc" -eq 0 ] && [ "$vm_rc" -eq 0 ] && [ "$py_rc" -eq 0 ] && [ "$c1_rc" -eq 0 ]
