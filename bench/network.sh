#!/usr/bin/env bash
# Side-by-side benchmark of container networking, wharfd vs the real dockerd, the same docker
# CLI, runs interleaved (wharfd, dockerd, ...) after a warm-up:
#   - network setup per container: `run --rm busybox true` on the default bridge minus the
#     same with `--network none`;
#   - start of a container with 200 published ports (`-p 20000-20199:20000-20199`);
#   - 50 concurrent `run -d` on one user-defined network, with the count of distinct addresses.
# Each engine gets its own bridge and subnet; dockerd manages iptables (its default, with its
# userland proxy), wharfd its own nftables table. The host's iptables rules are saved before and
# restored after. Not a test: it never fails for being slow. Usage: bench/network.sh [RUNS] (10).
# Needs: docker.io, nftables, iproute2, busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
. bench/lib.sh
bench_init wharf-bench-net
iptables-save > "$work/iptables.before"
bench_extra_cleanup() {
  for e in "$W" "$D"; do $e rm -f $($e ps -aq 2>/dev/null) >/dev/null 2>&1 || true; $e network rm benchnet >/dev/null 2>&1 || true; done
}
bench_after_cleanup() {
  ip link del wbench0 2>/dev/null || true
  ip link del dbench0 2>/dev/null || true
  # dockerd leaves its chains behind; put the host's rules back as they were (none: none).
  for tb in nat filter; do iptables -t "$tb" -F; iptables -t "$tb" -X; done 2>/dev/null || true
  if [ -s "$work/iptables.before" ]; then iptables-restore < "$work/iptables.before" || true; fi
}
ip link add dbench0 type bridge && ip addr add 10.202.0.1/24 dev dbench0 && ip link set dbench0 up
bench_start "--bridge wbench0 --bip 10.201.0.1/24" "--bridge dbench0"
$W network create --subnet 10.203.0.0/16 benchnet >/dev/null
$D network create --subnet 10.204.0.0/16 benchnet >/dev/null
bench_machine
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
declare -A t
for i in $(seq 0 "$runs"); do   # run 0 is the warm-up
  for eng in w d; do
    e=$W; [ $eng = d ] && e=$D
    b=$(ms $e run --rm busybox true)
    n=$(ms $e run --rm --network none busybox true)
    p=$(ms $e run -d --name p200 -p 20000-20199:20000-20199 busybox sleep 60)
    $e rm -f p200 >/dev/null
    if [ "$i" -gt 0 ]; then t[$eng-bridge]+="$b "; t[$eng-none]+="$n "; t[$eng-p200]+="$p "; fi
  done
done
for eng in w d; do
  e=$W; [ $eng = d ] && e=$D
  s=$(date +%s%N)
  pids=()
  for i in $(seq 50); do $e run -d --network benchnet --name "c$i" busybox sleep 600 >/dev/null 2>"$work/err-$eng-$i" & pids+=($!); done
  wait "${pids[@]}"
  t[$eng-c50]=$(( ($(date +%s%N) - s) / 1000000 ))
  t[$eng-c50ips]=$($e inspect -f '{{.NetworkSettings.Networks.benchnet.IPAddress}}' $(seq -f 'c%g' 50) 2>/dev/null | grep -c . || true)
  t[$eng-c50uniq]=$($e inspect -f '{{.NetworkSettings.Networks.benchnet.IPAddress}}' $(seq -f 'c%g' 50) 2>/dev/null | sort -u | grep -c . || true)
  t[$eng-c50fail]=$(cat "$work"/err-$eng-* | grep -c . || true)
  $e rm -f $(seq -f 'c%g' 50) >/dev/null 2>&1 || true
done
mkdir -p bench/results
python3 - "${t[w-bridge]}" "${t[d-bridge]}" "${t[w-none]}" "${t[d-none]}" "${t[w-p200]}" "${t[d-p200]}" \
  "${t[w-c50]} ${t[w-c50ips]} ${t[w-c50uniq]} ${t[w-c50fail]}" "${t[d-c50]} ${t[d-c50ips]} ${t[d-c50uniq]} ${t[d-c50fail]}" <<'PY' | tee bench/results/network.txt
import statistics as st, sys, json
a = [[int(x) for x in s.split()] for s in sys.argv[1:9]]
wb, db, wn, dn, wp, dp, wc, dc = a
out = []
def row(name, w, d):
    mw, md = st.median(w), st.median(d)
    print(f"{name}: wharfd median {mw:.0f} ms (min {min(w)}, max {max(w)}), dockerd median {md:.0f} ms (min {min(d)}, max {max(d)}), dockerd/wharfd {md/mw:.2f}")
    out.append({"scenario": name, "wharfd_ms": w, "dockerd_ms": d, "ratio": md / mw})
row("run --rm busybox true, default bridge", wb, db)
row("run --rm busybox true, --network none", wn, dn)
sw, sd = st.median(wb) - st.median(wn), st.median(db) - st.median(dn)
print(f"network setup per container (bridge minus none, medians): wharfd {sw:.0f} ms, dockerd {sd:.0f} ms")
row("run -d with 200 published ports", wp, dp)
print(f"50 concurrent run -d on one user network: wharfd {wc[0]} ms, {wc[2]} distinct addresses of {wc[1]}, {wc[3]} failed; dockerd {dc[0]} ms, {dc[2]} distinct of {dc[1]}, {dc[3]} failed")
out.append({"scenario": "50 concurrent run -d on one user network", "wharfd": wc, "dockerd": dc})
json.dump(out, open("bench/results/network.json", "w"), indent=1)
PY
