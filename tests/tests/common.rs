//! Harness for end-to-end tests: a real `wharfd` on its own data root, exec root and socket,
//! driven by the real docker CLI (`/usr/local/bin/docker`) or raw HTTP; everything under one
//! temp directory that is removed when the test ends.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn target_dir() -> PathBuf {
    // .../target/debug/deps/<test-exe>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(p.exists(), "{} is missing: run `cargo build --bins` first", p.display());
    p
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The stand-in image tars from scripts/make-images.sh, built once per machine.
pub fn images_dir() -> PathBuf {
    // Tests of one binary run on several threads: build once per process, under a lock.
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = target_dir().join("test-images");
    if dir.join("busybox-rootfs.tar").exists() && dir.join("hello-rootfs.tar").exists() {
        return dir;
    }
    let tmp = target_dir().join(format!("test-images.tmp{}", std::process::id()));
    let st = Command::new("bash")
        .arg(repo_root().join("scripts/make-images.sh"))
        .arg(&tmp)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "make-images.sh failed");
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp); // another test won the race
    }
    dir
}

/// A cgroup parent of this daemon's own, so tests never touch another engine's cgroups.
fn cgroup_parent(dir: &Path) -> String {
    format!(
        "wharf-e2e-{}",
        dir.file_name().unwrap().to_string_lossy().trim_start_matches("wh-")
    )
}

/// The default bridge of this daemon's own (an interface name of at most 15 bytes).
pub fn bridge_name(dir: &Path) -> String {
    let s: String = dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("wh-")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("whe{s}")
}

/// A number for each daemon this test process starts: its subnets come from it.
fn next_index() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 250
}

/// A /24 for a test's own user-defined network (`k` tells one test's networks apart), clear
/// of every other daemon's the tests run at the same time.
pub fn test_subnet(w: &Wharfd, k: u32) -> String {
    format!("172.{}.{}.0/24", 18 + k, w.index)
}

pub struct Wharfd {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub sock: PathBuf,
    pub extra: Vec<String>,
    /// This daemon's number in the test process.
    pub index: u32,
}

