//! What real clients do that the everyday single-container path does not show (the
//! compatibility issue): each case reproduced through the raw API in the order the client that
//! exposed it sends its requests.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::Wharfd;

/// docker-py's `containers.run(..., remove=True)`: start, open a followed log stream, wait,
/// remove, and only then read the stream. Everything the container wrote must arrive.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn a_followed_log_outlives_its_container() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    for round in 0..10 {
        let body = br#"{"Image":"busybox","Cmd":["sh","-c","sleep 0.2; echo hello world"],"HostConfig":{"NetworkMode":"none"}}"#;
        let (st, _, b) = w.http("POST", "/containers/create", body);
        assert!(st.contains(" 201 "), "{st}");
        let id = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_string();
        let (st, _, _) = w.http("POST", &format!("/containers/{id}/start"), b"");
        assert!(st.contains(" 204 "), "{st}");
        let mut logs = UnixStream::connect(&w.sock).unwrap();
        write!(
            logs,
            "GET /containers/{id}/logs?follow=1&stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        // The answer's head arrives at once; the body is read only after the removal.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            logs.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let (st, _, b) = w.http("POST", &format!("/containers/{id}/wait"), b"");
        assert!(st.contains(" 200 "), "{st} {}", String::from_utf8_lossy(&b));
        let (st, _, _) = w.http("DELETE", &format!("/containers/{id}"), b"");
        assert!(st.contains(" 204 "), "{st}");
        logs.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Vec::new();
        logs.read_to_end(&mut raw).unwrap();
        let out = common::dechunk(&raw);
        // One stdout frame: 8 bytes of header, then the line.
        assert!(
            out.windows(12).any(|w| w == b"hello world\n"),
            "round {round}: the log stream lost the output: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

/// Clients list plugins while they set up and stop at a 404: the list is there, and empty.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn plugins_list_empty_and_named_ones_are_not_found() {
    let w = Wharfd::start();
    let out = w.ok(&["plugin", "ls"]);
    assert_eq!(out.lines().count(), 1, "only the header: {out}");
    assert!(out.starts_with("ID"), "{out}");
    let out = w.ok(&["plugin", "ls", "--filter", "enabled=true", "--format", "{{.Name}}"]);
    assert_eq!(out, "");
    let err = w.fails(&["plugin", "inspect", "vieux/sshfs"]);
    assert!(err.contains("not found"), "{err}");
    let (st, _, b) = w.http("GET", "/plugins?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D", b"");
    assert!(st.contains(" 400 "), "{st} {}", String::from_utf8_lossy(&b));
}

/// `docker info` counts the containers by state.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn info_counts_containers() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "run1",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "run2",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]);
    w.ok(&["pause", "run2"]);
    w.ok(&["create", "--name", "made", "--network", "none", "busybox"]);
    w.ok(&["run", "--name", "done", "--network", "none", "busybox", "true"]);
    let out = w.ok(&[
        "info",
        "--format",
        "{{.Containers}} {{.ContainersRunning}} {{.ContainersPaused}} {{.ContainersStopped}}",
    ]);
    assert_eq!(out.trim(), "4 1 1 2");
    w.ok(&["unpause", "run2"]);
    w.ok(&["rm", "-f", "run1", "run2", "made", "done"]);
}

/// `docker version` says which engine answers, besides Docker's own fields.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn version_names_the_engine() {
    let w = Wharfd::start();
    let out = w.ok(&["version"]);
    assert!(out.contains(" wharf:"), "{out}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let names = w.ok(&["version", "--format", "{{range .Server.Components}}{{.Name}} {{end}}"]);
    assert_eq!(names.trim(), "Engine wharf");
}

