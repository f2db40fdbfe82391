"""The scenarios of bench/compare, run against wharfd and dockerd interleaved.

Each timed scenario runs a warm-up round, then RUNS rounds; in every round wharfd goes first,
then dockerd, with the same untimed setup and teardown around each. A sample is the client's
wall time and the CPU time the whole machine spent meanwhile (/proc/stat: the client, the
engine and everything it started, since nothing else runs). Memory scenarios are one reading
per engine. Scenarios that need something wharf does not have yet are listed with the reason.
"""

import json
import os
import statistics
import subprocess
import sys
import time

WORK = os.environ["WORK"]
RUNS = int(os.environ.get("RUNS", "10"))
REG = os.environ["REGISTRY"]
MACHINE = os.environ.get("MACHINE", "")
PIDS = {"w": int(os.environ["WPID"]), "d": int(os.environ["DPID"])}
ENG = {
    "w": ["docker", "-H", f"unix://{WORK}/w.sock"],
    "d": ["docker", "-H", f"unix://{WORK}/d.sock"],
}
WHARF_CLI = {
    "w": ["target/release/wharf", "-H", f"unix://{WORK}/w.sock"],
    "d": ["target/release/wharf", "-H", f"unix://{WORK}/d.sock"],
}
NAMES = {"w": "wharfd", "d": "dockerd"}
# What the table and the JSON call the two sides (the registry comparison renames them).
LABELS = dict(NAMES)
TICK = os.sysconf("SC_CLK_TCK")
results = []


def sh(cmd, check=True, quiet=True):
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL if quiet else subprocess.PIPE, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.decode(errors='replace').strip()}")
    return r


def out(cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout.decode()


def busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / TICK


def timed(cmd):
    c0, t0 = busy(), time.perf_counter()
    sh(cmd)
    return time.perf_counter() - t0, busy() - c0


def scenario(name, cmd, setup=None, teardown=None, runs=RUNS, warmup=1):
    """Time `cmd(eng, i)` interleaved; `setup`/`teardown(eng, i)` are not timed."""
    samples = {"w": [], "d": []}
    cpu = {"w": [], "d": []}
    try:
        for i in range(warmup + runs):
            for e in ("w", "d"):
                if setup:
                    setup(e, i)
                wall, c = timed(cmd(e, i))
                if teardown:
                    teardown(e, i)
                if i >= warmup:
                    samples[e].append(wall * 1e3)
                    cpu[e].append(c * 1e3)
    except RuntimeError as err:
        print(f"  {name}: failed: {err}", file=sys.stderr)
        results.append({"scenario": name, "skipped": f"failed: {err}"})
        return
    mw, md = statistics.median(samples["w"]), statistics.median(samples["d"])
    row = {
        "scenario": name,
        "unit": "ms",
        LABELS["w"]: {"median": mw, "min": min(samples["w"]), "max": max(samples["w"]),
                      "cpu_median": statistics.median(cpu["w"]), "samples": samples["w"]},
        LABELS["d"]: {"median": md, "min": min(samples["d"]), "max": max(samples["d"]),
                      "cpu_median": statistics.median(cpu["d"]), "samples": samples["d"]},
        "ratio": md / mw if mw else None,
    }
    results.append(row)
    print(f"  {name}: {LABELS['w']} {mw:.1f} ms, {LABELS['d']} {md:.1f} ms, {row['ratio']:.2f}x", file=sys.stderr)


def reading(name, unit, w, d):
    results.append({"scenario": name, "unit": unit, LABELS["w"]: {"median": w}, LABELS["d"]: {"median": d},
                    "ratio": d / w if w else None})
    print(f"  {name}: {LABELS['w']} {w:.1f} {unit}, {LABELS['d']} {d:.1f} {unit}", file=sys.stderr)


def skipped(name, why):
    results.append({"scenario": name, "skipped": why})
    print(f"  {name}: skipped: {why}", file=sys.stderr)


def rm_all(e):
    ids = out(ENG[e] + ["ps", "-aq"]).split()
    if ids:
        sh(ENG[e] + ["rm", "-f"] + ids)


def tree_rss_kib(pid):
    """RSS of a process and all its descendants."""
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(p))
            except (OSError, IndexError, ValueError):
                pass
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack.extend(kids.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(l.split()[1]) for l in f if l.startswith("Pss:"))
    except OSError:
        return 0


def shim_pids(e):
    pat = f"wharf-shim {WORK}" if e == "w" else "containerd-shim.*wharf-compare"
    r = subprocess.run(["pgrep", "-f", pat], stdout=subprocess.PIPE, text=True)
    return [int(x) for x in r.stdout.split()]


