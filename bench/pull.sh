#!/usr/bin/env bash
# Side-by-side benchmark of `docker pull` and `docker push` of a multi-layer image of a few
# hundred MB (busybox plus five layers of mixed random and text files, gzip) from a local
# Distribution registry (Debian's docker-registry on 127.0.0.1), wharfd vs the real dockerd,
# the same docker CLI, runs interleaved (wharfd, dockerd, ...) after a warm-up. Before each
# pull the engine removes the image, so every run downloads and extracts every layer; each push
# goes to a second registry started empty for it, so every layer is compressed and uploaded.
# Not a test: it never fails for being slow. Usage: bench/pull.sh [RUNS] (default 5).
# Needs: docker.io, docker-registry, skopeo, busybox-static, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
. bench/lib.sh
bench_init wharf-bench-pull
bench_after_cleanup() {
  [ -n "${reg_pid:-}" ] && kill "$reg_pid" 2>/dev/null || true
  [ -n "${reg2_pid:-}" ] && kill "$reg2_pid" 2>/dev/null || true
}
bench_start "--bridge none" "--bridge none --iptables=false --ip-masq=false"
bench_machine

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# registry NAME ADDR: start a registry storing under $work/NAME (emptied first); sets $started.
registry() {
  rm -rf "${work:?}/$1"
  cat > "$work/$1.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/$1
  delete:
    enabled: true
http:
  addr: $2
  secret: bench
EOF
  docker-registry serve "$work/$1.yml" 2>"$work/$1.log" &
  started=$!
  for _ in $(seq 100); do curl -sf "http://$2/v2/" >/dev/null && break; sleep 0.1; done
}
reg=127.0.0.1:$(free_port)
registry reg "$reg"; reg_pid=$started
reg2=127.0.0.1:$(free_port)

# The image: an OCI layout built here, copied into the registry by skopeo.
python3 - "$work/oci" "$work/img/busybox-rootfs.tar" <<'PY'
import gzip, hashlib, io, json, os, random, sys, tarfile
out, busybox = sys.argv[1], sys.argv[2]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
def blob(b):
    d = hashlib.sha256(b).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(b)
    return "sha256:" + d, len(b)
rng = random.Random(42)
words = [("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))) for _ in range(5000)]
layers = [open(busybox, "rb").read()]
for n in range(5):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for f in range(40):
            if f % 2:
                data = rng.randbytes(1_000_000)
            else:
                data = " ".join(rng.choice(words) for _ in range(250_000)).encode()[:1_600_000]
            ti = tarfile.TarInfo(f"data{n}/f{f}"); ti.size = len(data); ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
    layers.append(buf.getvalue())
descs, diffs = [], []
for l in layers:
    d, s = blob(gzip.compress(l, 6, mtime=0))
    descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s})
    diffs.append("sha256:" + hashlib.sha256(l).hexdigest())
cfg = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
       "rootfs": {"type": "layers", "diff_ids": diffs}, "history": [{"created_by": "bench"} for _ in layers]}
cd, cs = blob(json.dumps(cfg).encode())
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs}, "layers": descs}
md, ms = blob(json.dumps(m).encode())
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]},
          open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
print(f"image: {len(layers)} layers, {sum(map(len, layers)) / 1e6:.0f} MB uncompressed, "
      f"{sum(d['size'] for d in descs) / 1e6:.0f} MB compressed")
PY
skopeo copy -q --dest-tls-verify=false "oci:$work/oci:v1" "docker://$reg/bench/big:v1"
img=$reg/bench/big:v1

ms() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
declare -A t
for i in $(seq 0 "$runs"); do   # run 0 is the warm-up
  for eng in w d; do
    e=$W; [ $eng = d ] && e=$D
    $e rmi -f "$img" >/dev/null 2>&1 || true
    $e image prune -af >/dev/null 2>&1 || true
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    pull=$(ms $e pull "$img")
    registry reg2 "$reg2"; reg2_pid=$started
    $e tag "$img" "$reg2/pushed/big:v1"
    push=$(ms $e push "$reg2/pushed/big:v1")
    $e rmi "$reg2/pushed/big:v1" >/dev/null
    kill "$reg2_pid"; wait "$reg2_pid" 2>/dev/null || true
    if [ "$i" -gt 0 ]; then t[$eng-pull]+="$pull "; t[$eng-push]+="$push "; fi
  done
done
mkdir -p bench/results
python3 - "${t[w-pull]}" "${t[d-pull]}" "${t[w-push]}" "${t[d-push]}" <<'PY' | tee bench/results/pull.txt
import statistics, sys, json
wp, dp, wu, du = [[int(x) for x in a.split()] for a in sys.argv[1:5]]
rows = [("docker pull, 6 layers, from a local registry", wp, dp), ("docker push, 6 layers, to an empty registry", wu, du)]
out = []
for name, w, d in rows:
    mw, md = statistics.median(w), statistics.median(d)
    print(f"{name}: wharfd median {mw:.0f} ms (min {min(w)}, max {max(w)}), dockerd median {md:.0f} ms (min {min(d)}, max {max(d)}), dockerd/wharfd {md/mw:.2f}")
    out.append({"scenario": name, "wharfd_ms": w, "dockerd_ms": d, "ratio": md / mw})
json.dump(out, open("bench/results/pull.json", "w"), indent=1)
PY