/// What dockerd refuses at create is a 400 with its words, before anything is looked up (the
/// image named here does not exist); what it normalises reads the same.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn create_validates_as_dockerd() {
    let w = Wharfd::start();
    let cases: [(&str, &str); 6] = [
        (r#"{"Image":"nosuch","Env":["="]}"#, "invalid environment variable: ="),
        (
            r#"{"Image":"nosuch","HostConfig":{"Annotations":{"":"x"}}}"#,
            "the empty string is not permitted as an annotation key",
        ),
        (
            r#"{"Image":"nosuch","Env":["A=1","=x"]}"#,
            "invalid environment variable: =x",
        ),
        (
            r#"{"Image":"nosuch","HostConfig":{"CpuShares":-1}}"#,
            "invalid CPU shares (-1)",
        ),
        (
            r#"{"Image":"nosuch","HostConfig":{"Tmpfs":{"/":""}}}"#,
            "destination can't be '/'",
        ),
        (
            r#"{"Image":"nosuch","HostConfig":{"Tmpfs":{"run":""}}}"#,
            "must be absolute",
        ),
    ];
    for (body, want) in cases {
        let (st, _, b) = w.http("POST", "/containers/create", body.as_bytes());
        let b = String::from_utf8_lossy(&b);
        assert!(st.contains(" 400 "), "{body}: {st} {b}");
        assert!(b.contains(want), "{body}: {b}");
    }
    w.import_busybox("busybox:latest");
    let err = w.fails(&["run", "--rm", "-e", "=x", "busybox", "true"]);
    assert!(err.contains("invalid environment variable: =x"), "{err}");
    // A healthcheck whose test is a bare command is accepted, as dockerd does (and not probed).
    let (st, _, b) = w.http(
        "POST",
        "/containers/create?name=hc",
        br#"{"Image":"busybox","Cmd":["true"],"Healthcheck":{"Test":["true"]}}"#,
    );
    assert!(st.contains(" 201 "), "{st} {}", String::from_utf8_lossy(&b));
    w.ok(&["rm", "hc"]);
    w.ok(&["create", "--name", "wd", "-w", "/tmp/", "busybox"]);
    assert_eq!(w.ok(&["inspect", "-f", "{{.Config.WorkingDir}}", "wd"]).trim(), "/tmp");
    w.ok(&["rm", "wd"]);
}

/// Docker's runtime defaults: namespaced sysctls in a network namespace of the container's
/// own, and the domain name.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn runtime_defaults_as_docker() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--domainname",
        "example.org",
        "busybox",
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ping_group_range /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/domainname",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["0\t2147483647", "0", "example.org"], "{out}");
    // A sysctl the user sets wins.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--sysctl",
        "net.ipv4.ip_unprivileged_port_start=80",
        "busybox",
        "cat",
        "/proc/sys/net/ipv4/ip_unprivileged_port_start",
    ]);
    assert_eq!(out.trim(), "80");
}

/// A JSON body must say it is JSON, as dockerd requires: a `text/plain` create makes nothing.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn json_bodies_must_say_so() {
    let w = Wharfd::start();
    let mut s = UnixStream::connect(&w.sock).unwrap();
    let body = r#"{"Name":"plainvol"}"#;
    write!(
        s,
        "POST /volumes/create HTTP/1.1\r\nHost: d\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 400 "), "{raw}");
    assert!(
        raw.contains("unsupported Content-Type header (text/plain): must be 'application/json'"),
        "{raw}"
    );
    assert_eq!(w.ok(&["volume", "ls", "-q"]), "");
    // With the right type (and a charset) it is made.
    let (st, _, _) = w.http("POST", "/volumes/create", body.as_bytes());
    assert!(st.contains(" 201 "), "{st}");
    assert_eq!(w.ok(&["volume", "ls", "-q"]).trim(), "plainvol");
    // Syntax errors in Go's words; content after the value refused; the body is judged
    // before the object is looked up (a missing container is not a 404 then).
    for (method, path, body, want) in [
        (
            "POST",
            "/containers/create",
            r#"{"Image":"busybox",}"#,
            "invalid JSON: invalid character '}' looking for beginning of object key string",
        ),
        (
            "POST",
            "/volumes/create",
            r#"{"Name":"twice"} {"Name":"x"}"#,
            "unexpected content after JSON",
        ),
        (
            "POST",
            "/containers/nosuch/update",
            r#"{"Memory":1"#,
            "invalid JSON: unexpected EOF",
        ),
        (
            "POST",
            "/containers/nosuch/exec",
            r#"{"Cmd":[true false]}"#,
            "invalid JSON: invalid character 'f' after array element",
        ),
    ] {
        let (st, _, b) = w.http(method, path, body.as_bytes());
        let b = String::from_utf8_lossy(&b);
        assert!(st.contains(" 400 "), "{path}: {st} {b}");
        assert!(b.contains(want), "{path}: {b}");
    }
    assert_eq!(w.ok(&["volume", "ls", "-q"]).trim(), "plainvol");
}

