#!/usr/bin/env bash
# Builds the stand-in images wharf's tests, README and benchmarks use, offline, from Debian
# packages only: a busybox root filesystem (from busybox-static) and a static "hello" binary.
# Usage: scripts/make-images.sh OUTDIR
# Writes OUTDIR/busybox-rootfs.tar, OUTDIR/hello-rootfs.tar (filesystem tars for `import`) and
# OUTDIR/big-rootfs.tar (a ~300 MB multi-directory tree for benchmarks, only with BIG=1).
set -euo pipefail
out=${1:?usage: make-images.sh OUTDIR}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bb=$(command -v busybox || true)
[ -x /bin/busybox ] && bb=/bin/busybox
if [ -z "$bb" ] || ! file -L "$bb" 2>/dev/null | grep -q 'statically linked'; then
  if [ -x /bin/busybox ] && ldd /bin/busybox 2>&1 | grep -q 'not a dynamic'; then bb=/bin/busybox
  else echo "make-images: need busybox-static (apt-get install busybox-static)" >&2; exit 1; fi
fi

# busybox: the binary, its applet links, and the usual skeleton.
r=$work/busybox
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home,var/opt,proc,sys,dev}
chmod 1777 "$r/tmp"
cp "$bb" "$r/bin/busybox"
for a in $("$bb" --list-full); do
  [ "$a" = bin/busybox ] && continue
  mkdir -p "$r/$(dirname "$a")"
  ln -sf /bin/busybox "$r/$a"
done
cat > "$r/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
postgres:x:70:70:postgres:/var/lib/postgresql:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat > "$r/etc/group" <<'GR'
root:x:0:
daemon:x:1:
postgres:x:70:
nogroup:x:65534:
GR
tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C "$r" -cf "$out/busybox-rootfs.tar" .

# hello: one static binary that prints a greeting.
h=$work/hello
mkdir -p "$h"
cat > "$work/hello.c" <<'C'
#include <unistd.h>
int main(void) { static const char m[] = "Hello from wharf!\n"; write(1, m, sizeof m - 1); return 0; }
C
cc -static -Os -o "$h/hello" "$work/hello.c"
tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C "$h" -cf "$out/hello-rootfs.tar" .

if [ "${BIG:-0}" = 1 ]; then
  # A large tree for load/save/import benchmarks: many small files and some big ones, made
  # from pseudo-random but reproducible bytes.
  b=$work/big
  mkdir -p "$b"
  for d in $(seq 1 40); do
    mkdir -p "$b/d$d"
    for f in $(seq 1 100); do head -c $((d * 97 + f * 13)) /dev/zero | tr '\0' "x" > "$b/d$d/f$f"; done
  done
  for i in 1 2 3; do
    openssl enc -aes-128-ctr -pass pass:wharf$i -nosalt -pbkdf2 < /dev/zero 2>/dev/null | head -c $((100 << 20)) > "$b/blob$i" || true
  done
  tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C "$b" -cf "$out/big-rootfs.tar" .
fi
ls -la "$out"
