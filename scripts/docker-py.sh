#!/usr/bin/env bash
# The docker-py stage: docker-py's own integration tests (the `tests/integration` of the
# docker==6.1.3 sdist on PyPI, run with the current `docker` library) against a wharfd of the
# stage's own, or with ENGINE=dockerd against the real dockerd for comparison.
#
#   scripts/docker-py.sh [PYTEST ARGS...]     ENGINE=wharfd (default) | dockerd
#
# The engine runs on its own socket, data root, exec root, bridge, subnet and cgroup parent,
# with a loopback `docker-registry` as its Docker Hub mirror: the suite's stand-in images
# (busybox, alpine:3.10 with a postgres user of uid 70 and /var/opt, alpine:latest,
# hello-world) are made offline by scripts/make-images.sh, imported and pushed there, so
# `pull('alpine')` works without Docker Hub. HOME and DOCKER_CONFIG point into the stage's own
# directory (the suite writes contexts and configs). Tests left out, each with its reason, are
# in tests/docker-py/exclusions.txt. Ends with one "docker-py: N passed, N failed" line and exits
# non-zero when a test failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
engine=${ENGINE:-wharfd}
cache=$root/target/docker-py
# Pinned so that a run is repeatable; docker 7.2.0 is the current docker-py release.
pkgs=(docker==7.2.0 websocket-client==1.8.0 paramiko==3.5.1 pytest==8.3.5 pytest-timeout==2.3.1)

mkdir -p "$cache"
if [ ! -x "$cache/venv/bin/pytest" ] || [ "$(cat "$cache/venv/.pkgs" 2>/dev/null)" != "${pkgs[*]}" ]; then
  rm -rf "$cache/venv"
  python3 -m venv "$cache/venv"
  "$cache/venv/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}"
  echo "${pkgs[*]}" > "$cache/venv/.pkgs"
fi
if [ ! -d "$cache/suite/tests/integration" ]; then
  rm -rf "$cache/sdist" "$cache/suite"
  "$cache/venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: docker==6.1.3 -d "$cache/sdist"
  tar -xzf "$cache/sdist/docker-6.1.3.tar.gz" -C "$cache/sdist"
  # Only the tests: the sdist's own `docker` package must not shadow the installed library.
  mkdir -p "$cache/suite"
  cp -r "$cache/sdist/docker-6.1.3/tests" "$cache/sdist/docker-6.1.3/pytest.ini" "$cache/suite/"
fi

work=$(mktemp -d /tmp/wharf-dockerpy.XXXXXX)
sock=$work/engine.sock
bridge=wpy$$
bridge=${bridge:0:15}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
nft list tables >"$work/nft-before" 2>/dev/null || true
D="docker -H unix://$sock"

cleanup() {
  set +e
  $D rm -f $($D ps -aq 2>/dev/null) >/dev/null 2>&1
  $D network prune -f >/dev/null 2>&1
  [ -f "$work/engine.pid" ] && kill "$(cat "$work/engine.pid")" 2>/dev/null
  [ -f "$work/registry.pid" ] && kill "$(cat "$work/registry.pid")" 2>/dev/null
  for _ in $(seq 50); do [ -S "$sock" ] || break; sleep 0.2; done
  sleep 1
  grep -F "$work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l
  for c in /sys/fs/cgroup/*/"wharf-dockerpy-$$"; do [ -d "$c" ] && rmdir "$c"/* "$c" 2>/dev/null; done
  ip link del "$bridge" 2>/dev/null
  nft list tables 2>/dev/null | while read -r _ fam name; do
    grep -qx "table $fam $name" "$work/nft-before" || nft delete table "$fam" "$name" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
echo $! > "$work/registry.pid"

# Docker Hub is out of reach: a proxy that refuses keeps lookups from waiting on DNS.
export HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.0/8,localhost,::1
echo "{\"registry-mirrors\": [\"http://127.0.0.1:$port\"]}" > "$work/daemon.json"
subnet=10.$((200 + $$ % 50)).$(($$ / 50 % 250)).1/24
case $engine in
  wharfd)
    [ -x target/debug/wharfd ] || cargo build --bins --quiet
    target/debug/wharfd -H "unix://$sock" --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/engine.pid" \
      --config-file "$work/daemon.json" --cgroup-parent "wharf-dockerpy-$$" --bridge "$bridge" --bip "$subnet" \
      >"$work/engine.log" 2>&1 &
    ;;
  dockerd)
    # dockerd takes --bridge or --bip, not both: the bridge is made here with its address.
    ip link add "$bridge" type bridge && ip addr add "$subnet" dev "$bridge" && ip link set "$bridge" up
    dockerd -H "unix://$sock" --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/engine.pid" \
      --config-file "$work/daemon.json" --cgroup-parent "wharf-dockerpy-$$" --bridge "$bridge" \
      --containerd-namespace "dockerpy-$$" --containerd-plugins-namespace "dockerpy-$$-p" \
      >"$work/engine.log" 2>&1 &
    ;;
  *) echo "ENGINE must be wharfd or dockerd" >&2; exit 2 ;;
esac
for _ in $(seq 300); do $D version >/dev/null 2>&1 && break; sleep 0.2; done
$D version --format 'engine: {{.Server.Version}} (API {{.Server.APIVersion}})'

imgs=$root/target/test-images
[ -f "$imgs/busybox-rootfs.tar" ] || scripts/make-images.sh "$imgs" >/dev/null
for name in alpine:3.10 alpine:latest busybox:latest hello-world:latest; do
  case $name in
    hello-world:*) tar=$imgs/hello-rootfs.tar cmd='["/hello"]' ;;
    *) tar=$imgs/busybox-rootfs.tar cmd='["/bin/sh"]' ;;
  esac
  $D import -c "CMD $cmd" "$tar" "127.0.0.1:$port/library/$name" >/dev/null
  $D push -q "127.0.0.1:$port/library/$name" >/dev/null
  $D rmi "127.0.0.1:$port/library/$name" >/dev/null
done
$D pull -q busybox:latest >/dev/null
$D pull -q alpine:3.10 >/dev/null

deselect=()
while read -r id _; do
  [ -n "$id" ] && deselect+=(--deselect "$id")
done < <(sed -e 's/#.*//' tests/docker-py/exclusions.txt)

# docker-py keeps contexts beside the config file it finds (or in the working directory when
# there is none): give it one of the stage's own.
mkdir -p "$work/home/.docker"
echo '{}' > "$work/home/.docker/config.json"
rm -rf "$cache/suite/contexts"
set +e
(cd "$cache/suite" && HOME=$work/home DOCKER_CONFIG=$work/home/.docker DOCKER_HOST=unix://$sock \
  "$cache/venv/bin/pytest" -p no:cacheprovider --timeout 180 -q -rfEs tests/integration "${deselect[@]}" \
  --junitxml "$work/junit.xml" "$@") | tee "$work/pytest.log"
rc=${PIPESTATUS[0]}
set -e
python3 - "$work/junit.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
s = ET.parse(sys.argv[1]).getroot()
s = s if s.tag == "testsuite" else s.find("testsuite")
t, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
print(f"docker-py: {t - f - e - k} passed, {f + e} failed, {k} skipped")
EOF
if [ "$rc" -ne 0 ]; then tail -n 40 "$work/engine.log" >&2; fi
exit "$rc"
