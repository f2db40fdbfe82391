//! Containers for real, through the real docker CLI against wharfd: namespaces, cgroups,
//! overlayfs, capabilities and seccomp on this machine's kernel; shims that outlive the daemon.

mod common;

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

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn run_rm_prints_and_leaves_nothing() {
    let w = daemon();
    assert_eq!(w.ok(&["run", "--rm", "busybox", "echo", "hi"]), "hi\n");
    // Exit codes and stderr come through; the container is gone afterwards.
    let o = w.docker(&["run", "--rm", "busybox", "sh", "-c", "echo oops >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "oops\n");
    wait_until("auto-removal", || w.ok(&["ps", "-aq"]).trim().is_empty());
    // A missing executable is exit 127 with Docker's words.
    let o = w.docker(&["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("executable file not found"));
    // stdin with -i reaches the process and its exit code comes back.
    let o = w.docker_stdin(
        &["run", "-i", "--rm", "busybox", "sh"],
        Some(b"echo from-stdin\nexit 5\n"),
    );
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from-stdin\n");
    // No mounts of the container root stay behind.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&w.data_root().display().to_string()), "{mounts}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn lifecycle_logs_exec_stop_kill_pause() {
    let w = daemon();
    let id = w
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "trap '' TERM; trap 'echo got-hup' HUP; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    wait_until("log lines", || w.ok(&["logs", "web"]).contains("line 3"));
    let tail = w.ok(&["logs", "--tail", "1", "web"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let ps = w.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Up "), "{ps}");
    assert_eq!(
        inspect(&w, "web", "{{.State.Status}} {{.State.Running}}"),
        "running true"
    );
    assert!(inspect(&w, "web", "{{.State.Pid}}").parse::<u32>().unwrap() > 1);

    // exec: output and exit code, environment and working directory.
    let o = w.docker(&[
        "exec",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "web",
        "sh",
        "-c",
        "echo $A $(pwd); exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1 /tmp\n");
    // top lists the container's processes only.
    let top = w.ok(&["top", "web"]);
    assert!(top.contains("while true"), "{top}");
    assert!(!top.contains("wharfd"), "{top}");

    // A signal reaches PID 1's handler.
    w.ok(&["kill", "-s", "HUP", "web"]);
    let pid = inspect(&w, "web", "{{.State.Pid}}");
    let start = Instant::now();
    while !w.ok(&["logs", "web"]).contains("got-hup") {
        if start.elapsed() > Duration::from_secs(20) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let sig: Vec<&str> = status
                .lines()
                .filter(|l| l.starts_with("Sig") || l.starts_with("Shd"))
                .collect();
            let logs = w.ok(&["logs", "--tail", "5", "web"]);
            panic!("HUP not handled: init {pid} {sig:?}\nlast logs:\n{logs}\n{}", w.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // pause freezes, unpause thaws.
    w.ok(&["pause", "web"]);
    assert_eq!(inspect(&w, "web", "{{.State.Status}}"), "paused");
    let ps = w.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(ps.contains("(Paused)"), "{ps}");
    let before = w.ok(&["logs", "web"]).lines().count();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(w.ok(&["logs", "web"]).lines().count(), before, "output while paused");
    w.ok(&["unpause", "web"]);
    wait_until("output after unpause", || {
        w.ok(&["logs", "web"]).lines().count() > before
    });

    // stop: TERM is ignored, so SIGKILL after the timeout: exit 137.
    let t = Instant::now();
    w.ok(&["stop", "-t", "1", "web"]);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900), "stop returned after {took:?}");
    assert!(took < Duration::from_secs(8), "stop took {took:?}");
    assert_eq!(
        inspect(&w, "web", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    assert_eq!(w.ok(&["wait", "web"]).trim(), "137");
    let ps = w.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(ps.starts_with("Exited (137)"), "{ps}");
    // Stopping again is not an error; killing a stopped container is.
    w.ok(&["stop", "web"]);
    assert!(w.fails(&["kill", "web"]).contains("is not running"));

    // Restart runs it again; rm refuses a running container, rm -f removes it.
    w.ok(&["start", "web"]);
    assert_eq!(inspect(&w, "web", "{{.State.Running}}"), "true");
    assert!(w
        .fails(&["rm", "web"])
        .contains("stop the container before removing or force remove"));
    w.ok(&["rm", "-f", "web"]);
    assert!(w.ok(&["ps", "-aq"]).trim().is_empty());
    assert!(w.fails(&["inspect", "web"]).contains("No such"));

    // logs -f follows until the container stops; ps -s and inspect --size count the rw layer.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "writer",
        "busybox",
        "sh",
        "-c",
        "head -c 1048576 /dev/zero > /blob; for i in 1 2 3; do echo tick $i; sleep 0.3; done",
    ]);
    assert_eq!(w.ok(&["logs", "-f", "writer"]), "tick 1\ntick 2\ntick 3\n");
    let size = w.ok(&["ps", "-a", "-s", "--format", "{{.Size}}"]);
    assert!(size.starts_with("1.05MB (virtual "), "{size}");
    let rw: u64 = w
        .ok(&["inspect", "--size", "-f", "{{.SizeRw}}", "writer"])
        .trim()
        .parse()
        .unwrap();
    assert!((1 << 20..(1 << 20) + 64 * 1024).contains(&rw), "SizeRw {rw}");
    assert!(!w.data_root().join("containers").join(&id).exists());
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn names_ids_wait_and_rename() {
    let w = daemon();
    let id = w
        .ok(&["create", "--name", "one", "busybox", "sh", "-c", "exit 4"])
        .trim()
        .to_string();
    assert_eq!(inspect(&w, &id[..12], "{{.Name}} {{.State.Status}}"), "/one created");
    let err = w.fails(&["create", "--name", "one", "busybox", "true"]);
    assert!(err.contains("is already in use by container"), "{err}");
    assert!(w
        .fails(&["create", "--name", "../x", "busybox", "true"])
        .contains("Invalid container name"));
    w.ok(&["rename", "one", "two"]);
    w.ok(&["start", "two"]);
    assert_eq!(w.ok(&["wait", "two"]).trim(), "4");
    // Random names look like Docker's.
    let rid = w.ok(&["create", "busybox", "true"]).trim().to_string();
    let name = inspect(&w, &rid, "{{.Name}}");
    assert!(name.starts_with('/') && name.contains('_'), "{name}");
    let q = w.ok(&["ps", "-aq", "--no-trunc"]);
    assert!(q.contains(&id) && q.contains(&rid), "{q}");
    let filtered = w.ok(&["ps", "-a", "--filter", "exited=4", "--format", "{{.Names}}"]);
    assert_eq!(filtered.trim(), "two");
    // Every status Docker names filters; one it does not is refused, as dockerd refuses it.
    let exited = w.ok(&["ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}"]);
    assert_eq!(exited.trim(), "two");
    for s in ["created", "restarting", "running", "removing", "paused", "dead"] {
        w.ok(&["ps", "-a", "--filter", &format!("status={s}")]);
    }
    let err = w.fails(&["ps", "--filter", "status=zombie"]);
    assert!(err.contains("invalid filter 'status=zombie'"), "{err}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn isolation_and_security_defaults() {
    let w = daemon();
    let out = w.ok(&[
        "run",
        "--rm",
        "-h",
        "box1",
        "busybox",
        "sh",
        "-c",
        "echo pid=$$; hostname; ps -o pid | wc -l; grep -E '^(CapEff|CapInh|Seccomp):' /proc/self/status",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1", "{out}");
    assert_eq!(lines[1], "box1");
    // Header, sh, ps, wc: nothing from the host.
    assert!(lines[2].trim().parse::<u32>().unwrap() <= 4, "{out}");
    assert!(
        lines.contains(&"CapEff:\t00000000a80425fb"),
        "Docker's default capability set: {out}"
    );
    assert!(
        lines.contains(&"CapInh:\t0000000000000000"),
        "empty inheritable set: {out}"
    );
    assert!(lines.contains(&"Seccomp:\t2"), "seccomp filter mode: {out}");
    // Its own network namespace: loopback and its interface on the default bridge; with
    // --network none, loopback alone.
    assert_eq!(
        w.ok(&["run", "--rm", "busybox", "ls", "/sys/class/net"]).trim(),
        "eth0\nlo"
    );
    assert_eq!(
        w.ok(&["run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net"])
            .trim(),
        "lo"
    );
    assert_eq!(
        w.ok(&["run", "--rm", "busybox", "cat", "/sys/class/net/lo/flags"])
            .trim(),
        "0x9"
    );
    // seccomp refuses namespace creation; the missing CAP_SYS_ADMIN refuses mounts.
    let o = w.docker(&["run", "--rm", "busybox", "unshare", "-n", "true"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"));
    let o = w.docker(&["run", "--rm", "busybox", "mount", "-t", "tmpfs", "x", "/mnt"]);
    assert!(!o.status.success());
    // Masked and read-only paths.
    assert_eq!(w.ok(&["run", "--rm", "busybox", "cat", "/proc/timer_list"]), "");
    let o = w.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo 1 > /proc/sys/kernel/domainname",
    ]);
    assert!(!o.status.success());
    // --cap-drop and --cap-add change the set; unconfined seccomp allows unshare with SYS_ADMIN.
    let eff = w.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "NET_RAW",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(eff.trim(), "CapEff:\t00000000a80405fb");
    w.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "unshare",
        "-n",
        "true",
    ]);
    // --privileged grants the daemon's whole bounding set (CAP_SYS_RESOURCE is missing here).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = status
        .lines()
        .find(|l| l.starts_with("CapBnd:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let eff = w.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(eff.trim(), format!("CapEff:\t{bnd}"));
    // -u with a uid:gid, and a name from the image's passwd.
    assert_eq!(
        w.ok(&["run", "--rm", "-u", "1234:5678", "busybox", "id", "-u"]).trim(),
        "1234"
    );
    assert_eq!(
        w.ok(&["run", "--rm", "-u", "1234:5678", "busybox", "id", "-g"]).trim(),
        "5678"
    );
    // Environment merging and the working directory.
    let env = w.ok(&[
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/srv/app",
        "busybox",
        "sh",
        "-c",
        "echo $FOO $HOSTNAME $(pwd)",
    ]);
    let f: Vec<&str> = env.split_whitespace().collect();
    assert_eq!((f[0], f[1].len(), f[2]), ("bar", 12, "/srv/app"), "{env}");
    // --read-only and --tmpfs.
    let o = w.docker(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert!(!o.status.success());
    let df = w.ok(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch:size=2m",
        "busybox",
        "sh",
        "-c",
        "touch /scratch/x && df -k /scratch | tail -1",
    ]);
    assert!(df.contains(" 2048 "), "{df}");
}

/// `CapPrm CapEff CapBnd NoNewPrivs Seccomp Seccomp_filters` of the process reading them.
const STATUS: &str =
    "grep -E '^(CapPrm|CapEff|CapBnd|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status | cut -f2 | xargs";

/// The seccomp filter reaches every process of a container, the init and each exec, and the
/// capability kept to load it (CAP_SYS_ADMIN) reaches none.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn seccomp_and_capabilities_of_inits_and_execs() {
    let w = daemon();
    let (dflt, none) = ("00000000a80425fb", "0000000000000000");
    let full = format!("{dflt} {dflt} {dflt} 0 2 1");
    assert_eq!(w.ok(&["run", "--rm", "busybox", "sh", "-c", STATUS]).trim(), full);
    assert_eq!(
        w.ok(&["run", "--rm", "-u", "1234", "busybox", "sh", "-c", STATUS])
            .trim(),
        format!("{none} {none} {dflt} 0 2 1")
    );
    assert_eq!(
        w.ok(&["run", "--rm", "--cap-drop", "ALL", "busybox", "sh", "-c", STATUS])
            .trim(),
        format!("{none} {none} {none} 0 2 1")
    );
    assert_eq!(
        w.ok(&["run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c", STATUS])
            .trim(),
        "00000000a82425fb 00000000a82425fb 00000000a82425fb 0 2 1"
    );
    assert_eq!(
        w.ok(&[
            "run",
            "--rm",
            "--security-opt",
            "no-new-privileges",
            "busybox",
            "sh",
            "-c",
            STATUS
        ])
        .trim(),
        format!("{dflt} {dflt} {dflt} 1 2 1")
    );
    assert_eq!(
        w.ok(&[
            "run",
            "--rm",
            "--security-opt",
            "seccomp=unconfined",
            "busybox",
            "sh",
            "-c",
            STATUS
        ])
        .trim(),
        format!("{dflt} {dflt} {dflt} 0 0 0")
    );
    // A profile of the user's own: its errno, in the init and in an exec.
    let file = w.dir.path().join("mkdir-eacces.json");
    std::fs::write(
        &file,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"mkdir","action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let profile = file.display().to_string();
    let id = w
        .ok(&[
            "run",
            "-d",
            "--security-opt",
            &format!("seccomp={profile}"),
            "busybox",
            "sleep",
            "60",
        ])
        .trim()
        .to_string();
    let o = w.docker(&["exec", &id, "mkdir", "/x"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{o:?}"
    );
    w.ok(&["rm", "-f", &id]);
    let o = w.docker(&[
        "run",
        "--rm",
        "--security-opt",
        &format!("seccomp={profile}"),
        "busybox",
        "mkdir",
        "/x",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{o:?}"
    );

    let id = w.ok(&["run", "-d", "busybox", "sleep", "60"]).trim().to_string();
    assert_eq!(w.ok(&["exec", &id, "sh", "-c", STATUS]).trim(), full);
    assert_eq!(
        w.ok(&["exec", "-u", "1234", &id, "sh", "-c", STATUS]).trim(),
        format!("{none} {none} {dflt} 0 2 1")
    );
    // Docker's profile refuses namespace creation to an exec as to the init.
    let o = w.docker(&["exec", &id, "unshare", "-n", "true"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"),
        "{o:?}"
    );
    // --privileged gives an exec every capability; the container's filter stays, as with dockerd.
    let bnd = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:\t").map(str::to_string))
        .unwrap();
    assert_eq!(
        w.ok(&["exec", "--privileged", &id, "sh", "-c", STATUS]).trim(),
        format!("{bnd} {bnd} {bnd} 0 2 1")
    );
    w.ok(&["rm", "-f", &id]);
    let id = w
        .ok(&[
            "run",
            "-d",
            "--security-opt",
            "no-new-privileges",
            "busybox",
            "sleep",
            "60",
        ])
        .trim()
        .to_string();
    assert_eq!(
        w.ok(&["exec", &id, "sh", "-c", STATUS]).trim(),
        format!("{dflt} {dflt} {dflt} 1 2 1")
    );
    w.ok(&["rm", "-f", &id]);
}

/// A `run --rm` container's writable layer is thrown away with it: overlayfs mounts it
/// `volatile` (no syncing the host file system at unmount); other containers keep their
/// layer's syncs.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn only_rm_containers_have_volatile_layers() {
    let w = daemon();
    let root_opts = "grep ' / ' /proc/self/mountinfo | grep -c volatile || true";
    assert_eq!(w.ok(&["run", "--rm", "busybox", "sh", "-c", root_opts]).trim(), "1");
    let id = w
        .ok(&["run", "-d", "busybox", "sh", "-c", root_opts])
        .trim()
        .to_string();
    assert_eq!(w.ok(&["wait", &id]).trim(), "0");
    assert_eq!(w.ok(&["logs", &id]).trim(), "0");
    // Started again, the same layer mounts again.
    w.ok(&["start", "-a", &id]);
    assert_eq!(w.ok(&["logs", &id]).trim(), "0\n0");
    w.ok(&["rm", &id]);
}

/// A shim answers its waiters before it removes the container's cgroups; a start right after
/// an exit must not lose the new run's cgroup to the old shim's cleanup.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn starts_right_after_an_exit_keep_their_cgroup() {
    let w = daemon();
    let id = w
        .ok(&[
            "create",
            "-m",
            "64m",
            "busybox",
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ])
        .trim()
        .to_string();
    for i in 0..15 {
        assert_eq!(w.ok(&["start", "-a", &id]).trim(), "67108864", "run {i}");
    }
    w.ok(&["rm", &id]);
    // The last shim removes its cgroup just after answering: give it a moment.
    let parent = format!("/sys/fs/cgroup/memory/{}", w.cgroup_parent());
    let mut left = Vec::new();
    for _ in 0..100 {
        left = std::fs::read_dir(&parent)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name())
                    .collect()
            })
            .unwrap_or_default();
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(left.is_empty(), "cgroups left under {parent}: {left:?}");
}

fn cgroup_file(w: &Wharfd, id: &str, controller: &str, file: &str) -> String {
    let p = format!("/sys/fs/cgroup/{controller}/{}/{id}/{file}", w.cgroup_parent());
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .trim()
        .to_string()
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn resource_limits() {
    let w = daemon();
    // Impossible values are refused with Docker's words.
    let ncpu = std::thread::available_parallelism().unwrap().get();
    let err = w.fails(&["run", "--rm", "--cpus", "64", "busybox", "true"]);
    assert!(
        err.contains(&format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )),
        "{err}"
    );
    assert!(w
        .fails(&["run", "--rm", "-m", "1m", "busybox", "true"])
        .contains("Minimum memory limit allowed is 6MB"));

    // Limits land in the cgroup.
    let id = w
        .ok(&[
            "run",
            "-d",
            "--cpus",
            "0.5",
            "-m",
            "64m",
            "--pids-limit",
            "64",
            "busybox",
            "sleep",
            "60",
        ])
        .trim()
        .to_string();
    assert_eq!(cgroup_file(&w, &id, "cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_file(&w, &id, "cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(
        cgroup_file(&w, &id, "memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(cgroup_file(&w, &id, "pids", "pids.max"), "64");
    w.ok(&["rm", "-f", &id]);

    // A fork bomb is held at the limit: forks fail, the container survives and finishes.
    let o = w.docker(&[
        "run",
        "--rm",
        "--pids-limit",
        "32",
        "busybox",
        "sh",
        "-c",
        "(for i in $(seq 100); do sleep 1 & done); echo alive bomb=$?",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("alive bomb=") && out.trim() != "alive bomb=0", "{out}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("fork"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // An allocation loop under -m is OOM-killed: exit 137 and OOMKilled.
    let o = w.docker(&[
        "run",
        "--name",
        "hog",
        "-m",
        "32m",
        "--memory-swap",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        inspect(&w, "hog", "{{.State.OOMKilled}} {{.State.ExitCode}}"),
        "true 137"
    );
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn containers_outlive_the_daemon() {
    let mut w = daemon();
    w.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "busybox",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.2; done",
    ]);
    w.ok(&["run", "-d", "--name", "ends", "busybox", "sh", "-c", "sleep 1; exit 7"]);
    let pid = inspect(&w, "live", "{{.State.Pid}}");
    w.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "container died with the daemon"
    );
    w.spawn();
    assert_eq!(
        inspect(&w, "live", "{{.State.Status}} {{.State.Pid}}"),
        format!("running {pid}")
    );
    wait_until("the exit of 'ends'", || {
        inspect(&w, "ends", "{{.State.Status}}") == "exited"
    });
    assert_eq!(inspect(&w, "ends", "{{.State.ExitCode}}"), "7", "the real exit code");
    assert!(w.ok(&["logs", "live"]).contains("tick"));
    assert_eq!(w.ok(&["exec", "live", "echo", "still-here"]), "still-here\n");
    w.ok(&["stop", "-t", "1", "live"]);
    assert_eq!(inspect(&w, "live", "{{.State.Status}}"), "exited");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());

    // A container recorded running whose shim and process are gone becomes exited (255).
    w.ok(&["start", "live"]);
    let pid = inspect(&w, "live", "{{.State.Pid}}");
    w.kill9();
    let _ = std::process::Command::new("pkill")
        .args(["-9", "-f", &format!("wharf-shim {}", w.dir.path().display())])
        .status();
    let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
    std::thread::sleep(Duration::from_millis(300));
    w.spawn();
    assert_eq!(
        inspect(&w, "live", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 255"
    );
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn restart_policies() {
    let w = daemon();
    w.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 1",
    ]);
    wait_until("two restarts", || {
        inspect(&w, "flaky", "{{.RestartCount}} {{.State.Status}}") == "2 exited"
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        inspect(&w, "flaky", "{{.RestartCount}}"),
        "2",
        "on-failure:2 stops after two"
    );
    w.ok(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    wait_until("a restart", || {
        inspect(&w, "always", "{{.RestartCount}}").parse::<u32>().unwrap() >= 1
    });
    // A user's stop wins over the policy.
    w.ok(&["stop", "-t", "1", "always"]);
    let n = inspect(&w, "always", "{{.RestartCount}}");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        inspect(&w, "always", "{{.RestartCount}} {{.State.Status}}"),
        format!("{n} exited")
    );
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn terminals_attach_detach_and_log_rotation() {
    let w = daemon();
    w.ok(&["run", "-dit", "--name", "term", "busybox", "sh"]);
    // exec -it gets a terminal of its own; its exit code comes back through the CLI.
    let (code, out) = w.docker_pty(
        &[
            "exec",
            "-it",
            "term",
            "sh",
            "-c",
            "tty; [ -t 0 ] && echo stdin-is-a-tty; exit 7",
        ],
        &[],
    );
    assert_eq!(code, Some(7), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("stdin-is-a-tty"), "{out}");
    // An interactive exec reads what is typed.
    let (code, out) = w.docker_pty(
        &["exec", "-it", "term", "sh"],
        &[
            (Duration::from_millis(800), b"echo typed-$((6*7))\n"),
            (Duration::from_millis(300), b"exit 4\n"),
        ],
    );
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("typed-42"), "{out}");

    // attach, type, then detach with ctrl-p ctrl-q: the container keeps running.
    let (code, out) = w.docker_pty(
        &["attach", "term"],
        &[
            (Duration::from_millis(800), b"echo attached-$((5*5))\n"),
            (Duration::from_millis(500), b"\x10\x11"),
        ],
    );
    // The docker CLI itself reports the detach as an error ("read escape sequence", exit 1).
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("attached-25"), "{out}");
    assert!(out.contains("read escape sequence"), "{out}");
    assert_eq!(inspect(&w, "term", "{{.State.Running}}"), "true");
    // What was typed while attached is in the container's log too.
    assert!(w.ok(&["logs", "term"]).contains("attached-25"));
    // A custom detach key sequence works the same way.
    let (code, out) = w.docker_pty(
        &["attach", "--detach-keys", "ctrl-x,x", "term"],
        &[(Duration::from_millis(800), b"\x18x")],
    );
    assert!(
        code == Some(1) && out.contains("read escape sequence"),
        "{code:?} {out}"
    );
    assert_eq!(inspect(&w, "term", "{{.State.Running}}"), "true");
    w.ok(&["rm", "-f", "term"]);

    // json-file rotation: max-size per file, max-file files, and logs reads across them.
    let id = w
        .ok(&[
            "run",
            "-d",
            "--log-opt",
            "max-size=10k",
            "--log-opt",
            "max-file=3",
            "busybox",
            "sh",
            "-c",
            "i=0; while [ $i -lt 2000 ]; do echo line-$i-padding-padding; i=$((i+1)); done",
        ])
        .trim()
        .to_string();
    assert_eq!(w.ok(&["wait", &id]).trim(), "0");
    let dir = w.data_root().join("containers").join(&id);
    let log = dir.join(format!("{id}-json.log"));
    for f in [log.clone(), log.with_extension("log.1"), log.with_extension("log.2")] {
        let len = std::fs::metadata(&f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .len();
        assert!(len > 0 && len <= 10 * 1024 + 200, "{}: {len} bytes", f.display());
    }
    assert!(!log.with_extension("log.3").exists(), "more than max-file files");
    let logs = w.ok(&["logs", &id]);
    assert!(
        logs.ends_with("line-1999-padding-padding\n"),
        "{}",
        &logs[logs.len().saturating_sub(200)..]
    );
    assert!(!logs.contains("line-0-padding"), "the oldest lines were rotated away");
    // The kept lines are contiguous across the files.
    let nums: Vec<u32> = logs
        .lines()
        .map(|l| l.split('-').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(nums.windows(2).all(|p| p[1] == p[0] + 1), "gap in rotated logs");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn init_and_shared_namespaces() {
    let w = daemon();
    // Without an init the orphan stays a zombie under a PID 1 that never waits; with --init
    // (tini at /sbin/docker-init) it is reaped.
    let zombies = |init: bool| {
        let mut args = vec!["run", "-d"];
        if init {
            args.push("--init");
        }
        args.extend(["busybox", "sh", "-c", "sh -c 'sleep 0.2 & exit'; exec sleep 30"]);
        let id = w.ok(&args).trim().to_string();
        std::thread::sleep(Duration::from_millis(1200));
        let ps = w.ok(&["exec", &id, "ps", "-o", "stat,comm"]);
        let first = w.ok(&["exec", &id, "cat", "/proc/1/cmdline"]);
        w.ok(&["rm", "-f", &id]);
        (ps.lines().filter(|l| l.trim_start().starts_with('Z')).count(), first)
    };
    let (z, pid1) = zombies(false);
    assert_eq!(z, 1, "expected the orphan as a zombie without --init");
    assert!(pid1.starts_with("sleep"), "{pid1}");
    let (z, pid1) = zombies(true);
    assert_eq!(z, 0, "--init left a zombie");
    assert!(pid1.starts_with("/sbin/docker-init\0--\0"), "{pid1:?}");
    // The init forwards signals: docker stop ends the container at once, with TERM's code.
    w.ok(&["run", "-d", "--init", "--name", "fwd", "busybox", "sleep", "60"]);
    let t = Instant::now();
    w.ok(&["stop", "-t", "10", "fwd"]);
    assert!(t.elapsed() < Duration::from_secs(5), "TERM was not forwarded");
    assert_eq!(inspect(&w, "fwd", "{{.State.ExitCode}}"), "143");

    // IPC: the default is private; shareable donors can be joined and share /dev/shm.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "donor",
        "--ipc",
        "shareable",
        "busybox",
        "sleep",
        "60",
    ]);
    w.ok(&["run", "-d", "--name", "private", "busybox", "sleep", "60"]);
    assert_eq!(inspect(&w, "private", "{{.HostConfig.IpcMode}}"), "private");
    let ipc_of = |name: &str| {
        let pid = inspect(&w, name, "{{.State.Pid}}");
        std::fs::read_link(format!("/proc/{pid}/ns/ipc")).unwrap()
    };
    let out = w.ok(&[
        "run",
        "--rm",
        "--ipc",
        "container:donor",
        "--pid",
        "container:donor",
        "busybox",
        "sh",
        "-c",
        "echo shared > /dev/shm/note; readlink /proc/self/ns/ipc; ps -o comm",
    ]);
    assert!(out.contains(ipc_of("donor").to_str().unwrap()), "{out}");
    assert_ne!(ipc_of("donor"), ipc_of("private"));
    // --pid container: sees the donor's processes.
    assert!(out.lines().any(|l| l.trim() == "sleep"), "{out}");
    assert_eq!(w.ok(&["exec", "donor", "cat", "/dev/shm/note"]), "shared\n");
    let err = w.fails(&["run", "--rm", "--ipc", "container:private", "busybox", "true"]);
    assert!(err.contains("non-shareable IPC"), "{err}");
    w.ok(&["stop", "-t", "0", "private"]);
    let err = w.fails(&["run", "--rm", "--pid", "container:private", "busybox", "true"]);
    // Docker 28's words (older engines said "cannot join PID of a non running container").
    assert!(err.contains("container private is not running"), "{err}");
    assert!(w
        .fails(&["run", "--rm", "--ipc", "bogus", "busybox", "true"])
        .contains("invalid IPC mode: bogus"));
    // --ipc none has no /dev/shm; --userns host is the only user namespace mode there is.
    assert_eq!(
        w.ok(&[
            "run",
            "--rm",
            "--ipc",
            "none",
            "--userns",
            "host",
            "busybox",
            "sh",
            "-c",
            "test -e /dev/shm || echo no-shm"
        ]),
        "no-shm\n"
    );
    // The shared /dev/shm is unmounted when the donor stops.
    let donor = inspect(&w, "donor", "{{.Id}}");
    w.ok(&["rm", "-f", "donor"]);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&donor), "{mounts}");
}

/// Microseconds of CPU the container's cgroup used (cgroup v1 cpuacct).
fn cpu_usage_us(w: &Wharfd, id: &str) -> u64 {
    cgroup_file(w, id, "cpuacct", "cpuacct.usage").parse::<u64>().unwrap() / 1000
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn update_and_measured_cpu() {
    let w = daemon();
    // --cpus 0.5 holds a busy loop to half a CPU, measured from the cgroup's own accounting.
    let id = w
        .ok(&[
            "run",
            "-d",
            "--cpus",
            "0.5",
            "busybox",
            "sh",
            "-c",
            "while :; do :; done",
        ])
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(300));
    let (c0, t0) = (cpu_usage_us(&w, &id), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let share = (cpu_usage_us(&w, &id) - c0) as f64 / t0.elapsed().as_micros() as f64;
    assert!((0.35..=0.6).contains(&share), "--cpus 0.5 used {share:.2} CPUs");
    // docker update raises it on the running container.
    w.ok(&["update", "--cpus", "1", &id]);
    assert_eq!(cgroup_file(&w, &id, "cpu", "cpu.cfs_quota_us"), "100000");
    let (c0, t0) = (cpu_usage_us(&w, &id), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let share = (cpu_usage_us(&w, &id) - c0) as f64 / t0.elapsed().as_micros() as f64;
    assert!((0.75..=1.1).contains(&share), "--cpus 1 used {share:.2} CPUs");
    // Docker's conflicts: quota against NanoCPUs.
    let err = w.fails(&["update", "--cpu-quota", "20000", &id]);
    assert!(
        err.contains(&format!(
            "Cannot update container {id}: Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
        )),
        "{err}"
    );
    w.ok(&["rm", "-f", &id]);

    // Memory, swap, pids, shares and the restart policy, in the cgroup and in inspect.
    w.ok(&["run", "-d", "--name", "upd", "-m", "32m", "busybox", "sleep", "60"]);
    let id = inspect(&w, "upd", "{{.Id}}");
    assert_eq!(
        inspect(&w, "upd", "{{.HostConfig.MemorySwap}}"),
        (64u64 << 20).to_string()
    );
    let err = w.fails(&["update", "-m", "128m", "upd"]);
    assert!(err.contains("update the memoryswap at the same time"), "{err}");
    assert!(w
        .fails(&["update", "-m", "4m", "upd"])
        .contains("Minimum memory limit allowed is 6MB"));
    // A refused update changes nothing.
    assert_eq!(
        cgroup_file(&w, &id, "memory", "memory.limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    w.ok(&[
        "update",
        "-m",
        "128m",
        "--memory-swap",
        "256m",
        "--pids-limit",
        "50",
        "--cpu-shares",
        "512",
        "--restart",
        "on-failure:3",
        "upd",
    ]);
    assert_eq!(
        cgroup_file(&w, &id, "memory", "memory.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    assert_eq!(
        cgroup_file(&w, &id, "memory", "memory.memsw.limit_in_bytes"),
        (256u64 << 20).to_string()
    );
    assert_eq!(cgroup_file(&w, &id, "pids", "pids.max"), "50");
    assert_eq!(cgroup_file(&w, &id, "cpu", "cpu.shares"), "512");
    assert_eq!(
        inspect(&w, "upd", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"),
        format!("{} 50 on-failure:3", 128u64 << 20)
    );
    // Devices still work after the cgroup was rewritten.
    w.ok(&[
        "exec",
        "upd",
        "sh",
        "-c",
        "echo x > /dev/null && head -c1 /dev/zero >/dev/null",
    ]);
    // A stopped container takes the update and starts with it.
    w.ok(&["stop", "-t", "0", "upd"]);
    w.ok(&["update", "--pids-limit", "40", "upd"]);
    w.ok(&["start", "upd"]);
    assert_eq!(cgroup_file(&w, &id, "pids", "pids.max"), "40");
    // --rm containers keep no restart policy.
    w.ok(&["run", "-d", "--rm", "--name", "gone", "busybox", "sleep", "60"]);
    let err = w.fails(&["update", "--restart", "always", "gone"]);
    assert!(
        err.contains("Restart policy cannot be updated because AutoRemove is enabled"),
        "{err}"
    );
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn process_flags_and_shim_stats() {
    let w = daemon();
    let run = |args: &[&str], script: &str| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend(["busybox", "sh", "-c", script]);
        w.ok(&a).trim().to_string()
    };
    assert_eq!(
        run(
            &["--device", "/dev/null:/dev/mynull"],
            "[ -c /dev/mynull ] && echo x > /dev/mynull && echo dev-ok"
        ),
        "dev-ok"
    );
    assert_eq!(
        run(&["--ulimit", "nofile=100:200"], "echo $(ulimit -n) $(ulimit -Hn)"),
        "100 200"
    );
    assert_eq!(
        run(
            &["--sysctl", "net.ipv4.ip_forward=1"],
            "cat /proc/sys/net/ipv4/ip_forward"
        ),
        "1"
    );
    assert_eq!(run(&["--oom-score-adj", "500"], "cat /proc/self/oom_score_adj"), "500");
    assert_eq!(run(&[], "grep NoNewPrivs /proc/self/status"), "NoNewPrivs:\t0");
    assert_eq!(
        run(
            &["--security-opt", "no-new-privileges"],
            "grep NoNewPrivs /proc/self/status"
        ),
        "NoNewPrivs:\t1"
    );
    assert_eq!(
        run(&["--shm-size", "8m"], "df -k /dev/shm | tail -1 | awk '{print $2}'"),
        "8192"
    );
    assert!(run(&["--group-add", "1234"], "id -G").split(' ').any(|g| g == "1234"));
    // --stop-signal and --stop-timeout decide how stop ends a container.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "USR1",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 12' USR1; while :; do sleep 0.1; done",
    ]);
    w.ok(&["stop", "usr1"]);
    assert_eq!(inspect(&w, "usr1", "{{.State.ExitCode}}"), "12");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "--stop-timeout",
        "1",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 0.1; done",
    ]);
    let t = Instant::now();
    w.ok(&["stop", "stubborn"]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "--stop-timeout 1 took {:?}",
        t.elapsed()
    );
    assert_eq!(inspect(&w, "stubborn", "{{.State.ExitCode}}"), "137");

    // The shim answers stats from the cgroup (what `docker stats` will read).
    let id = w
        .ok(&[
            "run",
            "-d",
            "-m",
            "64m",
            "--pids-limit",
            "50",
            "busybox",
            "sh",
            "-c",
            "while :; do :; done",
        ])
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(300));
    let sock = w.dir.path().join("exec/s").join(&id[..16]);
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    use std::io::{BufRead, Write};
    s.write_all(b"{\"op\":\"stats\"}\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let st = &v["stats"];
    assert_eq!(st["memory"]["memory"]["limit"], 64 << 20, "{line}");
    assert!(st["memory"]["memory"]["usage"].as_u64().unwrap() > 0, "{line}");
    assert_eq!(st["pids"]["limit"], 50, "{line}");
    assert!(st["pids"]["current"].as_u64().unwrap() >= 1, "{line}");
    assert!(
        st["cpu"]["usage"]["usage_total"].as_u64().unwrap() > 10_000_000,
        "{line}"
    );
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn stats_like_docker_stats() {
    let w = daemon();
    w.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--cpus",
        "0.5",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    let fmt = "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.MemPerc}}|{{.NetIO}}|{{.BlockIO}}|{{.PIDs}}";
    let check = |out: &str| {
        let f: Vec<&str> = out.trim().split('|').collect();
        assert_eq!(f.len(), 7, "{out}");
        assert_eq!(f[0], "busy");
        let cpu: f64 = f[1].trim_end_matches('%').parse().unwrap();
        assert!((20.0..=80.0).contains(&cpu), "--cpus 0.5 measured {cpu}%: {out}");
        assert!(f[2].ends_with(" / 64MiB"), "{out}");
        assert!(
            f[3].ends_with('%') && f[4].contains(" / ") && f[5].contains(" / "),
            "{out}"
        );
        assert_eq!(f[6], "1", "one process: sh running a builtin loop: {out}");
    };
    // The real docker CLI computes its figures from wharfd's samples; wharf computes the same.
    check(&w.ok(&["stats", "--no-stream", "--format", fmt, "busy"]));
    let o = w.wharf(&["stats", "--no-stream", "--format", fmt, "busy"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check(&String::from_utf8_lossy(&o.stdout));
    // The API: a sample with its CPU baseline, the limit, the interface of the default bridge.
    let (status, _, body) = w.http("GET", "/v1.47/containers/busy/stats?stream=0", b"");
    assert!(status.contains("200"), "{status}");
    let s: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(s["precpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0, "{s}");
    assert!(
        s["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap()
            > s["precpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap()
    );
    assert_eq!(s["memory_stats"]["limit"].as_u64(), Some(64 << 20));
    assert!(s["networks"]["eth0"]["rx_packets"].is_u64(), "{s}");
    assert_eq!(s["name"], "/busy");
    // A stopped container: zeros, as Docker shows them.
    w.ok(&["stop", "-t", "0", "busy"]);
    let out = w.ok(&["stats", "--no-stream", "--format", "{{.CPUPerc}} {{.PIDs}}", "busy"]);
    assert_eq!(out.trim(), "0.00% 0");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn diff_export_and_prune() {
    let w = daemon();
    w.ok(&[
        "run",
        "--name",
        "changed",
        "busybox",
        "sh",
        "-c",
        "echo new > /added; echo more >> /etc/passwd; rm /bin/true; mkdir -p /tmp/d && touch /tmp/d/f",
    ]);
    let diff = w.ok(&["diff", "changed"]);
    for line in [
        "A /added",
        "C /etc",
        "C /etc/passwd",
        "C /bin",
        "D /bin/true",
        "C /tmp",
        "A /tmp/d",
        "A /tmp/d/f",
    ] {
        assert!(diff.lines().any(|l| l == line), "{line} missing from:\n{diff}");
    }
    assert!(
        !diff.contains("/etc/hosts"),
        "the init layer is never part of a diff:\n{diff}"
    );
    let o = w.wharf(&["diff", "changed"], None);
    assert_eq!(String::from_utf8_lossy(&o.stdout), diff);
    // export: the whole filesystem, the container's changes included, no /proc contents.
    let o = w.docker(&["export", "changed"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut names = Vec::new();
    let mut added = String::new();
    for e in tar::Archive::new(&o.stdout[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        if p == "added" {
            std::io::Read::read_to_string(&mut e, &mut added).unwrap();
        }
        names.push(p);
    }
    assert_eq!(added, "new\n");
    assert!(
        names.iter().any(|n| n == "bin/busybox") && !names.iter().any(|n| n == "bin/true"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("proc/")), "{names:?}");
    let file = w.dir.path().join("ex.tar");
    let o = w.wharf(&["export", "-o", file.to_str().unwrap(), "changed"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        w.docker(&["export", "changed"]).stdout.len() as u64
    );
    // container prune takes stopped containers only, and the filters select.
    w.ok(&["run", "-d", "--name", "alive", "busybox", "sleep", "60"]);
    w.ok(&["create", "--name", "kept", "-l", "keep=yes", "busybox", "true"]);
    let out = w.ok(&["container", "prune", "-f", "--filter", "label!=keep=yes"]);
    assert!(
        out.contains("Deleted Containers:") && out.contains("Total reclaimed space:"),
        "{out}"
    );
    let left = w.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    let mut left: Vec<&str> = left.lines().collect();
    left.sort();
    assert_eq!(left, ["alive", "kept"]);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn events_follow_a_run_in_order_and_at_once() {
    use std::io::BufRead;
    let w = daemon();
    // Follow with the real docker CLI, timestamping each line as it arrives.
    let mut child = std::process::Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", w.sock.display()))
        .args([
            "events",
            "--filter",
            "container=evt",
            "--format",
            "{{.Action}} {{.TimeNano}} {{.Actor.Attributes.name}}",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as i128;
            if tx.send((line, now)).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    w.ok(&["run", "--rm", "--name", "evt", "busybox", "true"]);
    let mut got = Vec::new();
    while got.len() < 5 {
        let (line, arrived) = rx.recv_timeout(Duration::from_secs(10)).expect("events arrive");
        let f: Vec<&str> = line.split(' ').collect();
        let at: i128 = f[1].parse().unwrap();
        let late = (arrived - at) / 1_000_000;
        assert!(late < 50, "{} reached the client {late} ms after it happened", f[0]);
        assert_eq!(f[2], "evt");
        got.push(f[0].to_string());
    }
    let _ = child.kill();
    let _ = child.wait();
    // (`run` attaches before it starts, as the docker CLI does against dockerd.)
    assert_eq!(got, ["create", "attach", "start", "die", "destroy"]);
    // The kept events replay with --since and stop at --until; the die carries the exit code.
    // The CLI sends relative times as whole seconds: let the events' second pass first.
    std::thread::sleep(Duration::from_millis(1100));
    let o = w.ok(&[
        "events",
        "--since",
        "1m",
        "--until",
        "0s",
        "--filter",
        "event=die",
        "--format",
        "{{.Type}} {{.Actor.Attributes.exitCode}}",
    ]);
    assert_eq!(o, "container 0\n");
    let o = w.wharf(
        &["events", "--since", "1m", "--until", "0s", "--filter", "container=evt"],
        None,
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let actions: Vec<&str> = text.lines().map(|l| l.split(' ').nth(2).unwrap_or("")).collect();
    assert_eq!(actions, ["create", "attach", "start", "die", "destroy"], "{text}");
    assert!(text.contains("(image=busybox, name=evt)"), "{text}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn system_prune_takes_what_nothing_uses() {
    let w = daemon();
    w.ok(&["run", "--name", "done", "-v", "/anon", "busybox", "true"]);
    w.ok(&["run", "-d", "--name", "up", "busybox", "sleep", "60"]);
    w.ok(&["network", "create", "--subnet", &common::test_subnet(&w, 6), "idle"]);
    w.ok(&["volume", "create", "named"]);
    // system df counts every kind, and what is in use.
    let df = w.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}"]);
    assert_eq!(df, "Images 1 1\nContainers 2 1\nLocal Volumes 2 1\nBuild Cache 0 0\n");
    let out = w.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(
        out.contains("Deleted Containers:") && out.contains("Deleted Networks:\nidle"),
        "{out}"
    );
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(w.ok(&["ps", "-a", "--format", "{{.Names}}"]), "up\n");
    // Named volumes stay (Docker 23+), the anonymous one went with its container's prune.
    assert_eq!(w.ok(&["volume", "ls", "-q"]), "named\n");
    assert_eq!(w.ok(&["images", "-q"]).lines().count(), 1, "busybox is in use");
    // The native CLI prunes the same things and prints the same sections; -a takes unused
    // tagged images too.
    w.ok(&["run", "--name", "done2", "busybox", "true"]);
    w.ok(&["network", "create", "--subnet", &common::test_subnet(&w, 7), "idle2"]);
    let spare = w.import_busybox("spare:1");
    let o = w.wharf(&["system", "prune", "-f", "-a"], None);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("Deleted Containers:\n"), "{out}");
    assert!(out.contains("Deleted Networks:\nidle2\n"), "{out}");
    assert!(
        out.contains(&format!("Deleted Images:\nuntagged: spare:1\ndeleted: {spare}\n")),
        "{out}"
    );
    assert!(
        out.lines().last().unwrap_or("").starts_with("Total reclaimed space: "),
        "{out}"
    );
    assert_eq!(w.ok(&["ps", "-a", "--format", "{{.Names}}"]), "up\n");
    assert_eq!(w.ok(&["images", "--format", "{{.Repository}}"]), "busybox\n");
    let o = w.wharf(&["system", "prune"], None);
    assert!(!o.status.success(), "asks for confirmation without -f");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn commit_keeps_the_read_write_layer_and_the_changes() {
    let w = Wharfd::start();
    let base = w.import_busybox("commitbase:1");
    // A parent with a directory that the child replaces (an opaque directory in overlay).
    w.ok(&[
        "run",
        "--name",
        "c0",
        "commitbase:1",
        "sh",
        "-c",
        "mkdir /opq && touch /opq/a /opq/keep",
    ]);
    let mid = w.ok(&["commit", "c0", "commitmid:1"]).trim().to_string();
    w.ok(&[
        "run",
        "--name",
        "c1",
        "-v",
        "cvol:/data",
        "commitmid:1",
        "sh",
        "-c",
        "echo hi > /newfile; rm /bin/ls; rm -rf /opq && mkdir /opq && touch /opq/b; mkfifo /fifo; echo vol > /data/x",
    ]);
    let id = w
        .ok(&[
            "commit",
            "-a",
            "Ann <ann@example.com>",
            "-m",
            "the message",
            "-c",
            "CMD [\"cat\", \"/newfile\"]",
            "-c",
            "ENV FOO=bar",
            "-c",
            "LABEL k=v",
            "-c",
            "EXPOSE 8080",
            "-c",
            "WORKDIR /opq",
            "-c",
            "USER nobody",
            "c1",
            "committed:v1",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(w.ok(&["run", "--rm", "committed:v1"]), "hi\n");
    let listing = w.ok(&[
        "run",
        "--rm",
        "-u",
        "root",
        "committed:v1",
        "sh",
        "-c",
        "ls /opq; ls /data | wc -l; ls /bin/ls 2>&1; ls -l /fifo; pwd; echo $FOO",
    ]);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines[0], "b", "the opaque directory replaced the parent's: {listing}");
    assert_eq!(lines[1].trim(), "0", "volume contents are not committed: {listing}");
    assert!(lines[2].contains("No such file"), "{listing}");
    assert!(lines[3].starts_with('p'), "{listing}");
    assert_eq!(&lines[4..], ["/opq", "bar"], "{listing}");
    let f =
        "{{.Author}}|{{.Comment}}|{{.Parent}}|{{json .Config.Labels}}|{{json .Config.ExposedPorts}}|{{.Config.User}}";
    assert_eq!(
        w.ok(&["image", "inspect", "--format", f, "committed:v1"]).trim(),
        format!("Ann <ann@example.com>|the message|{mid}|{{\"k\":\"v\"}}|{{\"8080/tcp\":{{}}}}|nobody")
    );
    let hist = w.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.Comment}}",
        "committed:v1",
    ]);
    let rows: Vec<&str> = hist.lines().collect();
    assert_eq!(rows[0], format!("{id}|the message"), "{hist}");
    assert!(rows[1].starts_with(&format!("{mid}|")), "{hist}");
    assert!(rows[2].starts_with(&format!("{base}|")), "{hist}");

    // A running container is frozen for the copy and runs on after it.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "runner",
        "commitbase:1",
        "sh",
        "-c",
        "echo run > /r; sleep 1000",
    ]);
    let start = std::time::Instant::now();
    while !w.docker(&["exec", "runner", "cat", "/r"]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    w.ok(&["commit", "runner", "fromrunning:1"]);
    assert_eq!(
        w.ok(&["inspect", "--format", "{{.State.Status}}", "runner"]).trim(),
        "running"
    );
    assert_eq!(w.ok(&["run", "--rm", "fromrunning:1", "cat", "/r"]), "run\n");
    let e = w.fails(&["commit", "nosuch"]);
    assert!(e.contains("No such container: nosuch"), "{e}");
    let o = w.wharf(&["commit", "c1"], None);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("sha256:"));
    w.ok(&["rm", "-f", "runner", "c0", "c1"]);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn healthchecks_probe_and_report() {
    let w = daemon();
    w.ok(&[
        "run",
        "-d",
        "--name",
        "good",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "300ms",
        "--health-retries",
        "2",
        "busybox",
        "sh",
        "-c",
        "sleep 1; touch /tmp/ok; sleep 600",
    ]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "bad",
        "--health-cmd",
        "echo nope; exit 1",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "600",
    ]);
    w.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "600"]);
    // Both start as `starting`; the probes decide.
    wait_until("good healthy", || {
        inspect(&w, "good", "{{.State.Health.Status}}") == "healthy"
    });
    wait_until("bad unhealthy", || {
        inspect(&w, "bad", "{{.State.Health.Status}}") == "unhealthy"
    });
    assert_eq!(inspect(&w, "plain", "{{json .State.Health}}"), "null");
    let log = inspect(&w, "bad", "{{json .State.Health}}");
    let v: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert!(v["FailingStreak"].as_i64().unwrap() >= 2, "{log}");
    let last = v["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], 1);
    assert_eq!(last["Output"], "nope\n");
    assert!(v["Log"].as_array().unwrap().len() <= 5);
    // `ps` shows it, and filters on it.
    let status = w.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("good Up") && l.ends_with("(healthy)")),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("bad Up") && l.ends_with("(unhealthy)")),
        "{status}"
    );
    assert_eq!(
        w.ok(&["ps", "--filter", "health=unhealthy", "--format", "{{.Names}}"]),
        "bad\n"
    );
    assert_eq!(
        w.ok(&["ps", "--filter", "health=none", "--format", "{{.Names}}"]),
        "plain\n"
    );
    // The config as Docker keeps it, and the change as an event.
    assert_eq!(
        inspect(&w, "bad", "{{json .Config.Healthcheck.Test}}"),
        r#"["CMD-SHELL","echo nope; exit 1"]"#
    );
    let events = || {
        w.ok(&[
            "events",
            "--since",
            "0",
            "--until",
            "0s",
            "--filter",
            "container=good",
            "--format",
            "{{.Action}}",
        ])
    };
    // (The state changes a moment before its event is published, as in dockerd.)
    wait_until("the health event", || {
        events().lines().any(|l| l == "health_status: healthy")
    });
    let ev = events();
    assert!(
        ev.lines().any(|l| l == "exec_start: /bin/sh -c test -f /tmp/ok"),
        "{ev}"
    );
    // A probe that outlives its timeout fails with Docker's words; a bad value is refused.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "600",
    ]);
    wait_until("slow unhealthy", || {
        inspect(&w, "slow", "{{.State.Health.Status}}") == "unhealthy"
    });
    assert_eq!(
        inspect(&w, "slow", "{{(index .State.Health.Log 0).Output}}"),
        "Health check exceeded timeout (300ms)"
    );
    let err = w.fails(&["create", "--health-cmd", "true", "--health-interval", "1us", "busybox"]);
    assert!(err.contains("Interval in Healthcheck cannot be less than 1ms"), "{err}");
    // The probes' execs do not pile up on the container: by now `bad` has been probed a dozen
    // times; at any moment at most the probe in flight is listed (dockerd lists it too), and
    // between probes none.
    let counts: Vec<usize> = (0..20)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            inspect(&w, "bad", "{{len .ExecIDs}}").parse().unwrap()
        })
        .collect();
    assert!(counts.iter().all(|&n| n <= 1), "{counts:?}");
    assert!(counts.contains(&0), "{counts:?}");
    w.ok(&["rm", "-f", "good", "bad", "plain", "slow"]);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn kill_exec_and_create_answer_as_dockerd() {
    let w = daemon();
    w.ok(&["run", "-d", "--name", "k1", "busybox", "sleep", "600"]);
    // SIGKILL returns once the container is gone, exit code and all.
    w.ok(&["kill", "k1"]);
    assert_eq!(inspect(&w, "k1", "{{.State.Running}} {{.State.ExitCode}}"), "false 137");
    // An exec of a command that is not there: dockerd's words on the stream, exit 127 (Docker
    // 25 and later; dockerd 20.10 said 126); one that cannot start for another reason, 126.
    w.ok(&["start", "k1"]);
    let o = w.docker(&["exec", "k1", "/etc"]);
    assert_eq!(o.status.code(), Some(126), "{}", String::from_utf8_lossy(&o.stdout));
    let o = w.docker(&["exec", "k1", "nosuch"]);
    assert_eq!(o.status.code(), Some(127));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "OCI runtime exec failed: exec failed: unable to start container process: exec: \"nosuch\": executable file not found in $PATH: unknown"
    );
    // The runtime is dockerd's default name; others and unknown log drivers are refused.
    assert_eq!(
        inspect(&w, "k1", "{{.HostConfig.Runtime}} {{.HostConfig.LogConfig.Type}}"),
        "runc json-file"
    );
    let err = w.fails(&["create", "--runtime", "kata", "busybox"]);
    assert!(err.contains("unknown or invalid runtime name: kata"), "{err}");
    let err = w.fails(&["create", "--log-driver", "asdf", "busybox"]);
    assert!(
        err.contains("error looking up logging plugin asdf: plugin \"asdf\" not found"),
        "{err}"
    );
    let err = w.fails(&["create", "--log-opt", "bogus=1", "busybox"]);
    assert!(
        err.contains("unknown log opt 'bogus' for json-file log driver"),
        "{err}"
    );
    // A legacy link is removed from its container, which keeps running.
    w.ok(&[
        "run", "-d", "--name", "linker", "--link", "k1:kk", "busybox", "sleep", "600",
    ]);
    assert!(w.ok(&["exec", "linker", "cat", "/etc/hosts"]).contains("kk"));
    w.ok(&["rm", "--link", "/linker/kk"]);
    assert_eq!(inspect(&w, "linker", "{{.HostConfig.Links}}"), "[]");
    assert!(!w.ok(&["exec", "linker", "cat", "/etc/hosts"]).contains("kk"));
    assert!(w.fails(&["rm", "--link", "/linker/kk"]).contains("No such link"));
    // `stream=False` (docker-py's spelling) is one sample, not a stream.
    let (status, _, body) = w.http("GET", "/containers/k1/stats?stream=False&one-shot=True", b"");
    assert!(status.contains("200"), "{status}");
    let one: serde_json::Value = serde_json::from_slice(&body).expect("one JSON document");
    assert!(one["memory_stats"].is_object());
    w.ok(&["rm", "-f", "k1", "linker"]);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn an_interrupted_removal_is_finished_at_the_next_start() {
    let mut w = daemon();
    let id = w
        .ok(&["create", "--name", "half", "busybox", "true"])
        .trim()
        .to_string();
    w.ok(&["create", "--name", "whole", "busybox", "true"]);
    w.stop();
    // The daemon went down while removing `half`: its record says so.
    let rec = w.data_root().join("containers").join(&id).join("config.v2.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
    v["state"]["status"] = "removing".into();
    std::fs::write(&rec, serde_json::to_vec(&v).unwrap()).unwrap();
    w.spawn();
    assert_eq!(w.ok(&["ps", "-a", "--format", "{{.Names}}"]), "whole\n");
    assert!(!rec.parent().unwrap().exists());
    w.ok(&["rm", "whole"]);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn ps_and_inspect_never_wait_behind_a_stopping_container() {
    let w = daemon();
    w.ok(&[
        "run",
        "-d",
        "--name",
        "slowstop",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 0.1; done",
    ]);
    w.ok(&["run", "-d", "--name", "other", "busybox", "sleep", "600"]);
    // A stop that takes ten seconds (the process ignores SIGTERM) ...
    let mut stop = std::process::Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", w.sock.display()))
        .args(["stop", "-t", "10", "slowstop"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // ... holds nothing else up: listing, inspecting and acting on other containers answer at once.
    for args in [
        &["ps", "-a"][..],
        &["inspect", "slowstop"],
        &["ps", "--filter", "name=slowstop", "--format", "{{.Status}}"],
        &["exec", "other", "true"],
        &["stop", "-t", "0", "other"],
    ] {
        let t = Instant::now();
        w.ok(args);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{args:?} waited {:?} behind the stop",
            t.elapsed()
        );
    }
    assert!(stop.try_wait().unwrap().is_none(), "the slow stop ended early");
    assert_eq!(stop.wait().unwrap().code(), Some(0));
    assert_eq!(inspect(&w, "slowstop", "{{.State.ExitCode}}"), "137");
    w.ok(&["rm", "slowstop", "other"]);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn diff_and_commit_on_vfs_match_overlay2() {
    let ov = daemon();
    let vfs = Wharfd::start_with(&["--storage-driver", "vfs"]);
    vfs.import_busybox("busybox:latest");
    assert_eq!(vfs.ok(&["info", "-f", "{{.Driver}}"]).trim(), "vfs");
    let work = "mkdir -p /data/sub && echo new > /data/sub/f && echo changed >> /etc/passwd && rm /etc/group \
                && rm -r /home && ln -s /data/sub /link && mkfifo /data/fifo";
    let mut diffs = Vec::new();
    for w in [&ov, &vfs] {
        w.ok(&["run", "--name", "work", "busybox", "sh", "-c", work]);
        diffs.push(w.ok(&["diff", "work"]));
    }
    assert_eq!(diffs[0], diffs[1], "overlay2 and vfs see different changes");
    for line in [
        "A /data/sub/f",
        "C /etc/passwd",
        "D /etc/group",
        "D /home",
        "A /link",
        "A /data/fifo",
        "C /etc",
    ] {
        assert!(diffs[1].lines().any(|l| l == line), "{line} missing from\n{}", diffs[1]);
    }
    assert!(
        !diffs[1].contains("/etc/hosts") && !diffs[1].contains("/proc"),
        "{}",
        diffs[1]
    );
    // The committed image has the changes, on both drivers, and the same layer.
    let mut diff_ids = Vec::new();
    for w in [&ov, &vfs] {
        w.ok(&["commit", "work", "worked:1"]);
        let check = "cat /data/sub/f; grep -c changed /etc/passwd; test -e /etc/group || echo no-group; \
                     test -e /home || echo no-home; readlink /link; test -p /data/fifo && echo fifo";
        assert_eq!(
            w.ok(&["run", "--rm", "worked:1", "sh", "-c", check]),
            "new\n1\nno-group\nno-home\n/data/sub\nfifo\n"
        );
        diff_ids.push(w.ok(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", "worked:1"]));
        w.ok(&["rm", "work"]);
    }
    assert_eq!(diff_ids[0], diff_ids[1]);
    assert_eq!(diff_ids[1].trim(), "2");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn exec_ids_list_the_execs_still_running() {
    let w = Wharfd::start();
    w.import_busybox("busybox");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "ex1",
        "--network",
        "none",
        "busybox",
        "sleep",
        "600",
    ]);
    for _ in 0..3 {
        w.ok(&["exec", "ex1", "true"]);
    }
    assert_eq!(w.ok(&["inspect", "-f", "{{len .ExecIDs}}", "ex1"]).trim(), "0");
    w.ok(&["exec", "-d", "ex1", "sleep", "2"]);
    let ids = w.ok(&["inspect", "-f", "{{range .ExecIDs}}{{.}} {{end}}", "ex1"]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.ok(&["inspect", "-f", "{{len .ExecIDs}}", "ex1"]).trim() != "0" {
        assert!(Instant::now() < deadline, "the ended exec is still listed");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The ended exec can still be inspected, as in dockerd.
    let (head, _, body) = w.http("GET", &format!("/exec/{}/json", ids[0]), b"");
    assert!(head.contains(" 200 "), "{head}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((v["Running"].as_bool(), v["ExitCode"].as_i64()), (Some(false), Some(0)));
    w.ok(&["rm", "-f", "ex1"]);
}

/// Puts a stopped daemon's data root back as wharf wrote it before container roots were
/// snapshots (ARCHITECTURE.md of then): overlay2 kept a container's read-write layer in
/// `containers/<id>/rw/{diff,work}` over an `init` directory of its own, vfs its whole root
/// in `containers/<id>/rootfs`, and there was no `snapshots/`.
fn to_layout_before_snapshots(data_root: &std::path::Path, driver: &str) {
    use std::fs;
    let store = data_root.join("snapshots").join(driver);
    for e in fs::read_dir(store.join("meta")).unwrap() {
        let p = e.unwrap().path();
        let rec: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        let key = rec["key"].as_str().unwrap();
        if key.starts_with("init-") {
            continue;
        }
        let own = store.join("snapshots").join(rec["n"].to_string()).join("fs");
        let dir = data_root.join("containers").join(key);
        if driver == "overlay2" {
            fs::create_dir_all(dir.join("rw/work")).unwrap();
            fs::rename(&own, dir.join("rw/diff")).unwrap();
            for d in ["etc", "dev/pts", "dev/shm", "proc", "sys"] {
                fs::create_dir_all(dir.join("init").join(d)).unwrap();
            }
            for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
                fs::write(dir.join("init").join(f), "").unwrap();
            }
        } else {
            fs::rename(&own, dir.join("rootfs")).unwrap();
        }
    }
    fs::remove_dir_all(data_root.join("snapshots")).unwrap();
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn a_data_root_from_before_snapshots_still_opens() {
    for driver in ["overlay2", "vfs"] {
        let mut w = Wharfd::start_with(&["--storage-driver", driver]);
        w.import_busybox("busybox:latest");
        let script = "test -f /kept || echo kept > /kept; rm -f /bin/arch; cat /kept";
        assert_eq!(w.ok(&["run", "--name", "old", "busybox", "sh", "-c", script]), "kept\n");
        w.ok(&["create", "--name", "fresh", "busybox", "true"]);
        let before = w.ok(&["diff", "old"]);
        assert!(before.contains("A /kept") && before.contains("D /bin/arch"), "{before}");
        w.stop();
        to_layout_before_snapshots(&w.data_root(), driver);
        w.spawn();
        // The layer's files are the container's still, its changes the same, and it runs.
        assert_eq!(w.ok(&["diff", "old"]), before, "{driver}");
        assert_eq!(w.ok(&["start", "-a", "old"]), "kept\n", "{driver}");
        w.ok(&["start", "-a", "fresh"]);
        let upper = inspect(&w, "old", "{{json .GraphDriver.Data}}");
        if driver == "overlay2" {
            assert!(upper.contains("/snapshots/overlay2/"), "{upper}");
        } else {
            assert_eq!(upper, "null");
        }
        w.ok(&["rm", "old", "fresh"]);
        // Nothing of either root is left: the init snapshot goes with the last container.
        let left = w.data_root().join("snapshots").join(driver).join("snapshots");
        assert_eq!(std::fs::read_dir(&left).unwrap().count(), 0, "{driver}");
        assert!(!w.data_root().join("containers").join("rw").exists());
    }
}
