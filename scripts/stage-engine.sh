# Sourced by the client-suite stages (scripts/docker-py.sh, scripts/compose-v1.sh): an engine of
# the stage's own (ENGINE=wharfd, the default, or dockerd for comparison) on its own socket,
# data root, exec root, bridge, subnet and cgroup parent, with a loopback `docker-registry` as
# its Docker Hub mirror, and everything taken down again when the stage exits.
#
#   stage_start NAME          start registry and engine; sets $work, $sock, $D
#   stage_images NAME:TAG...  stand-in images (busybox; hello-world is the static hello) pushed
#                             to the mirror as library/NAME:TAG and pulled from it
#   stage_deselect FILE       pytest's --deselect arguments for the node IDs FILE lists, in
#                             $deselect; and an empty client config of the stage's own in $work/home
#   stage_summary LABEL XML   one "LABEL: N passed, N failed, N skipped" line from a junit file
engine=${ENGINE:-wharfd}

stage_cleanup() {
  set +e
  $D rm -f $($D ps -aq 2>/dev/null) >/dev/null 2>&1
  $D network prune -f >/dev/null 2>&1
  [ -f "$work/engine.pid" ] && kill "$(cat "$work/engine.pid")" 2>/dev/null
  [ -f "$work/registry.pid" ] && kill "$(cat "$work/registry.pid")" 2>/dev/null
  for _ in $(seq 50); do [ -S "$sock" ] || break; sleep 0.2; done
  sleep 1
  grep -F "$work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l
  for c in /sys/fs/cgroup/*/"$cgroup"; do [ -d "$c" ] && rmdir "$c"/* "$c" 2>/dev/null; done
  ip link del "$bridge" 2>/dev/null
  nft list tables 2>/dev/null | while read -r _ fam name; do
    grep -qx "table $fam $name" "$work/nft-before" || nft delete table "$fam" "$name" 2>/dev/null
  done
  rm -rf "$work"
}

stage_start() {
  local name=$1
  work=$(mktemp -d "/tmp/wharf-$name.XXXXXX")
  sock=$work/engine.sock
  bridge=w${name:0:4}$$
  bridge=${bridge:0:15}
  cgroup=wharf-$name-$$
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  nft list tables >"$work/nft-before" 2>/dev/null || true
  D="docker -H unix://$sock"
  trap stage_cleanup EXIT
  cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
YML
  docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  echo $! > "$work/registry.pid"
  # Docker Hub is out of reach: a proxy that refuses keeps lookups from waiting on DNS.
  export HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.0/8,localhost,::1
  echo "{\"registry-mirrors\": [\"http://127.0.0.1:$port\"]}" > "$work/daemon.json"
  local subnet=10.$((200 + $$ % 50)).$(($$ / 50 % 250)).1/24
  case $engine in
    wharfd)
      [ -x target/debug/wharfd ] || cargo build --bins --quiet
      target/debug/wharfd -H "unix://$sock" --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/engine.pid" \
        --config-file "$work/daemon.json" --cgroup-parent "$cgroup" --bridge "$bridge" --bip "$subnet" \
        >"$work/engine.log" 2>&1 &
      ;;
    dockerd)
      # dockerd takes --bridge or --bip, not both: the bridge is made here with its address.
      ip link add "$bridge" type bridge && ip addr add "$subnet" dev "$bridge" && ip link set "$bridge" up
      dockerd -H "unix://$sock" --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/engine.pid" \
        --config-file "$work/daemon.json" --cgroup-parent "$cgroup" --bridge "$bridge" \
        --containerd-namespace "$name-$$" --containerd-plugins-namespace "$name-$$-p" \
        >"$work/engine.log" 2>&1 &
      ;;
    *) echo "ENGINE must be wharfd or dockerd" >&2; exit 2 ;;
  esac
  for _ in $(seq 300); do $D version >/dev/null 2>&1 && break; sleep 0.2; done
  $D version --format 'engine: {{.Server.Version}} (API {{.Server.APIVersion}})'
}

stage_images() {
  local imgs=$root/target/test-images name tar cmd
  [ -f "$imgs/busybox-rootfs.tar" ] || scripts/make-images.sh "$imgs" >/dev/null
  for name in "$@"; do
    case $name in
      hello-world:*) tar=$imgs/hello-rootfs.tar cmd='["/hello"]' ;;
      *) tar=$imgs/busybox-rootfs.tar cmd='["/bin/sh"]' ;;
    esac
    $D import -c "CMD $cmd" "$tar" "127.0.0.1:$port/library/$name" >/dev/null
    $D push -q "127.0.0.1:$port/library/$name" >/dev/null
    $D rmi "127.0.0.1:$port/library/$name" >/dev/null
  done
}

stage_deselect() {
  deselect=()
  local id
  while read -r id _; do
    [ -n "$id" ] && deselect+=(--deselect "$id")
  done < <(sed -e 's/#.*//' "$1")
  mkdir -p "$work/home/.docker"
  echo '{}' > "$work/home/.docker/config.json"
}

stage_summary() {
  python3 - "$1" "$2" <<'PY'
import sys, xml.etree.ElementTree as ET
s = ET.parse(sys.argv[2]).getroot()
s = s if s.tag == "testsuite" else s.find("testsuite")
t, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
print(f"{sys.argv[1]}: {t - f - e - k} passed, {f + e} failed, {k} skipped")
PY
}
