#!/usr/bin/env bash
# Side-by-side benchmark of image load, save and import: wharfd vs the real dockerd, both on
# their own sockets and data roots, driven by the same docker CLI, interleaved by hyperfine.
# Not a test: it never fails for being slow. Usage: bench/images.sh [RUNS] (default 10).
# Needs: docker.io, hyperfine, openssl (apt-get install docker.io hyperfine openssl).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
work=$(mktemp -d /tmp/wharf-bench.XXXXXX)
cleanup() {
  [ -f "$work/w.pid" ] && kill "$(cat "$work/w.pid")" 2>/dev/null || true
  [ -f "$work/d.pid" ] && kill "$(cat "$work/d.pid")" 2>/dev/null || true
  sleep 2
  grep -F "$work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l || true
  rm -rf "$work"
}
trap cleanup EXIT
cargo build --release --bins --quiet
BIG=1 scripts/make-images.sh "$work/img" >/dev/null
echo '{}' > "$work/d.json"
target/release/wharfd --data-root "$work/w" --exec-root "$work/wx" -H "unix://$work/w.sock" --pidfile "$work/w.pid" --config-file "$work/d.json" 2>"$work/w.log" &
dockerd --data-root "$work/d" --exec-root "$work/dx" -H "unix://$work/d.sock" --pidfile "$work/d.pid" --config-file "$work/d.json" \
  --bridge none --iptables=false --ip-masq=false --containerd-namespace wharf-bench --containerd-plugins-namespace wharf-bench-p 2>"$work/d.log" &
for s in w d; do for _ in $(seq 300); do DOCKER_HOST=unix://$work/$s.sock docker version >/dev/null 2>&1 && break; sleep 0.2; done; done
W="DOCKER_HOST=unix://$work/w.sock docker"; D="DOCKER_HOST=unix://$work/d.sock docker"
tar=$work/img/big-rootfs.tar
for e in "$W" "$D"; do sh -c "$e import $tar big:latest" >/dev/null; sh -c "$e save -o $work/saved-\$(echo $e | cut -c20-21).tar big" ; done
sh -c "$W save -o $work/archive.tar big"
echo "machine: $(nproc) cores, kernel $(uname -r), cgroup $( [ -f /sys/fs/cgroup/cgroup.controllers ] && echo v2 || echo v1/hybrid ), image $(du -h "$tar" | cut -f1)"
hyperfine -N --runs "$runs" --warmup 1 --export-markdown "$work/load.md" \
  --prepare "sh -c '$W rmi -f big >/dev/null 2>&1; true'" -n "wharf load" "sh -c '$W load -q -i $work/archive.tar'" \
  --prepare "sh -c '$D rmi -f big >/dev/null 2>&1; true'" -n "dockerd load" "sh -c '$D load -q -i $work/archive.tar'" 2>&1 | grep -vE '^\s*$'
hyperfine -N --runs "$runs" --warmup 1 -n "wharf save" "sh -c '$W save -o /dev/null big'" -n "dockerd save" "sh -c '$D save -o /dev/null big'" 2>&1 | grep -vE '^\s*$'
hyperfine -N --runs "$runs" --warmup 1 -n "wharf import" "sh -c '$W import $tar imp'" -n "dockerd import" "sh -c '$D import $tar imp'" 2>&1 | grep -vE '^\s*$'
