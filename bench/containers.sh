#!/usr/bin/env bash
# Side-by-side benchmark of container start-up: `run --rm busybox true` through the docker CLI
# and through wharf's own CLI, `exec true`,
# 50 concurrent `run -d`, and per-container shim memory (PSS), wharfd vs the real dockerd on
# their own sockets, data roots and exec roots, the same docker CLI and the same busybox image,
# interleaved by hyperfine. Both use `--network none` (wharf's networking is a later issue).
# Not a test: it never fails for being slow. Usage: bench/containers.sh [RUNS] (default 20).
# Needs: docker.io, hyperfine, busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
. bench/lib.sh
bench_init wharf-bench
bench_start "--bridge wbench-c0 --bip 10.211.0.1/24" "--bridge none --iptables=false --ip-masq=false"
bench_machine
mkdir -p bench/results
hyperfine -N --runs "$runs" --warmup 3 --export-json bench/results/run.json \
  -n "wharfd: docker run --rm busybox true" "$W run --rm --network none busybox true" \
  -n "dockerd: docker run --rm busybox true" "$D run --rm --network none busybox true"
# The same through wharf's own CLI, against both engines.
WC="target/release/wharf -H unix://$work/w.sock"; DC="target/release/wharf -H unix://$work/d.sock"
hyperfine -N --runs "$runs" --warmup 3 --export-json bench/results/run-wharf-cli.json \
  -n "wharfd: wharf run --rm busybox true" "$WC run --rm --network none busybox true" \
  -n "dockerd: wharf run --rm busybox true" "$DC run --rm --network none busybox true"
for e in "$W" "$D"; do $e run -d --name ex --network none busybox sleep 600 >/dev/null; done
hyperfine -N --runs "$runs" --warmup 3 --export-json bench/results/exec.json \
  -n "wharfd: docker exec ex true" "$W exec ex true" \
  -n "dockerd: docker exec ex true" "$D exec ex true"
medians() {
  python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))["results"]
for x in r: print("median %7.1f ms  min %7.1f  max %7.1f  %s" % (x["median"]*1e3, x["min"]*1e3, x["max"]*1e3, x["command"]))
print("ratio dockerd/wharfd (medians): %.2f" % (r[1]["median"]/r[0]["median"]))' "$1"
}
medians bench/results/run.json
medians bench/results/run-wharf-cli.json
medians bench/results/exec.json
# Memory per container: the shim's PSS (wharf-shim vs containerd-shim-runc-v2).
pss() { awk '/^Pss:/ {s+=$2} END {print s}' "/proc/$1/smaps_rollup"; }
wpid=$(pgrep -f "wharf-shim $work" | head -1); dpid=$(pgrep -f "containerd-shim.*wharf-bench" | head -1 || true)
echo "shim PSS: wharf-shim $(pss "$wpid") KiB; containerd-shim $( [ -n "$dpid" ] && pss "$dpid" || echo '?') KiB"
# 50 concurrent run -d, each engine in turn.
for e in "$W" "$D"; do
  start=$(date +%s.%N)
  fails=0
  pids=()
  for i in $(seq 50); do $e run -d --network none busybox sleep 600 >/dev/null 2>>"$work/conc.err" & pids+=($!); done
  for j in "${pids[@]}"; do wait "$j" || fails=$((fails+1)); done
  end=$(date +%s.%N)
  echo "$(echo "$e" | cut -d/ -f4-): 50 concurrent run -d: $(echo "$end - $start" | bc) s, $fails failed, $($e ps -q | wc -l) running"
  # Memory per container with 51 running: the average shim PSS (shared pages split between them).
  if [ "$e" = "$W" ]; then shims=$(pgrep -f "wharf-shim $work"); else shims=$(pgrep -f "containerd-shim.*wharf-bench"); fi
  n=0; t=0; for p in $shims; do t=$((t + $(pss "$p"))); n=$((n + 1)); done
  echo "$(echo "$e" | cut -d/ -f4-): average shim PSS over $n shims: $((t / (n > 0 ? n : 1))) KiB"
  $e rm -f $($e ps -aq) >/dev/null
done
