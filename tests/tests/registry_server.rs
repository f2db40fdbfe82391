//! wharf's own registry server, `wharf-registry`, where it goes past what the shared registry
//! tests check (those run against it too, in `registry.rs`): Docker's token flow with `docker
//! login` and per-repository rules, the audit log, `kill -9` in the middle of a `docker push`,
//! hostile requests (2,000 idle connections, a slow upload, chunks longer than declared, upload
//! limits, path tricks), quotas, disabled deletes, read-only mode, metrics and health, and a
//! graceful shutdown that finishes the upload in flight.

mod common;
mod oci;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use oci::*;
use serde_json::Value;

/// A configuration file for `wharf-registry serve --config`.
fn config(dir: &Path, text: &str) -> String {
    let p = dir.join("registry.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn htpasswd(dir: &Path, users: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (u, pw) in users {
        out.push_str(run_ok(Command::new("htpasswd").args(["-Bbn", u, pw])).trim_end());
        out.push('\n');
    }
    let p = dir.join("htpasswd");
    std::fs::write(&p, out).unwrap();
    p.display().to_string()
}

fn basic(user: &str, pw: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn docker_login_with_tokens_scopes_rules_and_the_audit_log() {
    let cfgdir = tempfile::tempdir().unwrap();
    let pw = htpasswd(cfgdir.path(), &[("alice", "a-secret"), ("bob", "b-secret")]);
    let audit = cfgdir.path().join("audit.jsonl");
    let cfg = config(
        cfgdir.path(),
        &format!(
            r#"[auth]
htpasswd = "{pw}"
token = true
[[auth.access]]
accounts = ["alice"]
repositories = ["team/*"]
actions = ["pull", "push"]
[[auth.access]]
accounts = ["*"]
repositories = ["team/*"]
actions = ["pull"]
"#
        ),
    );
    let reg = Registry::start_engine(
        Engine::Wharf,
        "127.0.0.1",
        None,
        false,
        &["--config", &cfg, "--audit-log", audit.to_str().unwrap()],
    );
    let host = reg.host.clone();
    // Anonymous: a Bearer challenge naming the built-in token endpoint.
    let (st, h, _) = request(&host, "GET", "/v2/", &[], b"");
    assert_eq!(st, 401);
    let ch = hget(&h, "www-authenticate").unwrap();
    assert_eq!(
        ch,
        format!("Bearer realm=\"http://{host}/token\",service=\"wharf-registry\"")
    );

    let w = Wharfd::start();
    w.import_busybox("bb");
    let img = format!("{host}/team/bb:v1");
    w.ok(&["tag", "bb", &img]);
    let e = w.fails(&["push", &img]);
    assert!(e.to_lowercase().contains("unauthorized") || e.contains("denied"), "{e}");
    let o = w.docker_stdin(&["login", "-u", "alice", "--password-stdin", &host], Some(b"wrong\n"));
    assert!(!o.status.success());
    let o = w.docker_stdin(
        &["login", "-u", "alice", "--password-stdin", &host],
        Some(b"a-secret\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = w.ok(&["push", &img]);
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("v1: digest: "))
        .unwrap_or_else(|| panic!("{out}"))
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    // Outside team/ alice may do nothing.
    let other = format!("{host}/elsewhere/bb:v1");
    w.ok(&["tag", "bb", &other]);
    let e = w.fails(&["push", &other]);
    assert!(e.contains("denied") || e.to_lowercase().contains("unauthorized"), "{e}");
    w.ok(&["rmi", &img, &other]);
    w.ok(&["pull", &img]);
    assert_eq!(
        w.ok(&["run", "--rm", "--network", "none", &img, "echo", "pulled"]),
        "pulled\n"
    );

    // bob's token carries pull only, whatever he asks for.
    let (st, _, b) = request(
        &host,
        "GET",
        "/token?service=wharf-registry&scope=repository:team/bb:pull,push",
        &[("Authorization", &basic("bob", "b-secret"))],
        b"",
    );
    assert_eq!(st, 200);
    let tok = json_of(&b)["token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {tok}");
    let (st, _, _) = request(
        &host,
        "GET",
        &format!("/v2/team/bb/manifests/{digest}"),
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(st, 200);
    let (st, h, _) = request(
        &host,
        "POST",
        "/v2/team/bb/blobs/uploads/",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(st, 401, "a pull-only token cannot push");
    assert!(hget(&h, "www-authenticate")
        .unwrap()
        .contains("scope=\"repository:team/bb:pull,push\""));
    let (st, _, _) = request(
        &host,
        "GET",
        "/token?scope=repository:team/bb:pull",
        &[("Authorization", &basic("bob", "nope"))],
        b"",
    );
    assert_eq!(st, 401, "wrong credentials get no token");
    // A forged token is refused.
    let forged = format!("Bearer {}x", tok);
    let (st, _, _) = request(
        &host,
        "GET",
        "/v2/team/bb/tags/list",
        &[("Authorization", &forged)],
        b"",
    );
    assert_eq!(st, 401);

    // The audit log names who pushed and pulled what.
    let lines: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |action: &str, account: &str, reference: &str| {
        lines.iter().any(|l| {
            l["action"] == action
                && l["account"] == account
                && l["repository"] == "team/bb"
                && l["reference"] == reference
        })
    };
    assert!(has("push", "alice", "v1"), "{lines:?}");
    assert!(has("pull", "alice", "v1"), "{lines:?}");
    assert!(has("pull", "bob", &digest), "{lines:?}");
    assert!(lines
        .iter()
        .all(|l| l["digest"].as_str().is_some_and(|d| d.starts_with("sha256:"))));
}

/// Sizes of the files under `dir`.
fn files_under(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push((p.display().to_string(), e.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
    }
    out
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn kill_9_mid_push_shows_nothing_half_written_and_the_retry_and_gc_finish_the_job() {
    let cfgdir = tempfile::tempdir().unwrap();
    let cfg = config(cfgdir.path(), "upload_max_age = 1\n");
    let mut reg = Registry::start_engine(Engine::Wharf, "127.0.0.1", None, false, &["--config", &cfg]);
    let w = Wharfd::start();
    // 48 MiB that gzip cannot shrink: the push is long enough to be caught in the middle.
    let big = layer(&[("big", &noise(48 << 20, 7))]);
    let tar = w.dir.path().join("big.tar");
    std::fs::write(&tar, big).unwrap();
    let img = format!("{}/big/image:v1", reg.host);
    w.ok(&["import", tar.to_str().unwrap(), &img]);
    let mut push = Command::new("docker")
        .args(["-H", &format!("unix://{}", w.sock.display()), "push", &img])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let uploads = reg.data().join("uploads");
    let start = Instant::now();
    loop {
        let partial = files_under(&uploads)
            .iter()
            .any(|(p, n)| p.ends_with("/data") && *n > 1 << 20);
        if partial {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the push never got under way"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    reg.kill9();
    let _ = push.wait();
    let blobs_after_kill = files_under(&reg.data().join("blobs"));
    let repos_after_kill = files_under(&reg.data().join("repositories"));
    reg.spawn();
    // Nothing of the cut layer is a blob, and no manifest is visible.
    let layer_blobs: Vec<_> = blobs_after_kill.iter().filter(|(_, n)| *n > 1 << 20).collect();
    assert!(
        layer_blobs.is_empty(),
        "a half-written layer is a blob: {layer_blobs:?}"
    );
    assert!(
        !repos_after_kill.iter().any(|(p, _)| p.contains("_manifests")),
        "{repos_after_kill:?}"
    );
    let (st, _, _) = request(&reg.host, "GET", "/v2/big/image/manifests/v1", &[], b"");
    assert_eq!(st, 404);
    let orphans = files_under(&uploads).len();
    assert!(orphans > 0, "the cut session survives the restart until GC");
    // The client's retry succeeds.
    let out = w.ok(&["push", &img]);
    assert!(out.contains("v1: digest: "), "{out}");
    let (st, _, b) = request(&reg.host, "GET", "/v2/big/image/tags/list", &[], b"");
    assert_eq!((st, json_of(&b)["tags"].clone()), (200, serde_json::json!(["v1"])));
    // GC purges the orphaned session (older than upload_max_age) and keeps the image.
    std::thread::sleep(Duration::from_millis(1100));
    let out = run_ok(
        Command::new(bin("wharf-registry"))
            .args(["garbage-collect", "--config", &cfg, "--root"])
            .arg(reg.data()),
    );
    assert!(
        out.contains("upload sessions purged") && !out.contains(" 0 upload sessions purged"),
        "{out}"
    );
    assert!(files_under(&uploads).is_empty(), "{:?}", files_under(&uploads));
    w.ok(&["rmi", &img]);
    w.ok(&["pull", &img]);
}

/// A real Prometheus (Debian's `prometheus`) scraping one target on loopback every second.
struct Prometheus {
    dir: tempfile::TempDir,
    child: std::process::Child,
    addr: String,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: registry\n    static_configs:\n      - targets: [\"{target}\"]\n"),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian's prometheus package; .ci/run installs it)");
        Prometheus { dir, child, addr }
    }

    /// The value of an instant query once it has one (at most 30 s).
    fn wait_for(&self, query: &str) -> String {
        let start = Instant::now();
        loop {
            let url = format!("http://{}/api/v1/query", self.addr);
            let out = Command::new("curl")
                .args(["-sf", "--data-urlencode", &format!("query={query}"), &url])
                .output()
                .unwrap();
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                if let Some(x) = v["data"]["result"][0]["value"][1].as_str() {
                    return x.to_string();
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "prometheus never had {query}: {}",
                std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens `n` connections that send nothing.
fn idle_connections(host: &str, n: usize) -> Vec<TcpStream> {
    (0..n).map(|_| TcpStream::connect(host).unwrap()).collect()
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: runs registries on loopback from built binaries"
)]
fn hostile_requests_get_spec_errors_store_nothing_and_the_server_keeps_serving() {
    let mut reg = Registry::start_engine(Engine::Wharf, "127.0.0.1", None, false, &["--max-upload-bytes", "1000"]);
    let host = reg.host.clone();
    let before = files_under(&reg.data().join("blobs")).len();
    // A chunk longer than its Content-Range: refused, rolled back.
    let (_, h, _) = request(&host, "POST", "/v2/h/x/blobs/uploads/", &[], b"");
    let up = location_path(&h);
    let (st, _, b) = request(&host, "PATCH", &up, &[("Content-Range", "0-9")], &[7u8; 20]);
    assert_eq!(
        (st, error_code(&b).as_str()),
        (400, "SIZE_INVALID"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    // The same in two pieces: the first is written before the second overflows the range.
    let mut c = TcpStream::connect(&host).unwrap();
    write!(
        c,
        "PATCH {up} HTTP/1.1\r\nHost: {host}\r\nContent-Range: 0-9\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    c.write_all(&[7u8; 8]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.write_all(&[7u8; 12]).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("SIZE_INVALID"),
        "{answer}"
    );
    let (st, h, _) = request(&host, "GET", &up, &[], b"");
    assert_eq!(
        (st, hget(&h, "range")),
        (204, Some("0-0")),
        "the long chunk was rolled back"
    );
    // Over the upload limit: 413, nothing kept.
    let (st, _, b) = request(
        &host,
        "PUT",
        &with_query(&up, &format!("digest={}", sha(&[1u8; 2000]))),
        &[],
        &[1u8; 2000],
    );
    assert_eq!((st, error_code(&b).as_str()), (413, "SIZE_INVALID"));
    let (st, _, b) = request(
        &host,
        "POST",
        &format!("/v2/h/x/blobs/uploads/?digest={}", sha(&[1u8; 2000])),
        &[],
        &[1u8; 2000],
    );
    assert_eq!(st, 413, "{}", String::from_utf8_lossy(&b));
    // Path tricks in names and digests.
    let long = "a".repeat(256);
    for name in ["UPPER", "a/../../etc", "..", long.as_str(), "a/./b", "-a"] {
        let (st, _, b) = request(&host, "GET", &format!("/v2/{name}/tags/list"), &[], b"");
        assert_eq!((st, error_code(&b).as_str()), (400, "NAME_INVALID"), "{name}");
    }
    for path in [
        "/v2/h/x/blobs/sha256:..%2f..%2fetc",
        "/v2/h/x/blobs/../../../etc/passwd",
        "/v2/h/x/manifests/sha256:../../x",
    ] {
        let (st, _, _) = request(&host, "GET", path, &[], b"");
        assert!((400..=404).contains(&st), "{path}: {st}");
    }
    assert_eq!(
        files_under(&reg.data().join("blobs")).len(),
        before,
        "nothing was stored"
    );

    // 2,000 idle connections and a slow upload: the server keeps answering.
    let idle = idle_connections(&host, 2000);
    let (_, h, _) = request(&host, "POST", "/v2/h/slow/blobs/uploads/", &[], b"");
    let slow_path = location_path(&h);
    let slow_host = host.clone();
    let slow = std::thread::spawn(move || {
        let mut c = TcpStream::connect(&slow_host).unwrap();
        write!(
            c,
            "PATCH {slow_path} HTTP/1.1\r\nHost: {slow_host}\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        for _ in 0..20 {
            c.write_all(b"s").unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut r = BufReader::new(c);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        s
    });
    let t = Instant::now();
    for _ in 0..20 {
        let (st, _, _) = request(&host, "GET", "/v2/", &[], b"");
        assert_eq!(st, 200);
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "20 requests took {:?} beside idle connections",
        t.elapsed()
    );
    let answer = slow.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(answer.to_lowercase().contains("range: 0-19"), "{answer}");
    drop(idle);
    let d = push_blob(&host, "h/after", b"still serving");
    let (st, _, b) = request(&host, "GET", &format!("/v2/h/after/blobs/{d}"), &[], b"");
    assert_eq!((st, b.as_slice()), (200, &b"still serving"[..]));
    reg.kill9();
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: runs registries on loopback from built binaries"
)]
fn quotas_disabled_deletes_read_only_metrics_and_a_graceful_shutdown() {
    let cfgdir = tempfile::tempdir().unwrap();
    let cfg = config(
        cfgdir.path(),
        "delete = false\n[[quotas]]\nrepositories = [\"small/*\"]\nbytes = 300\n",
    );
    let mut reg = Registry::start_engine(Engine::Wharf, "127.0.0.1", None, false, &["--config", &cfg]);
    let host = reg.host.clone();
    // --delete on the command line enables deletes; the file's `delete = false` is what stays
    // when the flag is absent, so start without the harness's flag here.
    reg.kill9();
    reg.cmd.retain(|a| a != "--delete");
    reg.spawn();
    push_blob(&host, "small/x", &[1u8; 200]);
    let (_, h, _) = request(&host, "POST", "/v2/small/x/blobs/uploads/", &[], b"");
    let (st, _, b) = request(
        &host,
        "PUT",
        &with_query(&location_path(&h), &format!("digest={}", sha(&[2u8; 200]))),
        &[],
        &[2u8; 200],
    );
    assert_eq!((st, error_code(&b).as_str()), (403, "DENIED"), "over the quota");
    let d = push_blob(&host, "large/x", &[2u8; 200]);
    let (st, _, b) = request(&host, "DELETE", &format!("/v2/large/x/blobs/{d}"), &[], b"");
    assert_eq!((st, error_code(&b).as_str()), (405, "UNSUPPORTED"));
    let (dg, _) = push_image(&host, "large/x", "v1", &[]);
    let (st, _, _) = request(&host, "DELETE", &format!("/v2/large/x/manifests/{dg}"), &[], b"");
    assert_eq!(st, 405);

    // Metrics and health.
    let (st, _, b) = request(&host, "GET", "/metrics", &[], b"");
    let m = String::from_utf8_lossy(&b);
    assert_eq!(st, 200);
    assert!(
        m.contains("registry_http_requests_total{route=\"upload\",method=\"PUT\",code=\"201\"}"),
        "{m}"
    );
    assert!(
        m.contains("registry_http_requests_total{route=\"upload\",method=\"PUT\",code=\"403\"}"),
        "{m}"
    );
    assert!(
        m.contains("registry_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"manifest\"}"),
        "{m}"
    );
    let (st, _, _) = request(&host, "GET", "/health", &[], b"");
    assert_eq!(st, 200);
    // A real Prometheus scrapes it and answers queries about it.
    let prom = Prometheus::start(&host);
    let v = prom.wait_for("registry_http_requests_total{route=\"upload\",method=\"PUT\",code=\"403\"}");
    assert_eq!(v, "1", "one PUT was over the quota");
    drop(prom);

    // SIGTERM with an upload in flight: it finishes, then the server exits.
    let (_, h, _) = request(&host, "POST", "/v2/large/y/blobs/uploads/", &[], b"");
    let path = location_path(&h);
    let mut c = TcpStream::connect(&host).unwrap();
    write!(
        c,
        "PATCH {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhalf."
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = reg.child.as_ref().unwrap().id().to_string();
    run_ok(Command::new("kill").args(["-TERM", &pid]));
    std::thread::sleep(Duration::from_millis(300));
    assert!(TcpStream::connect(&host).is_err(), "no new connections after SIGTERM");
    c.write_all(b"done.").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let st = wait_timeout(reg.child.as_mut().unwrap(), Duration::from_secs(10)).expect("exits after draining");
    assert!(st.success(), "{st:?}");
    reg.child = None;

    // Read-only: reads work, writes are UNSUPPORTED.
    reg.cmd.push("--read-only".into());
    reg.spawn();
    let (st, _, _) = request(&host, "GET", "/v2/large/x/manifests/v1", &[], b"");
    assert_eq!(st, 200);
    let (st, _, b) = request(&host, "POST", "/v2/large/x/blobs/uploads/", &[], b"");
    assert_eq!((st, error_code(&b).as_str()), (405, "UNSUPPORTED"));
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn the_registry_image_serves_the_seeds_flow_under_wharfd() {
    let w = Wharfd::start();
    let out = target_dir().join("registry-image");
    let o = Command::new("bash")
        .arg(repo_root().join("scripts/registry-image.sh"))
        .arg(&out)
        .arg("wharf-registry:test")
        .env("DOCKER_HOST", format!("unix://{}", w.sock.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A host port the engine picks, so no parallel test can hold it.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "registry",
        "-p",
        "127.0.0.1::5000",
        "wharf-registry:test",
    ]);
    let host = w.ok(&["port", "registry", "5000/tcp"]).trim().to_string();
    let start = Instant::now();
    while request_ok(&host).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            w.ok(&["logs", "registry"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    w.import_busybox("bb");
    let img = format!("{host}/seed/bb:v1");
    w.ok(&["tag", "bb", &img]);
    let pushed = w.ok(&["push", &img]);
    assert!(pushed.contains("v1: digest: sha256:"), "{pushed}");
    let catalog = run_ok(Command::new("curl").args(["-sf", &format!("http://{host}/v2/_catalog")]));
    assert_eq!(
        json_of(catalog.as_bytes()),
        serde_json::json!({"repositories": ["seed/bb"]})
    );
    let tags = run_ok(Command::new("curl").args(["-sf", &format!("http://{host}/v2/seed/bb/tags/list")]));
    assert_eq!(
        json_of(tags.as_bytes()),
        serde_json::json!({"name": "seed/bb", "tags": ["v1"]})
    );
    w.ok(&["rmi", &img]);
    w.ok(&["pull", &img]);
    w.ok(&["rm", "-f", "registry"]);
}

/// `GET /v2/` answered 200, if the server is up.
fn request_ok(host: &str) -> Option<()> {
    let mut c = TcpStream::connect(host).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(c, "GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut s = String::new();
    c.read_to_string(&mut s).ok()?;
    s.starts_with("HTTP/1.1 200").then_some(())
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn pull_through_cache_fills_from_the_remote_and_serves_once_it_is_gone() {
    let mut upstream = Registry::start("127.0.0.1", Some(("up", "up-pw")), false);
    let w = Wharfd::start();
    let (layout, _) = busybox_layout(w.dir.path().join("oci"), "v1", "from upstream");
    upstream.seed(&layout.dir, "v1", "stand/bb:v1", Some("up:up-pw"));
    let cfgdir = tempfile::tempdir().unwrap();
    let cfg = config(
        cfgdir.path(),
        &format!(
            "[proxy]\nremoteurl = \"http://{}\"\nusername = \"up\"\npassword = \"up-pw\"\n",
            upstream.host
        ),
    );
    let cache = Registry::start_engine(Engine::Wharf, "127.0.0.1", None, false, &["--config", &cfg]);
    let img = format!("{}/stand/bb:v1", cache.host);
    let out = w.ok(&["pull", &img]);
    let digest = digest_line(&out);
    assert_eq!(
        w.ok(&["run", "--rm", "--network", "none", &img, "cat", "/etc/marker"]),
        "from upstream"
    );
    // What was pulled is in the cache's own storage now: manifest, config and both layers.
    let blobs = files_under(&cache.data().join("blobs"));
    assert!(blobs.len() >= 4, "{blobs:?}");
    // The cache takes no pushes.
    let mine = format!("{}/stand/mine:v1", cache.host);
    w.ok(&["tag", &img, &mine]);
    let e = w.fails(&["push", &mine]);
    assert!(e.to_lowercase().contains("unsupported"), "{e}");
    // With the remote gone, what was cached is still served, by tag and by digest.
    upstream.kill9();
    w.ok(&["rmi", &img, &mine]);
    let out = w.ok(&["pull", &img]);
    assert_eq!(digest_line(&out), digest);
    let by_digest = format!("{}/stand/bb@{digest}", cache.host);
    w.ok(&["pull", &by_digest]);
    assert_eq!(
        w.ok(&["run", "--rm", "--network", "none", &img, "cat", "/etc/marker"]),
        "from upstream"
    );
    // What was never cached is an error, not a hang.
    let (st, _, _) = request(&cache.host, "GET", "/v2/stand/other/manifests/v1", &[], b"");
    assert!(st == 503 || st == 404, "{st}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: runs registries on loopback from built binaries"
)]
fn stale_sessions_are_purged_while_serving_and_a_rate_limit_answers_toomanyrequests() {
    let cfgdir = tempfile::tempdir().unwrap();
    let cfg = config(
        cfgdir.path(),
        "upload_max_age = 1\nupload_purge_interval = 1\n[rate_limit]\nrequests_per_second = 2.0\nburst = 6\n",
    );
    let reg = Registry::start_engine(Engine::Wharf, "127.0.0.1", None, false, &["--config", &cfg]);
    let (st, h, _) = request(&reg.host, "POST", "/v2/p/x/blobs/uploads/", &[], b"");
    assert_eq!(st, 202);
    let up = location_path(&h);
    let mut codes = Vec::new();
    for _ in 0..10 {
        let (st, h, b) = request(&reg.host, "GET", "/v2/", &[], b"");
        if st == 429 {
            assert_eq!(error_code(&b), "TOOMANYREQUESTS");
            assert_eq!(hget(&h, "retry-after"), Some("1"));
        }
        codes.push(st);
    }
    assert!(codes.contains(&200) && codes.contains(&429), "{codes:?}");
    let (st, _, _) = request(&reg.host, "GET", "/health", &[], b"");
    assert_eq!(st, 200, "health is never limited");
    // The session, older than a second, is gone within the next purge.
    std::thread::sleep(Duration::from_millis(3500));
    let (st, _, b) = request(&reg.host, "GET", &up, &[], b"");
    assert_eq!((st, error_code(&b).as_str()), (404, "BLOB_UPLOAD_UNKNOWN"));
    assert!(files_under(&reg.data().join("uploads")).is_empty());
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn tls_and_tokens_together_for_docker_login_push_pull_and_skopeo() {
    let cfgdir = tempfile::tempdir().unwrap();
    let pw = htpasswd(cfgdir.path(), &[("alice", "a-secret")]);
    let reg = Registry::start_engine(Engine::Wharf, "127.0.0.1", None, true, &["--htpasswd", &pw, "--token"]);
    // The challenge names the token endpoint over https.
    let certs = reg.dir.path().join("skopeo-certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(reg.ca(), certs.join("ca.crt")).unwrap();
    let ca = reg.ca().display().to_string();
    let head = run_ok(
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-D", "-", "--cacert", &ca])
            .arg(format!("https://{}/v2/", reg.host)),
    );
    assert!(
        head.contains(&format!("realm=\"https://{}/token\"", reg.host)),
        "{head}"
    );
    // docker login, push and pull through wharfd, over TLS (loopback: as Docker, unverified).
    let w = Wharfd::start();
    let o = w.docker_stdin(
        &["login", "-u", "alice", "--password-stdin", &reg.host],
        Some(b"a-secret\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = format!("{}/secure/bb:v1", reg.host);
    w.import_busybox(&img);
    let out = w.ok(&["push", &img]);
    assert!(out.contains("v1: digest: sha256:"), "{out}");
    w.ok(&["rmi", &img]);
    w.ok(&["pull", &img]);
    assert_eq!(
        w.ok(&["run", "--rm", "--network", "none", &img, "echo", "tls and tokens"]),
        "tls and tokens\n"
    );
    // skopeo verifies the certificate against the CA and trades the credentials for a token.
    let (layout, _) = busybox_layout(w.dir.path().join("oci"), "v1", "by skopeo");
    run_ok(
        Command::new("skopeo")
            .args([
                "copy",
                "-q",
                &format!("--dest-cert-dir={}", certs.display()),
                "--dest-creds=alice:a-secret",
            ])
            .arg(format!("oci:{}:v1", layout.dir.display()))
            .arg(format!("docker://{}/secure/sk:v1", reg.host)),
    );
    let info = run_ok(
        Command::new("skopeo")
            .args([
                "inspect",
                &format!("--cert-dir={}", certs.display()),
                "--creds=alice:a-secret",
            ])
            .arg(format!("docker://{}/secure/sk:v1", reg.host)),
    );
    assert_eq!(json_of(info.as_bytes())["Layers"].as_array().unwrap().len(), 2);
    // Without credentials skopeo gets nothing.
    let o = Command::new("skopeo")
        .args(["inspect", &format!("--cert-dir={}", certs.display())])
        .arg(format!("docker://{}/secure/sk:v1", reg.host))
        .output()
        .unwrap();
    assert!(!o.status.success());
}
