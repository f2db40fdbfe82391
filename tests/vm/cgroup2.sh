#!/bin/sh
# wharf on a cgroup v2 host: run inside the VM scripts/cgroup2-vm.sh boots (busybox sh, PID 1's
# child, as root). Starts wharfd, imports the busybox stand-in, and drives the real docker CLI.
# Each check prints "ok - name" or "not ok - name: why".
set -u
export DOCKER_HOST=unix:///run/wharf/wharf.sock
ok() { echo "ok - $*"; }
no() { echo "not ok - $*"; }
eq() { # name expected actual
  if [ "$2" = "$3" ]; then ok "$1"; else no "$1: expected '$2', got '$3'"; fi
}
# A step the checks after it need: its output is shown when it fails.
step() {
  out=$("$@" 2>&1) || { no "$*: $out"; tail -n 4 /tmp/wharfd.log | sed 's/^/# /'; return 1; }
}
has() { # name needle haystack
  case "$3" in *"$2"*) ok "$1" ;; *) no "$1: '$2' not in '$3'" ;; esac
}
# The container's cgroup directory on the host, from its init's /proc/PID/cgroup.
cg() {
  pid=$(docker inspect -f '{{.State.Pid}}' "$1" 2>/dev/null)
  p=$(sed -n 's/^0:://p' "/proc/${pid:-0}/cgroup" 2>/dev/null)
  # Never the root: a check must not pass on the host's own files.
  if [ "${pid:-0}" -gt 0 ] && [ -n "$p" ] && [ "$p" != / ]; then echo "/sys/fs/cgroup$p"; else echo /nonexistent; fi
}
N="--network none"

echo "# kernel $(uname -r), controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
mkdir -p /var/lib/wharf
wharfd --bridge none --iptables=false >/tmp/wharfd.log 2>&1 &
i=0
until docker version >/dev/null 2>&1; do
  i=$((i + 1))
  if [ $i -gt 600 ]; then no "wharfd starts"; tail -n 20 /tmp/wharfd.log | sed "s/^/# /"; exit 1; fi
  sleep 0.1
done
ok "wharfd starts"
out=$(docker import /images/busybox-rootfs.tar busybox:latest 2>&1) || {
  no "import busybox: $out"; tail -n 20 /tmp/wharfd.log | sed "s/^/# /"; exit 1; }

eq "info: cgroup version and driver" "2 cgroupfs" "$(docker info --format '{{.CgroupVersion}} {{.CgroupDriver}}')"
eq "run --rm echo" "hi" "$(docker run --rm $N busybox echo hi 2>&1)"
docker run --rm $N busybox sh -c 'exit 3'
eq "run --rm exit code" 3 $?

# Docker's default on v2 is a private cgroup namespace: the container's cgroup is its root.
eq "private cgroupns by default" "0::/" "$(docker run --rm $N busybox cat /proc/self/cgroup 2>&1)"
eq "limits visible inside (cgroupns root)" 33554432 "$(docker run --rm $N -m 32m busybox cat /sys/fs/cgroup/memory.max 2>&1)"
eq "--cgroupns host" "yes" "$(docker run --rm $N --cgroupns host busybox sh -c 'grep -q "^0::/." /proc/self/cgroup && echo yes' 2>&1)"

# Every resource flag, written into the unified hierarchy.
dd if=/dev/zero of=/tmp/disk bs=1M count=8 2>/dev/null
losetup /dev/loop0 /tmp/disk
step docker run -d --name res $N -m 64m --memory-reservation 16m --memory-swap 96m --cpus 0.5 \
  --cpu-shares 512 --cpuset-cpus 1 --cpuset-mems 0 --pids-limit 64 --blkio-weight 300 \
  --device-read-bps /dev/loop0:1mb --device-write-iops /dev/loop0:50 busybox sleep 1000
