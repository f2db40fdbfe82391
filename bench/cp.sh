#!/usr/bin/env bash
# Side-by-side benchmark of `docker cp` of a 1 GB directory tree (1,024 files of 1 MiB in 32
# directories) into and out of a running container, wharfd vs the real dockerd, the same docker
# CLI, runs interleaved (wharfd, dockerd, wharfd, ...) after a warm-up. Each run copies into a
# fresh path and the copy is removed afterwards, so both engines see the same cache state.
# Not a test: it never fails for being slow. Usage: bench/cp.sh [RUNS] (default 5).
# Needs: docker.io, busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
. bench/lib.sh
bench_init wharf-bench-cp
bench_start "--bridge wbench-cp0 --bip 10.212.0.1/24" "--bridge none --iptables=false --ip-masq=false"
for e in "$W" "$D"; do $e run -d --name box --network none busybox sleep 100000 >/dev/null; done
bench_machine
tree="$work/tree"
for d in $(seq 32); do
  mkdir -p "$tree/d$d"
  for f in $(seq 32); do head -c 1048576 /dev/urandom > "$tree/d$d/f$f"; done
done
echo "tree: $(du -sh "$tree" | cut -f1), $(find "$tree" -type f | wc -l) files"
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
declare -A t
for i in $(seq 0 "$runs"); do   # run 0 is the warm-up
  for eng in w d; do
    e=$W; [ $eng = d ] && e=$D
    in=$(ms $e cp "$tree" "box:/tmp/t$i")
    out=$(ms $e cp "box:/tmp/t$i" "$work/out-$eng-$i")
    rm -rf "$work/out-$eng-$i"; $e exec box rm -rf "/tmp/t$i"
    if [ "$i" -gt 0 ]; then t[$eng-in]+="$in "; t[$eng-out]+="$out "; fi
  done
done
mkdir -p bench/results
python3 - "${t[w-in]}" "${t[d-in]}" "${t[w-out]}" "${t[d-out]}" <<'PY' | tee bench/results/cp.txt
import statistics, sys, json
wi, di, wo, do = [[int(x) for x in a.split()] for a in sys.argv[1:5]]
rows = [("docker cp 1 GB tree into a container", wi, di), ("docker cp 1 GB tree out of a container", wo, do)]
out = []
for name, w, d in rows:
    mw, md = statistics.median(w), statistics.median(d)
    print(f"{name}: wharfd median {mw:.0f} ms (min {min(w)}, max {max(w)}), dockerd median {md:.0f} ms (min {min(d)}, max {max(d)}), dockerd/wharfd {md/mw:.2f}")
    out.append({"scenario": name, "wharfd_ms": w, "dockerd_ms": d, "ratio": md / mw})
json.dump(out, open("bench/results/cp.json", "w"), indent=1)
PY
