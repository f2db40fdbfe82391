#!/usr/bin/env bash
# The docker-py stage: docker-py's own integration tests (the `tests/integration` of the
# docker==6.1.3 sdist on PyPI, run with the current `docker` library) against a wharfd of the
# stage's own, or with ENGINE=dockerd against the real dockerd for comparison.
#
#   scripts/docker-py.sh [PYTEST ARGS...]     ENGINE=wharfd (default) | dockerd
#
# The engine (scripts/stage-engine.sh) runs on its own socket, data root, exec root, bridge,
# subnet and cgroup parent, with a loopback `docker-registry` as its Docker Hub mirror: the suite's stand-in images
# (busybox, alpine:3.10 with a postgres user of uid 70 and /var/opt, alpine:latest,
# hello-world) are made offline by scripts/make-images.sh, imported and pushed there, so
# `pull('alpine')` works without Docker Hub. HOME and DOCKER_CONFIG point into the stage's own
# directory (the suite writes contexts and configs). Tests left out, each with its reason, are
# in tests/docker-py/exclusions.txt. Ends with one "docker-py: N passed, N failed" line and exits
# non-zero when a test failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
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

. scripts/stage-engine.sh
stage_start dockerpy
stage_images alpine:3.10 alpine:latest busybox:latest hello-world:latest
$D pull -q busybox:latest >/dev/null
$D pull -q alpine:3.10 >/dev/null

stage_deselect tests/docker-py/exclusions.txt

# docker-py keeps contexts beside the config file it finds (or in the working directory when
# there is none): give it one of the stage's own.
rm -rf "$cache/suite/contexts"
set +e
(cd "$cache/suite" && HOME=$work/home DOCKER_CONFIG=$work/home/.docker DOCKER_HOST=unix://$sock \
  "$cache/venv/bin/pytest" -p no:cacheprovider --timeout 180 -q -rfEs tests/integration "${deselect[@]}" \
  --junitxml "$work/junit.xml" "$@") | tee "$work/pytest.log"
rc=${PIPESTATUS[0]}
set -e
stage_summary docker-py "$work/junit.xml"
if [ "$rc" -ne 0 ]; then tail -n 40 "$work/engine.log" >&2; fi
exit "$rc"
