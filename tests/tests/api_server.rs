//! The API server against hostile or unusual clients, over raw sockets and the real docker CLI:
//! half-closed connections, bodies in one-byte chunks, uploads to routes that answer with an
//! error before reading them, and TCP listeners with TLS (`--tls`, `--tlsverify`).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Wharfd;

/// The first line of an HTTP answer.
fn status_line(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn a_half_closed_client_gets_its_answer() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    for i in 0..20 {
        let body = r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}"#;
        let mut s = UnixStream::connect(&w.sock).unwrap();
        write!(
            s,
            "POST /containers/create?name=half{i} HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // As `nc -U` does: the request is out, the sending side is closed.
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        assert!(
            status_line(&raw).contains(" 201 "),
            "request {i}: {:?}",
            String::from_utf8_lossy(&raw)
        );
    }
    assert_eq!(w.ok(&["ps", "-aq"]).lines().count(), 20);
}

/// Peak resident memory of a process, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn bodies_in_one_byte_chunks_cost_their_size() {
    let w = Wharfd::start();
    let pid = w.child.as_ref().unwrap().id();
    // 10 requests in parallel, each a body of 256 KiB sent as one-byte chunks: 2.6 MB of data
    // in 2.6 million chunks. Kept as a record per chunk they cost ~85 MB; copied, a few MB.
    const SIZE: usize = 256 << 10;
    let mut wire = Vec::with_capacity(SIZE * 6 + 5);
    for _ in 0..SIZE {
        wire.extend_from_slice(b"1\r\nX\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let wire = std::sync::Arc::new(wire);
    let before = peak_kib(pid);
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let sock = w.sock.clone();
            let wire = wire.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&sock).unwrap();
                s.write_all(
                    b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
                s.write_all(&wire).unwrap();
                let mut raw = Vec::new();
                s.read_to_end(&mut raw).unwrap();
                status_line(&raw)
            })
        })
        .collect();
    for t in threads {
        let st = t.join().unwrap();
        // Not JSON: refused, after the whole body was read.
        assert!(st.contains(" 400 "), "{st}");
    }
    let grew = peak_kib(pid).saturating_sub(before);
    assert!(
        grew < 40 << 10,
        "the daemon's peak memory grew by {grew} KiB for 2.6 MB of bodies"
    );
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn an_error_answer_reaches_a_client_still_sending() {
    let w = Wharfd::start();
    // 8 MB to a route that does not exist: the answer comes before the body is read.
    let body = vec![b'x'; 8 << 20];
    let mut s = UnixStream::connect(&w.sock).unwrap();
    write!(
        s,
        "POST /no/such/route HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut reader = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || s.write_all(&body).map(|_| s));
    let mut head = [0u8; 512];
    reader.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let n = reader.read(&mut head).unwrap();
    let answer = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    assert!(
        answer.contains("page not found") || answer.contains("message"),
        "{answer}"
    );
    // The rest of the upload is read and discarded: the sender finishes without a broken pipe.
    let sent = sender.join().unwrap();
    assert!(sent.is_ok(), "the client could not finish sending: {:?}", sent.err());

    // The docker CLI's own upload, refused before the daemon reads it (a read-only root): the
    // CLI shows the daemon's error, not `write: broken pipe`.
    w.import_busybox("busybox:latest");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "ro",
        "--read-only",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big");
    std::fs::write(&src, vec![0u8; 8 << 20]).unwrap();
    let err = w.fails(&["cp", src.to_str().unwrap(), "ro:/tmp/"]);
    assert!(err.contains("read-only"), "{err}");
    assert!(!err.contains("broken pipe"), "{err}");
    w.ok(&["rm", "-f", "ro"]);
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl in
/// `dir` (`ca.pem`, `server-cert.pem`, `server-key.pem`, `cert.pem`, `key.pem`).
fn make_certs(dir: &Path, ca_name: &str) {
    let sh = format!(
        "set -e; cd '{d}'
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 2 -subj /CN={ca_name}
        openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr -subj /CN=localhost
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > s.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 2 -extfile s.cnf
        openssl req -newkey rsa:2048 -nodes -keyout key.pem -out client.csr -subj /CN=client
        printf 'extendedKeyUsage=clientAuth\\n' > c.cnf
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 2 -extfile c.cnf",
        d = dir.display()
    );
    let o = Command::new("sh").args(["-c", &sh]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The docker CLI against `host` with `args` before the command; its output.
fn docker_tcp(host: &str, env: &[(&str, &Path)], args: &[&str]) -> std::process::Output {
    let mut c = Command::new("docker");
    c.arg("-H")
        .arg(host)
        .args(args)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_TLS_VERIFY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.env(
        "DOCKER_CONFIG",
        env.first().map(|(_, v)| v.join("cfg")).unwrap_or_default(),
    );
    c.output().unwrap()
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn tls_listeners_let_in_only_clients_the_ca_signed() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path(), "wharf-test-ca");
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path(), "another-ca");
    let port = free_port();
    let host = format!("tcp://127.0.0.1:{port}");
    let p = |n: &str| certs.path().join(n).display().to_string();
    let w = Wharfd::start_with(&[
        "-H",
        &host,
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("server-cert.pem"),
        "--tlskey",
        &p("server-key.pem"),
    ]);
    w.import_busybox("busybox:latest");
    let ours = [("DOCKER_CERT_PATH", certs.path())];
    // The docker CLI with a certificate the CA signed: in, hijacked streams included.
    let o = docker_tcp(
        &host,
        &ours,
        &["--tlsverify", "version", "--format", "{{.Server.APIVersion}}"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1.50");
    let o = docker_tcp(
        &host,
        &ours,
        &[
            "--tlsverify",
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "echo",
            "over tls",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "over tls");
    // A client certificate from another CA: refused in the handshake.
    let theirs = tempfile::tempdir().unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(other.path().join(f), theirs.path().join(f)).unwrap();
    }
    std::fs::copy(certs.path().join("ca.pem"), theirs.path().join("ca.pem")).unwrap();
    let o = docker_tcp(&host, &[("DOCKER_CERT_PATH", theirs.path())], &["--tlsverify", "ps"]);
    assert!(!o.status.success(), "a certificate of another CA got in");
    // No client certificate at all (curl trusting the server): refused.
    let o = Command::new("curl")
        .args([
            "-s",
            "--cacert",
            &p("ca.pem"),
            &format!("https://127.0.0.1:{port}/_ping"),
        ])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "a client without a certificate got: {:?}",
        o.stdout
    );
    // Plain HTTP to the TLS port gets nothing either.
    let o = Command::new("curl")
        .args(["-s", "-m", "5", &format!("http://127.0.0.1:{port}/_ping")])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&o.stdout).trim(), "OK");
    // And curl with the client certificate: in.
    let o = Command::new("curl")
        .args([
            "-s",
            "--cacert",
            &p("ca.pem"),
            "--cert",
            &p("cert.pem"),
            "--key",
            &p("key.pem"),
            &format!("https://127.0.0.1:{port}/_ping"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "OK");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn plain_tcp_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let o = Command::new(common::bin("wharfd"))
        .args([
            "--data-root",
            dir.path().join("d").to_str().unwrap(),
            "--exec-root",
            dir.path().join("e").to_str().unwrap(),
            "--config-file",
            dir.path().join("none.json").to_str().unwrap(),
            "--bridge",
            "none",
            "-H",
            &format!("tcp://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refusing to listen on tcp://127.0.0.1") && err.contains("--tlsverify"),
        "{err}"
    );
}
