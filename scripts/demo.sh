#!/usr/bin/env bash
# The README's main job on a fresh machine: install what wharf needs, build it, install the
# wharf CLI's shell completions and man pages, start wharfd in the background, make the
# busybox stand-in image offline (from Debian's busybox-static: no registry is needed) and use
# it through the docker CLI, or through the wharf CLI where there is no docker CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=()
for p in busybox-static nftables iproute2; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
[ ${#need[@]} -eq 0 ] || { apt-get update -qq; apt-get install -y -qq "${need[@]}" >/dev/null; }
cargo build --release --bins --quiet
mkdir -p /var/lib/wharf /run/wharf /usr/share/bash-completion/completions /usr/local/share/man/man1
target/release/wharf completion bash > /usr/share/bash-completion/completions/wharf
target/release/wharf man-pages /usr/local/share/man/man1
scripts/make-images.sh /var/lib/wharf-images >/dev/null
# The docker CLI when there is one, else wharf's own (the same commands and flags).
if command -v docker >/dev/null; then docker() { command docker "$@"; }; else docker() { target/release/wharf "$@"; }; fi
if ! [ -S /run/wharf/wharf.sock ] || ! DOCKER_HOST=unix:///run/wharf/wharf.sock docker version >/dev/null 2>&1; then
  nohup target/release/wharfd >/var/log/wharfd.log 2>&1 &
  for _ in $(seq 100); do [ -S /run/wharf/wharf.sock ] && break; sleep 0.1; done
fi
export DOCKER_HOST=unix:///run/wharf/wharf.sock
docker version --format 'wharfd speaks Docker Engine API {{.Server.APIVersion}}'
docker import -c 'CMD ["/bin/sh"]' /var/lib/wharf-images/busybox-rootfs.tar busybox:latest >/dev/null
docker images
docker history busybox
docker run --rm busybox echo "hello from a wharf container"
docker run --rm -h demo busybox sh -c 'echo "I am PID $$ on $(hostname), as $(id -un)"; ps'
docker run -d --name demo-web -p 8080:80 busybox sh -c 'mkdir -p /www; echo "served from a wharf container" > /www/index.html; exec httpd -f -p 80 -h /www' >/dev/null
for _ in $(seq 50); do busybox wget -qO- http://127.0.0.1:8080/ 2>/dev/null && break; sleep 0.1; done
docker rm -f demo-web >/dev/null
echo "wharfd is running (log: /var/log/wharfd.log); stop it with: kill \$(cat /run/wharf/wharfd.pid)"
