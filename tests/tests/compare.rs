//! The same workload through wharfd and through the real dockerd (Debian's docker.io, on its
//! own socket and data root), compared field by field as the docker CLI shows them: `inspect`,
//! `ps --format`, `stats --no-stream` and `events`. Values that differ on every run (IDs,
//! times, PIDs, paths under each engine's own roots) are compared by shape; every other
//! difference that remains is listed below with its reason, and the list is checked both ways:
//! a difference not listed fails, and so does a listed one that went away.

mod common;

use std::collections::BTreeMap;

use common::{Dockerd, Wharfd};
use serde_json::Value;

/// Differences kept on purpose: (field path, reason).
const DELIBERATE: &[(&str, &str)] = &[
    (".Driver", "the test's dockerd stores on vfs, wharfd on overlay2"),
    (".GraphDriver.Name", "the same storage drivers"),
    (
        ".GraphDriver.Data",
        "vfs has no data; overlay2's dirs are the next paths",
    ),
    (".GraphDriver.Data.LowerDir", "overlay2 only"),
    (".GraphDriver.Data.MergedDir", "overlay2 only"),
    (".GraphDriver.Data.UpperDir", "overlay2 only"),
    (".GraphDriver.Data.WorkDir", "overlay2 only"),
    (
        ".HostConfig.KernelMemory",
        "dockerd 20.10 (API 1.41) shows it; gone since API 1.42, wharf speaks 1.50",
    ),
    (
        ".HostConfig.KernelMemoryTCP",
        "dockerd 20.10 shows 0; omitted when unset since Docker 25",
    ),
    (
        ".HostConfig.MaskedPaths[2]",
        "Docker 28's default list has /proc/interrupts, 20.10's has not",
    ),
    (
        ".HostConfig.MaskedPaths[3]",
        "the list is shifted by that entry from here on",
    ),
    (".HostConfig.MaskedPaths[4]", "shifted"),
    (".HostConfig.MaskedPaths[5]", "shifted"),
    (".HostConfig.MaskedPaths[6]", "shifted"),
    (".HostConfig.MaskedPaths[7]", "shifted"),
    (".HostConfig.MaskedPaths[8]", "shifted"),
    (".HostConfig.MaskedPaths[9]", "shifted"),
    (".HostConfig.MaskedPaths[10]", "shifted"),
    (
        ".HostConfig.MaskedPaths[11]",
        "Docker 28 also masks /sys/devices/virtual/powercap",
    ),
    (
        ".NetworkSettings.Networks.none.DNSNames",
        "API 1.44's field: dockerd 20.10 has none",
    ),
    (
        ".NetworkSettings.Networks.none.GwPriority",
        "API 1.48's field: dockerd 20.10 has none",
    ),
    (
        ".NetworkSettings.Networks.none.EndpointID",
        "wharf keeps no endpoint object for `none`",
    ),
    (
        ".NetworkSettings.SandboxID",
        "`none`: the runtime makes the empty namespace, no sandbox object",
    ),
    (
        ".NetworkSettings.SandboxKey",
        "the same: no pinned namespace file for `none`",
    ),
];

/// Fields whose values belong to one run on one engine: compared by shape only.
fn volatile(path: &str) -> Option<fn(&Value) -> bool> {
    let hex64 = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let time = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.len() > 20 && s.ends_with('Z') && s.contains('T'))
    };
    let abs = |v: &Value| v.as_str().is_some_and(|s| s.starts_with('/'));
    let pid = |v: &Value| v.as_i64().is_some_and(|p| p > 1);
    match path {
        ".Id" | ".NetworkSettings.Networks.none.NetworkID" | ".Mounts[0].Name" => Some(hex64),
        ".Created" | ".State.StartedAt" => Some(time),
        ".HostnamePath" | ".HostsPath" | ".ResolvConfPath" | ".LogPath" | ".Mounts[0].Source" => Some(abs),
        ".State.Pid" => Some(pid),
        _ => None,
    }
}

fn flatten(v: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(o) if !o.is_empty() => o.iter().for_each(|(k, x)| flatten(x, format!("{path}.{k}"), out)),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| flatten(x, format!("{path}[{i}]"), out)),
        _ => {
            out.insert(path, v.clone());
        }
    }
}

/// The paths where the two differ, volatile ones compared by shape.
fn differences(w: &Value, d: &Value) -> BTreeMap<String, (Option<Value>, Option<Value>)> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten(w, String::new(), &mut a);
    flatten(d, String::new(), &mut b);
    let mut out = BTreeMap::new();
    for k in a.keys().chain(b.keys()) {
        let (x, y) = (a.get(k), b.get(k));
        let same = match (volatile(k), x, y) {
            (Some(shape), Some(x), Some(y)) => shape(x) && shape(y),
            _ => x == y,
        };
        if !same {
            out.insert(k.clone(), (x.cloned(), y.cloned()));
        }
    }
    out
}

/// Both engines with the same busybox image (wharf's, saved and loaded into dockerd: the
/// same image ID).
fn engines() -> (Wharfd, Dockerd) {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    let d = Dockerd::start();
    let tar = w.dir.path().join("busybox.tar");
    w.ok(&["save", "-o", tar.to_str().unwrap(), "busybox:latest"]);
    d.docker(&["load", "-i", tar.to_str().unwrap()]);
    assert_eq!(
        w.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]),
        d.docker(&["image", "inspect", "-f", "{{.Id}}", "busybox"])
    );
    (w, d)
}

