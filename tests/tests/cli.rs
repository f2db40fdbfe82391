//! The native `wharf` CLI against a real wharfd: the same commands as the docker CLI give the
//! same output for the same objects, with docker's exit codes.

mod common;

use std::process::Output;

use common::Wharfd;

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn wharf_ok(w: &Wharfd, args: &[&str]) -> String {
    let o = w.wharf(args, None);
    assert!(o.status.success(), "wharf {args:?}: {}\n{}", err(&o), out(&o));
    out(&o)
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn same_output_as_the_docker_cli() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    w.ok(&["tag", "busybox", "example.com/team/tool:1.0"]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-l",
        "tier=front",
        "busybox",
        "sh",
        "-c",
        "echo started; sleep 60",
    ]);
    w.ok(&["create", "--name", "idle", "busybox", "true"]);
    // Tables, -q, --no-trunc, filters and templates, byte for byte.
    for args in [
        &["ps"][..],
        &["ps", "-a"],
        &["ps", "-a", "-q"],
        &["ps", "-a", "--no-trunc"],
        &[
            "ps",
            "-a",
            "--filter",
            "status=created",
            "--format",
            "{{.Names}} {{.State}}",
        ],
        &["ps", "--format", "table {{.Names}}\\t{{.Labels}}\\t{{.Command}}"],
        &["ps", "-l", "-q"],
        &["images"],
        &["images", "-q"],
        &["images", "--no-trunc"],
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
        &["history", "busybox"],
        &[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Running}} {{.Config.Labels.tier}} {{json .Config.Cmd}}",
            "web",
        ],
        &[
            "inspect",
            "-f",
            "{{join .Config.Cmd \",\"}} {{.HostConfig.RestartPolicy.Name}}",
            "web",
        ],
        &[
            "inspect",
            "--type",
            "image",
            "-f",
            "{{.Id}} {{index .RepoTags 0}}",
            "busybox",
        ],
        &["logs", "web"],
    ] {
        // Relative times ("1 second ago") may cross a second between the two calls: a pair
        // that differs is taken again, and must agree within three tries.
        let mut tries = 0;
        let (d, o) = loop {
            let (mut d, mut o) = (w.ok(args), wharf_ok(&w, args));
            if args[0] == "images" {
                // The docker CLI prints the repositories of one image in Go map order (random).
                let sorted = |s: &str| {
                    let mut l: Vec<&str> = s.lines().collect();
                    let head = if l.first().is_some_and(|h| h.starts_with("REPOSITORY")) {
                        l.remove(0)
                    } else {
                        ""
                    };
                    l.sort();
                    format!("{head}\n{}", l.join("\n"))
                };
                (d, o) = (sorted(&d), sorted(&o));
            }
            tries += 1;
            if d == o || tries == 3 {
                break (d, o);
            }
        };
        assert_eq!(o, d, "wharf {args:?} differs from docker");
    }
    // Inspect without a format is the same JSON document (key order aside).
    let d: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "web"])).unwrap();
    let o: serde_json::Value = serde_json::from_str(&wharf_ok(&w, &["inspect", "web"])).unwrap();
    assert_eq!(o, d);
    // Unknown objects: an error on stderr and exit 1, as docker does.
    let o = w.wharf(&["inspect", "nosuch"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("No such object: nosuch"), "{}", err(&o));
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn run_exec_and_lifecycle() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    // run --rm: output, stderr, exit codes as docker's (125 daemon, 127 not found).
    assert_eq!(wharf_ok(&w, &["run", "--rm", "busybox", "echo", "hi", "-n"]), "hi -n\n");
    let o = w.wharf(&["run", "--rm", "busybox", "sh", "-c", "echo oops >&2; exit 3"], None);
    assert_eq!((o.status.code(), err(&o).as_str()), (Some(3), "oops\n"));
    let o = w.wharf(&["run", "--rm", "busybox", "nosuchcmd"], None);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));
    assert!(err(&o).contains("executable file not found"), "{}", err(&o));
    let o = w.wharf(&["run", "--rm", "--cpus", "99", "busybox", "true"], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("Range of CPUs"), "{}", err(&o));
    let o = w.wharf(&["run", "--rm", "nosuchimage"], None);
    assert_eq!(o.status.code(), Some(125));
    // stdin with -i.
    let o = w.wharf(
        &["run", "-i", "--rm", "busybox", "sh"],
        Some(b"echo from-stdin\nexit 5\n"),
    );
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(5), "from-stdin\n"));
    // Flags reach the container.
    let o = wharf_ok(
        &w,
        &[
            "run",
            "--rm",
            "-h",
            "boxy",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "-u",
            "1:2",
            "--init",
            "busybox",
            "sh",
            "-c",
            "echo $(hostname) $X $(pwd) $(id -u):$(id -g) $(cat /proc/1/comm)",
        ],
    );
    assert_eq!(o, "boxy 1 /tmp 1:2 docker-init\n");
    wharf_ok(&w, &["run", "--rm", "--read-only", "busybox", "sh", "-c", "! touch /x"]);

    // -d, exec, logs, top, pause, stop, start, restart, rename, wait, rm.
    let id = wharf_ok(
        &w,
        &[
            "run",
            "-d",
            "--name",
            "svc",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 7' TERM; echo up; while :; do sleep 0.1; done",
        ],
    );
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let o = w.wharf(&["exec", "-e", "A=2", "svc", "sh", "-c", "echo $A; exit 9"], None);
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(9), "2\n"));
    assert_eq!(wharf_ok(&w, &["logs", "svc"]), "up\n");
    assert!(wharf_ok(&w, &["top", "svc"]).contains("while :"));
    assert_eq!(wharf_ok(&w, &["pause", "svc"]), "svc\n");
    assert_eq!(w.ok(&["inspect", "-f", "{{.State.Status}}", "svc"]).trim(), "paused");
    wharf_ok(&w, &["unpause", "svc"]);
    wharf_ok(&w, &["update", "--pids-limit", "20", "svc"]);
    assert_eq!(
        w.ok(&["inspect", "-f", "{{.HostConfig.PidsLimit}}", "svc"]).trim(),
        "20"
    );
    assert_eq!(wharf_ok(&w, &["stop", "svc"]), "svc\n");
    assert_eq!(wharf_ok(&w, &["wait", "svc"]), "7\n");
    wharf_ok(&w, &["start", "svc"]);
    wharf_ok(&w, &["rename", "svc", "svc2"]);
    wharf_ok(&w, &["kill", "-s", "TERM", "svc2"]);
    assert_eq!(wharf_ok(&w, &["wait", "svc2"]), "7\n");
    let o = w.wharf(&["kill", "svc2"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("is not running"), "{}", err(&o));
    assert_eq!(wharf_ok(&w, &["rm", "svc2"]), "svc2\n");
    assert_eq!(wharf_ok(&w, &["ps", "-aq"]), "");
    // start -a streams and exits with the container's code.
    w.ok(&["create", "--name", "once", "busybox", "sh", "-c", "echo once; exit 4"]);
    let o = w.wharf(&["start", "-a", "once"], None);
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(4), "once\n"));

    // Images: save | load round trip, import with a change, tag, rmi.
    let tar = w.dir.path().join("bb.tar");
    wharf_ok(&w, &["save", "-o", tar.to_str().unwrap(), "busybox"]);
    w.ok(&["rm", "once"]);
    assert!(wharf_ok(&w, &["rmi", "busybox"]).starts_with("Untagged: busybox:latest\nDeleted: sha256:"));
    assert_eq!(
        wharf_ok(&w, &["load", "-i", tar.to_str().unwrap()]),
        "Loaded image: busybox:latest\n"
    );
    let rootfs = common::images_dir().join("busybox-rootfs.tar");
    let imported = wharf_ok(
        &w,
        &[
            "import",
            "-c",
            "CMD [\"echo\", \"imported\"]",
            rootfs.to_str().unwrap(),
            "mine:v1",
        ],
    );
    assert!(imported.starts_with("sha256:"), "{imported}");
    assert_eq!(wharf_ok(&w, &["run", "--rm", "mine:v1"]), "imported\n");
    wharf_ok(&w, &["tag", "mine:v1", "mine:v2"]);
    assert_eq!(wharf_ok(&w, &["rmi", "mine:v2"]), "Untagged: mine:v2\n");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn terminals() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    let sock = format!("unix://{}", w.sock.display());
    let wharf = common::bin("wharf");
    let pty = |cmd: &str, input: &str| {
        let o = std::process::Command::new("sh")
            .args(["-c", &format!("{input} | script -qec \"{cmd}\" /dev/null")])
            .env("DOCKER_HOST", &sock)
            .env("TERM", "xterm")
            .output()
            .unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let w_ = wharf.display();
    // run -it: a terminal, typed input, the exit code.
    let (code, text) = pty(
        &format!("{w_} run -it --rm busybox sh"),
        "(sleep 1; printf 'tty; echo typed-$((6*7)); exit 6\\n'; sleep 1)",
    );
    assert_eq!(code, Some(6), "{text}");
    assert!(text.contains("/dev/pts/0") && text.contains("typed-42"), "{text}");
    // exec -it, then attach and detach with ctrl-p ctrl-q.
    w.ok(&["run", "-dit", "--name", "term", "busybox", "sh"]);
    let (code, text) = pty(&format!("{w_} exec -it term sh -c 'tty; exit 3'"), "sleep 1");
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    let (code, text) = pty(
        &format!("{w_} attach term"),
        "(sleep 1; printf 'echo attached-$((5*5))\\n'; sleep 0.5; printf '\\020\\021'; sleep 1)",
    );
    assert!(
        text.contains("attached-25") && text.contains("read escape sequence"),
        "{text}"
    );
    assert_eq!(code, Some(1));
    assert_eq!(w.ok(&["inspect", "-f", "{{.State.Running}}", "term"]).trim(), "true");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn volumes_mounts_and_cp() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    assert_eq!(wharf_ok(&w, &["volume", "create", "--label", "k=v", "wv"]), "wv\n");
    w.ok(&["volume", "create", "other"]);
    // Same listing and inspect as the docker CLI.
    for args in [
        &["volume", "ls"][..],
        &["volume", "ls", "-q", "--filter", "label=k"],
        &["volume", "ls", "--format", "{{.Name}} {{.Driver}} {{.Labels}}"],
        &["volume", "inspect", "wv"],
        &["volume", "inspect", "-f", "{{.Mountpoint}}", "wv"],
    ] {
        assert_eq!(wharf_ok(&w, args), w.ok(args), "{args:?}");
    }
    // -v, --mount and --volumes-from through the native CLI.
    let host = tempfile::tempdir().unwrap();
    let hp = host.path().display().to_string();
    wharf_ok(
        &w,
        &[
            "run",
            "--rm",
            "-v",
            "wv:/d",
            "-v",
            &format!("{hp}:/h"),
            "busybox",
            "sh",
            "-c",
            "echo v > /d/f; echo h > /h/f",
        ],
    );
    assert_eq!(std::fs::read_to_string(host.path().join("f")).unwrap(), "h\n");
    wharf_ok(
        &w,
        &[
            "create",
            "--name",
            "holder",
            "--mount",
            "type=volume,src=wv,dst=/d",
            "busybox",
            "true",
        ],
    );
    assert_eq!(
        wharf_ok(
            &w,
            &["run", "--rm", "--volumes-from", "holder:ro", "busybox", "cat", "/d/f"]
        ),
        "v\n"
    );
    let o = w.wharf(
        &[
            "run",
            "--rm",
            "--mount",
            "type=tmpfs,dst=/t,tmpfs-size=1m",
            "busybox",
            "sh",
            "-c",
            "df -k /t | tail -1",
        ],
        None,
    );
    assert!(
        out(&o).starts_with("tmpfs") && out(&o).split_whitespace().nth(1) == Some("1024"),
        "{}",
        out(&o)
    );
    // In use: refused; rm removes the rest and prints the names.
    let o = w.wharf(&["volume", "rm", "wv"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("volume is in use"), "{}", err(&o));
    // cp both ways, into the running container and its volume, and out again.
    wharf_ok(
        &w,
        &["run", "-d", "--name", "box", "-v", "wv:/d", "busybox", "sleep", "60"],
    );
    std::fs::create_dir_all(host.path().join("tree/sub")).unwrap();
    std::fs::write(host.path().join("tree/sub/x"), "x\n").unwrap();
    wharf_ok(&w, &["cp", &format!("{hp}/tree"), "box:/tmp/"]);
    wharf_ok(&w, &["cp", &format!("{hp}/tree/sub/x"), "box:/d/x2"]);
    assert_eq!(w.ok(&["exec", "box", "cat", "/tmp/tree/sub/x", "/d/x2"]), "x\nx\n");
    let back = tempfile::tempdir().unwrap();
    let bp = back.path().display().to_string();
    wharf_ok(&w, &["cp", "box:/d/.", &format!("{bp}/vol")]);
    assert_eq!(std::fs::read_to_string(back.path().join("vol/f")).unwrap(), "v\n");
    assert_eq!(std::fs::read_to_string(back.path().join("vol/x2")).unwrap(), "x\n");
    let o = w.wharf(&["cp", "box:/nope", &bp], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("Could not find the file /nope in container box"),
        "{}",
        err(&o)
    );
    wharf_ok(&w, &["rm", "-f", "box", "holder"]);
    assert_eq!(wharf_ok(&w, &["volume", "rm", "wv", "other"]), "wv\nother\n");
    assert_eq!(wharf_ok(&w, &["volume", "ls", "-q"]), "");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn networks_and_ports() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    let subnet = common::test_subnet(&w, 4);
    let id = wharf_ok(
        &w,
        &["network", "create", "--subnet", &subnet, "--label", "k=v", "wnet"],
    );
    assert_eq!(id.trim().len(), 64);
    for args in [
        &["network", "ls"][..],
        &["network", "ls", "-q", "--filter", "name=wnet"],
        &[
            "network",
            "ls",
            "--no-trunc",
            "--format",
            "{{.Name}} {{.ID}} {{.Driver}}",
        ],
        &[
            "network",
            "inspect",
            "-f",
            "{{.Name}} {{(index .IPAM.Config 0).Subnet}} {{.Labels}}",
            "wnet",
        ],
    ] {
        assert_eq!(wharf_ok(&w, args), w.ok(args), "{args:?}");
    }
    // run -p, --network, --network-alias, --ip through the native CLI; port as docker prints it.
    let base = subnet.trim_end_matches("0/24");
    let ip = format!("{base}9");
    wharf_ok(
        &w,
        &[
            "run",
            "-d",
            "--name",
            "pub",
            "--network",
            "wnet",
            "--network-alias",
            "pa",
            "--ip",
            &ip,
            "-p",
            "127.0.0.1::80",
            "-p",
            "8000-8001:9000-9001/udp",
            "busybox",
            "sleep",
            "60",
        ],
    );
    for args in [
        &["port", "pub"][..],
        &["port", "pub", "9001/udp"],
        &["ps", "--format", "{{.Ports}}"],
    ] {
        assert_eq!(wharf_ok(&w, args), w.ok(args), "{args:?}");
    }
    assert_eq!(
        w.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.wnet.IPAddress}}", "pub"])
            .trim(),
        ip
    );
    let o = wharf_ok(
        &w,
        &[
            "run",
            "--rm",
            "--network",
            "wnet",
            "busybox",
            "ping",
            "-c1",
            "-W2",
            "pa",
        ],
    );
    assert!(o.contains(&ip), "{o}");
    wharf_ok(&w, &["run", "-d", "--name", "other", "busybox", "sleep", "60"]);
    wharf_ok(&w, &["network", "connect", "--alias", "late", "wnet", "other"]);
    let o = wharf_ok(&w, &["exec", "pub", "ping", "-c1", "-W2", "late"]);
    assert!(o.contains("1 packets received"), "{o}");
    wharf_ok(&w, &["network", "disconnect", "wnet", "other"]);
    let o = w.wharf(&["network", "rm", "wnet"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("has active endpoints"), "{}", err(&o));
    wharf_ok(&w, &["rm", "-f", "pub", "other"]);
    assert_eq!(wharf_ok(&w, &["network", "rm", "wnet"]), "wnet\n");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn healthchecks_and_ipv6_networks_from_the_native_cli() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    // `--health-*` become the same Healthcheck the docker CLI sends.
    let flags = [
        "--health-cmd",
        "true",
        "--health-interval",
        "250ms",
        "--health-timeout",
        "2s",
        "--health-retries",
        "2",
        "--health-start-period",
        "1m30s",
    ];
    let mut args = vec!["create", "--name", "hc-docker"];
    args.extend(flags);
    args.extend(["busybox", "sleep", "600"]);
    w.ok(&args);
    args[2] = "hc-wharf";
    wharf_ok(&w, &args);
    let hc = |n: &str| w.ok(&["inspect", "-f", "{{json .Config.Healthcheck}}", n]);
    assert_eq!(hc("hc-wharf"), hc("hc-docker"));
    assert!(
        hc("hc-wharf").contains(r#""StartPeriod":90000000000"#),
        "{}",
        hc("hc-wharf")
    );
    wharf_ok(&w, &["start", "hc-wharf"]);
    let start = std::time::Instant::now();
    while w.ok(&["inspect", "-f", "{{.State.Health.Status}}", "hc-wharf"]).trim() != "healthy" {
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "never healthy");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(wharf_ok(&w, &["ps", "--format", "{{.Status}}"])
        .trim()
        .ends_with("(healthy)"));
    let o = w.wharf(&["create", "--no-healthcheck", "--health-cmd", "true", "busybox"], None);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("--no-healthcheck conflicts with --health-* options"),
        "{}",
        err(&o)
    );
    wharf_ok(&w, &["create", "--name", "hc-none", "--no-healthcheck", "busybox"]);
    assert_eq!(hc("hc-none").trim(), r#"{"Test":["NONE"]}"#);
    // `network create --ipv6` with an IPv4 and an IPv6 subnet, gateways and auxiliary
    // addresses sorted into their pools; `--ip6` on run and connect.
    let s4 = common::test_subnet(&w, 3);
    let base4 = s4.trim_end_matches("0/24");
    let s6 = format!("fd44:{:x}::/64", 0x100 + w.index);
    let base6 = s6.trim_end_matches("/64");
    wharf_ok(
        &w,
        &[
            "network",
            "create",
            "--ipv6",
            "--subnet",
            &s4,
            "--subnet",
            &s6,
            "--gateway",
            &format!("{base6}fe"),
            "--gateway",
            &format!("{base4}254"),
            "--aux-address",
            &format!("r6={base6}5"),
            "n6",
        ],
    );
    assert_eq!(
        w.ok(&[
            "network",
            "inspect",
            "-f",
            "{{.EnableIPv6}} {{json .IPAM.Config}}",
            "n6"
        ])
        .trim(),
        format!(
            r#"true [{{"Subnet":"{s4}","Gateway":"{base4}254"}},{{"Subnet":"{s6}","Gateway":"{base6}fe","AuxiliaryAddresses":{{"r6":"{base6}5"}}}}]"#
        )
    );
    let ip6 = format!("{base6}42");
    wharf_ok(
        &w,
        &[
            "run",
            "-d",
            "--name",
            "c6",
            "--network",
            "n6",
            "--ip6",
            &ip6,
            "busybox",
            "sleep",
            "600",
        ],
    );
    let address = || {
        w.ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.n6.GlobalIPv6Address}}",
            "c6",
        ])
    };
    assert_eq!(address().trim(), ip6);
    wharf_ok(&w, &["network", "disconnect", "n6", "c6"]);
    let other = format!("{base6}43");
    wharf_ok(&w, &["network", "connect", "--ip6", &other, "n6", "c6"]);
    assert_eq!(address().trim(), other);
    w.ok(&["rm", "-f", "c6", "hc-docker", "hc-wharf", "hc-none"]);
    w.ok(&["network", "rm", "n6"]);
}

