#!/usr/bin/env bash
# Soak: run a container with a 20 ms healthcheck, let it live a few milliseconds, stop it;
# ROUNDS times (default 500). The container's exit often lands while the shim is starting a
# health probe's exec: no round may leave a container that cannot be stopped or removed.
# Not a test (it is not timed and the test command does not run it); it prints what it saw:
#
#   tests/soak/health-stop.sh [ROUNDS]            # wharfd only
#   ENGINES="wharfd dockerd" tests/soak/health-stop.sh 100
#
# Both engines run side by side on their own sockets, data roots and cgroup parents
# (bench/lib.sh), and are taken down afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-500}
engines=${ENGINES:-wharfd}
# shellcheck source=../../bench/lib.sh
. bench/lib.sh
bench_init wharf-soak
bench_start "--bridge none --iptables=false" "--bridge none --iptables=false"
bench_machine
for engine in $engines; do
  case $engine in wharfd) e=$W ;; dockerd) e=$D ;; *) echo "unknown engine $engine" >&2; exit 2 ;; esac
  stuck=0; failed=0; times=()
  for i in $(seq "$rounds"); do
    name=soak$i
    t0=$(date +%s%N)
    # (No --health-start-interval: Debian's dockerd speaks API 1.41, which has none; the
    # interval alone probes every 20 ms.)
    if ! $e run -d --name "$name" --network none --health-cmd true --health-interval 20ms busybox \
        sh -c "sleep 0.0$((RANDOM % 10))$((RANDOM % 10)); exit 3" >/dev/null 2>"$work/err"; then
      failed=$((failed + 1)); echo "round $i: run: $(cat "$work/err")"; continue
    fi
    sleep "0.0$((RANDOM % 10))"
    if ! timeout 20 $e stop -t 1 "$name" >/dev/null 2>"$work/err"; then
      echo "round $i: stop: $(cat "$work/err")"
    fi
    st=$(timeout 10 $e inspect -f '{{.State.Status}}' "$name" 2>&1 || true)
    if [ "$st" != exited ]; then
      stuck=$((stuck + 1)); echo "round $i: stuck as '$st'"
    fi
    if ! timeout 20 $e rm -f "$name" >/dev/null 2>"$work/err"; then
      stuck=$((stuck + 1)); echo "round $i: rm -f: $(cat "$work/err")"
    fi
    times+=($(( ($(date +%s%N) - t0) / 1000000 )))
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  left=$($e ps -aq | wc -l)
  echo "$engine: $rounds rounds, $stuck stuck, $failed failed to run, $left containers left, median round ${median} ms"
done
