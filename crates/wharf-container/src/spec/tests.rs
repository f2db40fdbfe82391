//! The spec's unit tests: users, environment and command merges, capabilities, resource
//! checks, and the shape of a whole spec.

use super::*;
use crate::resources::io_weight_v2;

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\npg:x:70:70::/var/lib/pg:/bin/sh\n";
const GROUP: &str = "root:x:0:\nwww:x:33:\npg:x:70:\naudio:x:29:pg,www\n";

#[test]
fn users() {
    let u = resolve_user("", PASSWD, GROUP, &[]).unwrap();
    assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    let u = resolve_user("pg", PASSWD, GROUP, &[]).unwrap();
    assert_eq!((u.uid, u.gid, u.additional.clone()), (70, 70, vec![29]));
    let u = resolve_user("33:audio", PASSWD, GROUP, &["70".into()]).unwrap();
    assert_eq!((u.uid, u.gid, u.additional.clone()), (33, 29, vec![70]));
    let u = resolve_user("1234:5678", PASSWD, GROUP, &[]).unwrap();
    assert_eq!((u.uid, u.gid), (1234, 5678));
    assert!(resolve_user("nobody", PASSWD, GROUP, &[]).is_err());
    assert!(resolve_user("www:nogroup", PASSWD, GROUP, &[]).is_err());
    assert!(resolve_user("4294967296", PASSWD, GROUP, &[]).is_err());
}

#[test]
fn env_merge() {
    let a = vec!["PATH=/bin".to_string(), "A=1".into()];
    let b = vec!["A=2".to_string(), "B=3".into()];
    assert_eq!(merge_env(&[&a, &b]), vec!["PATH=/bin", "A=2", "B=3"]);
}

#[test]
fn command_merge() {
    let img = json!({"Entrypoint": ["/ep"], "Cmd": ["a", "b"]});
    let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    assert_eq!(merge_command(None, None, &img), (s(&["/ep"]), s(&["a", "b"])));
    assert_eq!(merge_command(None, s(&["x"]), &img), (s(&["/ep"]), s(&["x"])));
    assert_eq!(merge_command(s(&["/o"]), None, &img), (s(&["/o"]), None));
    assert_eq!(merge_command(s(&[""]), None, &img), (Some(vec![]), s(&["a", "b"])));
    assert_eq!(merge_command(s(&[""]), s(&["sh"]), &img), (Some(vec![]), s(&["sh"])));
}

#[test]
fn caps() {
    let mut hc = crate::config::HostSpec::default();
    let d = capabilities(&hc).unwrap();
    let bounding = bounding_caps();
    let expect: Vec<String> = DEFAULT_CAPS
        .iter()
        .map(|s| s.to_string())
        .filter(|c| bounding.contains(c))
        .collect();
    assert_eq!(d, expect);
    hc.security.cap_drop = Some(vec!["net_raw".into(), "CAP_KILL".into()]);
    hc.security.cap_add = Some(vec!["SYS_ADMIN".into()]);
    let c = capabilities(&hc).unwrap();
    assert!(!c.contains(&"CAP_NET_RAW".to_string()) && !c.contains(&"CAP_KILL".to_string()));
    assert_eq!(
        c.contains(&"CAP_SYS_ADMIN".to_string()),
        bounding.contains(&"CAP_SYS_ADMIN".to_string())
    );
    hc.security.cap_add = Some(vec!["NOPE".into()]);
    assert!(capabilities(&hc).is_err());
    hc.security.privileged = Some(true);
    assert_eq!(capabilities(&hc).unwrap(), bounding);
}

#[test]
fn resource_errors() {
    let mut hc = crate::config::HostSpec::default();
    hc.resources.nano_cpus = Some(3_000_000_000);
    let e = validate_resources(&hc, 2).unwrap_err().to_string();
    assert_eq!(
        e,
        "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
    );
    let mut hc = crate::config::HostSpec::default();
    hc.resources.memory = Some(1 << 20);
    assert!(validate_resources(&hc, 2)
        .unwrap_err()
        .to_string()
        .contains("Minimum memory limit"));
    let mut hc = crate::config::HostSpec::default();
    hc.resources.nano_cpus = Some(500_000_000);
    hc.resources.memory = Some(32 << 20);
    hc.resources.pids_limit = Some(64);
    validate_resources(&hc, 2).unwrap();
    let r = serde_json::to_value(resources(&hc).unwrap()).unwrap();
    assert_eq!(r["cpu"]["quota"], 50_000);
    assert_eq!(r["cpu"]["period"], 100_000);
    assert_eq!(r["memory"]["limit"], 32 << 20);
    assert_eq!(r["memory"]["swap"], 64 << 20);
    assert_eq!(r["pids"]["limit"], 64);
}

#[test]
fn blkio_weight_on_v2() {
    // runc's numbers: the ends of the range and one in the middle (where u16 overflows).
    assert_eq!(io_weight_v2(10, false), ("io.weight", "1".to_string()));
    assert_eq!(io_weight_v2(300, false), ("io.weight", "2930".to_string()));
    assert_eq!(io_weight_v2(1000, false), ("io.weight", "10000".to_string()));
    assert_eq!(io_weight_v2(300, true), ("io.bfq.weight", "300".to_string()));
}

