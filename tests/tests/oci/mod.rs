//! Registries and images for the registry tests: a real registry started on loopback (Debian's
//! `docker-registry`, or wharf's own `wharf-registry`), plain, with htpasswd users and with
//! TLS; OCI layouts built here, byte for byte; and a plain HTTP/1.1 client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::Digest as _;

use super::common::*;

/// Which registry to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Debian's `docker-registry` (distribution 2.8).
    Distribution,
    /// `wharf-registry`.
    Wharf,
}

// ------------------------------------------------------------------ a real registry

pub struct Registry {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    /// `127.0.0.1:PORT` or `[::1]:PORT`.
    pub host: String,
    /// How to start it again (after a kill).
    pub cmd: Vec<String>,
}

pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

pub fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Registry {
    /// Start Debian's registry on `ip`, with htpasswd users and TLS (a CA of its own) if asked.
    pub fn start(ip: &str, users: Option<(&str, &str)>, tls: bool) -> Registry {
        Registry::start_engine(Engine::Distribution, ip, users, tls, &[])
    }

    /// Start `engine` on `ip` (deletes enabled), with htpasswd users and TLS if asked; `extra`
    /// are more flags for `wharf-registry serve`.
    pub fn start_engine(engine: Engine, ip: &str, users: Option<(&str, &str)>, tls: bool, extra: &[&str]) -> Registry {
        let dir = tempfile::Builder::new().prefix("wharf-reg-").tempdir().unwrap();
        let port = free_port(ip);
        let host = if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        };
        let p = |n: &str| dir.path().join(n).display().to_string();
        if tls {
            make_certs(dir.path());
        }
        if let Some((u, pw)) = users {
            let out = run_ok(Command::new("htpasswd").args(["-Bbn", u, pw]));
            std::fs::write(dir.path().join("htpasswd"), out).unwrap();
        }
        let cmd: Vec<String> = match engine {
            Engine::Distribution => {
                let mut cfg = format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nvalidation:\n  manifests:\n    urls:\n      allow:\n        - '^http://127\\.0\\.0\\.1:'\nhttp:\n  addr: \"{host}\"\n  secret: wharf-test\n",
                    p("data")
                );
                if tls {
                    cfg.push_str(&format!(
                        "  tls:\n    certificate: {}\n    key: {}\n",
                        p("cert.pem"),
                        p("key.pem")
                    ));
                }
                if users.is_some() {
                    cfg.push_str(&format!(
                        "auth:\n  htpasswd:\n    realm: wharf-test\n    path: {}\n",
                        p("htpasswd")
                    ));
                }
                std::fs::write(dir.path().join("config.yml"), cfg).unwrap();
                vec!["docker-registry".into(), "serve".into(), p("config.yml")]
            }
            Engine::Wharf => {
                // Port 0: the registry binds a free port itself and names it in addr-file (a
                // port chosen here could be taken by a parallel test before the bind).
                let any = if ip.contains(':') {
                    format!("[{ip}]:0")
                } else {
                    format!("{ip}:0")
                };
                let mut c: Vec<String> = vec![bin("wharf-registry").display().to_string(), "serve".into()];
                c.extend([
                    "--addr".into(),
                    any,
                    "--addr-file".into(),
                    p("addr"),
                    "--root".into(),
                    p("data"),
                    "--delete".into(),
                ]);
                if tls {
                    c.extend(["--tls-cert".into(), p("cert.pem"), "--tls-key".into(), p("key.pem")]);
                }
                if users.is_some() {
                    c.extend(["--htpasswd".into(), p("htpasswd")]);
                }
                c.extend(extra.iter().map(|s| s.to_string()));
                c
            }
        };
        let mut r = Registry {
            dir,
            child: None,
            host,
            cmd,
        };
        r.spawn();
        r
    }

    /// Starts the registry's process (again) and waits for its port.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        let addr_file = self.dir.path().join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let child = Command::new(&self.cmd[0])
            .args(&self.cmd[1..])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian's docker-registry package; .ci/run installs it) or wharf-registry");
        self.child = Some(child);
        let start = Instant::now();
        if self.cmd.iter().any(|a| a == "--addr-file") {
            let bound = loop {
                if let Ok(a) = std::fs::read_to_string(&addr_file) {
                    break a;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "registry did not start: {}",
                    std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            // A restart binds the same address again.
            self.host = bound.trim().to_string();
            if let Some(j) = self.cmd.iter().position(|a| a == "--addr") {
                self.cmd[j + 1] = self.host.clone();
            }
        }
        while TcpStream::connect(self.host.as_str()).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "registry did not start: {}",
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` of the registry's process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The storage root.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// `skopeo copy` of an OCI layout into this registry.
    pub fn seed(&self, layout: &Path, tag: &str, dest: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--all", "-q"]);
        if self.ca().exists() {
            let certs = self.dir.path().join("skopeo-certs");
            std::fs::create_dir_all(&certs).unwrap();
            std::fs::copy(self.ca(), certs.join("ca.crt")).unwrap();
            cmd.arg(format!("--dest-cert-dir={}", certs.display()));
        } else {
            cmd.arg("--dest-tls-verify=false");
        }
        if let Some(c) = creds {
            cmd.arg(format!("--dest-creds={c}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.host));
        run_ok(&mut cmd);
    }

    /// `skopeo inspect` of a reference in this registry.
    pub fn inspect(&self, name: &str, creds: Option<&str>) -> Value {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--tls-verify=false"]);
        if let Some(c) = creds {
            cmd.arg(format!("--creds={c}"));
        }
        cmd.arg(format!("docker://{}/{name}", self.host));
        serde_json::from_str(&run_ok(&mut cmd)).unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A CA and a server certificate for 127.0.0.1 and ::1 signed by it (rustls refuses a CA
/// certificate as a server's own).
pub fn make_certs(dir: &Path) {
    let p = |n: &str| dir.join(n).display().to_string();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .args(["-keyout", &p("ca.key"), "-out", &p("ca.crt"), "-days", "2"])
            .args(["-subj", "/CN=wharf test CA"]),
    );
    run_ok(
        Command::new("openssl")
            .args(["req"])
            .args(ec)
            .args(["-keyout", &p("key.pem"), "-out", &p("leaf.csr")])
            .args(["-subj", "/CN=wharf test registry"]),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run_ok(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-out",
        &p("cert.pem"),
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
    ]));
}

// ------------------------------------------------------------------ OCI layouts

pub fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A layer tar holding `files`.
pub fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Deterministic bytes gzip cannot shrink.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: PathBuf) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir }
    }

    pub fn blob(&self, data: &[u8]) -> (String, usize) {
        let d = sha(data);
        std::fs::write(self.dir.join("blobs/sha256").join(&d[7..]), data).unwrap();
        (d, data.len())
    }

    /// An image of `layers` (uncompressed tars, gzipped here) for `arch`; returns its manifest
    /// descriptor (with the platform) and the compressed layers' digests.
    pub fn image(&self, arch: &str, variant: &str, layers: &[Vec<u8>], cmd: &[&str]) -> (Value, Vec<String>) {
        let gzipped: Vec<(Vec<u8>, &str)> = layers.iter().map(|l| (l.clone(), "gzip")).collect();
        self.image_with(arch, variant, &gzipped, cmd)
    }

    /// As [`image`](Self::image), each layer compressed as named: `gzip`, `zstd` or `none`.
    pub fn image_with(
        &self,
        arch: &str,
        variant: &str,
        layers: &[(Vec<u8>, &str)],
        cmd: &[&str],
    ) -> (Value, Vec<String>) {
        let mut descs = Vec::new();
        let mut diffs = Vec::new();
        let mut digests = Vec::new();
        for (l, how) in layers {
            let (c, mt) = match *how {
                "gzip" => (gz(l), "application/vnd.oci.image.layer.v1.tar+gzip"),
                "zstd" => (
                    zstd::encode_all(&l[..], 3).unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                ),
                _ => (l.clone(), "application/vnd.oci.image.layer.v1.tar"),
            };
            let (d, n) = self.blob(&c);
            digests.push(d.clone());
            descs.push(json!({"mediaType": mt, "digest": d, "size": n}));
            diffs.push(sha(l));
        }
        let layers: Vec<Vec<u8>> = layers.iter().map(|(l, _)| l.clone()).collect();
        let mut config = json!({
            "architecture": arch,
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Cmd": cmd, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diffs},
            "history": layers.iter().map(|_| json!({"created_by": "wharf test"})).collect::<Vec<_>>(),
        });
        if !variant.is_empty() {
            config["variant"] = json!(variant);
        }
        let (cd, cn) = self.blob(serde_json::to_string(&config).unwrap().as_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
            "layers": descs,
        });
        let (md, mn) = self.blob(serde_json::to_string(&manifest).unwrap().as_bytes());
        let mut platform = json!({"architecture": arch, "os": "linux"});
        if !variant.is_empty() {
            platform["variant"] = json!(variant);
        }
        (
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn, "platform": platform}),
            digests,
        )
    }

    /// `index.json` naming `desc` as `tag`.
    pub fn tag(&self, mut desc: Value, tag: &str) {
        desc.as_object_mut().unwrap().remove("platform");
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let idx =
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [desc]});
        std::fs::write(self.dir.join("index.json"), serde_json::to_string(&idx).unwrap()).unwrap();
    }

    /// An image index of `entries`, named `tag`; returns its digest.
    pub fn index(&self, entries: Vec<Value>, tag: &str) -> String {
        let idx =
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
        let (d, n) = self.blob(serde_json::to_string(&idx).unwrap().as_bytes());
        self.tag(
            json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": n}),
            tag,
        );
        d
    }
}

pub fn busybox_layer() -> Vec<u8> {
    std::fs::read(images_dir().join("busybox-rootfs.tar")).unwrap()
}

/// A two-layer busybox image whose second layer holds /etc/marker.
pub fn busybox_layout(dir: PathBuf, tag: &str, marker: &str) -> (Layout, Vec<String>) {
    let l = Layout::new(dir);
    let (desc, digests) = l.image(
        "amd64",
        "",
        &[busybox_layer(), layer(&[("etc/marker", marker.as_bytes())])],
        &["/bin/sh"],
    );
    l.tag(desc, tag);
    (l, digests)
}

pub fn digest_line(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no Digest line in {out}"))
        .trim()
        .to_string()
}

/// One plain HTTP/1.1 request (Connection: close); returns (status, headers, body).
pub fn http(host: &str, method: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, Headers, Vec<u8>) {
    let mut c = TcpStream::connect(host).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    c.write_all(body).unwrap();
    let mut r = BufReader::new(c);
    let (status, h) = read_head(&mut r).unwrap();
    let mut b = Vec::new();
    r.read_to_end(&mut b).unwrap();
    (status.split(' ').nth(1).unwrap().parse().unwrap(), h, b)
}

/// Upload an image of `layout` (its config, layers and manifest, byte for byte) as `repo:tag`.
pub fn upload_raw(host: &str, repo: &str, tag: &str, layout: &Layout, desc: &Value) {
    let read = |d: &str| std::fs::read(layout.dir.join("blobs/sha256").join(&d[7..])).unwrap();
    let manifest = read(desc["digest"].as_str().unwrap());
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    blobs.extend(
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            // Foreign layers stay where their URLs say.
            .filter(|l| l["urls"].is_null())
            .map(|l| l["digest"].as_str().unwrap().to_string()),
    );
    for d in blobs {
        let (st, h, _) = http(
            host,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            "application/octet-stream",
            b"",
        );
        assert_eq!(st, 202);
        let loc = hget(&h, "location").unwrap().to_string();
        let path = loc
            .split_once("://")
            .map(|(_, r)| &r[r.find('/').unwrap()..])
            .unwrap_or(&loc)
            .to_string();
        let sep = if path.contains('?') { '&' } else { '?' };
        let (st, _, b) = http(
            host,
            "PUT",
            &format!("{path}{sep}digest={d}"),
            "application/octet-stream",
            &read(&d),
        );
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    }
    let (st, _, b) = http(
        host,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    );
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
}

/// Header lines, in order.
pub type Headers = Vec<(String, String)>;

pub fn read_head(r: &mut BufReader<TcpStream>) -> Option<(String, Headers)> {
    let mut first = String::new();
    if r.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).ok()?;
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Some((first.trim_end().to_string(), headers))
}

pub fn hget<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
    h.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(k))
        .map(|(_, v)| v.as_str())
}

/// One HTTP/1.1 request with headers of the caller's (Connection: close); a chunked answer is
/// decoded. Returns (status, headers, body).
pub fn request(host: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Headers, Vec<u8>) {
    let mut c = TcpStream::connect(host).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    c.write_all(head.as_bytes()).unwrap();
    let _ = c.write_all(body);
    let mut r = BufReader::new(c);
    let (status, h) = read_head(&mut r).unwrap();
    let mut b = Vec::new();
    let _ = r.read_to_end(&mut b);
    if hget(&h, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        b = dechunk(&b);
    }
    (status.split(' ').nth(1).unwrap().parse().unwrap(), h, b)
}

/// The path of a `Location` (absolute URLs lose their scheme and host).
pub fn location_path(h: &Headers) -> String {
    let loc = hget(h, "location").expect("a Location header").to_string();
    loc.split_once("://")
        .map(|(_, r)| r[r.find('/').unwrap()..].to_string())
        .unwrap_or(loc)
}

/// Appends `k=v` to a path's query.
pub fn with_query(path: &str, kv: &str) -> String {
    format!("{path}{}{kv}", if path.contains('?') { '&' } else { '?' })
}

/// Pushes a blob with POST then PUT; returns its digest.
pub fn push_blob(host: &str, repo: &str, data: &[u8]) -> String {
    let d = sha(data);
    let (st, h, b) = request(host, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    let path = with_query(&location_path(&h), &format!("digest={d}"));
    let (st, _, b) = request(
        host,
        "PUT",
        &path,
        &[("Content-Type", "application/octet-stream")],
        data,
    );
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    d
}

/// Pushes an OCI image manifest of a config and layers (pushed first) as `reference`; returns
/// (manifest digest, manifest bytes).
pub fn push_image(host: &str, repo: &str, reference: &str, layers: &[&[u8]]) -> (String, Vec<u8>) {
    let config =
        json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).to_string();
    let cd = push_blob(host, repo, config.as_bytes());
    let descs: Vec<Value> = layers
        .iter()
        .map(|l| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": push_blob(host, repo, l), "size": l.len()}))
        .collect();
    let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": descs})
    .to_string()
    .into_bytes();
    let (st, _, b) = request(
        host,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &m,
    );
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    (sha(&m), m)
}

/// The `code` of the first error in a spec error body.
pub fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}