/// Naming a container that does not exist (link, volumes-from, pid or ipc) is the client's
/// error, not a missing image (404) and not a success; resize values are judged first; a
/// stopped container's exec is "not running" (409).
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn references_sizes_and_stopped_execs_answer_as_dockerd() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    for (hc, want) in [
        (r#"{"Links":["nosuch:a"]}"#, "could not get container for nosuch"),
        (r#"{"VolumesFrom":["nosuch"]}"#, "No such container: nosuch"),
        (r#"{"PidMode":"container:nosuch"}"#, "No such container: nosuch"),
        (r#"{"IpcMode":"container:nosuch"}"#, "No such container: nosuch"),
    ] {
        let body = format!(r#"{{"Image":"busybox","HostConfig":{hc}}}"#);
        let (st, _, b) = w.http("POST", "/containers/create", body.as_bytes());
        let b = String::from_utf8_lossy(&b);
        assert!(st.contains(" 400 "), "{hc}: {st} {b}");
        assert!(b.contains(want), "{hc}: {b}");
    }
    assert_eq!(w.ok(&["ps", "-aq"]), "", "nothing was created");
    w.ok(&["create", "--name", "stopped", "busybox", "sleep", "100"]);
    for q in ["", "h=x&w=10", "h=10"] {
        let (st, _, b) = w.http("POST", &format!("/containers/stopped/resize?{q}"), b"");
        let b = String::from_utf8_lossy(&b);
        assert!(
            st.contains(" 400 ") && b.contains("strconv.Atoi: parsing"),
            "{q}: {st} {b}"
        );
    }
    w.ok(&["start", "stopped"]);
    let (st, _, b) = w.http("POST", "/containers/stopped/exec", br#"{"Cmd":["true"]}"#);
    assert!(st.contains(" 201 "), "{st}");
    let exec = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(&["stop", "-t", "0", "stopped"]);
    let (st, _, b) = w.http("POST", &format!("/exec/{exec}/resize?h=10&w=10"), b"");
    let b = String::from_utf8_lossy(&b);
    assert!(st.contains(" 409 ") && b.contains("is not running"), "{st} {b}");
    let (st, _, b) = w.http("POST", &format!("/exec/{exec}/start"), br#"{"Detach":true}"#);
    let b = String::from_utf8_lossy(&b);
    assert!(st.contains(" 409 ") && b.contains("is not running"), "{st} {b}");
    w.ok(&["rm", "stopped"]);
}

/// A volume created without a name is anonymous, so `volume prune` takes it; a named one stays.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn unnamed_volumes_are_anonymous() {
    let w = Wharfd::start();
    let anon = w.ok(&["volume", "create"]).trim().to_string();
    w.ok(&["volume", "create", "kept"]);
    let labels = w.ok(&["volume", "inspect", "-f", "{{json .Labels}}", &anon]);
    assert!(labels.contains("com.docker.volume.anonymous"), "{labels}");
    w.ok(&["volume", "prune", "-f"]);
    assert_eq!(w.ok(&["volume", "ls", "-q"]).trim(), "kept");
}

/// `commit --change 'ENV PATH=/usr/bin:$PATH'` expands the variable, as Docker's builder does.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn commit_changes_expand_variables() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    w.ok(&["create", "--name", "src", "-e", "PATH=/bin", "busybox"]);
    w.ok(&[
        "commit",
        "--change",
        "ENV PATH=/usr/local/bin:$PATH",
        "src",
        "expanded:1",
    ]);
    let env = w.ok(&["image", "inspect", "-f", "{{json .Config.Env}}", "expanded:1"]);
    assert!(env.contains(r#""PATH=/usr/local/bin:/bin""#), "{env}");
    w.ok(&["rm", "src"]);
}

/// References that are no references: `name:sha256:<id>` is a 400 (never "no such image"), and
/// a tag named like a digest algorithm is refused.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn ambiguous_and_invalid_references_are_refused() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    let id = w.image_id("busybox");
    let body = format!(r#"{{"Image":"busybox:{id}"}}"#);
    let (st, _, b) = w.http("POST", "/containers/create", body.as_bytes());
    let b = String::from_utf8_lossy(&b);
    assert!(
        st.contains(" 400 ") && b.contains("invalid reference format"),
        "{st} {b}"
    );
    for target in ["sha256:abc", "sha256"] {
        let err = w.fails(&["tag", "busybox", target]);
        assert!(
            err.contains("refusing to create an ambiguous tag using digest algorithm as name"),
            "{err}"
        );
    }
    w.ok(&["create", "--name", "c1", "busybox"]);
    let err = w.fails(&["commit", "c1", "sha256:x"]);
    assert!(err.contains("ambiguous tag"), "{err}");
    assert!(!w.ok(&["images", "--format", "{{.Repository}}"]).contains("sha256"));
    w.ok(&["rm", "c1"]);
}

/// Lifecycle under cancellation and restarts: a client that hangs up does not abort `stop`
/// or `restart`; a container its policy restarts is `restarting` throughout, never `exited`
/// in between; killing it with its own StopSignal is a stop that the policy respects.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn lifecycle_survives_hangups_and_restarts_read_as_dockerd() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    for verb in ["stop", "restart"] {
        let name = format!("hang{verb}");
        w.ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "trap '' TERM; sleep 1000",
        ]);
        let pid = w.ok(&["inspect", "-f", "{{.State.Pid}}", &name]).trim().to_string();
        let mut s = UnixStream::connect(&w.sock).unwrap();
        write!(
            s,
            "POST /containers/{name}/{verb}?t=1 HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        drop(s); // hung up before the answer
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let st = w.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Pid}}", &name]);
            let done = match verb {
                "stop" => st.trim().starts_with("exited"),
                _ => st.trim().starts_with("running") && st.split_whitespace().nth(1) != Some(pid.as_str()),
            };
            if done {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{verb} was abandoned: {st}");
            std::thread::sleep(Duration::from_millis(100));
        }
        // (The state changes a moment before the event is published, as in dockerd.)
        let filter = format!("container={name}");
        let events = || {
            w.ok(&[
                "events",
                "--since",
                "0",
                "--until",
                "0s",
                "--filter",
                &filter,
                "--format",
                "{{.Action}}",
            ])
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !events().lines().any(|l| l == verb) {
            assert!(std::time::Instant::now() < deadline, "no {verb} event: {}", events());
            std::thread::sleep(Duration::from_millis(50));
        }
        w.ok(&["rm", "-f", &name]);
    }

    // Restarted by its policy: `restarting` from the exit on.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "flap",
        "--network",
        "none",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.3; exit 1",
    ]);
    let mut seen = std::collections::BTreeSet::new();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let (_, _, b) = w.http("GET", "/containers/flap/json", b"");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        seen.insert(v["State"]["Status"].as_str().unwrap_or("").to_string());
    }
    assert!(seen.contains("restarting"), "{seen:?}");
    assert!(
        !seen.contains("exited"),
        "a transient exited between restarts: {seen:?}"
    );
    w.ok(&["rm", "-f", "flap"]);

    // Its own stop signal, sent with kill: down it stays.
    // (PID 1 in its namespace: only a signal it handles ends it.)
    w.ok(&[
        "run",
        "-d",
        "--name",
        "own",
        "--network",
        "none",
        "--restart",
        "always",
        "--stop-signal",
        "USR1",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' USR1; while :; do sleep 0.1; done",
    ]);
    w.ok(&["kill", "-s", "USR1", "own"]);
    std::thread::sleep(Duration::from_millis(1500));
    let st = w.ok(&["inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "own"]);
    assert_eq!(st.trim(), "exited 0");
    w.ok(&["rm", "-f", "own"]);
}

/// Legacy links read as dockerd shows them: `/target:/owner/alias` in inspect, and the target
/// also named `/owner/alias` in the list.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn links_read_as_dockerd() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    w.ok(&["run", "-d", "--name", "lp", "busybox", "sleep", "100"]);
    w.ok(&[
        "run", "-d", "--name", "lc", "--link", "lp:al", "busybox", "sleep", "100",
    ]);
    assert_eq!(
        w.ok(&["inspect", "-f", "{{json .HostConfig.Links}}", "lc"]).trim(),
        r#"["/lp:/lc/al"]"#
    );
    let (_, _, b) = w.http("GET", "/containers/json", b"");
    let list: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let names = |n: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|c| c["Names"][0] == format!("/{n}"))
            .map(|c| c["Names"].clone())
            .unwrap()
    };
    assert_eq!(names("lp"), serde_json::json!(["/lp", "/lc/al"]));
    assert_eq!(names("lc"), serde_json::json!(["/lc"]));
    w.ok(&["rm", "-f", "lp", "lc"]);
}