c=$(cg res)
case "$c" in /sys/fs/cgroup/*/*) ok "container cgroup $c" ;; *) no "container cgroup: '$c'" ;; esac
eq "memory.max" 67108864 "$(cat "$c/memory.max")"
eq "memory.low (reservation)" 16777216 "$(cat "$c/memory.low")"
eq "memory.swap.max (swap minus memory)" 33554432 "$(cat "$c/memory.swap.max")"
eq "cpu.max (--cpus 0.5)" "50000 100000" "$(cat "$c/cpu.max")"
eq "cpu.weight (--cpu-shares 512)" 59 "$(cat "$c/cpu.weight")"
eq "cpuset.cpus" 1 "$(cat "$c/cpuset.cpus")"
eq "cpuset.mems" 0 "$(cat "$c/cpuset.mems")"
eq "pids.max" 64 "$(cat "$c/pids.max")"
if [ -e "$c/io.bfq.weight" ]; then eq "io.bfq.weight" "default 300" "$(head -n1 "$c/io.bfq.weight")"
else eq "io.weight (--blkio-weight 300)" "default 2930" "$(head -n1 "$c/io.weight")"; fi
eq "io.max (device bps and iops)" "7:0 rbps=1048576 wbps=max riops=max wiops=50" "$(cat "$c/io.max")"

step docker update -m 128m --memory-swap 256m --cpus 1 --pids-limit 100 --cpu-shares 1024 res
eq "update: memory.max" 134217728 "$(cat "$c/memory.max")"
eq "update: memory.swap.max" 134217728 "$(cat "$c/memory.swap.max")"
eq "update: cpu.max" "100000 100000" "$(cat "$c/cpu.max")"
eq "update: pids.max" 100 "$(cat "$c/pids.max")"
eq "update: cpu.weight" 100 "$(cat "$c/cpu.weight")"
eq "update: inspect" "134217728 100" "$(docker inspect -f '{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}' res)"

docker pause res >/dev/null
eq "pause: cgroup.freeze" 1 "$(cat "$c/cgroup.freeze")"
eq "pause: status" paused "$(docker inspect -f '{{.State.Status}}' res)"
docker unpause res >/dev/null
eq "unpause: cgroup.freeze" 0 "$(cat "$c/cgroup.freeze")"
eq "unpause: status" running "$(docker inspect -f '{{.State.Status}}' res)"

s=$(docker stats --no-stream --format '{{.MemUsage}} {{.PIDs}}' res 2>&1)
has "stats: memory limit" "/ 128MiB" "$s"
has "stats: pids" "MiB 1" "$s"
has "top" "sleep 1000" "$(docker top res 2>&1)"
has "exec" "0::/" "$(docker exec res cat /proc/self/cgroup 2>&1)"
docker exec -d res sleep 999 >/dev/null
eq "a detached exec is in the container's cgroup" 2 "$(wc -l < "$c/cgroup.procs")"
docker rm -f res >/dev/null
if [ -d "$c" ]; then no "rm removes the cgroup: $c is still there"; else ok "rm removes the cgroup"; fi

# The kernel enforces them.
docker run --name oom $N -m 32m busybox sh -c 'x=aaaaaaaa; while true; do x=$x$x; done' >/dev/null 2>&1
eq "OOM: exit 137 and OOMKilled" "137 true" "$(docker inspect -f '{{.State.ExitCode}} {{.State.OOMKilled}}' oom)"
docker rm oom >/dev/null

# The bomb's shell dies at the first fork the limit refuses; its children and the container stay.
step docker run -d --name bomb $N --pids-limit 20 busybox sh -c \
  'sh -c "while :; do sleep 1000 & done" 2>/dev/null; exec sleep 1000'
sleep 3
c=$(cg bomb)
cur=$(cat "$c/pids.current")
if [ "$cur" -le 20 ] && [ "$cur" -ge 15 ]; then ok "pids limit holds ($cur of 20)"; else no "pids limit: pids.current $cur"; fi
has "pids.events counts refusals" "max " "$(cat "$c/pids.events")"
docker rm -f bomb >/dev/null

docker run -d --name spin $N --cpus 0.5 busybox sh -c 'while :; do :; done' >/dev/null
sleep 1
c=$(cg spin)
u0=$(sed -n 's/^usage_usec //p' "$c/cpu.stat"); t0=$(date +%s)
sleep 4
u1=$(sed -n 's/^usage_usec //p' "$c/cpu.stat"); t1=$(date +%s)
pct=$(( (u1 - u0) / ((t1 - t0) * 10000) ))
if [ "$pct" -ge 30 ] && [ "$pct" -le 60 ]; then ok "--cpus 0.5 measured: ${pct}% of a CPU"
else no "--cpus 0.5 measured: ${pct}% of a CPU"; fi
thr=$(sed -n 's/^nr_throttled //p' "$c/cpu.stat")
if [ "${thr:-0}" -gt 0 ]; then ok "cpu.stat: throttled $thr times"; else no "cpu.stat: never throttled"; fi
p=$(docker stats --no-stream --format '{{.CPUPerc}}' spin | cut -d. -f1)
if [ "${p:-0}" -ge 30 ] && [ "${p:-0}" -le 70 ]; then ok "stats: CPU ${p}%"; else no "stats: CPU '${p}'% for --cpus 0.5"; fi
docker rm -f spin >/dev/null

# Devices: deny all but Docker's defaults (an eBPF program on v2), --device adds one.
out=$(docker run --rm $N busybox sh -c 'mknod /tmp/l b 7 0 && dd if=/tmp/l of=/dev/null bs=512 count=1' 2>&1)
has "device cgroup refuses a node made in the container" "Operation not permitted" "$out"
out=$(docker run --rm $N --device /dev/loop0 busybox dd if=/dev/loop0 of=/dev/null bs=512 count=1 2>&1)
has "--device allows it" "1+0 records in" "$out"
eq "/dev/null still works" "x" "$(docker run --rm $N busybox sh -c 'echo x >/dev/null && echo x')"

# What v2 has no file for is dropped with dockerd's warnings.
out=$(docker run --rm $N --memory-swappiness 10 --oom-kill-disable -m 32m busybox true 2>&1)
has "--memory-swappiness discarded with a warning" "Memory swappiness discarded." "$out"
has "--oom-kill-disable discarded with a warning" "OomKillDisable discarded." "$out"

docker run -d --name par $N --cgroup-parent mine busybox sleep 1000 >/dev/null
c=$(cg par)
case "$c" in /sys/fs/cgroup/mine/*) ok "--cgroup-parent" ;; *) no "--cgroup-parent: $c" ;; esac

# Live restore on v2: kill -9 wharfd, the container keeps running, stop works after restart.
kill -9 "$(cat /run/wharf/wharfd.pid 2>/dev/null || pidof wharfd)"
sleep 0.5
if [ -d "$c" ] && [ -n "$(cat "$c/cgroup.procs")" ]; then ok "live restore: still running"; else no "live restore: gone"; fi
wharfd --bridge none --iptables=false >>/tmp/wharfd.log 2>&1 &
i=0
until docker version >/dev/null 2>&1 || [ $i -gt 600 ]; do i=$((i + 1)); sleep 0.1; done
step docker update --memory 48m --memory-swap 96m par
eq "update after restart" 50331648 "$(cat "$c/memory.max")"
docker stop -t 1 par >/dev/null
eq "stop after restart" exited "$(docker inspect -f '{{.State.Status}}' par)"
docker rm par >/dev/null
rmdir /sys/fs/cgroup/mine 2>/dev/null

# A container never changes its own limits: its cgroup2 mount is read-only (not with
# --privileged), so a write to memory.max, pids.max or cgroup.subtree_control, or a mkdir, fails.
step docker run -d --name ro $N -m 64m --pids-limit 10 busybox sleep 1000
c=$(cg ro)
out=$(docker exec ro sh -c 'echo max >/sys/fs/cgroup/memory.max; echo max >/sys/fs/cgroup/pids.max;
  echo +pids >/sys/fs/cgroup/cgroup.subtree_control; mkdir /sys/fs/cgroup/x' 2>&1)
has "own cgroup: writes refused" "Read-only file system" "$out"
eq "own cgroup: memory.max unchanged" 67108864 "$(cat "$c/memory.max")"
eq "own cgroup: pids.max unchanged" 10 "$(cat "$c/pids.max")"
eq "own cgroup: no child cgroup made" "" "$(find "$c" -mindepth 1 -type d)"
has "own cgroup: the mount is read-only" " /sys/fs/cgroup cgroup2 ro," "$(docker exec ro cat /proc/mounts)"
eq "--privileged: its cgroup is writable" w "$(docker run --rm $N --privileged busybox sh -c \
  'cat /sys/fs/cgroup/memory.max >/sys/fs/cgroup/memory.max && echo w' 2>&1)"

# A shim killed takes its container with it: exit 137, no process, no cgroup left.
id=$(docker inspect -f '{{.Id}}' ro)
pid=$(docker inspect -f '{{.State.Pid}}' ro)
shim=$(ps -o pid,args | grep "[w]harf-shim .*$id" | awk '{print $1}')
kill -9 "$shim"
i=0
until [ "$(docker inspect -f '{{.State.Status}}' ro)" = exited ] || [ $i -gt 100 ]; do i=$((i + 1)); sleep 0.1; done
eq "killed shim: recorded exit" "exited 137" "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' ro)"
st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)
case "${st:-gone}" in gone|Z) ok "killed shim: the container's process is gone" ;;
  *) no "killed shim: process $pid still alive ($st)" ;; esac
if [ -d "$c" ]; then no "killed shim: cgroup $c left"; else ok "killed shim: cgroup removed"; fi
step docker rm ro
ps | grep -q '[w]harf-shim' && no "no shim left" || ok "no shim left"
