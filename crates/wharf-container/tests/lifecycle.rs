//! The container lifecycle (create, start, exit, stop with its grace period, restart policies
//! and their backoff, remove, restore after a daemon restart) against the fake runtime
//! (`RecordingRuntime`): the engine's own code on real records, snapshots and files, with the
//! one boundary it crosses to run processes played by the fake. No root: each test re-runs
//! itself in new user, mount and network namespaces (`unshare`), where the vfs snapshots'
//! bind mounts are allowed, so `cargo test` as a user runs them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wharf_container::record::ContainerStatus;
use wharf_container::runtime::RecordingRuntime;
use wharf_container::{ContainerService, ContainerSpec, ServiceConfig, WaitCondition};
use wharf_shim_proto::Request;

/// Runs the calling test again inside new user (root mapped to the caller), mount and network
/// namespaces; returns `true` there, `false` here after it passed.
fn in_namespaces(test: &str) -> bool {
    if std::env::var_os("WHARF_LIFECYCLE_INSIDE").is_some() {
        return true;
    }
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--net", "--fork"])
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("WHARF_LIFECYCLE_INSIDE", "1")
        .output()
        .expect("util-linux unshare");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{test} in namespaces:\n{text}"
    );
    false
}

/// An engine on a fresh data root with the fake runtime, and a one-layer image `fake:1`.
struct Engine {
    dir: std::path::PathBuf,
    _tmp: Option<tempfile::TempDir>,
    rt: Arc<RecordingRuntime>,
    svc: Arc<ContainerService>,
}

async fn open(dir: &Path, rt: Arc<RecordingRuntime>) -> Arc<ContainerService> {
    let data = dir.join("data");
    let exec = dir.join("exec");
    let images = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || wharf_image::ImageService::open(&data, wharf_store::Driver::Vfs))
            .await
            .unwrap()
            .unwrap()
    };
    let images = Arc::new(images);
    let volumes = Arc::new(wharf_volume::VolumeStore::open(&data).unwrap());
    let net = wharf_network::NetworkService::open(wharf_network::NetConfig {
        data_root: data.clone(),
        exec_root: exec.clone(),
        bridge: "none".into(),
        bip: None,
        pools: Vec::new(),
        mtu: None,
        iptables: false,
        userland_proxy: false,
    })
    .await
    .unwrap();
    let cfg = ServiceConfig {
        data_root: data,
        exec_root: exec,
        shim: "/nonexistent/wharf-shim".into(),
        cgroup_parent: "wharf-lifecycle-test".into(),
        init_path: None,
        default_init: false,
    };
    ContainerService::open_with(cfg, images, volumes, net, Some(rt)).unwrap()
}

impl Engine {
    async fn new() -> Engine {
        let tmp = tempfile::tempdir().unwrap();
        let mut e = Engine::at(tmp.path()).await;
        e._tmp = Some(tmp);
        e
    }

    /// An engine on `dir`, kept by the caller.
    async fn at(dir: &Path) -> Engine {
        let rt = Arc::new(RecordingRuntime::default());
        let svc = open(dir, rt.clone()).await;
        let mut layer = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        let passwd = b"root:x:0:0:root:/root:/bin/sh\n";
        h.set_mode(0o644);
        h.set_size(passwd.len() as u64);
        layer.append_data(&mut h, "etc/passwd", &passwd[..]).unwrap();
        let bytes = layer.into_inner().unwrap();
        let spec = wharf_image::CommitSpec {
            config: json!({"Cmd": ["/bin/app"], "Env": ["PATH=/bin"]}),
            changes: vec![],
            container: String::new(),
            container_config: serde_json::Value::Null,
            author: String::new(),
            comment: String::new(),
            created_by: "test".into(),
            tag: Some("fake:1".into()),
            created: None,
        };
        let images = svc.images().clone();
        tokio::task::spawn_blocking(move || images.commit_image(None, Some(&mut bytes.as_slice()), spec))
            .await
            .unwrap()
            .unwrap();
        Engine {
            dir: dir.to_path_buf(),
            _tmp: None,
            rt,
            svc,
        }
    }