/// A network keeps the IPAM options it was created with, as `network inspect` shows them.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn networks_keep_their_ipam_options() {
    let w = Wharfd::start();
    let subnet = common::test_subnet(&w, 1);
    w.ok(&["network", "create", "--subnet", &subnet, "--ipam-opt", "foo=bar", "ipn"]);
    assert_eq!(
        w.ok(&["network", "inspect", "-f", "{{json .IPAM.Options}}", "ipn"])
            .trim(),
        r#"{"foo":"bar"}"#
    );
    w.ok(&["network", "create", "--subnet", &common::test_subnet(&w, 2), "plain"]);
    assert_eq!(
        w.ok(&["network", "inspect", "-f", "{{json .IPAM.Options}}", "plain"])
            .trim(),
        "null"
    );
    w.ok(&["network", "rm", "ipn", "plain"]);
}

/// The `wharf` CLI takes docker's `-v`/`--version`, and `-v` after a command stays its own flag.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn the_cli_version_flag_reads_as_dockers() {
    let w = Wharfd::start();
    for flag in ["-v", "--version"] {
        let o = w.wharf(&[flag], None);
        assert!(o.status.success());
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            concat!("wharf ", env!("CARGO_PKG_VERSION"))
        );
    }
    w.import_busybox("busybox:latest");
    let o = w.wharf(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "/data",
            "busybox",
            "ls",
            "-d",
            "/data",
        ],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "/data",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Docker Compose v2 (`scripts/clients.sh` installs it) with the project the compatibility
