//! Pull, push and login against real registries: Debian's `docker-registry` (Distribution
//! 2.8) started by each test on loopback, plain, with htpasswd auth and with TLS, images
//! written into it by `skopeo copy` from OCI layouts built here, and read back by skopeo and
//! the real dockerd. Hostile registries are the real one behind a proxy of the test's own that
//! corrupts, truncates, lies about content types, cuts transfers and sends clients to a token
//! service on another host.

mod common;
mod oci;

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use oci::*;
use serde_json::{json, Value};

/// What a [`Server`] saw of one request: its path and headers.
type Seen = Vec<(String, Headers)>;

/// A one-route HTTP server of the test's own on `ip` (a token service, a search API, a
/// foreign layer's URL): `answer(path, headers)` gives the status line and body; every request
/// is remembered.
struct Server {
    host: String,
    seen: Arc<Mutex<Seen>>,
}

impl Server {
    fn start(ip: &str, answer: impl Fn(&str, &Headers) -> (&'static str, Vec<u8>) + Send + 'static) -> Server {
        let l = TcpListener::bind((ip, 0)).unwrap();
        let host = l.local_addr().unwrap().to_string();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let mut out = c.try_clone().unwrap();
                let mut r = BufReader::new(c);
                let Some((line, h)) = read_head(&mut r) else { continue };
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let (status, body) = answer(&path, &h);
                log.lock().unwrap().push((path, h));
                let _ = write!(
                    out,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = out.write_all(&body);
            }
        });
        Server { host, seen }
    }

    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

/// A busybox image with a second layer of `big` random bytes in `repo` on `reg`, behind a
/// proxy that sends that layer at `bps`. Returns the proxy, the layers' digests and the name
/// to pull through the proxy.
fn throttled_image(w: &Wharfd, reg: &Registry, repo: &str, big: &[u8], bps: u64) -> (Proxy, Vec<String>, String) {
    let l = Layout::new(w.dir.path().join("oci"));
    let (desc, digests) = l.image(
        "amd64",
        "",
        &[busybox_layer(), layer(&[("big.bin", big)])],
        &["/bin/sh"],
    );
    l.tag(desc, "v1");
    reg.seed(&l.dir, "v1", &format!("{repo}:v1"), None);
    let proxy = Proxy::start(&reg.host);
    proxy.set(|s| {
        s.blobs.insert(digests[1].clone(), BlobMode::Throttle(bps));
    });
    let img = format!("{}/{repo}:v1", proxy.host);
    (proxy, digests, img)
}

