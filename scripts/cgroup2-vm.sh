#!/usr/bin/env bash
# The cgroup v2 stage: this machine is a hybrid host (cgroup v1 controllers, an empty cgroup2
# beside them), so wharf's v2 paths are tested on a real v2 host made here: Debian's own cloud
# kernel booted under qemu (software emulation; /dev/kvm does not work on these machines) with
# an initramfs holding busybox, wharfd, wharf-shim, the docker CLI and the busybox stand-in
# image. Nothing mounts cgroup v1 in there, so every controller is on the unified hierarchy.
# The tests themselves are tests/vm/cgroup2.sh, run inside; each prints "ok - ..." or
# "not ok - ...". Ends with "cgroup2-vm: N passed, M failed".
# Usage: scripts/cgroup2-vm.sh   (after `cargo build --bins` and scripts/make-images.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${WHARF_BIN_DIR:-$root/target/debug}
vm=$root/target/vm
mkdir -p "$vm"

# The kernel: the package Debian's linux-image-cloud-amd64 points at, unpacked, never installed.
if [ ! -f "$vm/kernel/vmlinuz" ]; then
  pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
  [ -n "$pkg" ] || { echo "cgroup2-vm: no linux-image-cloud-amd64 in apt's lists" >&2; exit 1; }
  rm -rf "$vm/deb" "$vm/kernel" && mkdir -p "$vm/deb" "$vm/kernel"
  (cd "$vm/deb" && apt-get download "$pkg" >/dev/null 2>&1)
  dpkg-deb -x "$vm"/deb/*.deb "$vm/deb/x"
  cp "$vm"/deb/x/boot/vmlinuz-* "$vm/kernel/vmlinuz"
  kver=$(basename "$vm"/deb/x/lib/modules/*)
  mkdir -p "$vm/kernel/modules/$kver"
  for m in fs/overlayfs/overlay.ko drivers/block/loop.ko; do
    cp "$vm/deb/x/lib/modules/$kver/kernel/$m" "$vm/kernel/modules/$kver/"
  done
  rm -rf "$vm/deb"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
r=$work/root
mkdir -p "$r"/{bin,sbin,usr/bin,usr/local/bin,lib,lib64,proc,sys,dev,tmp,etc,root,images,newroot}
cp /bin/busybox "$r/bin/busybox"
for b in wharfd wharf-shim wharf; do
  objcopy --strip-debug "$bin/$b" "$r/usr/local/bin/$b"
done
cp /usr/local/bin/docker "$r/usr/local/bin/docker"
# The shared libraries the binaries link, from this host (the same Debian release).
for lib in $(ldd "$bin/wharf-shim" "$bin/wharfd" | awk '/=> \//{print $3} $1 ~ /^\/lib/{print $1}' | sort -u); do
  mkdir -p "$r$(dirname "$lib")"
  cp -L "$lib" "$r$lib"
done
cp -r "$vm/kernel/modules" "$r/lib/modules"
cp target/test-images/busybox-rootfs.tar "$r/images/"
cp "${VM_TEST:-tests/vm/cgroup2.sh}" "$r/test.sh"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$r/etc/passwd"
printf 'root:x:0:\n' > "$r/etc/group"
# Stage one: the initramfs root cannot be pivot_root'ed away from, so copy into a tmpfs and
# switch_root there; then mount what a host has and run the tests; then power off.
cat > "$r/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
if [ "$$" = 1 ] && [ ! -e /.stage2 ]; then
  /bin/busybox mount -t tmpfs -o size=90% tmpfs /newroot
  /bin/busybox cp -a /bin /sbin /usr /lib /lib64 /etc /root /images /test.sh /init /newroot/
  /bin/busybox mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run /newroot/var
  /bin/busybox touch /newroot/.stage2
  /bin/busybox umount /proc
  exec /bin/busybox switch_root /newroot /init
fi
/bin/busybox --install -s /bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
for m in /lib/modules/*/*.ko; do insmod "$m"; done
hostname wharf-v2
export PATH=/usr/local/bin:/bin:/sbin:/usr/bin HOME=/root
sh /test.sh
echo "cgroup2-vm: exit $?"
sync
poweroff -f
EOF
chmod +x "$r/init" "$r/test.sh"
(cd "$r" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$work/initrd.gz")

log=$work/console.log
timeout "${VM_TIMEOUT:-900}" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 3072 -nographic -no-reboot \
  -kernel "$vm/kernel/vmlinuz" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1 loglevel=3" </dev/null >"$log" 2>&1 || true
if [ -n "${VM_TEST:-}" ]; then tr -d '\r' <"$log"; else tr -d '\r' <"$log" | grep -E '^(ok|not ok|#) ' || true; fi
passed=$(tr -d '\r' <"$log" | grep -c '^ok ' || true)
failed=$(tr -d '\r' <"$log" | grep -c '^not ok ' || true)
if ! tr -d '\r' <"$log" | grep -q '^cgroup2-vm: exit'; then
  echo "cgroup2-vm: the VM did not finish; its console:" >&2
  tr -d '\r' <"$log" | tail -n 40 >&2
  failed=$((failed + 1))
fi
echo "cgroup2-vm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