/// docker's management forms, `--format json`, the rows' `.Label` method, unknown flags
/// refused as flags (even where the command's own arguments follow), shell completions and
/// man pages: each the same as the docker CLI gives where the docker CLI has it.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn management_forms_formats_completions_and_man_pages() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "lab",
        "--label",
        "tier=web",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]);
    for (wharf, docker) in [
        (
            &[
                "container",
                "ls",
                "--format",
                "{{.Names}} {{.Label \"tier\"}}|{{.Label \"none\"}}|",
            ][..],
            &[
                "container",
                "ls",
                "--format",
                "{{.Names}} {{.Label \"tier\"}}|{{.Label \"none\"}}|",
            ][..],
        ),
        (
            &["container", "list", "-q", "--no-trunc"],
            &["container", "list", "-q", "--no-trunc"],
        ),
        (
            &["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
            &["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        ),
        (
            &["image", "inspect", "--format", "{{.Os}}", "busybox"],
            &["image", "inspect", "--format", "{{.Os}}", "busybox"],
        ),
        (
            &["container", "inspect", "--format", "{{.Name}}", "lab"],
            &["container", "inspect", "--format", "{{.Name}}", "lab"],
        ),
        (
            &["system", "info", "--format", "{{.Driver}} {{.ContainersRunning}}"],
            &["system", "info", "--format", "{{.Driver}} {{.ContainersRunning}}"],
        ),
        (
            &["version", "--format", "{{.Server.APIVersion}}"],
            &["version", "--format", "{{.Server.APIVersion}}"],
        ),
    ] {
        assert_eq!(wharf_ok(&w, wharf), w.ok(docker), "{wharf:?}");
    }
    // One JSON object per line, the row's fields as the docker CLI gives them.
    let line = wharf_ok(&w, &["container", "ls", "--format", "json"]);
    let row: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_str(w.ok(&["container", "ls", "--format", "json"]).trim()).unwrap();
    for k in ["ID", "Names", "Image", "Labels", "State"] {
        assert_eq!(row[k], theirs[k], "{k}: {row} / {theirs}");
    }
    // `container inspect` looks for containers only.
    let o = w.wharf(&["container", "inspect", "busybox"], None);
    assert!(!o.status.success());
    // Unknown flags are flags, before the image too; docker's exit code.
    for args in [
        &["run", "--bogus", "busybox", "true"][..],
        &["exec", "--nope", "lab", "true"],
        &["ps", "--bogus"],
    ] {
        let o = w.wharf(args, None);
        assert!(!o.status.success(), "{args:?}");
        assert!(err(&o).contains("--bogus") || err(&o).contains("--nope"), "{}", err(&o));
    }
    assert_eq!(
        w.wharf(&["run", "--bogus", "busybox", "true"], None).status.code(),
        Some(125)
    );
    // Prune forms that exist only under their groups.
    w.ok(&["rm", "-f", "lab"]);
    assert!(wharf_ok(&w, &["container", "prune", "-f"]).contains("Total reclaimed space"));
    assert!(wharf_ok(&w, &["image", "prune", "-f"]).contains("Total reclaimed space"));
    // Completions that bash accepts, and man pages man can read.
    let script = wharf_ok(&w, &["completion", "bash"]);
    assert!(script.contains("complete") && script.contains("container"), "{script}");
    let file = w.dir.path().join("wharf.bash");
    std::fs::write(&file, &script).unwrap();
    let check = std::process::Command::new("bash")
        .args(["-c", &format!("source {} && complete -p wharf", file.display())])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", err(&check));
    assert!(out(&check).contains("wharf"), "{}", out(&check));
    for shell in ["zsh", "fish"] {
        assert!(!wharf_ok(&w, &["completion", shell]).is_empty());
    }
    let man = w.dir.path().join("man");
    wharf_ok(&w, &["man-pages", man.to_str().unwrap()]);
    let page = std::fs::read_to_string(man.join("wharf-container-ls.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(man.join("wharf.1").exists());
}