def main():
    print(MACHINE, file=sys.stderr)
    img = f"{WORK}/img"
    none = ["--network", "none"]
    # `ONLY=build bench/compare`: the build scenarios alone, into compare-build.*.
    if os.environ.get("ONLY") == "bigcontext":
        for e in ("w", "d"):
            sh(ENG[e] + ["import", "-c", 'CMD ["/bin/sh"]', f"{WORK}/img/busybox-rootfs.tar", "busybox:latest"])
        big_context()
        write("compare-bigcontext")
        return
    if os.environ.get("ONLY") == "distribution":
        distribution()
        write("compare-distribution")
        return
    if os.environ.get("ONLY") == "registry":
        sys.modules["compare"] = sys.modules[__name__]  # one module, one results list
        import registry
        registry.main()
        write("compare-registry")
        return
    if os.environ.get("ONLY") == "build":
        builds()
        write("compare-build")
        return

    # Idle daemons first, before anything ran in them (dockerd counts with its containerd).
    time.sleep(2)
    reading("idle daemon RSS (with children)", "MiB", tree_rss_kib(PIDS["w"]) / 1024, tree_rss_kib(PIDS["d"]) / 1024)

    scenario("docker run --rm busybox true", lambda e, i: ENG[e] + ["run", "--rm"] + none + ["busybox", "true"])
    scenario("wharf run --rm busybox true (wharf's CLI)",
             lambda e, i: WHARF_CLI[e] + ["run", "--rm"] + none + ["busybox", "true"])
    scenario("wharf run --rm busybox true (wharf's CLI, default bridge)",
             lambda e, i: WHARF_CLI[e] + ["run", "--rm", "busybox", "true"])
    scenario("docker create busybox true", lambda e, i: ENG[e] + ["create", "--name", f"c{i}"] + none + ["busybox", "true"],
             teardown=lambda e, i: sh(ENG[e] + ["rm", "-f", f"c{i}"]))
    scenario("docker start (created container)", lambda e, i: ENG[e] + ["start", f"s{i}"],
             setup=lambda e, i: sh(ENG[e] + ["create", "--name", f"s{i}"] + none + ["busybox", "sleep", "600"]),
             teardown=lambda e, i: sh(ENG[e] + ["rm", "-f", f"s{i}"]))
    for e in ("w", "d"):
        sh(ENG[e] + ["run", "-d", "--name", "ex"] + none + ["busybox", "sleep", "100000"])
    scenario("docker exec ex true", lambda e, i: ENG[e] + ["exec", "ex", "true"])
    scenario("docker stop (a container that exits on SIGTERM)", lambda e, i: ENG[e] + ["stop", f"t{i}"],
             setup=lambda e, i: sh(ENG[e] + ["run", "-d", "--name", f"t{i}"] + none +
                                   ["busybox", "sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]),
             teardown=lambda e, i: sh(ENG[e] + ["rm", "-f", f"t{i}"]))
    for e in ("w", "d"):
        rm_all(e)

    # ps with 0, 100 and 1,000 containers.
    have = 0
    for n in (0, 100, 1000):
        for e in ("w", "d"):
            for k in range(have, n):
                sh(ENG[e] + ["create", "--name", f"ps{k}"] + none + ["busybox", "true"])
        have = n
        scenario(f"docker ps -a with {n} containers", lambda e, i: ENG[e] + ["ps", "-a"])
        # The daemon's own answer, with a client that starts in a few milliseconds.
        scenario(f"GET /containers/json?all=1 with {n} containers (curl)",
                 lambda e, i: ["curl", "-sf", "-o", "/dev/null", "--unix-socket", f"{WORK}/{e}.sock",
                               "http://d/containers/json?all=1"])
    for e in ("w", "d"):
        rm_all(e)

    def conc(e, i):
        script = " ".join(
            [f"{' '.join(ENG[e])} run -d --network none busybox sleep 600 >/dev/null &" for _ in range(50)]
        ) + " wait"
        return ["sh", "-c", script]
    scenario("50 concurrent docker run -d", conc, teardown=lambda e, i: rm_all(e))

    # Memory per container: 100 idle containers, average shim PSS.
    for e in ("w", "d"):
        for k in range(100):
            sh(ENG[e] + ["run", "-d", "--name", f"idle{k}"] + none + ["busybox", "sleep", "100000"])
    avg = {}
    for e in ("w", "d"):
        p = shim_pids(e)
        avg[e] = sum(pss_kib(x) for x in p) / max(1, len(p)) / 1024
    reading("shim memory per container, 100 idle (average PSS)", "MiB", avg["w"], avg["d"])
    for e in ("w", "d"):
        rm_all(e)

    scenario("docker run -d with 200 published ports",
             lambda e, i: ENG[e] + ["run", "-d", "--name", f"p{i}", "-p", "20000-20199:20000-20199", "busybox", "sleep", "60"],
             teardown=lambda e, i: sh(ENG[e] + ["rm", "-f", f"p{i}"]))

    # Images: load, save, import of a large image.
    big = f"{img}/big-rootfs.tar"
    for e in ("w", "d"):
        sh(ENG[e] + ["import", big, "big:latest"])
    sh(ENG["w"] + ["save", "-o", f"{WORK}/big.tar", "big:latest"])
    scenario("docker load (large image)", lambda e, i: ENG[e] + ["load", "-q", "-i", f"{WORK}/big.tar"],
             setup=lambda e, i: sh(ENG[e] + ["rmi", "-f", "big:latest"], check=False))
    scenario("docker save (large image)", lambda e, i: ENG[e] + ["save", "-o", f"{WORK}/saved-{e}.tar", "big:latest"],
             teardown=lambda e, i: os.remove(f"{WORK}/saved-{e}.tar"))
    scenario("docker import (large image)", lambda e, i: ENG[e] + ["import", big, f"imp{i}"],
             teardown=lambda e, i: sh(ENG[e] + ["rmi", f"imp{i}"]))

    if os.environ.get("ONLY") == "core":
        write("compare-core")
        return
    distribution()
    builds()
    write()


def distribution():
    """Pull and push of the 262 MB six-layer image through each engine, against the local
    docker-registry; a push to an empty registry, and a push of the unchanged image again."""
    # Registry: pull and push of a multi-layer image (the one `bench/pull.sh` builds).
    r = big_layout()
    if r.returncode == 0:
        r = subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{WORK}/oci:v1",
                            f"docker://{REG}/bench/big:v1"], stderr=subprocess.PIPE)
    if r.returncode != 0:
        skipped("docker pull (6 layers, 262 MB)", "could not seed the registry: " + r.stderr.decode()[-300:])
    else:
        pimg = f"{REG}/bench/big:v1"

        def clean(e, i):
            sh(ENG[e] + ["rmi", "-f", pimg], check=False)
            sh(ENG[e] + ["image", "prune", "-af"], check=False)
        scenario("docker pull (6 layers, 262 MB, local registry)", lambda e, i: ENG[e] + ["pull", pimg], setup=clean)
        # Each push goes to a registry started empty for it, so every layer is compressed and
        # uploaded (on the seeded registry both engines would mount the layers instead).
        import shutil
        import socket
        with socket.socket() as so:
            so.bind(("127.0.0.1", 0))
            port2 = so.getsockname()[1]
        reg2 = {}

        def reg2_up(e, i):
            shutil.rmtree(f"{WORK}/reg2", ignore_errors=True)
            with open(f"{WORK}/reg2.yml", "w") as f:
                f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
                        f"  filesystem:\n    rootdirectory: {WORK}/reg2\nhttp:\n  addr: 127.0.0.1:{port2}\n  secret: c\n")
            reg2["p"] = subprocess.Popen(["docker-registry", "serve", f"{WORK}/reg2.yml"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port2), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            sh(ENG[e] + ["tag", pimg, f"127.0.0.1:{port2}/pushed/big:v1"])

        def reg2_down(e, i):
            sh(ENG[e] + ["rmi", f"127.0.0.1:{port2}/pushed/big:v1"], check=False)
            reg2["p"].kill()
            reg2["p"].wait()
        scenario("docker push (6 layers, 262 MB, to an empty registry)",
                 lambda e, i: ENG[e] + ["push", f"127.0.0.1:{port2}/pushed/big:v1"],
                 setup=reg2_up, teardown=reg2_down)
        reg2_up("w", 0)
        for e in ("w", "d"):
            sh(ENG[e] + ["tag", pimg, f"127.0.0.1:{port2}/again/big:v1"])
            sh(ENG[e] + ["push", f"127.0.0.1:{port2}/again/big:v1"])
        scenario("docker push of the unchanged image again (every layer already there)",
                 lambda e, i: ENG[e] + ["push", f"127.0.0.1:{port2}/again/big:v1"])
        reg2["p"].kill()
        reg2["p"].wait()



def big_layout():
    """The 262 MB six-layer image (busybox and five layers of text and noise) as an OCI layout in
    WORK/oci, tag v1: the same bytes for every registry and client."""
    return subprocess.run(["bash", "-c", f"""
        set -e
        python3 - {WORK}/oci {WORK}/img/busybox-rootfs.tar <<'PY'
import gzip, hashlib, io, json, os, random, sys, tarfile
out, busybox = sys.argv[1], sys.argv[2]
os.makedirs(f"{{out}}/blobs/sha256", exist_ok=True)
def blob(b):
    d = hashlib.sha256(b).hexdigest(); open(f"{{out}}/blobs/sha256/{{d}}", "wb").write(b); return "sha256:" + d, len(b)
rng = random.Random(42)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
layers = [open(busybox, "rb").read()]
for n in range(5):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for f in range(40):
            data = rng.randbytes(1_000_000) if f % 2 else " ".join(rng.choice(words) for _ in range(250_000)).encode()[:1_600_000]
            ti = tarfile.TarInfo(f"data{{n}}/f{{f}}"); ti.size = len(data); ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
    layers.append(buf.getvalue())
descs = [dict(zip(("digest", "size"), blob(gzip.compress(l, 6, mtime=0))), mediaType="application/vnd.oci.image.layer.v1.tar+gzip") for l in layers]
cfg = {{"architecture": "amd64", "os": "linux", "config": {{"Cmd": ["/bin/sh"]}},
       "rootfs": {{"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]}}}}
cd, cs = blob(json.dumps(cfg).encode())
m = {{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": {{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs}}, "layers": descs}}
md, ms = blob(json.dumps(m).encode())
json.dump({{"schemaVersion": 2, "manifests": [{{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
           "annotations": {{"org.opencontainers.image.ref.name": "v1"}}}}]}}, open(f"{{out}}/index.json", "w"))
open(f"{{out}}/oci-layout", "w").write('{{"imageLayoutVersion":"1.0.0"}}')
PY
    """], stderr=subprocess.PIPE)


BUILD_DOCKERFILE = """FROM busybox
ARG V=1
ENV APP=/app
WORKDIR /app
COPY requirements.txt .
RUN cat requirements.txt > /installed
COPY app/ ./
RUN ls -R /app > /listing
EXPOSE 8080
CMD ["sh", "-c", "cat /listing"]
"""


def builds():
    """The classic builder on both engines (the docker CLI has no buildx here): a 10-step
    Dockerfile cold (`--no-cache`), fully cached, and after one COPY'd file changed."""
    ctx = f"{WORK}/build-ctx"
    # The registry scenarios pruned every unused image: the base comes back, from the same
    # offline tar (a build must find it; it would pull it otherwise).
    for e in ("w", "d"):
        sh(ENG[e] + ["import", "-c", 'CMD ["/bin/sh"]', f"{WORK}/img/busybox-rootfs.tar", "busybox:latest"])
    os.makedirs(f"{ctx}/app/static", exist_ok=True)
    with open(f"{ctx}/Dockerfile", "w") as f:
        f.write(BUILD_DOCKERFILE)
    with open(f"{ctx}/requirements.txt", "w") as f:
        f.write("flask\n")
    for n in range(20):
        with open(f"{ctx}/app/static/f{n}.txt", "w") as f:
            f.write("x" * 1000 * n)
    with open(f"{ctx}/app/main.py", "w") as f:
        f.write("print('v0')\n")
    scenario("docker build, 10 steps, cold (--no-cache)",
             lambda e, i: ENG[e] + ["build", "-q", "--no-cache", "-t", "bcold", ctx])
    scenario("docker build, 10 steps, fully cached",
             lambda e, i: ENG[e] + ["build", "-q", "-t", "bcached", ctx])

    def change(e, i):
        with open(f"{ctx}/app/main.py", "w") as f:
            f.write(f"print('v{i + 1}')\n")
    scenario("docker build, 10 steps, one COPY'd file changed",
             lambda e, i: ENG[e] + ["build", "-q", "-t", "bchanged", ctx], setup=change)
    big_context()


def big_context():
    """A 200 MB context of 20,000 files: a build whose only step is FROM (the context's
    transfer and the first step), a fully cached `COPY .` of it through the docker CLI, and
    the same cached build through wharf's own CLI (which sends only what the daemon lacks;
    against dockerd it sends the tar, as the docker CLI does)."""
    ctx = f"{WORK}/big-ctx"
    # wharf build remembers digests in the user's cache: the bench's own, gone with it.
    os.environ["XDG_CACHE_HOME"] = f"{WORK}/cache"
    for d in range(100):
        os.makedirs(f"{ctx}/d{d:03}", exist_ok=True)
        for n in range(200):
            with open(f"{ctx}/d{d:03}/f{n:03}", "wb") as f:
                f.write(os.urandom(10_000))
    with open(f"{ctx}/Dockerfile.first", "w") as f:
        f.write("FROM busybox\n")
    with open(f"{ctx}/Dockerfile", "w") as f:
        f.write("FROM busybox\nCOPY . /ctx\n")
    scenario("docker build, 200 MB context of 20,000 files, to the first step",
             lambda e, i: ENG[e] + ["build", "-q", "-f", f"{ctx}/Dockerfile.first", ctx], runs=min(RUNS, 5))
    scenario("docker build, 200 MB context, cached COPY . (docker CLI)",
             lambda e, i: ENG[e] + ["build", "-q", "-t", "bbig", ctx], runs=min(RUNS, 5))
    scenario("wharf build, 200 MB context, cached COPY . (wharf CLI, second build)",
             lambda e, i: WHARF_CLI[e] + ["build", "-q", "-t", "bbig", ctx], runs=min(RUNS, 5))


def write(name="compare"):
    a, b = LABELS["w"], LABELS["d"]
    md = [f"# {a} vs {b}", "", MACHINE, "",
          f"Medians of {RUNS} interleaved runs after a warm-up; "
          "CPU is what the whole machine spent per run.", "",
          f"| scenario | {a} | {b} | {b}/{a} | {a} CPU | {b} CPU |", "|---|---|---|---|---|---|"]
    for r in results:
        if "skipped" in r:
            md.append(f"| {r['scenario']} | – | – | skipped: {r['skipped']} | | |")
            continue
        u = r["unit"]
        w, d = r[a], r[b]
        fmt = (lambda x: f"{x:.1f} {u}")
        rng = (lambda s: f" ({s['min']:.0f}–{s['max']:.0f})" if "min" in s else "")
        cpu = (lambda s: f"{s['cpu_median']:.0f} ms" if "cpu_median" in s else "")
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "–"
        md.append(f"| {r['scenario']} | {fmt(w['median'])}{rng(w)} | {fmt(d['median'])}{rng(d)} | {ratio} | {cpu(w)} | {cpu(d)} |")
    text = "\n".join(md) + "\n"
    open(f"bench/results/{name}.md", "w").write(text)
    json.dump({"machine": MACHINE, "runs": RUNS, "results": results}, open(f"bench/results/{name}.json", "w"), indent=1)
    open(f"bench/results/{name}.svg", "w").write(chart())
    print(text)


def chart():
    """Horizontal bars of dockerd/wharfd on a log scale: right of 1x, wharf is faster."""
    import math
    rows = [r for r in results if r.get("ratio")]
    w, left, top, bar = 900, 380, 40, 22
    h = top + len(rows) * (bar + 8) + 40
    lo, hi = math.log10(0.5), math.log10(max(50.0, max(r["ratio"] for r in rows) * 1.2))
    x = lambda v: left + (math.log10(v) - lo) / (hi - lo) * (w - left - 20)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
         f'<text x="10" y="20" font-size="14" font-weight="bold">dockerd time / wharfd time (log scale; right of 1x: wharf is faster)</text>']
    for t in (0.5, 1, 2, 5, 10, 20, 50):
        if math.log10(t) <= hi:
            s.append(f'<line x1="{x(t):.1f}" y1="{top - 5}" x2="{x(t):.1f}" y2="{h - 30}" stroke="#ccc"/>')
            s.append(f'<text x="{x(t):.1f}" y="{h - 15}" text-anchor="middle">{t}x</text>')
    for k, r in enumerate(rows):
        y = top + k * (bar + 8)
        color = "#2a7" if r["ratio"] >= 1 else "#c44"
        x0, x1 = sorted((x(1), x(r["ratio"])))
        s.append(f'<text x="{left - 8}" y="{y + bar * 0.7:.1f}" text-anchor="end">{r["scenario"]}</text>')
        s.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(1.0, x1 - x0):.1f}" height="{bar}" fill="{color}"/>')
        s.append(f'<text x="{x1 + 4:.1f}" y="{y + bar * 0.7:.1f}">{r["ratio"]:.2f}x</text>')
    s.append("</svg>")
    return "\n".join(s) + "\n"


if __name__ == "__main__":
    main()
