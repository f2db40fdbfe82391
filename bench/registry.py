"""`ONLY=registry bench/compare`: wharf-registry against Debian's docker-registry (distribution
2.8), side by side on loopback, with the same image and the same clients: the docker CLI
(through wharfd, so the client is the same fast one for both), skopeo (pushing blobs that are
already compressed, so the registry is what is measured), curl for 50 concurrent pulls, and a
paging client for a catalog of 10,000 repositories. Both registries keep their defaults
(distribution's filesystem driver does not fsync; wharf-registry fsyncs each blob before it is
visible). Memory is each server's RSS: idle after start, and its peak (VmHWM) after the load.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import time

import compare as c

WORK = c.WORK
# The binary users deploy: the static one of the registry's image (scripts/registry-image.sh).
BIN = os.path.abspath("target/static/x86_64-unknown-linux-gnu/release/wharf-registry")
CLIENT = c.ENG["w"]
NAMES = {"w": "wharf-registry", "d": "docker-registry"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Reg:
    """One registry process on loopback with a storage root of its own."""

    def __init__(self, e):
        self.e, self.port, self.p = e, free_port(), None
        self.host = f"127.0.0.1:{self.port}"
        self.root = f"{WORK}/registry-{e}"

    def start(self, fresh=False):
        if fresh:
            shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root, exist_ok=True)
        if self.e == "w":
            cmd = [BIN, "serve", "--addr", self.host, "--root", f"{self.root}/data", "--delete"]
        else:
            cfg = f"{self.root}/config.yml"
            with open(cfg, "w") as f:
                f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
                        f"  filesystem:\n    rootdirectory: {self.root}/data\n  delete:\n    enabled: true\n"
                        f"http:\n  addr: {self.host}\n  secret: bench\n")
            cmd = ["docker-registry", "serve", cfg]
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{NAMES[self.e]} did not start")

    def stop(self):
        if self.p:
            self.p.kill()
            self.p.wait()
            self.p = None

    def cpu_ms(self):
        """The server's own CPU time so far (user + system)."""
        with open(f"/proc/{self.p.pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def status(self, key):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        return 0.0


def conn(host):
    h, p = host.split(":")
    return http.client.HTTPConnection(h, int(p), timeout=60)


def seed_repositories(host, n):
    """n repositories, each one tag of a one-blob image (a mount of the blob, then a manifest)."""
    k = conn(host)
    cfg = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    import hashlib
    d = "sha256:" + hashlib.sha256(cfg).hexdigest()
    k.request("POST", f"/v2/seed/r0/blobs/uploads/?digest={d}", body=cfg)
    r = k.getresponse()
    r.read()
    if r.status == 202:  # no single-POST upload: PUT it
        loc = r.getheader("Location")
        path = loc[loc.index("/v2/"):] if "://" in loc else loc
        k.request("PUT", path + ("&" if "?" in path else "?") + f"digest={d}", body=cfg)
        k.getresponse().read()
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": len(cfg)},
                    "layers": []}).encode()
    for i in range(n):
        repo = f"seed/r{i}"
        if i:
            k.request("POST", f"/v2/{repo}/blobs/uploads/?mount={d}&from=seed/r0")
            k.getresponse().read()
        k.request("PUT", f"/v2/{repo}/manifests/v1", body=m,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        r = k.getresponse()
        r.read()
        if r.status != 201:
            raise RuntimeError(f"seeding {repo}: {r.status}")


def curl_config(host, n):
    """A curl config fetching the image's manifest and every blob, n times."""
    idx = json.load(open(f"{WORK}/oci/index.json"))
    md = idx["manifests"][0]["digest"]
    m = json.load(open(f"{WORK}/oci/blobs/sha256/{md[7:]}"))
    blobs = [m["config"]["digest"]] + [l["digest"] for l in m["layers"]]
    path = f"{WORK}/curl-{host.replace(':', '-')}-{n}.cfg"
    with open(path, "w") as f:
        for _ in range(n):
            f.write(f'url = "http://{host}/v2/bench/big/manifests/v1"\noutput = "/dev/null"\n'
                    'header = "Accept: application/vnd.oci.image.manifest.v1+json"\n')
            for b in blobs:
                f.write(f'url = "http://{host}/v2/bench/big/blobs/{b}"\noutput = "/dev/null"\n')
    return path


def main():
    c.LABELS.update(NAMES)
    c.sh(["scripts/registry-image.sh", f"{WORK}/registry-image"])
    r = c.big_layout()
    if r.returncode != 0:
        raise RuntimeError("the big layout: " + r.stderr.decode()[-300:])
    regs = {e: Reg(e) for e in ("w", "d")}
    try:
        for reg in regs.values():
            reg.start(fresh=True)
        time.sleep(0.5)
        idle = {e: regs[e].status("VmRSS") for e in regs}
        c.reading("RSS, idle (MiB; ratio is docker-registry/wharf-registry)", "MiB", idle["w"], idle["d"])
        anon = {e: regs[e].status("RssAnon") for e in regs}
        c.reading("private memory (RssAnon), idle (MiB)", "MiB", anon["w"], anon["d"])
        for reg in regs.values():
            c.sh(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{WORK}/oci:v1",
                  f"docker://{reg.host}/bench/big:v1"])
        img = {e: f"{regs[e].host}/bench/big:v1" for e in regs}

        def clean(e, i):
            c.sh(CLIENT + ["rmi", "-f", img[e]], check=False)
            c.sh(CLIENT + ["image", "prune", "-af"], check=False)
        c.scenario("docker pull (6 layers, 262 MB; docker CLI through wharfd)",
                   lambda e, i: CLIENT + ["pull", img[e]], setup=clean)
        cfgs = {e: curl_config(regs[e].host, 50) for e in regs}
        ones = {e: curl_config(regs[e].host, 1) for e in regs}
        import statistics
        mark = {}

        def server_cpu(name, what, cmd):
            """A scenario, then the registry's own CPU for it (median of the timed runs)."""
            cpu = {"w": [], "d": []}

            def before(e, i):
                mark[e] = regs[e].cpu_ms()

            def after(e, i):
                if i > 0:
                    cpu[e].append(regs[e].cpu_ms() - mark[e])
            c.scenario(name, cmd, setup=before, teardown=after, runs=min(c.RUNS, 5))
            if cpu["w"] and cpu["d"]:
                c.reading(f"server CPU of {what} (ms; the registry process alone)", "ms",
                          statistics.median(cpu["w"]), statistics.median(cpu["d"]))
        # One curl process multiplexing 50 transfers: its one thread receiving 8.4 GB bounds it.
        server_cpu("50 concurrent pulls of the image (one curl, 50 transfers: manifest and every blob, 8.4 GB)",
                   "the 50 pulls by one curl", lambda e, i: ["curl", "-sf", "-Z", "--parallel-max", "50", "-K", cfgs[e]])
        # 50 clients, as 50 hosts pulling at once would be: a curl process each.
        server_cpu("50 concurrent pulls of the image by 50 clients (a curl process each, 8.4 GB in all)",
                   "the 50 pulls by 50 clients", lambda e, i: ["bash", "-c", f"for n in $(seq 50); do curl -sf -K {ones[e]} & done; s=0; "
                                 "for p in $(jobs -p); do wait $p || s=1; done; exit $s"])
        peak = {e: regs[e].status("VmHWM") for e in regs}
        c.reading("RSS, peak under load (MiB; ratio is docker-registry/wharf-registry)", "MiB", peak["w"], peak["d"])

        # Pushes go to a registry started empty for each run, so every blob is uploaded.
        c.sh(CLIENT + ["pull", img["w"]])
        pushed = {}

        def fresh(e, i):
            regs[e].stop()
            regs[e].start(fresh=True)
            pushed[e] = f"{regs[e].host}/pushed/big:v1"
            c.sh(CLIENT + ["tag", img["w"], pushed[e]])

        def untag(e, i):
            c.sh(CLIENT + ["rmi", pushed[e]], check=False)
        c.scenario("docker push (6 layers, 262 MB, to an empty registry; docker CLI through wharfd)",
                   lambda e, i: CLIENT + ["push", pushed[e]], setup=fresh, teardown=untag)
        c.scenario("skopeo copy push (6 compressed layers, 262 MB, to an empty registry)",
                   lambda e, i: ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{WORK}/oci:v1",
                                 f"docker://{regs[e].host}/pushed/big:v1"],
                   setup=lambda e, i: (regs[e].stop(), regs[e].start(fresh=True)))

        for reg in regs.values():
            reg.stop()
            reg.start(fresh=True)
            seed_repositories(reg.host, 10000)
        script = os.path.abspath("bench/catalog_pages.py")
        c.scenario("_catalog of 10,000 repositories (every page, as the Link headers lead)",
                   lambda e, i: ["python3", script, regs[e].host, "10000"])
    finally:
        for reg in regs.values():
            reg.stop()