impl Wharfd {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        // Short: unix socket paths below it must stay under 108 bytes.
        let dir = tempfile::Builder::new().prefix("wh-").tempdir_in("/tmp").unwrap();
        let sock = dir.path().join("wharf.sock");
        let mut w = Wharfd {
            dir,
            child: None,
            sock,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            index: next_index(),
        };
        w.spawn();
        w
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--data-root".into(),
            self.data_root().display().to_string(),
            "--exec-root".into(),
            self.dir.path().join("exec").display().to_string(),
            "-H".into(),
            format!("unix://{}", self.sock.display()),
            "--config-file".into(),
            self.dir.path().join("none.json").display().to_string(),
            "--cgroup-parent".into(),
            cgroup_parent(self.dir.path()),
            "--bridge".into(),
            bridge_name(self.dir.path()),
            "--bip".into(),
            // A /24 of its own, distinct from every other daemon running beside it.
            format!("10.{}.{}.1/24", 100 + std::process::id() % 90, self.index),
        ];
        a.extend(self.extra.iter().cloned());
        a
    }

    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join(format!("wharfd-{}.log", now_ms()))).unwrap();
        let child = Command::new(bin("wharfd"))
            .args(self.args())
            // Test traffic stays on this host: anything bound for a registry elsewhere (Docker
            // Hub, when the docker CLI pulls a missing image) goes to a closed loopback port.
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "127.0.0.0/8,localhost,::1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_socket(&self.sock, self.child.as_mut().unwrap());
    }

    /// SIGTERM and wait; asserts a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let st = wait_timeout(&mut c, Duration::from_secs(15));
            assert!(
                st.is_some_and(|s| s.success()),
                "wharfd did not exit cleanly on SIGTERM: {st:?}"
            );
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_stdin(args, None)
    }

    pub fn docker_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_API_VERSION");
        output_with_stdin(cmd, stdin)
    }

    /// Runs docker under a real terminal (util-linux `script`), feeding `input` in steps: each
    /// step waits its delay, then writes its bytes. Returns the exit status and what the
    /// terminal showed.
    pub fn docker_pty(&self, args: &[&str], input: &[(Duration, &[u8])]) -> (Option<i32>, String) {
        let cmd = std::iter::once("docker")
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut c = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env("TERM", "xterm")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("util-linux script");
        let mut stdin = c.stdin.take().unwrap();
        let steps: Vec<(Duration, Vec<u8>)> = input.iter().map(|(d, b)| (*d, b.to_vec())).collect();
        let feeder = std::thread::spawn(move || {
            for (d, b) in steps {
                std::thread::sleep(d);
                if stdin.write_all(&b).is_err() {
                    return;
                }
            }
            // Hold the terminal open a moment so the last bytes are read before EOF.
            std::thread::sleep(Duration::from_secs(2));
        });
        let st = wait_timeout(&mut c, Duration::from_secs(30));
        if st.is_none() {
            let _ = c.kill();
        }
        let o = c.wait_with_output().unwrap();
        let _ = feeder.join();
        (
            st.and_then(|s| s.code()),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    }

    /// Runs the native `wharf` CLI against this daemon (through `DOCKER_HOST`, as users set it).
    pub fn wharf(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(bin("wharf"));
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("WHARF_HOST");
        output_with_stdin(cmd, stdin)
    }

    /// Runs docker and returns stdout; panics with stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs docker expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            !o.status.success(),
            "docker {args:?} should have failed: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stderr).unwrap()
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(".log") {
                    s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        s
    }

    /// A raw HTTP/1.1 request; returns (status line, headers, body).
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> (String, Vec<(String, String)>, Vec<u8>) {
        http_unix(&self.sock, method, path, body)
    }

    /// Import the busybox stand-in under `name`.
    pub fn import_busybox(&self, name: &str) -> String {
        let tar = images_dir().join("busybox-rootfs.tar");
        self.ok(&["import", "-c", "CMD [\"/bin/sh\"]", tar.to_str().unwrap(), name])
            .trim()
            .to_string()
    }

    /// The cgroup parent this daemon puts containers under.
    pub fn cgroup_parent(&self) -> String {
        cgroup_parent(self.dir.path())
    }

    pub fn image_id(&self, name: &str) -> String {
        self.ok(&["image", "inspect", "--format", "{{.Id}}", name])
            .trim()
            .to_string()
    }
}

impl Drop for Wharfd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            if wait_timeout(&mut c, Duration::from_secs(10)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // Containers left running (live restore keeps them) and their shims go too.
        kill_cgroups(&cgroup_parent(self.dir.path()));
        let _ = Command::new("pkill")
            .arg("-9")
            .arg("-f")
            .arg(format!("wharf-shim {}", self.dir.path().display()))
            .status();
        std::thread::sleep(Duration::from_millis(100));
        unmount_below(self.dir.path());
        remove_cgroups(&cgroup_parent(self.dir.path()));
        // Bridges and the nftables table stay when containers were left running (live restore).
        let br = bridge_name(self.dir.path());
        let mut links = vec![br.clone()];
        if let Ok(rd) = std::fs::read_dir(self.data_root().join("network")) {
            for e in rd.flatten() {
                let v: serde_json::Value = std::fs::read(e.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                if let Some(b) = v["bridge"].as_str().filter(|b| !b.is_empty()) {
                    links.push(b.to_string());
                }
            }
        }
        for l in links {
            let _ = Command::new("ip")
                .args(["link", "del", &l])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &format!("wharf_{br}")])
            .stderr(Stdio::null())
            .status();
    }
}

/// Every cgroup directory named `parent` (and below) in every mounted hierarchy.
fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for r in roots {
        let p = r.join(parent);
        if p.is_dir() {
            out.push(p);
        }
    }
    out
}

pub fn kill_cgroups(parent: &str) {
    for p in cgroup_dirs(parent) {
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                // A frozen process takes its SIGKILL only once thawed (v1 freezer, v2 freeze).
                let _ = std::fs::write(e.path().join("freezer.state"), "THAWED");
                let _ = std::fs::write(e.path().join("cgroup.freeze"), "0");
                let procs = std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines() {
                    let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
                }
            }
        }
    }
}