/// issue names: three services on two networks, a healthcheck the others wait for, a named
/// volume, a scaled service. It comes up, every service resolves every peer it shares a
/// network with (and none it does not), a second `up` recreates nothing, scaling adds a
/// replica the others resolve, and `down -v` leaves nothing.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn a_compose_project_on_two_networks() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    let compose = common::repo_root().join("target/clients/bin/docker-compose");
    assert!(
        compose.exists(),
        "{} is missing: run scripts/clients.sh",
        compose.display()
    );
    let dir = w.dir.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    let (front, back) = (common::test_subnet(&w, 6), common::test_subnet(&w, 7));
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            r#"services:
  db:
    image: busybox
    pull_policy: never
    command: ["sh", "-c", "echo ok > /data/index.html; exec httpd -f -p 80 -h /data"]
    stop_grace_period: 1s
    networks: [back]
    volumes: [dbdata:/data]
    healthcheck:
      test: ["CMD", "test", "-f", "/data/index.html"]
      interval: 1s
      timeout: 2s
      retries: 20
  api:
    image: busybox
    pull_policy: never
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
    stop_grace_period: 1s
    networks: [front, back]
    scale: 2
    depends_on:
      db:
        condition: service_healthy
  web:
    image: busybox
    pull_policy: never
    command: ["sleep", "1000"]
    stop_grace_period: 1s
    networks: [front]
    depends_on: [api]
volumes:
  dbdata: {{}}
networks:
  front:
    ipam: {{config: [{{subnet: "{front}"}}]}}
  back:
    ipam: {{config: [{{subnet: "{back}"}}]}}