    /// A container of `fake:1` with `--network none` and a restart policy.
    fn create(&self, restart: Option<(&str, i64)>) -> String {
        let mut spec = ContainerSpec::default();
        spec.config.image = Some("fake:1".into());
        spec.host.network.network_mode = Some("none".into());
        if let Some((name, max)) = restart {
            spec.host.lifecycle.restart_policy = Some(wharf_container::config::RestartPolicy {
                name: Some(name.parse().unwrap()),
                maximum_retry_count: Some(max),
            });
        }
        self.svc.create(None, spec).unwrap().0
    }

    fn status(&self, id: &str) -> ContainerStatus {
        self.svc.get(id).unwrap().state.status
    }

    /// Until `f` holds, at most five seconds.
    async fn until(&self, what: &str, f: impl Fn(&Engine) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn kills(rt: &RecordingRuntime, id: &str) -> Vec<(i32, bool)> {
    rt.requests_of(id)
        .into_iter()
        .filter_map(|r| match r {
            Request::Kill { signal, all } => Some((signal, all)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_start_and_exit_are_recorded() {
    if !in_namespaces("create_start_and_exit_are_recorded") {
        return;
    }
    let e = Engine::new().await;
    let id = e.create(None);
    assert_eq!(e.status(&id), ContainerStatus::Created);
    assert!(e.rt.created.lock().unwrap().is_empty(), "create makes no process");
    let wait = e.svc.wait(&id, WaitCondition::NextExit).unwrap();
    e.svc.start(&id).await.unwrap();
    let r = e.svc.get(&id).unwrap();
    assert_eq!((r.state.status, r.state.pid > 0), (ContainerStatus::Running, true));
    // The runtime was created, the exit's wait opened, and only then the process started.
    assert_eq!(*e.rt.created.lock().unwrap(), std::slice::from_ref(&id));
    let reqs = e.rt.requests_of(&id);
    assert!(matches!(reqs.as_slice(), [Request::Wait, Request::Start]), "{reqs:?}");
    assert!(e.rt.running(&id));
    // The runtime got the typed spec: the image's command, Docker's capabilities, a network
    // namespace of its own (`--network none`).
    let spec = e.rt.specs.lock().unwrap()[&id].clone();
    let process = spec.process().as_ref().unwrap();
    assert_eq!(process.args().as_deref(), Some(&["/bin/app".to_string()][..]));
    assert_eq!(
        process.env().as_deref().unwrap().first().map(String::as_str),
        Some("PATH=/bin")
    );
    let caps = process.capabilities().as_ref().unwrap().bounding().clone().unwrap();
    assert!(caps.contains(&oci_spec::runtime::Capability::Chown));
    assert!(!caps.contains(&oci_spec::runtime::Capability::SysModule));
    let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
    assert!(ns
        .iter()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network && n.path().is_none()));
    // Starting it again changes nothing.
    assert!(matches!(
        e.svc.start(&id).await,
        Err(wharf_container::ContainerError::NotModified)
    ));

    e.rt.exit(&id, 3);
    assert_eq!(wait.await.0, 3);
    e.until("the exit recorded", |e| e.status(&id) == ContainerStatus::Exited)
        .await;
    let r = e.svc.get(&id).unwrap();
    assert_eq!((r.state.exit_code, r.state.pid, r.restart_count), (3, 0, 0));
    assert_ne!(r.state.finished_at, wharf_container::record::ZERO_TIME);

    // A runtime that cannot create the container: the start fails with its message, and the
    // record says so (exit code 127 for "not found", as Docker's).
    *e.rt.create_fails.lock().unwrap() = Some("exec: \"/bin/app\": stat /bin/app: no such file or directory".into());
    let err = e.svc.start(&id).await.unwrap_err().to_string();
    assert!(err.contains("no such file or directory"), "{err}");
    let r = e.svc.get(&id).unwrap();
    assert_eq!((r.state.status, r.state.exit_code), (ContainerStatus::Exited, 127));
    assert!(r.state.error.contains("no such file"), "{}", r.state.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_signals_then_kills_after_the_grace_period() {
    if !in_namespaces("stop_signals_then_kills_after_the_grace_period") {
        return;
    }
    let e = Engine::new().await;
    // A process that stops on SIGTERM: one signal, no kill.
    let a = e.create(None);
    e.svc.start(&a).await.unwrap();
    e.svc.stop(&a, Some(10), None).await.unwrap();
    assert_eq!(kills(&e.rt, &a), [(15, false)]);
    let r = e.svc.get(&a).unwrap();
    assert_eq!(
        (r.state.status, r.state.exit_code, r.manually_stopped),
        (ContainerStatus::Exited, 143, true)
    );

    // One that ignores it: SIGKILL to everything once the grace period is over, not before.
    e.rt.ignores.lock().unwrap().push(15);
    let b = e.create(None);
    e.svc.start(&b).await.unwrap();
    let t0 = Instant::now();
    e.svc.stop(&b, Some(1), None).await.unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(kills(&e.rt, &b), [(15, false), (9, true)]);
    assert_eq!(e.svc.get(&b).unwrap().state.exit_code, 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policies_restart_with_backoff_and_stop_at_their_limit() {
    if !in_namespaces("restart_policies_restart_with_backoff_and_stop_at_their_limit") {
        return;
    }
    let e = Engine::new().await;
    let id = e.create(Some(("on-failure", 2)));
    e.svc.start(&id).await.unwrap();
    let created = |e: &Engine| e.rt.created.lock().unwrap().len();
    let mut starts = vec![Instant::now()];
    for n in 1..=2 {
        e.rt.exit(&id, 1);
        e.until("the restart", |e| created(e) == n + 1 && e.rt.running(&id))
            .await;
        starts.push(Instant::now());
    }
    // Docker's backoff: 100 ms before the first restart, 200 ms before the second.
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(95), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(195), "{gaps:?}");
    // The limit reached: the third failure ends it.
    e.rt.exit(&id, 1);
    e.until("the last exit", |e| e.status(&id) == ContainerStatus::Exited)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(created(&e), 3, "no restart past the limit");
    assert_eq!(e.svc.get(&id).unwrap().restart_count, 2);

    // on-failure leaves a success alone; always restarts it, until a user's stop.
    let ok = e.create(Some(("on-failure", 0)));
    e.svc.start(&ok).await.unwrap();
    e.rt.exit(&ok, 0);
    e.until("the exit", |e| e.status(&ok) == ContainerStatus::Exited).await;
    let always = e.create(Some(("always", 0)));
    e.svc.start(&always).await.unwrap();
    let before = created(&e);
    e.rt.exit(&always, 0);
    e.until("the restart", |e| created(e) == before + 1 && e.rt.running(&always))
        .await;
    e.svc.stop(&always, Some(5), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(e.status(&always), ContainerStatus::Exited);
    assert_eq!(created(&e), before + 1, "a stopped container stays stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_refuses_a_running_container_unless_forced_and_leaves_nothing() {
    if !in_namespaces("remove_refuses_a_running_container_unless_forced_and_leaves_nothing") {
        return;
    }
    let e = Engine::new().await;
    let id = e.create(None);
    e.svc.start(&id).await.unwrap();
    let err = e.svc.remove(&id, false, false).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot remove container") || err.contains("stop the container"),
        "{err}"
    );
    assert_eq!(e.status(&id), ContainerStatus::Running);
    let gone = e.svc.wait(&id, WaitCondition::Removed).unwrap();
    e.svc.remove(&id, true, true).await.unwrap();
    gone.await;
    assert_eq!(kills(&e.rt, &id).first(), Some(&(9, true)));
    assert!(e.svc.get(&id).is_err());
    assert!(!e.dir.join("data/containers").join(&id).exists());
    // Nothing mounted is left behind (the root snapshot's bind mount went with it).
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "{mounts}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn restore_reconnects_live_containers_and_settles_the_rest() {
    if !in_namespaces("restore_reconnects_live_containers_and_settles_the_rest") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // The first daemon starts four containers, the user stops two, and the daemon dies: its
    // runtime, with every task it ran, goes at once, as a killed process's would.
    let first = runtime();
    let ids = first.block_on(async {
        let e = Engine::at(&dir).await;
        let ids = [
            e.create(None),
            e.create(None),
            e.create(Some(("unless-stopped", 0))),
            e.create(Some(("always", 0))),
        ];
        for id in &ids {
            e.svc.start(id).await.unwrap();
        }
        for id in &ids[2..] {
            e.svc.stop(id, Some(5), None).await.unwrap();
            // The stop answers once the exit is known; the record reaches the disk just after.
            let rec = dir.join("data/containers").join(id);
            let deadline = Instant::now() + Duration::from_secs(5);
            while wharf_container::Record::load(&rec).unwrap().state.status != ContainerStatus::Exited {
                assert!(Instant::now() < deadline, "the stop's record");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        ids
    });
    first.shutdown_timeout(Duration::from_secs(2));
    second_daemon(&dir, &ids);
}

/// The daemon starts again: the first container's shim outlived it, the second's did not;
/// the third (`unless-stopped`) and fourth (`always`) were stopped by the user.
fn second_daemon(dir: &Path, ids: &[String; 4]) {
    let [live, dead, unless, always] = ids;
    runtime().block_on(async {
        let rt2 = Arc::new(RecordingRuntime::default());
        let svc = open(dir, rt2.clone()).await;
        rt2.adopt(live);
        svc.restore().await;
        let status = |id: &str| svc.get(id).unwrap().state.status;
        assert_eq!(status(live), ContainerStatus::Running);
        assert!(matches!(rt2.requests_of(live).last(), Some(Request::Wait)));
        // Gone while the daemon was down, unseen: 255, as Docker reports it.
        assert_eq!(status(dead), ContainerStatus::Exited);
        assert_eq!(svc.get(dead).unwrap().state.exit_code, 255);
        // Reconnected: its exit still reaches the record.
        rt2.exit(live, 7);
        let deadline = Instant::now() + Duration::from_secs(5);
        while status(live) != ContainerStatus::Exited || status(always) != ContainerStatus::Running {
            assert!(Instant::now() < deadline, "the reconnected exit, the restart");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(svc.get(live).unwrap().state.exit_code, 7);
        // Docker's rule: `always` comes back with the daemon even after a user's stop;
        // `unless-stopped` does not.
        assert_eq!(status(unless), ContainerStatus::Exited);
        assert_eq!(*rt2.created.lock().unwrap(), std::slice::from_ref(always));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_runs_on_a_snapshot_another_left() {
    if !in_namespaces("a_container_runs_on_a_snapshot_another_left") {
        return;
    }
    let e = Engine::new().await;
    // A step: a container of the image writes a file, and its root is committed.
    let step = e.create(None);
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(5);
    t.append_data(&mut h, "step/out", &b"made\n"[..]).unwrap();
    let bytes = t.into_inner().unwrap();
    e.svc.archive_put(&step, "/", bytes.as_slice(), false, true).unwrap();
    e.svc.commit_root(&step, "step-1").await.unwrap();

    // The next step runs on that snapshot, not on the image's root.
    let mut spec = ContainerSpec::default();
    spec.config.image = Some("fake:1".into());
    spec.host.network.network_mode = Some("none".into());
    spec.snapshot = Some("step-1".into());
    let next = e.svc.create(None, spec).unwrap().0;
    e.svc.start(&next).await.unwrap();
    let st = e.svc.archive_stat(&next, "/step/out").unwrap();
    assert_eq!(st.size, 5);
    let root = e.rt.specs.lock().unwrap()[&next]
        .root()
        .as_ref()
        .unwrap()
        .path()
        .clone();
    assert_eq!(std::fs::read_to_string(root.join("step/out")).unwrap(), "made\n");
    // Its image is not its root's base: an image commit is refused, with why.
    let err = e
        .svc
        .commit(
            &next,
            wharf_container::CommitOptions {
                reference: None,
                comment: String::new(),
                author: String::new(),
                changes: vec![],
                pause: false,
                config: None,
                replace_config: false,
                created_by: None,
                container_config: None,
                epoch: None,
                omit: Vec::new(),
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("runs on snapshot step-1"), "{err}");
    // A snapshot that is not there, or not committed, is no root.
    for bad in ["nope", next.as_str()] {
        let mut spec = ContainerSpec::default();
        spec.config.image = Some("fake:1".into());
        spec.snapshot = Some(bad.into());
        assert!(e.svc.create(None, spec).is_err(), "{bad}");
    }
    // The snapshot stays while something stands on it, then goes with its init snapshot.
    assert!(e.svc.remove_snapshot("step-1").is_err());
    e.rt.exit(&next, 0);
    e.svc.remove(&next, true, false).await.unwrap();
    e.svc.remove(&step, true, false).await.unwrap();
    e.svc.remove_snapshot("step-1").unwrap();
    let left: Vec<_> = std::fs::read_dir(e.dir.join("data/snapshots/vfs/meta"))
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "snapshots left: {left:?}");
}
