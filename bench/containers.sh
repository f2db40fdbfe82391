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
work=$(mktemp -d /tmp/wb.XXXXXX)
W="docker -H unix://$work/w.sock"; D="docker -H unix://$work/d.sock"
cleanup() {
  for e in "$W" "$D"; do $e rm -f $($e ps -aq 2>/dev/null) >/dev/null 2>&1 || true; done
  [ -f "$work/w.pid" ] && kill "$(cat "$work/w.pid")" 2>/dev/null || true
  [ -f "$work/d.pid" ] && kill "$(cat "$work/d.pid")" 2>/dev/null || true
  sleep 2
  grep -F "$work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l || true
  for c in /sys/fs/cgroup/*/wharf-bench; do [ -d "$c" ] && rmdir "$c"/* "$c" 2>/dev/null; done || true
  rm -rf "$work"
}
trap cleanup EXIT
cargo build --release --bins --quiet
scripts/make-images.sh "$work/img" >/dev/null
echo '{}' > "$work/d.json"
target/release/wharfd --data-root "$work/w" --exec-root "$work/wx" -H "unix://$work/w.sock" --pidfile "$work/w.pid" \
  --config-file "$work/d.json" --cgroup-parent wharf-bench 2>"$work/w.log" &
dockerd --data-root "$work/d" --exec-root "$work/dx" -H "unix://$work/d.sock" --pidfile "$work/d.pid" --config-file "$work/d.json" \
  --bridge none --iptables=false --ip-masq=false --containerd-namespace wharf-bench --containerd-plugins-namespace wharf-bench-p 2>"$work/d.log" &
for e in "$W" "$D"; do for _ in $(seq 300); do $e version >/dev/null 2>&1 && break; sleep 0.2; done; done
for e in "$W" "$D"; do $e import -c 'CMD ["/bin/sh"]' "$work/img/busybox-rootfs.tar" busybox:latest >/dev/null; done
echo "machine: $(nproc) cores, kernel $(uname -r), cgroup $( [ -f /sys/fs/cgroup/cgroup.controllers ] && echo v2 || echo v1/hybrid ), $(date -u +%F)"
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
