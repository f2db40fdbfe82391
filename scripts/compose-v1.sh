#!/usr/bin/env bash
# The Compose v1 stage: the integration tests of docker-compose 1.29.2 (its PyPI sdist's
# `tests/integration`, run with that compose and docker-py 6.1.3, the last docker-py it works
# with) against an engine of the stage's own (scripts/stage-engine.sh), ENGINE=wharfd (the
# default) or dockerd for comparison.
#
#   scripts/compose-v1.sh [PYTEST ARGS...]
#
# The stand-in images the suite names (busybox:1.31.0-uclibc, busybox:1.27.2, busybox:latest,
# alpine:3.10.1, nginx:latest) are made offline and served by the stage's mirror. Tests left
# out, each with its reason, are in tests/compose-v1/exclusions.txt. Ends with one
# "compose-v1: N passed, N failed" line and exits non-zero when a test failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=$root/target/compose-v1
sdist_url=https://files.pythonhosted.org/packages/1f/6a/f4703077123ad0c90026985cb9780c0703922c2a5451ab93fb63511d915a/docker-compose-1.29.2.tar.gz
sdist_sha=4c8cd9d21d237412793d18bd33110049ee9af8dab3fe2c213bbd0733959b09b7
# PyYAML 5.4.1 (compose wants < 6) has no wheel for this Python: built with Cython < 3.
pkgs=(docker==6.1.3 requests==2.31.0 "urllib3<2" docopt==0.6.2 texttable==1.7.0 websocket-client==0.59.0
  distro==1.9.0 dockerpty==0.4.1 jsonschema==3.2.0 python-dotenv==0.21.1 paramiko==3.5.1
  pytest==8.3.5 pytest-timeout==2.3.1 ddt==1.4.1 mock==3.0.5)

mkdir -p "$cache"
if [ ! -x "$cache/venv/bin/docker-compose" ] || [ "$(cat "$cache/venv/.pkgs" 2>/dev/null)" != "${pkgs[*]}" ]; then
  rm -rf "$cache/venv" "$cache/sdist"
  python3 -m venv "$cache/venv"
  pip=("$cache/venv/bin/pip" install -q --disable-pip-version-check)
  "${pip[@]}" "cython<3" wheel setuptools
  "${pip[@]}" --no-build-isolation PyYAML==5.4.1
  "${pip[@]}" "${pkgs[@]}"
  mkdir -p "$cache/sdist"
  curl -fsSL -o "$cache/sdist/compose.tar.gz" "$sdist_url"
  echo "$sdist_sha  $cache/sdist/compose.tar.gz" | sha256sum -c --quiet
  tar -xzf "$cache/sdist/compose.tar.gz" -C "$cache/sdist"
  "${pip[@]}" --no-deps --no-build-isolation "$cache/sdist/docker-compose-1.29.2"
  echo "${pkgs[*]}" > "$cache/venv/.pkgs"
fi
suite=$cache/sdist/docker-compose-1.29.2

. scripts/stage-engine.sh
stage_start compose
stage_images busybox:1.31.0-uclibc busybox:1.27.2 busybox:latest alpine:3.10.1 nginx:latest
# The suite assumes `busybox` (latest) is there already; it pulls only its own tag.
$D pull -q busybox:latest >/dev/null

stage_deselect tests/compose-v1/exclusions.txt
set +e
# The suite runs from its own directory (its fixtures are relative paths) and imports the
# installed compose, not the sdist's copy.
# A few tests run the `docker-compose` command itself.
(cd "$suite" && rm -rf compose && PATH=$cache/venv/bin:$PATH HOME=$work/home DOCKER_CONFIG=$work/home/.docker DOCKER_HOST=unix://$sock \
  "$cache/venv/bin/pytest" -p no:cacheprovider --timeout 180 -q -rfEs tests/integration "${deselect[@]}" \
  --junitxml "$work/junit.xml" "$@") | tee "$work/pytest.log"
rc=${PIPESTATUS[0]}
set -e
stage_summary compose-v1 "$work/junit.xml"
if [ "$rc" -ne 0 ]; then tail -n 40 "$work/engine.log" >&2; fi
exit "$rc"