/// The workload: one container with a good part of `run`'s flags (no network, so that the
/// test's dockerd needs no bridge of its own).
const RUN: &[&str] = &[
    "run",
    "-d",
    "--name",
    "cmp",
    "-e",
    "A=1",
    "-l",
    "k=v",
    "-w",
    "/tmp",
    "-u",
    "0:0",
    "--network",
    "none",
    "--restart",
    "on-failure:2",
    "--memory",
    "64m",
    "--cpu-shares",
    "512",
    "--hostname",
    "h1",
    "--stop-signal",
    "SIGUSR1",
    "--tmpfs",
    "/run:size=1m",
    "-v",
    "/data",
    "--pids-limit",
    "50",
    "--cap-drop",
    "NET_RAW",
    "--add-host",
    "db:10.1.2.3",
    "busybox",
    "sleep",
    "300",
];

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn inspect_ps_stats_and_events_field_by_field() {
    let (w, d) = engines();
    w.ok(RUN);
    d.docker(RUN);

    // inspect: every field.
    let parse = |s: String| -> Value { serde_json::from_str::<Value>(&s).unwrap()[0].clone() };
    let wi = parse(w.ok(&["inspect", "cmp"]));
    let di = parse(d.docker(&["inspect", "cmp"]));
    let diff = differences(&wi, &di);
    let listed: BTreeMap<&str, &str> = DELIBERATE.iter().copied().collect();
    let unlisted: Vec<String> = diff
        .iter()
        .filter(|(k, _)| !listed.contains_key(k.as_str()))
        .map(|(k, (x, y))| format!("{k}: wharf {x:?}, dockerd {y:?}"))
        .collect();
    assert!(unlisted.is_empty(), "differences not listed:\n{}", unlisted.join("\n"));
    let gone: Vec<&&str> = listed.keys().filter(|k| !diff.contains_key(**k)).collect();
    assert!(gone.is_empty(), "listed differences that are no longer there: {gone:?}");

    // ps --format: the same row, durations aside (`Up Less than a second` vs `Up 1 second`).
    let fmt = "{{.Names}}|{{.Image}}|{{.Command}}|{{.Ports}}|{{.Labels}}|{{.Networks}}|{{.State}}|{{.LocalVolumes}}|{{.RunningFor}}";
    let up = |s: String| s.split('|').take(8).collect::<Vec<_>>().join("|");
    assert_eq!(
        up(w.ok(&["ps", "--format", fmt])),
        up(d.docker(&["ps", "--format", fmt]))
    );
    let status = |s: String| s.trim().split(' ').next().unwrap_or("").to_string();
    assert_eq!(status(w.ok(&["ps", "--format", "{{.Status}}"])), "Up");
    assert_eq!(status(d.docker(&["ps", "--format", "{{.Status}}"])), "Up");

    // stats --no-stream: the same limit, processes, network and block I/O of an idle sleep.
    let sfmt = "{{.Name}}|{{.NetIO}}|{{.PIDs}}|{{.MemUsage}}";
    let cut = |s: String| {
        let f: Vec<String> = s.trim().split('|').map(String::from).collect();
        // Usage / limit: the limit must match; the usage is a few hundred KiB on both.
        let (usage, limit) = f[3].split_once(" / ").expect("usage / limit");
        assert!(usage.ends_with("KiB") || usage.ends_with("MiB"), "{usage}");
        format!("{}|{}|{}|{limit}", f[0], f[1], f[2])
    };
    assert_eq!(
        cut(w.ok(&["stats", "--no-stream", "--format", sfmt, "cmp"])),
        cut(d.docker(&["stats", "--no-stream", "--format", sfmt, "cmp"]))
    );
    assert_eq!(
        cut(w.ok(&["stats", "--no-stream", "--format", sfmt, "cmp"])),
        "cmp|0B / 0B|1|64MiB"
    );

    // events for a `run --rm`: the same actions in the same order with the same attributes
    // (`execDuration` is Docker 25's: dockerd 20.10 does not send it).
    // (Events carry whole seconds: the workload's own start events are a second older.)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let run = ["run", "--rm", "--name", "ev1", "--network", "none", "busybox", "true"];
    w.ok(&run);
    d.docker(&run);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let efmt = "{{.Type}} {{.Action}} {{json .Actor.Attributes}}";
    let norm = |s: String, id: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.contains("ev1") || l.contains(id) || l.starts_with("network"))
            .map(|l| {
                let (head, attrs) = l.split_at(l.find('{').unwrap());
                let mut a: BTreeMap<String, String> = serde_json::from_str(attrs).unwrap();
                a.remove("execDuration");
                if a.contains_key("container") {
                    a.insert("container".into(), "<id>".into());
                }
                format!("{head}{a:?}")
            })
            .collect()
    };
    let we = w.ok(&["events", "--since", &t0, "--until", "0s", "--format", efmt]);
    let de = d.docker(&["events", "--since", &t0, "--until", "0s", "--format", efmt]);
    assert!(we.contains("\"execDuration\":\"0\""), "{we}");
    let (we, de) = (norm(we, "ev1"), norm(de, "ev1"));
    assert_eq!(we, de);
    assert_eq!(
        we.iter()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        [
            "container create",
            "container attach",
            "network connect",
            "container start",
            "container die",
            "network disconnect",
            "container destroy",
        ]
    );
    w.ok(&["rm", "-f", "cmp"]);
    d.docker(&["rm", "-f", "cmp"]);
}