"#
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(&compose)
            .args(["-p", "cproj"])
            .args(args)
            .current_dir(&dir)
            .env("DOCKER_HOST", format!("unix://{}", w.sock.display()))
            .env("DOCKER_CONFIG", w.dir.path().join("docker-config"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "compose {args:?}: {err}\n{}", w.log());
        err
    };
    run(&["up", "-d"]);
    let ids = || {
        w.ok(&["ps", "-q", "--no-trunc"])
            .lines()
            .map(String::from)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let before = ids();
    assert_eq!(before.len(), 4, "{before:?}");
    let get = |from: &str, url: &str| w.docker(&["exec", from, "wget", "-qO-", url]);
    // The servers were started, not waited for: a few tries while httpd comes up.
    let body = |from: &str, url: &str| {
        let start = std::time::Instant::now();
        loop {
            let o = get(from, url);
            if o.status.success() {
                return String::from_utf8_lossy(&o.stdout).trim().to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{from} -> {url}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // web reaches api (either replica) on front; api reaches db on back; web never sees db.
    let api_hosts: Vec<String> = ["cproj-api-1", "cproj-api-2"]
        .iter()
        .map(|c| w.ok(&["inspect", "-f", "{{.Config.Hostname}}", c]).trim().to_string())
        .collect();
    assert!(api_hosts.contains(&body("cproj-web-1", "http://api/")));
    assert_eq!(body("cproj-api-1", "http://db/"), "ok");
    assert_eq!(body("cproj-api-2", "http://cproj-db-1/"), "ok");
    assert!(!get("cproj-web-1", "http://db/").status.success());
    let o = w.ok(&["exec", "cproj-web-1", "nslookup", "api"]);
    assert_eq!(o.matches("Address: 172.").count(), 2, "both replicas answer: {o}");
    assert!(w
        .ok(&["exec", "cproj-api-2", "nslookup", "web"])
        .contains("Address: 172."));
    // A second `up` finds everything as it should be.
    let again = run(&["up", "-d"]);
    assert!(!again.contains("Recreate"), "{again}");
    assert_eq!(ids(), before);
    // Scaling adds a replica on both networks that the others resolve.
    run(&["up", "-d", "--scale", "api=3"]);
    assert_eq!(ids().len(), 5);
    let o = w.ok(&["exec", "cproj-web-1", "nslookup", "api"]);
    assert_eq!(o.matches("Address: 172.").count(), 3, "{o}");
    assert_eq!(body("cproj-api-3", "http://db/"), "ok");
    run(&["down", "-v"]);
    assert!(ids().is_empty());
    assert_eq!(w.ok(&["volume", "ls", "-q"]).trim(), "");
    let nets = w.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.contains("cproj"), "{nets}");
}

/// The fields clients read whatever they sent: every `HostConfig` key at its zero value,
/// `PidsLimit` 0 for unlimited (ignored in updates before API 1.40), `IpcMode` shareable for
/// clients before API 1.40, annotations in the list and the OCI spec, the legacy `/info`
/// fields before API 1.50, and 409 for a restart policy on an auto-removed container.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn fields_clients_read_as_dockerd_shows_them() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
    let create = |path: &str, body: &str| {
        let (st, _, b) = w.http("POST", path, body.as_bytes());
        assert!(st.contains(" 201 "), "{body}: {st} {}", String::from_utf8_lossy(&b));
        json(&b)["Id"].as_str().unwrap().to_string()
    };
    let inspect = |id: &str| json(&w.http("GET", &format!("/containers/{id}/json"), b"").2);
    let id = create(
        "/containers/create?name=bare",
        r#"{"Image":"busybox","Cmd":["sleep","100"]}"#,
    );
    let hc = inspect(&id)["HostConfig"].clone();
    for (k, v) in [
        ("Privileged", serde_json::json!(false)),
        ("ReadonlyRootfs", serde_json::json!(false)),
        ("ConsoleSize", serde_json::json!([0, 0])),
        ("Isolation", serde_json::json!("")),
        ("CpuRealtimePeriod", serde_json::json!(0)),
        ("ContainerIDFile", serde_json::json!("")),
        ("PidsLimit", serde_json::Value::Null),
    ] {
        assert_eq!(hc.get(k), Some(&v), "{k}: {hc}");
    }
    assert!(hc.get("OomKillDisable").is_some(), "{hc}");
    // Unlimited reads 0; an update before API 1.40 leaves the limit alone.
    let id2 = create(
        "/containers/create",
        r#"{"Image":"busybox","HostConfig":{"PidsLimit":-1}}"#,
    );
    assert_eq!(inspect(&id2)["HostConfig"]["PidsLimit"], 0);
    w.http("DELETE", &format!("/containers/{id2}"), b"");
    w.ok(&["update", "--pids-limit", "32", "bare"]);
    w.ok(&["start", "bare"]);
    let pids_max = || {
        w.ok(&["exec", "bare", "cat", "/sys/fs/cgroup/pids/pids.max"])
            .trim()
            .to_string()
    };
    assert_eq!(pids_max(), "32");
    let (st, _, _) = w.http("POST", "/v1.39/containers/bare/update", br#"{"PidsLimit":16}"#);
    assert!(st.contains(" 200 "), "{st}");
    assert_eq!(inspect("bare")["HostConfig"]["PidsLimit"], 32);
    let (st, _, _) = w.http("POST", "/containers/bare/update", br#"{"PidsLimit":-1}"#);
    assert!(st.contains(" 200 "), "{st}");
    assert_eq!(inspect("bare")["HostConfig"]["PidsLimit"], 0);
    assert_eq!(pids_max(), "max");
    w.ok(&["rm", "-f", "bare"]);
    // Old clients get the old default IPC mode.
    let old = create("/v1.39/containers/create", r#"{"Image":"busybox"}"#);
    assert_eq!(inspect(&old)["HostConfig"]["IpcMode"], "shareable");
    let new = create("/containers/create", r#"{"Image":"busybox"}"#);
    assert_eq!(inspect(&new)["HostConfig"]["IpcMode"], "private");
    // Annotations: in the list and in the runtime's spec.
    let ann = create(
        "/containers/create?name=ann",
        r#"{"Image":"busybox","Cmd":["sleep","100"],"HostConfig":{"Annotations":{"org.example/team":"a"}}}"#,
    );
    let list = json(
        &w.http(
            "GET",
            "/containers/json?all=1&filters=%7B%22name%22%3A%5B%22ann%22%5D%7D",
            b"",
        )
        .2,
    );
    assert_eq!(list[0]["HostConfig"]["Annotations"]["org.example/team"], "a", "{list}");
    w.ok(&["start", "ann"]);
    let spec = std::fs::read_to_string(w.dir.path().join(format!("exec/containers/{ann}/config.json"))).unwrap();
    assert_eq!(json(spec.as_bytes())["annotations"]["org.example/team"], "a");
    w.ok(&["rm", "-f", "ann"]);
    // Legacy /info fields for clients before API 1.50.
    let old_info = json(&w.http("GET", "/v1.49/info", b"").2);
    assert!(old_info["BridgeNfIp6tables"].is_boolean(), "{old_info}");
    assert!(json(&w.http("GET", "/info", b"").2).get("BridgeNfIp6tables").is_none());
    // An auto-removed container's restart policy cannot change: a conflict.
    let ar = create(
        "/containers/create",
        r#"{"Image":"busybox","HostConfig":{"AutoRemove":true}}"#,
    );
    let (st, _, b) = w.http(
        "POST",
        &format!("/containers/{ar}/update"),
        br#"{"RestartPolicy":{"Name":"always"}}"#,
    );
    assert!(st.contains(" 409 "), "{st} {}", String::from_utf8_lossy(&b));
    w.http("DELETE", &format!("/containers/{ar}?force=1"), b"");
    w.http("DELETE", &format!("/containers/{old}"), b"");
    w.http("DELETE", &format!("/containers/{new}"), b"");
}

/// A terminal starts at the client's size: `ConsoleSize` at create, at exec create and at
/// exec start (API 1.42) is the size the process sees first, never 0x0.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn terminals_start_at_the_clients_size() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    let (st, _, b) = w.http(
        "POST",
        "/containers/create?name=sized",
        br#"{"Image":"busybox","Tty":true,"Cmd":["stty","size"],"HostConfig":{"ConsoleSize":[33,77],"NetworkMode":"none"}}"#,
    );
    assert!(st.contains(" 201 "), "{st} {}", String::from_utf8_lossy(&b));
    w.ok(&["start", "sized"]);
    assert_eq!(w.ok(&["wait", "sized"]).trim(), "0");
    assert_eq!(w.ok(&["logs", "sized"]).trim(), "33 77");
    w.ok(&["rm", "sized"]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "host",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]);
    let exec = |create: &str, start: &str| {
        let (st, _, b) = w.http("POST", "/containers/host/exec", create.as_bytes());
        assert!(st.contains(" 201 "), "{st}");
        let id = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_string();
        let (st, _, b) = w.http("POST", &format!("/exec/{id}/start"), start.as_bytes());
        assert!(st.contains(" 200 "), "{st}");
        String::from_utf8_lossy(&b).trim().to_string()
    };
    let create = r#"{"Cmd":["stty","size"],"Tty":true,"AttachStdout":true,"ConsoleSize":[21,55]}"#;
    assert_eq!(exec(create, r#"{"Tty":true}"#), "21 55");
    assert_eq!(exec(create, r#"{"Tty":true,"ConsoleSize":[22,66]}"#), "22 66");
    w.ok(&["rm", "-f", "host"]);
}

/// What Compose v1 (API 1.38) relies on: field names in any case, as Go decodes them
/// (docker-py sends `CPURealtimePeriod`); a user network's aliases include the short ID once
/// the container has started, before API 1.45; the container-wide MacAddress stays the mode
/// network's when a client disconnects and connects that network again before the start; a
/// real-time budget the cgroup parent lacks fails the start, as with dockerd.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn what_compose_v1_relies_on() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    w.ok(&["network", "create", "--subnet", &common::test_subnet(&w, 8), "c1net"]);
    let body = r#"{"Image":"busybox","Cmd":["sleep","100"],"MacAddress":"74:6f:75:68:6f:75","HostConfig":{"NetworkMode":"c1net","CPURealtimePeriod":150000,"cpushares":512},"NetworkingConfig":{"EndpointsConfig":{"c1net":{"Aliases":["web"]}}}}"#;
    let (st, _, b) = w.http("POST", "/v1.38/containers/create?name=c1", body.as_bytes());
    assert!(st.contains(" 201 "), "{st} {}", String::from_utf8_lossy(&b));
    let inspect = |v: &str| {
        serde_json::from_slice::<serde_json::Value>(&w.http("GET", &format!("/{v}/containers/c1/json"), b"").2).unwrap()
    };
    let i = inspect("v1.38");
    assert_eq!(i["HostConfig"]["CpuRealtimePeriod"], 150000);
    assert_eq!(i["HostConfig"]["CpuShares"], 512);
    let id = i["Id"].as_str().unwrap().to_string();
    let short = &id[..12];
    assert_eq!(
        i["NetworkSettings"]["Networks"]["c1net"]["Aliases"],
        serde_json::json!(["web"])
    );
    // Compose's reconnect, which leaves the MAC address out.
    let (st, _, _) = w.http("POST", "/v1.38/networks/c1net/disconnect", br#"{"Container":"c1"}"#);
    assert!(st.contains(" 200 "), "{st}");
    let (st, _, _) = w.http(
        "POST",
        "/v1.38/networks/c1net/connect",
        br#"{"Container":"c1","EndpointConfig":{"Aliases":["web"]}}"#,
    );
    assert!(st.contains(" 200 "), "{st}");
    w.ok(&["start", "c1"]);
    let i = inspect("v1.38");
    let ep = &i["NetworkSettings"]["Networks"]["c1net"];
    assert_eq!(ep["MacAddress"], "74:6f:75:68:6f:75", "{ep}");
    assert_eq!(ep["Aliases"], serde_json::json!(["web", short]));
    // From API 1.45 the short ID is in DNSNames only.
    let i = inspect("v1.45");
    assert_eq!(
        i["NetworkSettings"]["Networks"]["c1net"]["Aliases"],
        serde_json::json!(["web"])
    );
    w.ok(&["rm", "-f", "c1"]);
    // The cgroup parent has no real-time budget: the start fails, as dockerd's does.
    let (st, _, _) = w.http(
        "POST",
        "/containers/create?name=rt",
        br#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"CpuRealtimeRuntime":40000,"NetworkMode":"none"}}"#,
    );
    assert!(st.contains(" 201 "), "{st}");
    let err = w.fails(&["start", "rt"]);
    // v1: the write of cpu.rt_runtime_us is refused; v2 has no real-time groups at all.
    assert!(err.contains("rt_runtime_us") || err.contains("realtime"), "{err}");
    w.ok(&["rm", "rt"]);
    w.ok(&["network", "rm", "c1net"]);
}