/// `docker pull img` against `w`, in the background.
fn pull_in_background(w: &Wharfd, img: &str) -> Child {
    Command::new("docker")
        .args(["pull", img])
        .env("DOCKER_HOST", format!("unix://{}", w.sock.display()))
        .env("DOCKER_CONFIG", w.dir.path().join("docker-config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

// ------------------------------------------------------------------ the tests

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn pull_run_push_round_trip_with_skopeo_and_dockerd() {
    pull_run_push_round_trip_with_skopeo_and_dockerd_on(Engine::Distribution);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn pull_run_push_round_trip_with_skopeo_and_dockerd_against_wharf_registry() {
    pull_run_push_round_trip_with_skopeo_and_dockerd_on(Engine::Wharf);
}

fn pull_run_push_round_trip_with_skopeo_and_dockerd_on(engine: Engine) {
    let reg = Registry::start_engine(engine, "127.0.0.1", None, false, &[]);
    let w = Wharfd::start();
    let (layout, _) = busybox_layout(w.dir.path().join("oci"), "v1", "layer two");
    reg.seed(&layout.dir, "v1", "stand/bb:v1", None);
    let want = reg.inspect("stand/bb:v1", None)["Digest"].as_str().unwrap().to_string();

    // docker pull through wharfd, then run it.
    let img = format!("{}/stand/bb:v1", reg.host);
    let out = w.ok(&["pull", &img]);
    assert!(out.contains("v1: Pulling from stand/bb"), "{out}");
    assert!(out.contains("Pull complete"), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {img}")),
        "{out}"
    );
    assert_eq!(digest_line(&out), want);
    let digests = w.ok(&["image", "inspect", "--format", "{{json .RepoDigests}}", &img]);
    assert!(digests.contains(&format!("{}/stand/bb@{want}", reg.host)), "{digests}");
    assert_eq!(w.ok(&["run", "--rm", &img, "cat", "/etc/marker"]), "layer two");
    let again = w.ok(&["pull", &img]);
    assert!(
        again.contains(&format!("Status: Image is up to date for {img}")),
        "{again}"
    );
    // By digest.
    let by_digest = format!("{}/stand/bb@{want}", reg.host);
    let out = w.ok(&["pull", &by_digest]);
    assert_eq!(digest_line(&out), want);
    // A missing tag is Docker's error, as an HTTP error before any progress.
    let e = w.fails(&["pull", &format!("{}/stand/bb:nope", reg.host)]);
    assert!(
        e.contains(&format!("manifest for {}/stand/bb:nope not found", reg.host)),
        "{e}"
    );

    // Push to another repository on the same registry: both layers are mounted.
    let other = format!("{}/pushed/bb:v2", reg.host);
    w.ok(&["tag", &img, &other]);
    let out = w.ok(&["push", &other]);
    assert!(
        out.contains(&format!("The push refers to repository [{}/pushed/bb]", reg.host)),
        "{out}"
    );
    assert_eq!(out.matches("Mounted from stand/bb").count(), 2, "{out}");
    let pushed = out
        .lines()
        .find_map(|l| l.strip_prefix("v2: digest: "))
        .unwrap_or_else(|| panic!("no digest line: {out}"))
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(reg.inspect("pushed/bb:v2", None)["Digest"].as_str().unwrap(), pushed);
    let out = w.ok(&["push", &other]);
    assert_eq!(out.matches("Layer already exists").count(), 2, "{out}");

    // A local image goes up layer by layer; skopeo and the real dockerd read it back.
    let fresh = format!("{}/fresh:v1", reg.host);
    let hello = images_dir().join("hello-rootfs.tar");
    let id = w
        .ok(&["import", "-c", "CMD [\"/hello\"]", hello.to_str().unwrap(), &fresh])
        .trim()
        .to_string();
    let out = w.ok(&["push", &fresh]);
    assert!(out.contains("Pushed"), "{out}");
    let fresh_digest = out
        .lines()
        .find_map(|l| l.strip_prefix("v1: digest: "))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let info = reg.inspect("fresh:v1", None);
    assert_eq!(info["Digest"].as_str().unwrap(), fresh_digest);
    assert_eq!(info["Layers"].as_array().unwrap().len(), 1);
    let real = Dockerd::start();
    let out = real.docker(&["pull", &fresh]);
    assert!(out.contains(&format!("Digest: {fresh_digest}")), "{out}");
    let real_id = real.docker(&["image", "inspect", "--format", "{{.Id}}", &fresh]);
    assert_eq!(real_id.trim(), id);
    // And the native CLI pulls and pushes too.
    w.ok(&["rmi", &img, &other]);
    let o = w.wharf(&["pull", &img], None);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.trim_end().ends_with(&img), "{out}");
    let o = w.wharf(&["push", &img], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn multi_arch_index_picks_the_platform() {
    multi_arch_index_picks_the_platform_on(Engine::Distribution);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn multi_arch_index_picks_the_platform_against_wharf_registry() {
    multi_arch_index_picks_the_platform_on(Engine::Wharf);
}

fn multi_arch_index_picks_the_platform_on(engine: Engine) {
    let reg = Registry::start_engine(engine, "127.0.0.1", None, false, &[]);
    let w = Wharfd::start();
    let l = Layout::new(w.dir.path().join("oci"));
    let (amd, _) = l.image(
        "amd64",
        "",
        &[busybox_layer(), layer(&[("etc/arch", b"amd64")])],
        &["/bin/sh"],
    );
    let (arm64, _) = l.image("arm64", "v8", &[layer(&[("etc/arch", b"arm64")])], &["/x"]);
    let (arm, _) = l.image("arm", "v7", &[layer(&[("etc/arch", b"arm")])], &["/x"]);
    let index = l.index(vec![arm64, arm, amd], "multi");
    reg.seed(&l.dir, "multi", "multi:1", None);
    let img = format!("{}/multi:1", reg.host);

    let out = w.ok(&["pull", &img]);
    assert_eq!(digest_line(&out), index, "Docker prints the index's digest");
    assert_eq!(
        w.ok(&["image", "inspect", "--format", "{{.Architecture}}", &img])
            .trim(),
        "amd64"
    );
    assert_eq!(w.ok(&["run", "--rm", &img, "cat", "/etc/arch"]), "amd64");

    w.ok(&["pull", "--platform", "linux/arm64", &img]);
    assert_eq!(
        w.ok(&["image", "inspect", "--format", "{{.Architecture}}", &img])
            .trim(),
        "arm64"
    );
    w.ok(&["pull", "--platform", "linux/arm/v7", &img]);
    assert_eq!(
        w.ok(&["image", "inspect", "--format", "{{.Architecture}}/{{.Variant}}", &img])
            .trim(),
        "arm/v7"
    );
    let e = w.fails(&["pull", "--platform", "linux/s390x", &img]);
    assert!(
        e.contains("no matching manifest for linux/s390x in the manifest list entries"),
        "{e}"
    );
    // `GET /distribution/{name}/json`: the index's descriptor and its platforms, as dockerd
    // answers it (the CLI asks it before `service create`; docker-py's inspect_distribution).
    let (st, _, body) = w.http("GET", &format!("/distribution/{img}/json"), b"");
    assert!(st.contains("200"), "{st}: {}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["Descriptor"]["digest"], index.as_str());
    assert_eq!(v["Descriptor"]["mediaType"], "application/vnd.oci.image.index.v1+json");
    let plats: Vec<String> = v["Platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap(),
                p["variant"].as_str().map(|x| format!("/{x}")).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(plats, ["linux/arm64/v8", "linux/arm/v7", "linux/amd64"]);
    let (st, _, body) = w.http("GET", &format!("/distribution/{}/multi:nosuch/json", reg.host), b"");
    assert!(st.contains("404"), "{st}: {}", String::from_utf8_lossy(&body));
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn zstd_and_uncompressed_layers_pull_and_push_back_as_gzip() {
    zstd_and_uncompressed_layers_pull_and_push_back_as_gzip_on(Engine::Distribution);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn zstd_and_uncompressed_layers_pull_and_push_back_as_gzip_against_wharf_registry() {
    zstd_and_uncompressed_layers_pull_and_push_back_as_gzip_on(Engine::Wharf);
}

fn zstd_and_uncompressed_layers_pull_and_push_back_as_gzip_on(engine: Engine) {
    let reg = Registry::start_engine(engine, "127.0.0.1", None, false, &[]);
    let w = Wharfd::start();
    let l = Layout::new(w.dir.path().join("oci"));
    let (desc, _) = l.image_with(
        "amd64",
        "",
        &[
            (busybox_layer(), "none"),
            (layer(&[("etc/marker", b"zstd layer")]), "zstd"),
        ],
        &["/bin/sh"],
    );
    // skopeo compresses plain layers on the way to a registry, so the Distribution API is
    // spoken directly here to store them as built.
    upload_raw(&reg.host, "comp/bb", "v1", &l, &desc);
    let img = format!("{}/comp/bb:v1", reg.host);
    let raw =
        run_ok(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{img}")]));
    let seeded: Value = serde_json::from_str(&raw).unwrap();
    let types: Vec<&str> = seeded["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ],
        "the registry holds the layers as built"
    );
    w.ok(&["pull", &img]);
    assert_eq!(w.ok(&["run", "--rm", &img, "cat", "/etc/marker"]), "zstd layer");
    // Pushed back, the layers are Docker's gzip (schema2 has no zstd), with the same diff IDs.
    let back = format!("{}/comp/back:v1", reg.host);
    w.ok(&["tag", &img, &back]);
    let out = w.ok(&["push", &back]);
    assert_eq!(out.matches(": Pushed").count(), 2, "{out}");
    let raw =
        run_ok(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{back}")]));
    let m: Value = serde_json::from_str(&raw).unwrap();
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "{raw}"
        );
    }
    let w2 = Wharfd::start();
    w2.ok(&["pull", &back]);
    assert_eq!(w2.image_id(&back), w.image_id(&img));
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn concurrent_pulls_download_each_layer_once() {
    let reg = Registry::start("127.0.0.1", None, false);
    let w = Wharfd::start();
    let (proxy, digests, img) = throttled_image(&w, &reg, "c/bb", &noise(2 << 20, 3), 2 << 20);
    let pulls: Vec<Child> = (0..3).map(|_| pull_in_background(&w, &img)).collect();
    for p in pulls {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let log = proxy.take_log();
    for d in &digests {
        assert_eq!(blob_gets(&log, d).len(), 1, "{d} downloaded more than once: {log:?}");
    }
    assert_eq!(w.ok(&["run", "--rm", &img, "ls", "/big.bin"]), "/big.bin\n");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn basic_auth_login_pull_and_push() {
    basic_auth_login_pull_and_push_on(Engine::Distribution);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn basic_auth_login_pull_and_push_against_wharf_registry() {
    basic_auth_login_pull_and_push_on(Engine::Wharf);
}

fn basic_auth_login_pull_and_push_on(engine: Engine) {
    let reg = Registry::start_engine(engine, "127.0.0.1", Some(("wharf", "s3cret")), false, &[]);
    let w = Wharfd::start();
    let (layout, _) = busybox_layout(w.dir.path().join("oci"), "v1", "private");
    reg.seed(&layout.dir, "v1", "priv/bb:v1", Some("wharf:s3cret"));
    let img = format!("{}/priv/bb:v1", reg.host);

    let e = w.fails(&["pull", &img]);
    assert!(e.contains("no basic auth credentials"), "{e}");
    let o = w.docker_stdin(
        &["login", "-u", "wharf", "--password-stdin", &reg.host],
        Some(b"wrong\n"),
    );
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("401 Unauthorized"), "{e}");
    let o = w.docker_stdin(
        &["login", "-u", "wharf", "--password-stdin", &reg.host],
        Some(b"s3cret\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Login Succeeded"));
    let cfg = std::fs::read_to_string(w.dir.path().join("docker-config/config.json")).unwrap();
    assert!(cfg.contains(&reg.host), "{cfg}");

    w.ok(&["pull", &img]);
    assert_eq!(w.ok(&["run", "--rm", &img, "cat", "/etc/marker"]), "private");
    let mine = format!("{}/mine/bb:v1", reg.host);
    w.ok(&["tag", &img, &mine]);
    let out = w.ok(&["push", &mine]);
    let d = out
        .lines()
        .find_map(|l| l.strip_prefix("v1: digest: "))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        reg.inspect("mine/bb:v1", Some("wharf:s3cret"))["Digest"]
            .as_str()
            .unwrap(),
        d
    );

    // The native CLI shares the docker CLI's config file.
    let o = w.wharf(&["logout", &reg.host], None);
    assert!(o.status.success());
    let cfg = std::fs::read_to_string(w.dir.path().join("docker-config/config.json")).unwrap();
    assert!(!cfg.contains(&reg.host), "{cfg}");
    w.ok(&["rmi", &img, &mine]);
    let o = w.wharf(&["pull", &img], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no basic auth credentials"));
    let o = w.wharf(
        &["login", "-u", "wharf", "--password-stdin", &reg.host],
        Some(b"s3cret\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = w.wharf(&["pull", &img], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn tls_registry_is_verified_against_certs_d() {
    tls_registry_is_verified_against_certs_d_on(Engine::Distribution);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn tls_registry_is_verified_against_certs_d_against_wharf_registry() {
    tls_registry_is_verified_against_certs_d_on(Engine::Wharf);
}

fn tls_registry_is_verified_against_certs_d_on(engine: Engine) {
    // ::1 is outside Docker's default insecure range (127.0.0.0/8), so TLS is verified.
    let reg = Registry::start_engine(engine, "::1", None, true, &[]);
    let certs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(certs.path().join(&reg.host)).unwrap();
    std::fs::copy(reg.ca(), certs.path().join(&reg.host).join("ca.crt")).unwrap();
    let w = Wharfd::start_with(&["--certs-dir", certs.path().to_str().unwrap()]);
    // skopeo 1.9 cannot name an IPv6 registry, so wharf itself puts the image there.
    let img = format!("{}/tls/bb:v1", reg.host);
    w.import_busybox(&img);
    let out = w.ok(&["push", &img]);
    assert!(out.contains("Pushed"), "{out}");
    w.ok(&["rmi", &img]);
    w.ok(&["pull", &img]);
    assert_eq!(w.ok(&["run", "--rm", &img, "echo", "over tls"]), "over tls\n");
    // Without the CA the certificate is refused...
    let plain = Wharfd::start();
    let e = plain.fails(&["pull", &img]);
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // ...unless the registry is named insecure.
    let insecure = Wharfd::start_with(&["--insecure-registry", &reg.host]);
    insecure.ok(&["pull", &img]);
    let info = insecure.ok(&["info", "--format", "{{json .RegistryConfig.IndexConfigs}}"]);
    assert!(info.contains(&format!("\"Name\":\"{}\"", reg.host)), "{info}");
    assert!(info.contains("\"Secure\":false"), "{info}");
}

// ------------------------------------------------------------------ a hostile proxy

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BlobMode {
    /// Flip a byte.
    Corrupt,
    /// Send half the body once, then behave.
    TruncateOnce,
    /// Always send half the body and hang up.
    Cut,
    /// Send at this many bytes per second.
    Throttle(u64),
}

#[derive(Default)]
struct ProxyState {
    blobs: HashMap<String, BlobMode>,
    truncated: Vec<String>,
    /// Serve every manifest with this Content-Type.
    manifest_type: Option<String>,
    /// Answer everything with a Bearer challenge for this realm.
    realm: Option<String>,
    /// With `realm`: the only bearer token let through (any when `None`).
    token: Option<String>,
    /// (method, path, Range header).
    log: Vec<(String, String, Option<String>)>,
}

struct Proxy {
    host: String,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let host = l.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, up) = (state.clone(), stop.clone(), upstream.to_string());
        std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (st, up) = (st.clone(), up.clone());
                        std::thread::spawn(move || {
                            let _ = Proxy::serve(c, &up, &st);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { host, state, stop }
    }

    fn serve(c: TcpStream, upstream: &str, st: &Mutex<ProxyState>) -> std::io::Result<()> {
        c.set_nonblocking(false)?;
        let mut out = c.try_clone()?;
        let mut r = BufReader::new(c);
        let Some((line, headers)) = read_head(&mut r) else {
            return Ok(());
        };
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut body = vec![
            0u8;
            hget(&headers, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        ];
        r.read_exact(&mut body)?;
        let (realm, token, ctype, blob_mode) = {
            let mut s = st.lock().unwrap();
            s.log.push((
                method.clone(),
                path.clone(),
                hget(&headers, "range").map(str::to_string),
            ));
            let blob = path.rsplit_once("/blobs/").map(|(_, d)| d.to_string());
            let mode = blob.as_ref().and_then(|b| s.blobs.get(b).copied());
            let mode = match (mode, &blob) {
                (Some(BlobMode::TruncateOnce), Some(b)) if method == "GET" => {
                    if s.truncated.contains(b) {
                        None
                    } else {
                        s.truncated.push(b.clone());
                        mode
                    }
                }
                (m, _) if method == "GET" => m,
                _ => None,
            };
            (s.realm.clone(), s.token.clone(), s.manifest_type.clone(), mode)
        };
        if let Some(realm) = realm {
            let authed = hget(&headers, "authorization").is_some_and(|a| match &token {
                Some(t) => a == format!("Bearer {t}"),
                None => a.starts_with("Bearer "),
            });
            if !authed {
                let msg = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
                write!(
                    out,
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"hostile\"\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    msg.len()
                )?;
                out.write_all(msg)?;
                return Ok(());
            }
        }
        let mut up = TcpStream::connect(upstream)?;
        write!(up, "{method} {path} HTTP/1.1\r\n")?;
        for (k, v) in &headers {
            if !k.eq_ignore_ascii_case("connection") {
                write!(up, "{k}: {v}\r\n")?;
            }
        }
        write!(up, "Connection: close\r\n\r\n")?;
        up.write_all(&body)?;
        let mut ur = BufReader::new(up);
        let (status, mut rh) = read_head(&mut ur).unwrap_or_default();
        let mut rbody = Vec::new();
        if method != "HEAD" {
            ur.read_to_end(&mut rbody)?;
        }
        if let (Some(ct), true) = (&ctype, path.contains("/manifests/")) {
            for (k, v) in rh.iter_mut() {
                if k.eq_ignore_ascii_case("content-type") {
                    *v = ct.clone();
                }
            }
        }
        if blob_mode == Some(BlobMode::Corrupt) && !rbody.is_empty() {
            let n = rbody.len();
            rbody[n / 2] ^= 0xff;
        }
        write!(out, "{status}\r\n")?;
        for (k, v) in &rh {
            if !k.eq_ignore_ascii_case("connection") {
                write!(out, "{k}: {v}\r\n")?;
            }
        }
        write!(out, "Connection: close\r\n\r\n")?;
        match blob_mode {
            Some(BlobMode::TruncateOnce) | Some(BlobMode::Cut) => {
                out.write_all(&rbody[..rbody.len() / 2])?;
                out.flush()?;
                let _ = out.shutdown(std::net::Shutdown::Both);
            }
            Some(BlobMode::Throttle(bps)) => {
                let chunk = 16 << 10;
                for c in rbody.chunks(chunk) {
                    out.write_all(c)?;
                    std::thread::sleep(Duration::from_secs_f64(c.len() as f64 / bps as f64));
                }
            }
            _ => out.write_all(&rbody)?,
        }
        Ok(())
    }

    fn set(&self, f: impl FnOnce(&mut ProxyState)) {
        f(&mut self.state.lock().unwrap());
    }

    fn take_log(&self) -> Vec<(String, String, Option<String>)> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn blob_gets(log: &[(String, String, Option<String>)], digest: &str) -> Vec<Option<String>> {
    log.iter()
        .filter(|(m, p, _)| m == "GET" && p.ends_with(&format!("/blobs/{digest}")))
        .map(|(_, _, r)| r.clone())
        .collect()
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn hostile_registries_get_clear_errors_and_lose_nothing() {
    let reg = Registry::start("127.0.0.1", None, false);
    let w = Wharfd::start();
    let (layout, digests) = busybox_layout(w.dir.path().join("oci"), "v1", "hostile");
    reg.seed(&layout.dir, "v1", "h/bb:v1", None);
    let proxy = Proxy::start(&reg.host);
    let img = format!("{}/h/bb:v1", proxy.host);
    let gone = |w: &Wharfd| {
        let o = w.docker(&["image", "inspect", &img]);
        assert!(!o.status.success(), "no image may be registered after a failed pull");
    };

    // A blob whose bytes do not match its digest.
    proxy.set(|s| {
        s.blobs.insert(digests[1].clone(), BlobMode::Corrupt);
    });
    let e = w.fails(&["pull", &img]);
    assert!(
        e.contains(&format!("verification failed for digest {}", digests[1])),
        "{e}"
    );
    gone(&w);

    // A manifest whose media type disagrees with its Content-Type.
    proxy.set(|s| {
        s.blobs.clear();
        s.manifest_type = Some("application/vnd.oci.image.index.v1+json".into());
    });
    let e = w.fails(&["pull", &img]);
    assert!(e.contains("disagrees with its Content-Type"), "{e}");
    gone(&w);

    // A token realm on another host: the credentials stay home.
    let token = Server::start("127.0.0.2", |_, _| ("401 Unauthorized", Vec::new()));
    let token_host = token.host.clone();
    proxy.set(|s| {
        s.manifest_type = None;
        s.realm = Some(format!("http://{token_host}/token"));
    });
    let cfg_dir = w.dir.path().join("docker-config");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("config.json"),
        json!({"auths": {proxy.host.clone(): {"auth": "d2hhcmY6czNjcmV0"}}}).to_string(),
    )
    .unwrap();
    let e = w.fails(&["pull", &img]);
    assert!(e.contains("does not send the registry's credentials there"), "{e}");
    let seen = token.seen();
    assert!(!seen.is_empty(), "the token service was asked");
    for (_, h) in &seen {
        assert!(
            hget(h, "authorization").is_none(),
            "credentials went to another host: {h:?}"
        );
    }
    std::fs::remove_file(cfg_dir.join("config.json")).unwrap();
    gone(&w);

    // A registry that goes away mid-blob: a clean error, and the next pull resumes. (The
    // first layer is in the store already: the failed pulls above extracted and kept it.)
    proxy.set(|s| {
        s.realm = None;
        s.blobs.insert(digests[1].clone(), BlobMode::Cut);
    });
    proxy.take_log();
    let e = w.fails(&["pull", &img]);
    assert!(e.contains(&digests[1]), "{e}");
    gone(&w);
    let partial = w.data_root().join("distribution/partial").join(&digests[1][7..]);
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    assert!(kept > 0, "the partial download is kept for the next attempt");
    proxy.set(|s| {
        s.blobs.clear();
    });
    proxy.take_log();
    w.ok(&["pull", &img]);
    let gets = blob_gets(&proxy.take_log(), &digests[1]);
    assert_eq!(
        gets,
        vec![Some(format!("bytes={kept}-"))],
        "the pull resumed where it stopped"
    );
    assert_eq!(w.ok(&["run", "--rm", &img, "cat", "/etc/marker"]), "hostile");

    // A truncated download is retried from where it broke off, within one pull.
    w.ok(&["rmi", &img]);
    proxy.set(|s| {
        s.blobs.insert(digests[0].clone(), BlobMode::TruncateOnce);
    });
    proxy.take_log();
    w.ok(&["pull", &img]);
    let gets = blob_gets(&proxy.take_log(), &digests[0]);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0], None);
    assert!(
        gets[1]
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-"),
        "{gets:?}"
    );
    assert_eq!(w.ok(&["run", "--rm", &img, "cat", "/etc/marker"]), "hostile");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn kill_9_mid_pull_leaves_no_image_and_the_next_pull_reuses_verified_blobs() {
    let reg = Registry::start("127.0.0.1", None, false);
    let mut w = Wharfd::start();
    let big = noise(6 << 20, 7);
    let (proxy, digests, img) = throttled_image(&w, &reg, "k/bb", &big, 1 << 20);
    let mut pull = pull_in_background(&w, &img);
    let root = w.data_root().join("distribution");
    let small_done = root.join("blobs").join(&digests[0][7..]);
    let big_partial = root.join("partial").join(&digests[1][7..]);
    let start = Instant::now();
    loop {
        let partial = std::fs::metadata(&big_partial).map(|m| m.len()).unwrap_or(0);
        if small_done.exists() && partial > 1 << 20 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the pull did not get going");
        std::thread::sleep(Duration::from_millis(50));
    }
    w.kill9();
    let _ = pull.wait();
    let kept = std::fs::metadata(&big_partial).unwrap().len();
    w.spawn();
    let o = w.docker(&["image", "inspect", &img]);
    assert!(!o.status.success(), "a half-pulled image is not visible");
    assert!(!w.ok(&["images", "-a", "-q"]).contains(char::is_alphanumeric));
    proxy.set(|s| {
        s.blobs.clear();
    });
    proxy.take_log();
    let out = w.ok(&["pull", &img]);
    assert!(out.contains("Pull complete"), "{out}");
    let log = proxy.take_log();
    assert!(
        blob_gets(&log, &digests[0]).is_empty(),
        "the verified blob was downloaded again: {log:?}"
    );
    let big_gets = blob_gets(&log, &digests[1]);
    assert_eq!(big_gets.len(), 1, "{big_gets:?}");
    let from: u64 = big_gets[0]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the big blob was not resumed: {big_gets:?}"));
    assert!(from >= kept.min(1 << 20) && from > 0, "resumed from {from}, had {kept}");
    let sum = w.ok(&["run", "--rm", &img, "sha256sum", "/big.bin"]);
    assert_eq!(format!("sha256:{}", sum.split_whitespace().next().unwrap()), sha(&big));
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn docker_hub_names_go_to_the_configured_mirror() {
    // Only names the mirror has are pulled, so nothing ever leaves for Docker Hub.
    let mirror = Registry::start("127.0.0.1", None, false);
    let w = Wharfd::start_with(&["--registry-mirror", &format!("http://{}", mirror.host)]);
    let (layout, _) = busybox_layout(w.dir.path().join("oci"), "v1", "from the mirror");
    mirror.seed(&layout.dir, "v1", "library/mirrored:v1", None);
    let out = w.ok(&["pull", "mirrored:v1"]);
    assert!(out.contains("v1: Pulling from library/mirrored"), "{out}");
    assert!(out.contains("Status: Downloaded newer image for mirrored:v1"), "{out}");
    assert_eq!(
        w.ok(&["run", "--rm", "mirrored:v1", "cat", "/etc/marker"]),
        "from the mirror"
    );
    let digests = w.ok(&["image", "inspect", "--format", "{{json .RepoDigests}}", "mirrored:v1"]);
    assert!(digests.contains("\"mirrored@sha256:"), "{digests}");
    let info = w.ok(&["info", "--format", "{{json .RegistryConfig.Mirrors}}"]);
    assert!(info.contains(&mirror.host), "{info}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn search_reads_a_registrys_v1_search_api() {
    // Distribution has no v1 search API (Docker Hub's index has): a small server of the test's
    // own answers it, so the daemon's client, its filters and the CLI's table are exercised.
    let srv = Server::start("127.0.0.1", |_, _| {
        let body = json!({"num_results": 3, "query": "bb", "results": [
            {"name": "library/busybox", "description": "Busybox base image.", "star_count": 3000, "is_official": true, "is_automated": false},
            {"name": "someone/bb", "description": "a busybox with a very long description that the table truncates", "star_count": 12, "is_official": false, "is_automated": false},
            {"name": "other/bb", "description": "", "star_count": 0, "is_official": false, "is_automated": false},
        ]});
        ("200 OK", body.to_string().into_bytes())
    });
    let host = srv.host.clone();
    let w = Wharfd::start();
    let out = w.ok(&["search", &format!("{host}/bb")]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STARS") && lines[0].contains("OFFICIAL"),
        "{out}"
    );
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[1].starts_with("library/busybox") && lines[1].contains("[OK]"),
        "{out}"
    );
    assert!(!out.contains("the table truncates"), "{out}");
    let q: Vec<String> = srv.seen().into_iter().map(|(p, _)| p).collect();
    assert!(q.iter().any(|p| p.starts_with("/v1/search?q=bb")), "{q:?}");
    let out = w.ok(&[
        "search",
        "--filter",
        "stars=10",
        "--filter",
        "is-official=false",
        &format!("{host}/bb"),
    ]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("someone/bb"), "{out}");
    let out = w.ok(&["search", "--limit", "1", "--format", "{{.Name}}", &format!("{host}/bb")]);
    assert_eq!(out, "library/busybox\n");
    let e = w.fails(&["search", "--filter", "color=red", &format!("{host}/bb")]);
    assert!(e.contains("invalid filter 'color'"), "{e}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn credential_helpers_keep_the_secrets_for_both_clis() {
    let reg = Registry::start("127.0.0.1", Some(("helped", "pw-in-helper")), false);
    let w = Wharfd::start();
    let (layout, _) = busybox_layout(w.dir.path().join("oci"), "v1", "helped");
    reg.seed(&layout.dir, "v1", "h/bb:v1", Some("helped:pw-in-helper"));
    let img = format!("{}/h/bb:v1", reg.host);
    // A credential helper speaking the docker-credential protocol, keeping one secret in a file.
    let helpers = w.dir.path().join("helper-bin");
    std::fs::create_dir_all(&helpers).unwrap();
    let store = w.dir.path().join("helper-store.json");
    let script = helpers.join("docker-credential-wharftest");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nstore={}\ncase \"$1\" in\n  store) cat > \"$store\" ;;\n  get) read -r server; [ -f \"$store\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}; cat \"$store\" ;;\n  erase) read -r server; rm -f \"$store\" ;;\n  list) echo '{{}}' ;;\nesac\n",
            store.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg_dir = w.dir.path().join("docker-config");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(cfg_dir.join("config.json"), r#"{"credsStore": "wharftest"}"#).unwrap();
    let path = format!("{}:{}", helpers.display(), std::env::var("PATH").unwrap_or_default());
    let cli = |prog: &str, args: &[&str], stdin: Option<&[u8]>| {
        let mut c = Command::new(prog);
        c.args(args)
            .env("PATH", &path)
            .env("DOCKER_HOST", format!("unix://{}", w.sock.display()))
            .env("DOCKER_CONFIG", &cfg_dir);
        output_with_stdin(c, stdin)
    };
    let wharf = bin("wharf").display().to_string();
    let o = cli(
        &wharf,
        &["login", "-u", "helped", "--password-stdin", &reg.host],
        Some(b"pw-in-helper\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stored = std::fs::read_to_string(&store).unwrap();
    assert!(
        stored.contains("pw-in-helper") && stored.contains(&reg.host),
        "{stored}"
    );
    let cfg = std::fs::read_to_string(cfg_dir.join("config.json")).unwrap();
    assert!(
        !cfg.contains("pw-in-helper") && !cfg.contains("auths\": {\""),
        "the secret stays in the helper: {cfg}"
    );
    // Both CLIs read it from the helper.
    let o = cli(&wharf, &["pull", &img], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    w.ok(&["rmi", &img]);
    let o = cli("docker", &["pull", &img], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(&wharf, &["logout", &reg.host], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!store.exists(), "logout erased the secret");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn bearer_challenges_get_scoped_tokens_with_the_credentials() {
    let reg = Registry::start("127.0.0.1", None, false);
    let w = Wharfd::start();
    let (layout, _) = busybox_layout(w.dir.path().join("oci"), "v1", "behind a token");
    reg.seed(&layout.dir, "v1", "t/bb:v1", None);
    let proxy = Proxy::start(&reg.host);
    // A token service on the registry's own host: it grants "tok-42" to wharf:s3cret only.
    let token = Server::start("127.0.0.1", |_, h| {
        if hget(h, "authorization") == Some("Basic d2hhcmY6czNjcmV0") {
            ("200 OK", br#"{"token":"tok-42","expires_in":300}"#.to_vec())
        } else {
            ("401 Unauthorized", Vec::new())
        }
    });
    let token_host = token.host.clone();
    proxy.set(|s| {
        s.realm = Some(format!("http://{token_host}/token"));
        s.token = Some("tok-42".into());
    });
    let img = format!("{}/t/bb:v1", proxy.host);
    let e = w.fails(&["pull", &img]);
    assert!(e.contains("unauthorized"), "{e}");
    let o = w.docker_stdin(
        &["login", "-u", "wharf", "--password-stdin", &proxy.host],
        Some(b"s3cret\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let before = token.seen().len();
    w.ok(&["pull", &img]);
    assert_eq!(w.ok(&["run", "--rm", &img, "cat", "/etc/marker"]), "behind a token");
    let asked = token.seen()[before..].to_vec();
    assert!(!asked.is_empty());
    for (path, h) in &asked {
        assert!(path.contains("service=hostile"), "{path}");
        assert!(path.contains("scope=repository%3At%2Fbb%3Apull"), "{path}");
        assert_eq!(hget(h, "authorization"), Some("Basic d2hhcmY6czNjcmV0"));
    }
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn foreign_layers_come_from_their_urls_and_are_never_pushed() {
    let reg = Registry::start("127.0.0.1", None, false);
    let w = Wharfd::start();
    // The foreign layer's bytes live on a server of their own.
    let plain = layer(&[("etc/marker", b"foreign")]);
    let foreign = gz(&plain);
    let fd = sha(&foreign);
    let body = foreign.clone();
    let srv = Server::start("127.0.0.1", move |_, _| ("200 OK", body.clone()));
    let url = format!("http://{}/layers/foreign.tar.gz", srv.host);
    let l = Layout::new(w.dir.path().join("oci"));
    let (desc, _) = l.image("amd64", "", &[busybox_layer()], &["/bin/sh"]);
    let read = |d: &str| std::fs::read(l.dir.join("blobs/sha256").join(&d[7..])).unwrap();
    let mut m: Value = serde_json::from_slice(&read(desc["digest"].as_str().unwrap())).unwrap();
    let mut cfg: Value = serde_json::from_slice(&read(m["config"]["digest"].as_str().unwrap())).unwrap();
    cfg["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(json!(sha(&plain)));
    cfg["history"]
        .as_array_mut()
        .unwrap()
        .push(json!({"created_by": "foreign"}));
    let (cd, cn) = l.blob(serde_json::to_string(&cfg).unwrap().as_bytes());
    m["config"]["digest"] = json!(cd);
    m["config"]["size"] = json!(cn);
    m["layers"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "digest": fd, "size": foreign.len(), "urls": [url],
    }));
    let (md, mn) = l.blob(serde_json::to_string(&m).unwrap().as_bytes());
    let desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn});
    upload_raw(&reg.host, "f/bb", "v1", &l, &desc);

    let img = format!("{}/f/bb:v1", reg.host);
    w.ok(&["pull", &img]);
    assert_eq!(w.ok(&["run", "--rm", &img, "cat", "/etc/marker"]), "foreign");
    let seen = srv.seen();
    assert_eq!(seen.len(), 1, "fetched once from its URL");
    assert_eq!(hget(&seen[0].1, "authorization"), None, "with no credentials");

    let pushed = format!("{}/f/again:v1", reg.host);
    w.ok(&["tag", &img, &pushed]);
    let out = w.ok(&["push", &pushed]);
    assert!(out.contains("Skipped foreign layer"), "{out}");
    let raw =
        run_ok(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{pushed}")]));
    let pm: Value = serde_json::from_str(&raw).unwrap();
    let last = &pm["layers"][1];
    assert_eq!(
        last["mediaType"], "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "{raw}"
    );
    assert_eq!(last["urls"], json!([url]), "{raw}");
    assert_eq!(last["digest"], json!(fd), "{raw}");
    let (st, _, _) = http(&reg.host, "HEAD", &format!("/v2/f/again/blobs/{fd}"), "text/plain", b"");
    assert_eq!(st, 404, "the foreign layer was not uploaded");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn all_tags_both_ways_and_unreachable_registries() {
    all_tags_both_ways_and_unreachable_registries_on(Engine::Distribution);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn all_tags_both_ways_and_unreachable_registries_against_wharf_registry() {
    all_tags_both_ways_and_unreachable_registries_on(Engine::Wharf);
}

fn all_tags_both_ways_and_unreachable_registries_on(engine: Engine) {
    let reg = Registry::start_engine(engine, "127.0.0.1", None, false, &[]);
    let w = Wharfd::start();
    let (layout, _) = busybox_layout(w.dir.path().join("oci"), "v1", "tags");
    reg.seed(&layout.dir, "v1", "tags/bb:v1", None);
    reg.seed(&layout.dir, "v1", "tags/bb:v2", None);
    let repo = format!("{}/tags/bb", reg.host);
    let out = w.ok(&["pull", "-a", &repo]);
    assert!(
        out.contains("v1: Pulling from tags/bb") && out.contains("v2: Pulling from tags/bb"),
        "{out}"
    );
    let tags = w.ok(&["images", "--format", "{{.Tag}}", &repo]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);

    let other = format!("{}/alltags/bb", reg.host);
    w.ok(&["tag", &format!("{repo}:v1"), &format!("{other}:a")]);
    w.ok(&["tag", &format!("{repo}:v1"), &format!("{other}:b")]);
    let out = w.ok(&["push", "-a", &other]);
    assert!(
        out.contains("a: digest: sha256:") && out.contains("b: digest: sha256:"),
        "{out}"
    );
    let listed: Value = serde_json::from_str(&run_ok(Command::new("skopeo").args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{other}"),
    ])))
    .unwrap();
    let mut got: Vec<String> = serde_json::from_value(listed["Tags"].clone()).unwrap();
    got.sort();
    assert_eq!(got, ["a", "b"]);

    // Nothing listens here: a clear error, and nothing changes.
    let before = w.ok(&["images", "-a", "-q", "--no-trunc"]);
    let port = free_port("127.0.0.1");
    let e = w.fails(&["pull", &format!("127.0.0.1:{port}/gone:v1")]);
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && e.contains("Connection refused"),
        "{e}"
    );
    assert_eq!(w.ok(&["images", "-a", "-q", "--no-trunc"]), before);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn a_pulled_layer_is_pushed_as_it_came_and_forgotten_with_its_image() {
    let from = Registry::start("127.0.0.1", None, false);
    let to = Registry::start_engine(Engine::Wharf, "127.0.0.1", None, false, &[]);
    let w = Wharfd::start();
    let (layout, digests) = busybox_layout(w.dir.path().join("oci"), "v1", "kept");
    from.seed(&layout.dir, "v1", "src/bb:v1", None);
    let img = format!("{}/src/bb:v1", from.host);
    w.ok(&["pull", &img]);
    let kept = w.data_root().join("distribution/compressed");
    let mut names: Vec<String> = std::fs::read_dir(&kept)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = digests.iter().map(|d| d[7..].to_string()).collect();
    want.sort();
    assert_eq!(names, want, "the pulled gzip layers are kept");
    // Pushed elsewhere, the layers go as they came: the same digests (wharf's own gzip level
    // differs from the test's, so a recompressed layer would have another).
    let other = format!("{}/dst/bb:v1", to.host);
    w.ok(&["tag", &img, &other]);
    let out = w.ok(&["push", &other]);
    assert_eq!(out.matches("Pushed").count(), 2, "{out}");
    let (st, _, body) = request(
        &to.host,
        "GET",
        "/v2/dst/bb/manifests/v1",
        &[("Accept", "application/vnd.docker.distribution.manifest.v2+json")],
        b"",
    );
    assert_eq!(st, 200);
    let m: Value = serde_json::from_slice(&body).unwrap();
    let pushed: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(pushed, digests.iter().map(String::as_str).collect::<Vec<_>>());
    // A local image's layer, compressed for its first push, is kept for the next.
    let fresh = format!("{}/fresh:v1", to.host);
    let hello = images_dir().join("hello-rootfs.tar");
    w.ok(&["import", hello.to_str().unwrap(), &fresh]);
    w.ok(&["push", &fresh]);
    assert_eq!(std::fs::read_dir(&kept).unwrap().count(), 3);
    // Removing the images forgets their kept layers.
    w.ok(&["rmi", &img, &other, &fresh]);
    let left: Vec<_> = std::fs::read_dir(&kept).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
