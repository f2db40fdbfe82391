#!/usr/bin/env bash
# Shared by the bench scripts (sourced, not run): wharfd and dockerd side by side, each on its
# own socket, data root, exec root, pidfile, cgroup parent / containerd namespace and bridge,
# the same offline busybox image imported into both, and everything taken down on exit.
#
#   bench_init NAME          work dir, $W and $D (docker CLI for each engine), build, images
#   bench_start WHARFD_ARGS DOCKERD_ARGS
#                            start both (extra flags as words), wait, import busybox
#   bench_machine            the line that records the machine
# A script may define `bench_extra_cleanup` (runs while the engines still do) and
# `bench_after_cleanup` (runs once they are gone).

bench_cleanup() {
  declare -F bench_extra_cleanup >/dev/null && bench_extra_cleanup
  for e in "$W" "$D"; do $e rm -f $($e ps -aq 2>/dev/null) >/dev/null 2>&1 || true; done
  [ -f "$work/w.pid" ] && kill "$(cat "$work/w.pid")" 2>/dev/null || true
  [ -f "$work/d.pid" ] && kill "$(cat "$work/d.pid")" 2>/dev/null || true
  sleep 2
  grep -F "$work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l || true
  for c in /sys/fs/cgroup/*/"$bench_name" /sys/fs/cgroup/*/"$bench_name-d"; do [ -d "$c" ] && rmdir "$c"/* "$c" 2>/dev/null; done || true
  declare -F bench_after_cleanup >/dev/null && bench_after_cleanup
  # dockerd creates iptables' base tables even with --iptables=false: drop the ones it made.
  nft list tables 2>/dev/null | while read -r _ fam name; do
    grep -qx "table $fam $name" "$work/nft-before" || nft delete table "$fam" "$name" 2>/dev/null || true
  done
  rm -rf "$work"
}

bench_init() {
  bench_name=$1
  work=$(mktemp -d "/tmp/$bench_name.XXXXXX")
  W="docker -H unix://$work/w.sock"
  D="docker -H unix://$work/d.sock"
  nft list tables >"$work/nft-before" 2>/dev/null || true
  trap bench_cleanup EXIT
  cargo build --release --bins --quiet
  scripts/make-images.sh "$work/img" >/dev/null
  echo '{}' > "$work/d.json"
}

bench_start() {
  # shellcheck disable=SC2086 # the extra flags are words
  target/release/wharfd --data-root "$work/w" --exec-root "$work/wx" -H "unix://$work/w.sock" --pidfile "$work/w.pid" \
    --config-file "$work/d.json" --cgroup-parent "$bench_name" $1 ${WHARFD_FLAGS:-} 2>"$work/w.log" &
  # shellcheck disable=SC2086
  dockerd --data-root "$work/d" --exec-root "$work/dx" -H "unix://$work/d.sock" --pidfile "$work/d.pid" \
    --config-file "$work/d.json" --containerd-namespace "$bench_name" --containerd-plugins-namespace "$bench_name-p" \
    --cgroup-parent "$bench_name-d" $2 2>"$work/d.log" &
  for e in "$W" "$D"; do for _ in $(seq 300); do $e version >/dev/null 2>&1 && break; sleep 0.2; done; done
  for e in "$W" "$D"; do $e import -c 'CMD ["/bin/sh"]' "$work/img/busybox-rootfs.tar" busybox:latest >/dev/null; done
}

bench_machine() {
  echo "machine: $(nproc) cores, kernel $(uname -r), cgroup $( [ -f /sys/fs/cgroup/cgroup.controllers ] && echo v2 || echo v1/hybrid ), $(date -u +%F)${WHARFD_FLAGS:+, wharfd $WHARFD_FLAGS}"
}