pub fn remove_cgroups(parent: &str) {
    for p in cgroup_dirs(parent) {
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&p);
    }
}

/// Run `cmd` to completion, feeding `stdin` (or nothing), capturing stdout and stderr.
pub fn output_with_stdin(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    let mut c = cmd
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    if let Some(data) = stdin {
        let mut s = c.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = s.write_all(&data);
        });
    }
    c.wait_with_output().unwrap()
}

pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Lazily unmount anything still mounted below `dir` (deepest first).
pub fn unmount_below(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(p).status();
    }
}

pub fn wait_timeout(c: &mut Child, d: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < d {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

pub fn wait_for_socket(sock: &Path, child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if UnixStream::connect(sock).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("daemon exited before listening: {st}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("daemon did not listen on {} in time", sock.display());
}

pub fn http_unix(sock: &Path, method: &str, path: &str, body: &[u8]) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut s = UnixStream::connect(sock).unwrap();
    // JSON bodies say so, as every client does (dockerd refuses them otherwise).
    let json = matches!(body.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['));
    let ctype = if json { "Content-Type: application/json\r\n" } else { "" };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: docker\r\n{ctype}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked") {
        body = dechunk(&body);
    }
    (status, headers, body)
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
    out
}

pub fn header<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
    h.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

/// Every file name below `dir`, relative, sorted (for "nothing left behind" checks).
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap().display().to_string());
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(base, &p, out);
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The real dockerd on its own socket, data root, exec root, pidfile and cgroup parent, with no
/// bridge and no iptables rules; stopped and cleaned up on drop (its cgroup parent too: dockerd
/// leaves the directories it made, and its default `/docker` is a host dockerd's).
pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        let dockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("dockerd is required for interop tests: apt-get install docker.io (.ci/run does)");
        let dir = tempfile::Builder::new().prefix("wharf-dockerd-").tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).display().to_string();
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        std::fs::write(dir.path().join("none.json"), b"{}").unwrap();
        let mut child = Command::new(dockerd)
            .args([
                "--data-root",
                &p("data"),
                "--exec-root",
                &p("exec"),
                "--pidfile",
                &p("dockerd.pid"),
                "-H",
                &format!("unix://{}", p("docker.sock")),
                "--bridge",
                "none",
                "--iptables=false",
                "--ip-masq=false",
                "--config-file",
                &p("none.json"),
                "--storage-driver",
                "vfs",
                "--containerd-namespace",
                "wharf-interop",
                "--containerd-plugins-namespace",
                "wharf-interop-p",
                "--cgroup-parent",
                &dockerd_cgroup_parent(dir.path()),
            ])
            .env("XDG_RUNTIME_DIR", p("xdg"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let sock = dir.path().join("docker.sock");
        let start = std::time::Instant::now();
        loop {
            let ok = Command::new("docker")
                .args(["version"])
                .env("DOCKER_HOST", format!("unix://{}", sock.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "dockerd exited: {st}: {}",
                    std::fs::read_to_string(dir.path().join("dockerd.log")).unwrap_or_default()
                );
            }
            assert!(start.elapsed() < Duration::from_secs(60), "dockerd did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        Dockerd {
            dir,
            child: Some(child),
        }
    }

    pub fn docker(&self, args: &[&str]) -> String {
        let o = Command::new("docker")
            .args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.path().join("docker.sock").display()),
            )
            .env("DOCKER_CONFIG", self.dir.path().join("cfg"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "dockerd: docker {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            if wait_timeout(&mut c, Duration::from_secs(20)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // dockerd's managed containerd exits with it; make sure nothing it mounted stays.
        unmount_below(self.dir.path());
        kill_cgroups(&dockerd_cgroup_parent(self.dir.path()));
        remove_cgroups(&dockerd_cgroup_parent(self.dir.path()));
    }
}

/// The cgroup parent of a test's dockerd: its own, named after its directory.
fn dockerd_cgroup_parent(dir: &Path) -> String {
    format!(
        "wharf-interop-{}",
        dir.file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("wharf-dockerd-")
    )
}
