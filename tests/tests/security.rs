//! Attacks and faults, each reproduced through the real docker CLI or the raw API against a real
//! wharfd: a container that tries to lift its own cgroup limits, a shim killed under its
//! container, a daemon killed while a commit holds the container frozen, privileged
//! containers' devices and seccomp profiles, archives' symlink targets, and errors a user can
//! act on. (The API server's and TLS's own cases are in `api_server.rs`.)

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Wharfd;

fn daemon() -> Wharfd {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    w
}

fn inspect(w: &Wharfd, name: &str, fmt: &str) -> String {
    w.ok(&["inspect", "-f", fmt, name]).trim().to_string()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// The container's directory in one v1 hierarchy of this (hybrid) host.
fn cgroup_dir(w: &Wharfd, hierarchy: &str, id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(hierarchy)
        .join(w.cgroup_parent())
        .join(id)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Whether `pid` is a process that still runs (a zombie has ended: it only waits for a reaper).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| !s.lines().any(|l| l.starts_with("State:") && l.contains("Z (zombie)")))
        .unwrap_or(false)
}

/// The PID of the shim of container `id`.
fn shim_pid(id: &str) -> String {
    let out = std::process::Command::new("pgrep")
        .args(["-f", &format!("wharf-shim .*/containers/{id}/")])
        .output()
        .unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    let pid = s
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no shim for {id}"))
        .to_string();
    pid
}