fn input<'a>(root: &'a Path) -> SpecInput<'a> {
    SpecInput {
        rootfs: root,
        files: root,
        cgroup_path: "wharf/c1".into(),
        user: User {
            uid: 70,
            gid: 70,
            additional: vec![29],
            home: "/".into(),
        },
        argv: vec!["sh".into()],
        env: vec!["PATH=/bin".into()],
        seccomp: None,
        ncpu: 2,
        init: None,
        pid_ns: None,
        ipc_ns: None,
        shm: Shm::Private,
        user_mounts: vec![],
        net_ns: Some("/run/netns/x".into()),
    }
}

/// The typed spec serializes as Docker's: what the container asked for and Docker's
/// defaults, and nothing of oci-spec's own defaults (runc's example: `youki` as host name,
/// no_new_privs, an RLIMIT_NOFILE of 1024, its default mounts and namespaces).
#[test]
fn the_spec_is_dockers_and_none_of_oci_specs_defaults() {
    let root = Path::new("/tmp/rootfs");
    let cfg = crate::config::Config {
        hostname: Some("web".into()),
        ..Default::default()
    };
    let mut hc = crate::config::HostSpec::default();
    hc.namespaces.cgroupns_mode = Some(crate::config::CgroupnsMode::Host);
    let v = serde_json::to_value(build(&cfg, &hc, input(root)).unwrap()).unwrap();
    let p = &v["process"];
    assert_eq!(v["ociVersion"], "1.0.2");
    assert_eq!(v["hostname"], "web");
    assert!(v.get("domainname").is_none() && v.get("annotations").is_none());
    assert_eq!(v["root"], json!({"path": "/tmp/rootfs", "readonly": false}));
    assert!(p.get("noNewPrivileges").is_none(), "only when asked: {p}");
    assert!(p.get("rlimits").is_none() && p.get("consoleSize").is_none() && p.get("oomScoreAdj").is_none());
    assert_eq!(p["user"], json!({"uid": 70, "gid": 70, "additionalGids": [29]}));
    assert_eq!(
        (p["args"].clone(), p["env"].clone(), p["cwd"].clone()),
        (json!(["sh"]), json!(["PATH=/bin"]), json!("/"))
    );
    assert_eq!(p["terminal"], false);
    let mut eff: Vec<String> = serde_json::from_value(p["capabilities"]["effective"].clone()).unwrap();
    eff.sort();
    let mut want = capabilities(&hc).unwrap();
    want.sort();
    assert_eq!(eff, want);
    assert_eq!(p["capabilities"]["inheritable"], json!([]));
    assert_eq!(p["capabilities"]["ambient"], json!([]));
    let l = &v["linux"];
    let kinds: Vec<&str> = l["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["mount", "pid", "ipc", "uts", "network"]);
    assert_eq!(l["namespaces"][4], json!({"type": "network", "path": "/run/netns/x"}));
    assert_eq!(l["cgroupsPath"], "wharf/c1");
    assert_eq!(l["maskedPaths"], json!(strings(MASKED)));
    assert_eq!(l["readonlyPaths"], json!(strings(READONLY)));
    assert_eq!(l["sysctl"]["net.ipv4.ip_unprivileged_port_start"], "0");
    assert!(l.get("seccomp").is_none());
    assert_eq!(l["resources"]["devices"][0], json!({"allow": false, "access": "rwm"}));
    assert_eq!(
        l["resources"]["devices"][9],
        json!({"allow": true, "type": "c", "major": 136, "access": "rwm"})
    );
    assert!(l["resources"].get("memory").is_none() && l["resources"].get("cpu").is_none());
    let dests: Vec<&str> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/mqueue",
            "/dev/shm",
            "/etc/resolv.conf",
            "/etc/hostname",
            "/etc/hosts"
        ]
    );
    assert_eq!(v["mounts"][3]["options"], json!(["nosuid", "noexec", "nodev", "ro"]));

    // Privileged, host UTS, no-new-privileges, ulimits, annotations, a console size.
    hc.security.privileged = Some(true);
    hc.security.security_opt = Some(vec!["no-new-privileges".into()]);
    hc.namespaces.uts_mode = Some("host".into());
    hc.resources.ulimits = Some(vec![crate::config::Ulimit {
        name: Some("nofile".into()),
        soft: Some(10),
        hard: Some(20),
    }]);
    hc.lifecycle.annotations = Some([("a".to_string(), "b".to_string())].into());
    hc.lifecycle.console_size = Some(vec![24, 80]);
    let v = serde_json::to_value(build(&cfg, &hc, input(root)).unwrap()).unwrap();
    assert!(v.get("hostname").is_none(), "the host's UTS namespace keeps its name");
    assert_eq!(v["annotations"], json!({"a": "b"}));
    assert_eq!(v["process"]["noNewPrivileges"], true);
    assert_eq!(
        v["process"]["rlimits"],
        json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}])
    );
    assert_eq!(v["process"]["consoleSize"], json!({"height": 24, "width": 80}));
    assert!(v["linux"].get("maskedPaths").is_none() && v["linux"].get("readonlyPaths").is_none());
    assert_eq!(
        v["linux"]["resources"]["devices"],
        json!([{"allow": true, "access": "rwm"}])
    );
    assert_eq!(v["mounts"][3]["options"], json!(["nosuid", "noexec", "nodev", "rw"]));
}