fn kill9(pid: &str) {
    assert!(std::process::Command::new("kill")
        .args(["-9", pid])
        .status()
        .unwrap()
        .success());
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn a_container_cannot_lift_its_own_cgroup_limits() {
    let w = daemon();
    let id = w
        .ok(&[
            "run",
            "-d",
            "--name",
            "cg1",
            "--network",
            "none",
            "-m",
            "64m",
            "--pids-limit",
            "10",
            "--cpus",
            "0.5",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let memory = cgroup_dir(&w, "memory", &id);
    let pids = cgroup_dir(&w, "pids", &id);
    let cpu = cgroup_dir(&w, "cpu", &id);
    assert_eq!(read(&memory.join("memory.limit_in_bytes")), "67108864");
    let attack = "echo -1 > /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes; \
                  echo -1 > /sys/fs/cgroup/memory/memory.limit_in_bytes; \
                  echo max > /sys/fs/cgroup/pids/pids.max; \
                  echo -1 > /sys/fs/cgroup/cpu/cpu.cfs_quota_us; \
                  mkdir /sys/fs/cgroup/pids/x; mkdir /sys/fs/cgroup/memory/x; mkdir /sys/fs/cgroup/systemd/x; \
                  echo done";
    let o = w.docker(&["exec", "cg1", "sh", "-c", attack]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(read(&memory.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read(&pids.join("pids.max")), "10");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
    for h in ["pids", "memory", "systemd"] {
        let d = cgroup_dir(&w, h, &id).join("x");
        assert!(!d.exists(), "{} was made from inside the container", d.display());
    }
    // Every hierarchy is mounted read-only, the tmpfs holding them too.
    let mounts = w.ok(&["exec", "cg1", "cat", "/proc/self/mounts"]);
    let cgroup_mounts: Vec<&str> = mounts.lines().filter(|l| l.contains(" /sys/fs/cgroup")).collect();
    assert!(cgroup_mounts.len() >= 2, "{mounts}");
    for l in &cgroup_mounts {
        let opts = l.split_whitespace().nth(3).unwrap();
        assert!(opts.split(',').any(|o| o == "ro"), "mounted read-write: {l}");
    }
    // Its name=systemd cgroup is its own, never the host hierarchy's root.
    let own = w.ok(&["exec", "cg1", "cat", "/proc/self/cgroup"]);
    assert!(
        own.lines()
            .any(|l| l.ends_with(&format!(":name=systemd:/{}/{id}", w.cgroup_parent()))),
        "{own}"
    );
    let seen = w.ok(&["exec", "cg1", "ls", "/sys/fs/cgroup/systemd"]);
    assert!(
        !seen.contains(&w.cgroup_parent()),
        "the container sees the host's systemd tree: {seen}"
    );
    assert!(cgroup_dir(&w, "systemd", &id).is_dir());
    // Removal leaves no cgroup of the container, in any hierarchy.
    w.ok(&["rm", "-f", "cg1"]);
    for h in ["memory", "pids", "cpu", "systemd", "freezer"] {
        let d = cgroup_dir(&w, h, &id);
        assert!(!d.exists(), "{} left after rm", d.display());
    }
    // Sealed whatever the container's seccomp and capability setup.
    for opts in [
        &["--security-opt", "seccomp=unconfined"][..],
        &["--security-opt", "no-new-privileges", "-u", "1000"][..],
        &["--cap-drop", "ALL"][..],
        &["--cap-add", "SYS_ADMIN"][..],
    ] {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend_from_slice(opts);
        args.extend([
            "busybox",
            "sh",
            "-c",
            "echo max > /sys/fs/cgroup/pids/pids.max && echo WRITTEN",
        ]);
        let o = w.docker(&args);
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(
            !out.contains("WRITTEN") && err.contains("Read-only file system"),
            "{opts:?}: {out} {err}"
        );
    }
    // --privileged keeps them writable, as Docker.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max > /sys/fs/cgroup/pids/pids.max && echo writable",
    ]);
    assert_eq!(out.trim(), "writable");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn a_killed_shim_takes_its_container_with_it() {
    let mut w = daemon();
    let id = w
        .ok(&[
            "run",
            "-d",
            "--name",
            "vic",
            "--network",
            "none",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let pid = inspect(&w, "vic", "{{.State.Pid}}");
    assert!(alive(&pid));
    kill9(&shim_pid(&id));
    wait_until("the exit to be recorded", Duration::from_secs(10), || {
        inspect(&w, "vic", "{{.State.Status}}") == "exited"
    });
    assert_eq!(inspect(&w, "vic", "{{.State.ExitCode}}"), "137");
    assert!(!alive(&pid), "the container's process {pid} outlived its shim");
    for h in ["memory", "pids", "freezer", "systemd"] {
        let d = cgroup_dir(&w, h, &id);
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let err = w.fails(&["exec", "vic", "true"]);
    assert!(err.contains("is not running"), "{err}");
    w.ok(&["rm", "-f", "vic"]);

    // The same with the daemon down when the shim dies. In the host's PID namespace the
    // kernel's kill of the init (the shim's death signal) does not take the init's child with
    // it: the next daemon finds it in the cgroup and kills it.
    let id = w
        .ok(&[
            "run",
            "-d",
            "--name",
            "v2",
            "--network",
            "none",
            "--pid",
            "host",
            "busybox",
            "sh",
            "-c",
            "sleep 1000 & exec sleep 2000",
        ])
        .trim()
        .to_string();
    let procs = cgroup_dir(&w, "pids", &id).join("cgroup.procs");
    wait_until("both processes", Duration::from_secs(10), || {
        read(&procs).lines().count() == 2
    });
    let pids: Vec<String> = read(&procs).lines().map(String::from).collect();
    w.kill9();
    kill9(&shim_pid(&id));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pids.iter().any(|p| alive(p)),
        "nothing survived the shim: the case is not exercised"
    );
    w.spawn();
    assert_eq!(inspect(&w, "v2", "{{.State.Status}} {{.State.ExitCode}}"), "exited 137");
    for p in &pids {
        assert!(
            !alive(p),
            "process {p} of the container outlived its shim and the daemon"
        );
    }
    assert!(!cgroup_dir(&w, "memory", &id).exists());
    w.ok(&["rm", "v2"]);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn rm_force_kills_what_the_cgroup_still_holds() {
    let w = daemon();
    // A process that left its shim's supervision: it joined the container's cgroups from outside
    // (as a process forked by a dying exec would stay there). `rm -f` must not report success
    // while it lives.
    let id = w
        .ok(&[
            "run",
            "-d",
            "--name",
            "hold",
            "--network",
            "none",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let mut stray = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
    let stray_pid = stray.id().to_string();
    for h in ["memory", "pids"] {
        std::fs::write(cgroup_dir(&w, h, &id).join("cgroup.procs"), &stray_pid).unwrap();
    }
    w.ok(&["rm", "-f", "hold"]);
    let st = stray.wait().unwrap();
    assert!(!st.success(), "the stray process was not killed: {st:?}");
    assert!(!cgroup_dir(&w, "memory", &id).exists());
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn no_container_is_left_unstoppable_by_an_exec_racing_its_exit() {
    let w = daemon();
    // The init exits while execs (a 20 ms healthcheck and `docker exec`s) are being started: the
    // shim must see the exit whichever way each exec's start ends.
    for round in 0..25 {
        let name = format!("r{round}");
        w.ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--health-cmd",
            "true",
            "--health-interval",
            "20ms",
            "--health-start-interval",
            "20ms",
            "busybox",
            "sleep",
            "0.3",
        ]);
        let sock = w.sock.clone();
        let n2 = name.clone();
        let spam = std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(600) {
                let body = br#"{"Cmd":["true"],"AttachStdout":true}"#;
                let (status, _, b) = common::http_unix(&sock, "POST", &format!("/containers/{n2}/exec"), body);
                if !status.contains("201") {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                let exec = v["Id"].as_str().unwrap().to_string();
                common::http_unix(&sock, "POST", &format!("/exec/{exec}/start"), br#"{"Detach":true}"#);
            }
        });
        // (A stuck container never exits: bounded, so the test fails instead of hanging.)
        wait_until(&format!("round {round}: the exit"), Duration::from_secs(20), || {
            inspect(&w, &name, "{{.State.Status}}") == "exited"
        });
        spam.join().unwrap();
        assert_eq!(inspect(&w, &name, "{{.State.ExitCode}}"), "0", "round {round}");
        w.ok(&["rm", "-f", &name]);
    }
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn a_daemon_killed_mid_commit_leaves_no_container_frozen() {
    let mut w = daemon();
    let id = w
        .ok(&[
            "run",
            "-d",
            "--name",
            "frz",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "dd if=/dev/zero of=/big bs=1M count=400 2>/dev/null; touch /ready; exec sleep 1000",
        ])
        .trim()
        .to_string();
    let u = w.ok(&[
        "run",
        "-d",
        "--name",
        "usr",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    w.ok(&["pause", "usr"]);
    wait_until("the container's file", Duration::from_secs(60), || {
        w.docker(&["exec", "frz", "test", "-e", "/ready"]).status.success()
    });
    let freezer = cgroup_dir(&w, "freezer", &id).join("freezer.state");
    let sock = w.sock.clone();
    let commit = std::thread::spawn(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        use std::io::Write;
        let _ = write!(
            s,
            "POST /commit?container=frz&repo=img HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut buf);
    });
    wait_until("the commit to freeze the container", Duration::from_secs(20), || {
        read(&freezer) == "FROZEN"
    });
    w.kill9();
    commit.join().unwrap();
    assert_eq!(read(&freezer), "FROZEN", "the fault did not hit the frozen window");
    w.spawn();
    assert_eq!(read(&freezer), "THAWED");
    assert_eq!(
        inspect(&w, "frz", "{{.State.Status}} {{.State.Paused}}"),
        "running false"
    );
    assert_eq!(w.ok(&["exec", "frz", "echo", "ok"]).trim(), "ok");
    w.ok(&["pause", "frz"]);
    w.ok(&["unpause", "frz"]);
    // A user's pause is kept.
    assert_eq!(inspect(&w, u.trim(), "{{.State.Status}}"), "paused");
    w.ok(&["unpause", "usr"]);
    w.ok(&["rm", "-f", "frz", "usr"]);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn privileged_containers_get_the_hosts_devices_and_explicit_profiles() {
    let w = daemon();
    let host_devices: Vec<String> = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .filter(|e| {
            use std::os::unix::fs::FileTypeExt;
            e.file_type().is_ok_and(|t| t.is_block_device() || t.is_char_device())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "console")
        .collect();
    let inside = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--privileged",
        "busybox",
        "ls",
        "/dev",
    ]);
    let inside: Vec<&str> = inside.split_whitespace().collect();
    for d in &host_devices {
        assert!(
            inside.contains(&d.as_str()),
            "/dev/{d} missing in a privileged container: {inside:?}"
        );
    }
    let plain = w.ok(&["run", "--rm", "--network", "none", "busybox", "ls", "/dev"]);
    let extra: Vec<&String> = host_devices
        .iter()
        .filter(|d| plain.split_whitespace().any(|p| p == d.as_str()))
        .filter(|d| !["null", "zero", "full", "random", "urandom", "tty", "ptmx"].contains(&d.as_str()))
        .collect();
    assert!(extra.is_empty(), "a default container has host devices: {extra:?}");

    // An explicit seccomp profile applies to a privileged container too (Docker 25+).
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let o = w.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--privileged",
        "--security-opt",
        &opt,
        "busybox",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; mkdir /x",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(err.contains("Permission denied"), "{err}");
    // Without one, a privileged container is unconfined, as in Docker.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--privileged",
        "busybox",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ]);
    assert!(out.contains("Seccomp:\t0"), "{out}");
}

/// (name, link target) of every symlink in a tar.
fn tar_symlinks(buf: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut ar = tar::Archive::new(buf);
    let mut out: Vec<(String, Vec<u8>)> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.header().entry_type() == tar::EntryType::Symlink)
        .map(|e| {
            let p = e.path().unwrap().display().to_string();
            (p, e.link_name_bytes().unwrap().into_owned())
        })
        .collect();
    out.sort();
    out
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn archives_keep_symlink_targets_byte_for_byte() {
    let w = daemon();
    w.ok(&[
        "run",
        "--name",
        "sym",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "mkdir /t && ln -s / /t/root && ln -s a//b/./c /t/odd && ln -s ../ /t/up",
    ]);
    let want: Vec<(String, Vec<u8>)> = vec![
        ("t/odd".into(), b"a//b/./c".to_vec()),
        ("t/root".into(), b"/".to_vec()),
        ("t/up".into(), b"../".to_vec()),
    ];
    // export
    let o = w.docker(&["export", "sym"]);
    assert!(o.status.success());
    let exported: Vec<(String, Vec<u8>)> = tar_symlinks(&o.stdout)
        .into_iter()
        .filter(|(n, _)| n.starts_with("t/"))
        .collect();
    assert_eq!(exported, want);
    // cp
    let o = w.docker(&["cp", "sym:/t", "-"]);
    assert!(o.status.success());
    assert_eq!(tar_symlinks(&o.stdout), want);
    // commit, then save: the committed layer holds them as they were.
    w.ok(&["commit", "sym", "links:1"]);
    let o = w.docker(&["save", "links:1"]);
    assert!(o.status.success());
    let mut outer = tar::Archive::new(&o.stdout[..]);
    let mut found = Vec::new();
    for e in outer.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().starts_with("blobs/sha256") && e.header().size().unwrap() > 0 {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut b).unwrap();
            if b.len() >= 512 && &b[257..262] == b"ustar" {
                found.extend(tar_symlinks(&b));
            }
        }
    }
    found.sort();
    for x in &want {
        assert!(found.contains(x), "{x:?} not in the saved layers: {found:?}");
    }
    w.ok(&["rm", "sym"]);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn errors_a_user_can_act_on() {
    let w = daemon();
    let err = w.fails(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-w",
        "/proc/self/fd/7",
        "busybox",
        "true",
    ]);
    // runc's words. The shim closes every descriptor but its own pipes before the chdir, so
    // the path names nothing (runc still holds a pipe there: "not a directory").
    assert!(
        err.contains(r#"chdir to cwd ("/proc/self/fd/7") set in config.json failed: no such file or directory"#),
        "{err}"
    );
    // A client's bad tar to PUT /archive is its error (400), naming the entry.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "arc",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "ok.txt", &b"abc"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(100_000);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "big.bin", &vec![7u8; 100_000][..]).unwrap();
    let full = b.into_inner().unwrap();
    let (status, _, body) = w.http("PUT", "/containers/arc/archive?path=/tmp", &full[..20_000]);
    let body = String::from_utf8_lossy(&body);
    assert!(status.contains(" 400 "), "{status} {body}");
    assert!(body.contains("big.bin"), "{body}");
    let (status, _, _) = w.http("PUT", "/containers/arc/archive?path=/tmp", &[0x55u8; 3000]);
    assert!(status.contains(" 400 "), "{status}");
    w.ok(&["rm", "-f", "arc"]);
}

/// Limits and settings a container's processes must all carry (rlimits, OOM score, groups,
/// environment, memory and pids), for the init's and the exec's tests.
const LIMITED: &[&str] = &[
    "--ulimit",
    "nofile=1024:2048",
    "--oom-score-adj",
    "300",
    "--group-add",
    "777",
    "-e",
    "FOO=bar",
    "-m",
    "64m",
    "--pids-limit",
    "50",
];

/// The shim starts an exec itself (no libcontainer): the process must land in every namespace
/// and cgroup of its container, with its rlimits, OOM score, environment, working directory,
/// user, groups and a session of its own, and hold no descriptor of the shim's.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn an_exec_joins_all_its_container_has_and_holds_nothing_of_the_shims() {
    let w = daemon();
    let id = w
        .ok(&[
            &["run", "-d", "--name", "ej", "--hostname", "ejhost"],
            LIMITED,
            &["busybox", "sleep", "1000"],
        ]
        .concat())
        .trim()
        .to_string();
    let ns = "for n in cgroup ipc mnt net pid uts user; do \
              [ \"$(readlink /proc/self/ns/$n)\" = \"$(readlink /proc/1/ns/$n)\" ] && echo $n; done | xargs";
    assert_eq!(
        w.ok(&["exec", "ej", "sh", "-c", ns]).trim(),
        "cgroup ipc mnt net pid uts user"
    );
    assert_eq!(
        w.ok(&["exec", "ej", "cat", "/proc/self/cgroup"]),
        w.ok(&["exec", "ej", "cat", "/proc/1/cgroup"])
    );
    // Seen from the host: a detached exec is a member of the container's cgroups.
    w.ok(&["exec", "-d", "ej", "sleep", "999"]);
    for h in ["memory", "pids", "cpu", "freezer", "devices"] {
        let tasks = read(&cgroup_dir(&w, h, &id).join("cgroup.procs"));
        assert_eq!(tasks.lines().count(), 2, "{h}: {tasks}");
    }
    let own = "ls /proc/$$/fd | xargs; ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj; \
               echo $FOO $HOME $PWD; hostname; id -G; grep Groups /proc/1/status /proc/$$/status | cut -d: -f2- | xargs; \
               cut -d' ' -f4,6 /proc/$$/stat; echo $$";
    let out = w.ok(&["exec", "-w", "/tmp", "ej", "sh", "-c", own]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..7],
        ["0 1 2", "1024", "2048", "300", "bar /root /tmp", "ejhost", "0 777"],
        "{out}"
    );
    assert_eq!(
        lines[7], "Groups: 777 Groups: 777",
        "the init's supplementary groups, the exec's: {out}"
    );
    // Its parent is outside the PID namespace (0) and it leads a session of its own.
    let (stat, pid) = (lines[8], lines[9]);
    assert_eq!(stat, format!("0 {pid}"), "{out}");
    assert_eq!(w.ok(&["exec", "-u", "1234:5678", "ej", "id", "-u"]).trim(), "1234");
    assert_eq!(w.ok(&["exec", "-u", "1234:5678", "ej", "id", "-g"]).trim(), "5678");
    // HOME left empty: the user's own from the container's passwd (as runc).
    assert_eq!(
        w.ok(&["exec", "-e", "HOME=", "-u", "nobody", "ej", "sh", "-c", "echo $HOME"])
            .trim(),
        "/nonexistent"
    );
    let piped = w.docker_stdin(&["exec", "-i", "ej", "cat"], Some(b"through stdin\n"));
    assert_eq!(String::from_utf8_lossy(&piped.stdout), "through stdin\n");
    // A working directory that is not there: dockerd's 127, nothing left running.
    let o = w.docker(&["exec", "-w", "/nonexistent", "ej", "true"]);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("/nonexistent"), "{o:?}");
    let tasks = read(&cgroup_dir(&w, "pids", &id).join("cgroup.procs"));
    assert_eq!(tasks.lines().count(), 2, "{tasks}");
    // Host namespaces stay the host's.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "hostns",
        "--pid",
        "host",
        "--network",
        "host",
        "busybox",
        "sleep",
        "1000",
    ]);
    let mine = |n: &str| {
        std::fs::read_link(format!("/proc/self/ns/{n}"))
            .unwrap()
            .display()
            .to_string()
    };
    assert_eq!(
        w.ok(&[
            "exec",
            "hostns",
            "sh",
            "-c",
            "readlink /proc/self/ns/pid; readlink /proc/self/ns/net"
        ]),
        format!("{}\n{}\n", mine("pid"), mine("net"))
    );
    w.ok(&["rm", "-f", "ej", "hostns"]);
}

/// A container's init, which the shim creates itself (`wharf-shim::birth`), is in the
/// container's cgroup in every hierarchy and holds nothing of the shim's from its first
/// instruction, with what the spec gives it; a command that cannot run fails the start with
/// the docker CLI's exit codes, and nothing of the container is left after.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn an_init_is_its_containers_from_its_first_instruction() {
    let w = daemon();
    let own = "ulimit -n; ulimit -Hn; cat /proc/1/oom_score_adj; \
               echo $FOO $HOME $PWD; hostname; id -G; cut -d' ' -f4,6 /proc/1/stat; \
               grep NoNewPrivs /proc/1/status | xargs; sleep 1000";
    let id = w
        .ok(&[
            &["run", "-d", "--name", "ij", "--hostname", "ijhost", "-w", "/tmp"],
            LIMITED,
            &["--security-opt", "no-new-privileges", "busybox", "sh", "-c", own],
        ]
        .concat())
        .trim()
        .to_string();
    let out = wait_for_lines(&w, "ij", 7);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..7],
        ["1024", "2048", "300", "bar /root /tmp", "ijhost", "0 777", "0 1"],
        "rlimits, OOM score, env, cwd, hostname, groups, parent and session: {out}"
    );
    assert_eq!(lines[7], "NoNewPrivs: 1", "{out}");
    // Its descriptors, read from the host while it waits for its `sleep` (inside, listing
    // them races the shell's own pipes).
    let init = w.ok(&["inspect", "-f", "{{.State.Pid}}", "ij"]).trim().to_string();
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{init}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    assert_eq!(fds, ["0", "1", "2"], "the init holds nothing of the shim's");
    // Seen from the host: the init alone in the container's cgroup of every controller, and
    // in no other.
    for h in [
        "memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "freezer", "devices",
    ] {
        assert_eq!(read(&cgroup_dir(&w, h, &id).join("cgroup.procs")), init, "{h}");
    }
    let want = format!("/{}/{id}", w.cgroup_parent());
    for l in read(Path::new(&format!("/proc/{init}/cgroup"))).lines() {
        let (ctl, path) = l.split_once(':').unwrap().1.split_once(':').unwrap();
        if !ctl.is_empty() {
            assert_eq!(path, want, "{l}");
        }
    }
    assert_eq!(
        read(&cgroup_dir(&w, "memory", &id).join("memory.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(read(&cgroup_dir(&w, "pids", &id).join("pids.max")), "50");
    w.ok(&["rm", "-f", "ij"]);
    for h in ["memory", "pids", "cpu", "freezer", "systemd"] {
        assert!(!cgroup_dir(&w, h, &id).exists(), "{h}: the container's cgroup is left");
    }
    // A command that cannot run: the docker CLI's codes, nothing left running.
    for (cmd, code, words) in [
        ("nosuch", 127, "executable file not found"),
        ("/etc/passwd", 126, "permission denied"),
        ("/etc", 126, "is a directory"),
    ] {
        let o = w.docker(&["run", "--name", "bad", "--network", "none", "busybox", cmd]);
        assert_eq!(o.status.code(), Some(code), "{cmd}: {o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(words), "{cmd}: {o:?}");
        w.ok(&["rm", "-f", "bad"]);
    }
}

/// The container's output once it has printed `n` lines (its command then waits).
fn wait_for_lines(w: &Wharfd, name: &str, n: usize) -> String {
    for _ in 0..200 {
        let out = w.ok(&["logs", name]);
        if out.lines().count() > n {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    w.ok(&["logs", name])
}

/// Nothing starts in a frozen container: an exec would freeze in its cgroup before it ran,
/// with its shim waiting on it and so unable to thaw the container. `docker commit` freezes a
/// container behind its record's back; health checks every few milliseconds must neither
/// deadlock the commits nor be left hanging, and the container runs on afterwards.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn execs_never_start_in_a_frozen_container() {
    let w = daemon();
    // A pause between an exec's create and its start: dockerd's refusal, nothing started.
    w.ok(&["run", "-d", "--name", "fz", "busybox", "sleep", "1000"]);
    let (status, _, body) = w.http(
        "POST",
        "/containers/fz/exec",
        br#"{"Cmd":["touch","/started"],"AttachStdout":true}"#,
    );
    assert!(status.contains("201"), "{status}");
    let exec = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(&["pause", "fz"]);
    let (status, _, body) = w.http("POST", &format!("/exec/{exec}/start"), br#"{"Detach":true}"#);
    assert!(status.contains("409"), "{status}");
    assert!(
        String::from_utf8_lossy(&body).contains("is paused, unpause the container before exec"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    w.ok(&["unpause", "fz"]);
    assert!(!w.docker(&["exec", "fz", "test", "-e", "/started"]).status.success());
    // Health checks racing commits, which freeze the container through its shim.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "true",
        "--health-interval",
        "5ms",
        "busybox",
        "sleep",
        "1000",
    ]);
    for i in 0..15 {
        let mut c = std::process::Command::new("docker")
            .args(["commit", "hc", &format!("hc-commit:{i}")])
            .env("DOCKER_HOST", format!("unix://{}", w.sock.display()))
            .env("DOCKER_CONFIG", w.dir.path().join("docker-config"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let Some(status) = common::wait_timeout(&mut c, Duration::from_secs(30)) else {
            let _ = c.kill();
            let _ = c.wait();
            // The daemon's teardown thaws and kills what the stuck commit left frozen.
            panic!("commit {i} hung: an exec deadlocked the shim of its frozen container");
        };
        assert!(status.success(), "commit {i}");
    }
    assert_eq!(w.ok(&["exec", "hc", "echo", "alive"]).trim(), "alive");
    assert_eq!(inspect(&w, "hc", "{{.State.Status}}"), "running");
    // Frozen behind the shim's back (the host's admin, another tool): the exec's child
    // freezes on its way, and the shim gives up on it instead of hanging with it.
    let id = inspect(&w, "hc", "{{.Id}}");
    let freezer = cgroup_dir(&w, "freezer", &id).join("freezer.state");
    std::fs::write(&freezer, "FROZEN").unwrap();
    let started = Instant::now();
    let o = w.docker(&["exec", "hc", "true"]);
    std::fs::write(&freezer, "THAWED").unwrap();
    assert!(!o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("did not start"), "{o:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(w.ok(&["exec", "hc", "echo", "alive"]).trim(), "alive");
    w.ok(&["rm", "-f", "fz", "hc"]);
}

/// An exec's terminal is made inside the container from its own `/dev/pts/ptmx`, which the
/// container controls: what is not a pty multiplexer there, or is reached through a symlink,
/// is refused, and the container's shim serves on.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn an_exec_terminal_comes_only_from_a_real_ptmx() {
    let w = daemon();
    assert_eq!(
        w.ok(&["run", "-d", "--name", "tt", "busybox", "sleep", "1000"]).len(),
        65
    );
    assert_eq!(w.ok(&["exec", "-t", "tt", "tty"]).trim(), "/dev/pts/0");
    for (name, fake) in [
        ("fifo", "mkfifo /dev/pts/ptmx"),
        ("link", "ln -s /dev/null /dev/pts/ptmx"),
    ] {
        let setup = format!("mount -t tmpfs tmpfs /dev/pts && {fake} && touch /ready && sleep 1000");
        w.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--privileged",
            "busybox",
            "sh",
            "-c",
            &setup,
        ]);
        wait_until("the fake ptmx", Duration::from_secs(10), || {
            w.docker(&["exec", name, "test", "-e", "/ready"]).status.success()
        });
        let o = w.docker(&["exec", "-t", name, "true"]);
        assert_eq!(o.status.code(), Some(126), "{name}: {o:?}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("/dev/pts/ptmx"), "{name}: {out}");
        assert_eq!(w.ok(&["exec", name, "echo", "served"]).trim(), "served");
    }
    w.ok(&["rm", "-f", "tt", "fifo", "link"]);
}
