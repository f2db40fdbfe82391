//! The container service: creates containers from images, starts each through its own shim,
//! watches it exit, applies restart policies, and answers lookups, listings and inspects.
//!
//! Invariants: the daemon never forks a container (the shim does); a record on disk is always
//! whole; a container's root is mounted only while it runs; every running container has a
//! monitor task waiting on its shim, so an exit is recorded even when nobody asks.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bollard_stubs::models as m;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use wharf_image::ImageService;
use wharf_network::NetworkService;
use wharf_reference::Digest;
use wharf_shim_proto::{ExitInfo, Request, ShimConfig};
use wharf_store::Driver;
use wharf_volume::VolumeStore;

use crate::error::{ContainerError, Result};
use crate::health;
use crate::mounts::{self, MountPoint};
use crate::record::{Record, State, ZERO_TIME};
use crate::shim::{self, ShimStream};
use crate::{names, netsetup, spec};

/// What `commit` takes besides the container.
#[derive(Debug, Default)]
pub struct CommitOptions {
    /// `repo[:tag]` for the new image.
    pub reference: Option<String>,
    /// `-m`.
    pub comment: String,
    /// `-a`.
    pub author: String,
    /// `-c` lines.
    pub changes: Vec<String>,
    /// Freeze a running container while its layer is copied (`-p`, default true).
    pub pause: bool,
    /// Config fields to set on the new image (the request body).
    pub config: Option<Value>,
}

/// Where the service keeps things and how it starts shims.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `--data-root`.
    pub data_root: PathBuf,
    /// `--exec-root`.
    pub exec_root: PathBuf,
    /// The `wharf-shim` binary.
    pub shim: PathBuf,
    /// `--cgroup-parent` default for containers.
    pub cgroup_parent: String,
    /// `--init-path`: the init binary `--init` runs as PID 1 (Docker's `docker-init`, tini).
    pub init_path: Option<PathBuf>,
    /// `--init`: every container gets the init unless it says otherwise.
    pub default_init: bool,
}

/// `POST /containers/create` body: the config with `HostConfig` and `NetworkingConfig`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateBody {
    /// The container config.
    #[serde(flatten)]
    pub config: m::ContainerConfig,
    /// The host config.
    #[serde(rename = "HostConfig", default)]
    pub host_config: Option<m::HostConfig>,
    /// Networks (`NetworkingConfig`, read by `netsetup`).
    #[serde(rename = "NetworkingConfig", default)]
    pub networking_config: Option<Value>,
    /// `HostConfig.Mounts` of type `image`, which the API edge takes out of the body.
    #[serde(skip)]
    pub image_mounts: Vec<mounts::ImageMount>,
}

/// `POST /containers/{id}/update` body.
#[derive(Debug, Clone, Deserialize)]
pub struct UpdateBody {
    /// The limits to change; zero or absent values are left as they are.
    #[serde(flatten)]
    pub resources: m::Resources,
    /// A new restart policy.
    #[serde(rename = "RestartPolicy", default)]
    pub restart_policy: Option<m::RestartPolicy>,
}

/// `wait` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Return when the container is not running (at once if it is not).
    NotRunning,
    /// Return at the next exit.
    NextExit,
    /// Return when the container is removed.
    Removed,
}

/// What changed last, for waiters.
#[derive(Debug, Clone, Copy, Default)]
struct Gen {
    exits: u64,
    removed: bool,
}

/// One container in memory.
pub struct Entry {
    pub(crate) rec: Mutex<Record>,
    op: tokio::sync::Mutex<()>,
    gen: watch::Sender<Gen>,
    attaches: Mutex<Vec<PendingAttach>>,
    restart_delay: Mutex<Duration>,
}

struct PendingAttach {
    req: Request,
    tx: oneshot::Sender<Result<ShimStream>>,
}

impl Entry {
    pub(crate) fn snapshot(&self) -> Record {
        self.rec.lock().expect("record lock").clone()
    }
}

/// The container service.
pub struct ContainerService {
    cfg: ServiceConfig,
    images: Arc<ImageService>,
    volumes: Arc<VolumeStore>,
    net: Arc<NetworkService>,
    events: Arc<crate::events::Events>,
    map: RwLock<HashMap<String, Arc<Entry>>>,
    names: Mutex<HashMap<String, String>>,
    pub(crate) execs: Mutex<HashMap<String, crate::exec::ExecEntry>>,
}

impl std::fmt::Debug for ContainerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerService").field("cfg", &self.cfg).finish()
    }
}

fn now_nanos() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| ZERO_TIME.into())
}

pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8 ^ (i as u8);
        }
    }
    b
}

/// Bytes in the regular files below `root` (not following symlinks, hard links once).
fn dir_size(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for ent in rd.flatten() {
            let Ok(md) = ent.metadata() else { continue };
            if md.is_dir() {
                stack.push(ent.path());
            } else if md.is_file() && (md.nlink() == 1 || seen.insert((md.dev(), md.ino()))) {
                total += md.len();
            }
        }
    }
    total
}

fn is_mountpoint(p: &Path) -> bool {
    wharf_store::saferoot::is_mount_point(p)
}

/// How a start error reads, in the words Docker's CLI matches for its exit codes.
fn start_error(e: &str) -> String {
    if let Some(rest) = e.split("executable '").nth(1) {
        if let Some(name) = rest.split('\'').next() {
            return format!(
                "failed to create task for container: OCI runtime create failed: exec: \"{name}\": executable file not found in $PATH: unknown"
            );
        }
    }
    format!("failed to create task for container: OCI runtime create failed: {e}: unknown")
}

/// Check a container's log driver and options as dockerd does at create: `json-file` (with
/// its options) and `none` are wharf's; Docker's other built-in drivers are named as not
/// supported, anything else is a plugin that is not there.
fn validate_log_config(log: &m::HostConfigLogConfig) -> Result<()> {
    const BUILTIN: &[&str] = &[
        "local",
        "syslog",
        "journald",
        "gelf",
        "fluentd",
        "awslogs",
        "splunk",
        "etwlogs",
        "gcplogs",
        "logentries",
    ];
    let driver = log.typ.as_deref().unwrap_or("json-file");
    let opts = log.config.as_ref();
    match driver {
        "json-file" => {
            const KNOWN: &[&str] = &[
                "max-file",
                "max-size",
                "compress",
                "labels",
                "labels-regex",
                "env",
                "env-regex",
                "tag",
            ];
            for k in opts.into_iter().flat_map(|o| o.keys()) {
                if !KNOWN.contains(&k.as_str()) {
                    return Err(ContainerError::Invalid(format!(
                        "unknown log opt '{k}' for json-file log driver"
                    )));
                }
            }
            Ok(())
        }
        "none" => match opts.and_then(|o| o.keys().next()) {
            Some(k) => Err(ContainerError::Invalid(format!(
                "unknown log opt '{k}' for none log driver"
            ))),
            None => Ok(()),
        },
        d if BUILTIN.contains(&d) => Err(ContainerError::Invalid(format!(
            "logging driver \"{d}\" is not supported by wharf (json-file and none are)"
        ))),
        d => Err(ContainerError::Invalid(format!(
            "error looking up logging plugin {d}: plugin \"{d}\" not found"
        ))),
    }
}

impl ContainerService {
    /// Open the service: load every record under `<data-root>/containers`.
    pub fn open(
        cfg: ServiceConfig,
        images: Arc<ImageService>,
        volumes: Arc<VolumeStore>,
        net: Arc<NetworkService>,
    ) -> Result<Arc<Self>> {
        let root = cfg.data_root.join("containers");
        fs::create_dir_all(&root)?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o710))?;
        wharf_store::spread_subdirs(&root);
        fs::create_dir_all(cfg.exec_root.join("containers"))?;
        fs::create_dir_all(cfg.exec_root.join("runtime"))?;
        fs::create_dir_all(cfg.exec_root.join("s"))?;
        // Left by removals a crash interrupted.
        let trash = cfg.data_root.join("containers-trash");
        let _ = fs::remove_dir_all(&trash);
        fs::create_dir_all(&trash)?;
        // The first container with Docker's profile then finds it compiled.
        std::thread::spawn(crate::bpf::prewarm);
        let svc = Arc::new(ContainerService {
            cfg,
            images,
            volumes,
            net,
            events: Arc::default(),
            map: RwLock::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
        });
        for ent in fs::read_dir(&root)? {
            let dir = ent?.path();
            match Record::load(&dir) {
                Ok(rec) => {
                    svc.names
                        .lock()
                        .expect("names")
                        .insert(rec.name.clone(), rec.id.clone());
                    svc.insert(rec);
                }
                Err(e) => {
                    // A create that died before its first record: nothing refers to it.
                    tracing::warn!(dir = %dir.display(), "removing unreadable container record: {e}");
                    let _ = fs::remove_dir_all(&dir);
                }
            }
        }
        let users = Arc::downgrade(&svc);
        svc.images.set_usage_check(Arc::new(move |id: &Digest| {
            let Some(s) = users.upgrade() else { return Vec::new() };
            let want = id.to_string();
            s.all()
                .into_iter()
                .map(|e| e.snapshot())
                // Its image, or an image it mounts (`--mount type=image`).
                .filter(|r| r.image == want || r.mount_points.iter().any(|m| m.typ == "image" && m.source == want))
                .map(|r| r.id)
                .collect()
        }));
        let users = Arc::downgrade(&svc);
        svc.volumes.set_usage_check(Arc::new(move |name: &str| {
            let Some(s) = users.upgrade() else { return Vec::new() };
            s.all()
                .into_iter()
                .map(|e| e.snapshot())
                .filter(|r| r.mount_points.iter().any(|m| m.typ == "volume" && m.name == name))
                .map(|r| r.id)
                .collect()
        }));
        let users = Arc::downgrade(&svc);
        svc.net.set_usage_check(Arc::new(move |id: &str| {
            let Some(s) = users.upgrade() else { return Vec::new() };
            s.all()
                .into_iter()
                .map(|e| e.snapshot())
                .filter(|r| r.networks.values().any(|n| n.network_id == id))
                .map(|r| r.id)
                .collect()
        }));
        // Addresses held by containers that are not running were left by a crash.
        let running: Vec<String> = svc
            .all()
            .into_iter()
            .map(|e| e.snapshot())
            .filter(|r| r.state.is_running())
            .map(|r| r.id)
            .collect();
        svc.net.release_all_except(&running);
        Ok(svc)
    }

    /// The daemon's event stream.
    pub fn events(&self) -> &Arc<crate::events::Events> {
        &self.events
    }

    /// Publish a container event with Docker's attributes: image, name, labels, and `extra`.
    pub(crate) fn emit(&self, rec: &Record, action: &str, extra: &[(&str, &str)]) {
        let mut a: std::collections::BTreeMap<String, String> =
            rec.config.labels.clone().unwrap_or_default().into_iter().collect();
        a.insert("image".into(), rec.config.image.clone().unwrap_or_default());
        a.insert("name".into(), rec.name.clone());
        for (k, v) in extra {
            a.insert(k.to_string(), v.to_string());
        }
        self.events.publish("container", action, &rec.id, a);
    }

    /// `network connect`/`disconnect` events for every network a starting or stopped
    /// container is on (`none` and `host` too), as dockerd sends them around start and die.
    fn emit_network(&self, rec: &Record, action: &str) {
        let mode = rec.host_config.network_mode.clone().unwrap_or_default();
        let mut names: Vec<String> = rec.networks.keys().cloned().collect();
        if names.is_empty() && (mode == "none" || mode == "host") {
            names.push(mode);
        }
        for name in names {
            let Ok(n) = self.net.get(&name) else { continue };
            let a = crate::events::attrs(&[("container", &rec.id), ("name", &n.name), ("type", &n.driver)]);
            self.events.publish("network", action, &n.id, a);
        }
    }

    /// The network service containers join networks through.
    pub fn networks(&self) -> &Arc<NetworkService> {
        &self.net
    }

    /// The volume store containers mount from.
    pub fn volumes(&self) -> &Arc<VolumeStore> {
        &self.volumes
    }

    fn insert(&self, rec: Record) -> Arc<Entry> {
        let (gen, _) = watch::channel(Gen::default());
        let id = rec.id.clone();
        let e = Arc::new(Entry {
            rec: Mutex::new(rec),
            op: tokio::sync::Mutex::new(()),
            gen,
            attaches: Mutex::new(Vec::new()),
            restart_delay: Mutex::new(Duration::from_millis(100)),
        });
        self.map.write().expect("map").insert(id, e.clone());
        e
    }

    fn all(&self) -> Vec<Arc<Entry>> {
        self.map.read().expect("map").values().cloned().collect()
    }

    /// After daemon start: reconnect to live shims, settle the dead, restart `always` ones.
    pub async fn restore(self: &Arc<Self>) {
        for e in self.all() {
            let rec = e.snapshot();
            if rec.state.status == "removing" {
                // A removal the last daemon did not finish: finish it, as dockerd does.
                e.rec.lock().expect("record lock").state.status = "dead".into();
                if let Err(err) = self.remove(&rec.id, true, true).await {
                    tracing::warn!(id = %rec.id, "finishing an interrupted removal: {err}");
                }
                continue;
            }
            if rec.state.is_running() {
                let sock = self.shim_socket(&rec.id);
                match shim::send(&sock, &Request::Wait).await {
                    Ok(stream) => {
                        tracing::info!(id = %rec.id, "reconnected to running container");
                        self.reconcile_freezer(&e).await;
                        for mp in rec.mount_points.iter().filter(|m| m.typ == "volume") {
                            let _ = self.volumes.mount(&mp.name, &rec.id);
                        }
                        netsetup::restore(&self.net, &rec, &rec.net).await;
                        self.spawn_monitor(e.clone(), Some(stream));
                        self.spawn_health(e.clone());
                        continue;
                    }
                    Err(_) => {
                        // Its shim is gone: whatever it left in the cgroup goes too.
                        let exit = self.after_shim_died(&rec, false).await;
                        tracing::info!(id = %rec.id, code = exit.exit_code, "container exited while the daemon was down");
                        self.on_exit(&e, exit, false).await;
                        continue;
                    }
                }
            }
            let policy = rec
                .host_config
                .restart_policy
                .as_ref()
                .and_then(|p| p.name)
                .map(|n| n.to_string())
                .unwrap_or_default();
            if (policy == "always" || (policy == "unless-stopped" && !rec.manually_stopped))
                && matches!(rec.state.status.as_str(), "exited" | "restarting")
            {
                let me = self.clone();
                tokio::spawn(async move {
                    if let Err(err) = me.start(&rec.id).await {
                        tracing::warn!(id = %rec.id, "restart on daemon start: {err}");
                    }
                });
            }
        }
    }

    /// After a daemon restart, make the freezer agree with the record: a container the last
    /// daemon froze for an operation it never finished (`commit` pauses it) is thawed; one
    /// recorded as paused whose cgroup is not frozen is running. Only a user's pause shows as
    /// `paused`.
    async fn reconcile_freezer(&self, e: &Arc<Entry>) {
        let rec = e.snapshot();
        let paused = rec.state.status == "paused";
        match (paused, crate::cgroup::frozen(&self.cgroup_path(&rec))) {
            (false, Some(true)) => {
                tracing::warn!(id = %rec.id, "thawing a container an interrupted operation left frozen");
                if let Err(err) = shim::call(&self.shim_socket(&rec.id), &Request::Resume).await {
                    tracing::error!(id = %rec.id, "thawing: {err}");
                }
            }
            (true, Some(false)) => {
                e.rec.lock().expect("record lock").state.status = "running".into();
                let _ = self.save(e);
            }
            _ => {}
        }
    }

    /// Where removed containers' directories wait to be deleted (same file system).
    fn trash_dir(&self) -> PathBuf {
        self.cfg.data_root.join("containers-trash")
    }

    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("containers").join(id)
    }

    pub(crate) fn bundle_dir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("containers").join(id)
    }

    /// Short, because unix socket paths are limited to 108 bytes.
    pub(crate) fn shim_socket(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("s").join(&id[..16])
    }

    /// The json-file log of a container.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    /// The exit record the container's shim wrote, if it wrote one.
    fn exit_file(&self, id: &str) -> Option<ExitInfo> {
        fs::read(self.bundle_dir(id).join("exit.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Find a container by full ID, name, or unique ID prefix, as Docker does.
    pub fn lookup(&self, name: &str) -> Result<Arc<Entry>> {
        let map = self.map.read().expect("map");
        if let Some(e) = map.get(name) {
            return Ok(e.clone());
        }
        let n = name.strip_prefix('/').unwrap_or(name);
        if let Some(id) = self.names.lock().expect("names").get(n) {
            if let Some(e) = map.get(id) {
                return Ok(e.clone());
            }
        }
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<&Arc<Entry>> = map.iter().filter(|(k, _)| k.starts_with(n)).map(|(_, v)| v).collect();
            match hits.len() {
                1 => return Ok(hits[0].clone()),
                0 => {}
                _ => {
                    return Err(ContainerError::Invalid(format!(
                        "multiple IDs found with provided prefix: {n}"
                    )))
                }
            }
        }
        Err(ContainerError::NotFound(name.to_string()))
    }

    /// A record by name.
    pub fn get(&self, name: &str) -> Result<Record> {
        Ok(self.lookup(name)?.snapshot())
    }

    /// Every record.
    pub fn records(&self) -> Vec<Record> {
        self.all().into_iter().map(|e| e.snapshot()).collect()
    }

    fn reserve_name(&self, name: Option<&str>, id: &str) -> Result<String> {
        let mut names = self.names.lock().expect("names");
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            if !names::valid_name(n) {
                return Err(ContainerError::Invalid(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
            let n = n.strip_prefix('/').unwrap_or(n).to_string();
            if let Some(other) = names.get(&n) {
                return Err(ContainerError::Conflict(format!(
                    "Conflict. The container name \"/{n}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            names.insert(n.clone(), id.to_string());
            return Ok(n);
        }
        for retry in 0..20 {
            let n = names::random_name(&random_bytes(5), retry);
            if !names.contains_key(&n) {
                names.insert(n.clone(), id.to_string());
                return Ok(n);
            }
        }
        Err(ContainerError::Internal("could not pick a free name".into()))
    }

    /// `POST /containers/create`.
    pub fn create(&self, name: Option<&str>, body: CreateBody) -> Result<(String, Vec<String>)> {
        let mut cfg = body.config;
        let mut hc = body.host_config.unwrap_or_default();
        // The request is judged before anything is looked up.
        crate::validate::create(&cfg, &hc)?;
        let image_name =
            cfg.image.clone().filter(|i| !i.is_empty()).ok_or_else(|| {
                ContainerError::Invalid("config cannot be empty in order to create a container".into())
            })?;
        let image_id = self.images.resolve(&image_name).map_err(|e| match e.kind() {
            wharf_reference::ErrorKind::NotFound => {
                ContainerError::Image(wharf_image::ImageError::NotFound(image_name.clone()))
            }
            _ => ContainerError::Image(e),
        })?;
        let (img, _) = self.images.rootfs_of(&image_id)?;
        let ic = img.config.clone().unwrap_or(Value::Null);
        let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        spec::validate_resources(&hc, ncpu)?;
        spec::capabilities(&hc)?;
        let mut warnings = Vec::new();
        if spec::cgroup_v2() {
            // dockerd on a v2 host: neither exists there; both are dropped with a warning.
            if hc.memory_swappiness.take().is_some_and(|v| v != -1) {
                warnings.push("Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.".to_string());
            }
            if hc.oom_kill_disable.take() == Some(true) {
                warnings.push("Your kernel does not support OomKillDisable. OomKillDisable discarded.".to_string());
            }
        }
        // Docker: an unset swap limit is twice the memory limit, and inspect says so.
        if hc.memory.unwrap_or(0) > 0 && hc.memory_swap.unwrap_or(0) == 0 {
            hc.memory_swap = hc.memory.map(|m| m * 2);
        }
        if let Some(r) = &hc.restart_policy {
            let n = r.name.map(|n| n.to_string()).unwrap_or_default();
            if hc.auto_remove.unwrap_or(false) && !n.is_empty() && n != "no" {
                return Err(ContainerError::Invalid(
                    "can't create 'AutoRemove' container with restart policy".into(),
                ));
            }
            if r.maximum_retry_count.unwrap_or(0) > 0 && n != "on-failure" {
                return Err(ContainerError::Invalid(
                    "invalid restart policy: maximum retry count can only be used with 'on-failure'".into(),
                ));
            }
        }
        let (ep, cmd) = spec::merge_command(cfg.entrypoint.clone(), cfg.cmd.clone(), &ic);
        let argv: Vec<String> = ep
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(cmd.clone().unwrap_or_default())
            .collect();
        if argv.is_empty() {
            return Err(ContainerError::Invalid("No command specified".into()));
        }
        // Merge with the image's config as Docker stores it.
        let strs = |k: &str| -> Vec<String> {
            ic.get(k)
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        let img_env = strs("Env");
        cfg.env = Some(spec::merge_env(&[&img_env, cfg.env.as_deref().unwrap_or(&[])]));
        cfg.entrypoint = ep;
        cfg.cmd = cmd;
        if cfg.working_dir.as_deref().unwrap_or("").is_empty() {
            cfg.working_dir = ic.get("WorkingDir").and_then(|v| v.as_str()).map(String::from);
        }
        if let Some(w) = cfg.working_dir.as_deref().filter(|w| !w.is_empty()) {
            if !w.starts_with('/') {
                return Err(ContainerError::Invalid(format!(
                    "the working directory '{w}' is invalid, it needs to be an absolute path"
                )));
            }
            // As dockerd shows it: cleaned (`/tmp/` is `/tmp`).
            cfg.working_dir = Some(crate::validate::clean(w));
        }
        if cfg.user.as_deref().unwrap_or("").is_empty() {
            cfg.user = ic.get("User").and_then(|v| v.as_str()).map(String::from);
        }
        if cfg.stop_signal.is_none() {
            cfg.stop_signal = ic.get("StopSignal").and_then(|v| v.as_str()).map(String::from);
        }
        cfg.healthcheck = health::merge(cfg.healthcheck.take(), ic.get("Healthcheck"));
        if let Some(h) = &cfg.healthcheck {
            health::validate(h)?;
        }
        let mut labels: HashMap<String, String> = ic
            .get("Labels")
            .and_then(|v| v.as_object())
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        labels.extend(cfg.labels.take().unwrap_or_default());
        cfg.labels = Some(labels);
        if cfg.exposed_ports.is_none() {
            if let Some(p) = ic
                .get("ExposedPorts")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
            {
                cfg.exposed_ports = Some(p);
            }
        }
        // The image's VOLUMEs join the container's own (Docker merges the two sets).
        if let Some(p) = ic
            .get("Volumes")
            .and_then(|v| serde_json::from_value::<HashMap<String, HashMap<(), ()>>>(v.clone()).ok())
        {
            cfg.volumes.get_or_insert_with(HashMap::new).extend(p);
        }
        cfg.image = Some(image_name);
        let id = hex::encode(random_bytes(32));
        if cfg.hostname.as_deref().unwrap_or("").is_empty() {
            cfg.hostname = Some(id[..12].to_string());
        }
        if hc.network_mode.as_deref().unwrap_or("").is_empty() {
            hc.network_mode = Some("bridge".into());
        }
        if hc.network_mode.as_deref() == Some("default") {
            hc.network_mode = Some("bridge".into());
        }
        crate::validate::modes(&hc)?;
        if hc.ipc_mode.as_deref().unwrap_or("").is_empty() {
            hc.ipc_mode = Some("private".into());
        }
        // As dockerd: "unlimited" and "unset" are shown as null, the defaults as their values.
        if hc.memory_swappiness == Some(-1) {
            hc.memory_swappiness = None;
        }
        // As dockerd: any limit not above zero is "unlimited", shown as 0.
        if hc.pids_limit.is_some_and(|p| p <= 0) {
            hc.pids_limit = Some(0);
        }
        if hc.shm_size.unwrap_or(0) <= 0 {
            hc.shm_size = Some(64 << 20);
        }
        spec::fill_host_defaults(&mut hc);
        // wharf-shim is the one runtime; it answers to dockerd's default name.
        match hc.runtime.as_deref().unwrap_or("") {
            "" | "runc" => hc.runtime = Some("runc".into()),
            other => {
                return Err(ContainerError::Invalid(format!(
                    "unknown or invalid runtime name: {other}"
                )));
            }
        }
        let log = hc.log_config.get_or_insert_with(Default::default);
        if log.typ.as_deref().unwrap_or("").is_empty() {
            log.typ = Some("json-file".into());
        }
        log.config.get_or_insert_with(HashMap::new);
        validate_log_config(log)?;
        let mut networks = netsetup::endpoint_configs(&self.net, &hc, body.networking_config.as_ref())?;
        // The container-wide MacAddress (deprecated in API 1.44) is the network mode's
        // endpoint's, unless that endpoint names its own.
        if let Some(mac) = cfg.mac_address.as_deref().filter(|m| !m.is_empty()) {
            if wharf_network::link::parse_mac(mac).is_none() {
                return Err(ContainerError::Invalid(format!("invalid MAC address: {mac}")));
            }
            let mode = hc.network_mode.clone().unwrap_or_default();
            let only = networks.len() == 1;
            let ec = networks.iter_mut().find(|(k, _)| **k == mode || only).map(|(_, ec)| ec);
            match ec {
                Some(ec) if ec.mac.is_none() => ec.mac = Some(mac.to_string()),
                Some(_) => {}
                None => {
                    return Err(ContainerError::Invalid(
                        "conflicting options: mac-address and the network mode".into(),
                    ))
                }
            }
        }
        if hc.network_mode.as_deref() == Some("host") {
            // Docker: published ports are discarded in host mode.
            hc.port_bindings = None;
            hc.publish_all_ports = Some(false);
        }
        self.check_references(&hc)?;
        let mut mount_points = mounts::collect(&hc, cfg.volumes.as_ref(), &|c| {
            Ok(self.lookup(c)?.snapshot().mount_points)
        })?;
        for im in &body.image_mounts {
            let image = self.images.resolve(&im.source).map_err(|e| match e.kind() {
                wharf_reference::ErrorKind::NotFound => {
                    ContainerError::Image(wharf_image::ImageError::NotFound(im.source.clone()))
                }
                _ => ContainerError::Image(e),
            })?;
            let mp = mounts::image_mount_point(im, &image.to_string())?;
            if mount_points.iter().any(|m| m.destination == mp.destination) {
                return Err(ContainerError::Invalid(format!(
                    "Duplicate mount point: {}",
                    mp.destination
                )));
            }
            mount_points.push(mp);
        }
        let name = self.reserve_name(name, &id)?;
        let mut created_anon: Vec<String> = Vec::new();
        if let Err(e) = self.create_mount_sources(&mut mount_points, &mut created_anon) {
            self.names.lock().expect("names").remove(&name);
            for v in created_anon {
                let _ = self.volumes.remove(&v, true);
            }
            return Err(e);
        }
        let rec = Record {
            id: id.clone(),
            name: name.clone(),
            created: now_nanos(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            image: image_id.to_string(),
            config: cfg,
            host_config: hc,
            state: State::default(),
            restart_count: 0,
            manually_stopped: false,
            driver: self.images.driver().name().to_string(),
            exec_ids: Vec::new(),
            mount_points,
            networks,
            net: Default::default(),
        };
        let r = (|| -> Result<()> {
            let dir = self.container_dir(&id);
            fs::create_dir(&dir)?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o710))?;
            self.prepare_files(&rec)?;
            rec.save(&dir)?;
            Ok(())
        })();
        if let Err(e) = r {
            let _ = fs::remove_dir_all(self.container_dir(&id));
            self.names.lock().expect("names").remove(&name);
            for v in created_anon {
                let _ = self.volumes.remove(&v, true);
            }
            return Err(e);
        }
        self.emit(&rec, "create", &[]);
        self.insert(rec);
        Ok((id, warnings))
    }

    /// The containers a new one names (`--link` on the default bridge, `--volumes-from`,
    /// `--pid`/`--ipc container:`) must exist: naming a missing one is the client's error
    /// (400), in dockerd's words. (A link on a user network is an alias that may resolve later.)
    fn check_references(&self, hc: &m::HostConfig) -> Result<()> {
        let missing = |n: &str| self.lookup(n).is_err();
        let net = hc.network_mode.as_deref().unwrap_or("");
        if matches!(net, "" | "default" | "bridge") {
            for l in hc.links.iter().flatten() {
                let name = l.split(':').next().unwrap_or("").trim_start_matches('/');
                if missing(name) {
                    return Err(ContainerError::Invalid(format!(
                        "could not get container for {name}: No such container: {name}"
                    )));
                }
            }
        }
        for vf in hc.volumes_from.iter().flatten() {
            let (c, _) = mounts::parse_volumes_from(vf)?;
            if missing(&c) {
                return Err(ContainerError::Invalid(format!("No such container: {c}")));
            }
        }
        for mode in [&hc.pid_mode, &hc.ipc_mode] {
            if let Some(c) = mode.as_deref().and_then(|m| m.strip_prefix("container:")) {
                if missing(c) {
                    return Err(ContainerError::Invalid(format!("No such container: {c}")));
                }
            }
        }
        Ok(())
    }

    /// Create the volumes a new container names (anonymous ones with fresh names) and the
    /// missing source directories of its `-v` binds, as Docker does at create.
    fn create_mount_sources(&self, mps: &mut [MountPoint], created: &mut Vec<String>) -> Result<()> {
        for mp in mps.iter_mut() {
            match mp.typ.as_str() {
                "volume" => {
                    let existed = !mp.name.is_empty() && self.volumes.get(&mp.name).is_ok();
                    let v = self
                        .volumes
                        .create(
                            wharf_volume::CreateOptions {
                                name: Some(mp.name.clone()).filter(|n| !n.is_empty()),
                                driver: Some(mp.driver.clone()),
                                driver_opts: Some(mp.volume_opts.clone().into_iter().collect()),
                                labels: Some(mp.volume_labels.clone().into_iter().collect())
                                    .filter(|l: &std::collections::BTreeMap<_, _>| !l.is_empty()),
                            },
                            mp.anonymous,
                        )
                        .map_err(ContainerError::Volume)?;
                    if mp.anonymous && !existed {
                        created.push(v.name.clone());
                    }
                    mp.source = self.volumes.path(&v.name).to_string_lossy().into_owned();
                    mp.name = v.name;
                }
                "bind" if mp.create_source && !Path::new(&mp.source).exists() => {
                    fs::create_dir_all(&mp.source).map_err(|e| {
                        ContainerError::Invalid(format!("error while creating mount source path '{}': {e}", mp.source))
                    })?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The host directories behind a starting container's mounts: volumes are mounted (driver
    /// options) and, while empty, filled with the image's files at their destination.
    fn prepare_mounts(&self, rec: &Record, rootfs: &Path) -> Result<Vec<Value>> {
        let mut mps = rec.mount_points.clone();
        mounts::sort_for_mounting(&mut mps);
        let mut out = Vec::new();
        for (i, mp) in mps.iter_mut().enumerate() {
            match mp.typ.as_str() {
                "volume" => {
                    let dir = self.volumes.mount(&mp.name, &rec.id).map_err(ContainerError::Volume)?;
                    if mp.copy_data {
                        crate::archive::copy_up(rootfs, &mp.destination, &dir)?;
                    }
                    mp.source = dir.to_string_lossy().into_owned();
                    if !mp.subpath.is_empty() {
                        let pin = self.container_dir(&rec.id).join(format!("mounts/subpath/{i}"));
                        mounts::pin_subpath(&dir, &mp.subpath, &pin)?;
                        mp.source = pin.to_string_lossy().into_owned();
                    }
                }
                "image" => mp.source = self.mount_image(rec, i, mp)?,
                "bind" if !Path::new(&mp.source).exists() => {
                    if mp.create_source {
                        fs::create_dir_all(&mp.source)?;
                    } else {
                        return Err(ContainerError::Invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            mp.source
                        )));
                    }
                }
                _ => {}
            }
            let is_dir = mp.typ == "tmpfs" || Path::new(&mp.source).is_dir();
            crate::archive::make_destination(rootfs, &mp.destination, is_dir)?;
            out.push(mp.to_spec());
        }
        Ok(out)
    }

    /// A stopped container's volumes are no longer needed by it.
    fn release_volumes(&self, id: &str) {
        let Some(e) = self.map.read().expect("map").get(id).cloned() else {
            return;
        };
        for mp in e.snapshot().mount_points.iter().filter(|m| m.typ == "volume") {
            self.volumes.unmount(&mp.name, id);
        }
    }

    /// The container's own files: `hosts`, `hostname`, `resolv.conf`, and its storage dirs.
    fn prepare_files(&self, rec: &Record) -> Result<()> {
        let dir = self.container_dir(&rec.id);
        let hostname = rec.config.hostname.clone().unwrap_or_default();
        fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        for h in rec.host_config.extra_hosts.iter().flatten() {
            if let Some((name, ip)) = h.split_once(':').or_else(|| h.split_once('=')) {
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
        }
        fs::write(dir.join("hosts"), hosts)?;
        fs::write(dir.join("resolv.conf"), resolv_conf(&rec.host_config, false))?;
        if self.images.driver() == Driver::Overlay2 {
            for d in ["rw/diff", "rw/work", "init", "merged"] {
                fs::create_dir_all(dir.join(d))?;
            }
            // The init layer: mount points for the files bind-mounted over it.
            let init = dir.join("init");
            for d in ["etc", "dev", "proc", "sys", "dev/pts", "dev/shm"] {
                fs::create_dir_all(init.join(d))?;
            }
            for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
                fs::write(init.join(f), "")?;
            }
        } else {
            fs::create_dir_all(dir.join("merged"))?;
        }
        Ok(())
    }

    /// Mount the container's root at `<dir>/merged` (idempotent).
    pub(crate) fn mount_root(&self, rec: &Record) -> Result<PathBuf> {
        let dir = self.container_dir(&rec.id);
        let merged = dir.join("merged");
        if is_mountpoint(&merged) {
            return Ok(merged);
        }
        let image: Digest = rec
            .image
            .parse()
            .map_err(|_| ContainerError::Internal(format!("bad image id {}", rec.image)))?;
        let (_, layers) = self.images.rootfs_of(&image)?;
        let store = self.images.layer_store();
        match store.driver() {
            Driver::Overlay2 => {
                let mut lowers = vec![dir.join("init")];
                lowers.extend(store.lower_dirs(&layers));
                let volatile = rec.host_config.auto_remove.unwrap_or(false);
                wharf_store::layer::mount_overlay(
                    &lowers,
                    &dir.join("rw/diff"),
                    &dir.join("rw/work"),
                    &merged,
                    volatile,
                )?;
            }
            Driver::Vfs => {
                let rootfs = dir.join("rootfs");
                if !rootfs.exists() {
                    match layers.last() {
                        Some(top) => store.copy_layer(top, &rootfs)?,
                        None => fs::create_dir_all(&rootfs)?,
                    }
                }
                rustix::mount::mount_bind(&rootfs, &merged)
                    .map_err(|e| ContainerError::Internal(format!("bind {}: {e}", merged.display())))?;
            }
        }
        Ok(merged)
    }

    fn unmount_root(&self, id: &str) {
        self.release_volumes(id);
        self.unmount_root_only(id);
    }

    /// `--mount type=image`: the image's layers read-only at `mounts/image/<n>` (and its
    /// subpath pinned beside it) while the container runs; the host path to bind.
    fn mount_image(&self, rec: &Record, i: usize, mp: &mounts::MountPoint) -> Result<String> {
        let image: Digest = mp
            .source
            .parse()
            .map_err(|_| ContainerError::Internal(format!("bad image id {}", mp.source)))?;
        let (_, layers) = self.images.rootfs_of(&image)?;
        let dir = self.container_dir(&rec.id).join("mounts/image");
        let at = dir.join(i.to_string());
        if !is_mountpoint(&at) {
            fs::create_dir_all(&at)?;
            self.images.layer_store().mount(&layers, &at, None)?;
        }
        if mp.subpath.is_empty() {
            return Ok(at.to_string_lossy().into_owned());
        }
        let pin = dir.join(format!("{i}-sub"));
        mounts::pin_subpath(&at, &mp.subpath, &pin)?;
        Ok(pin.to_string_lossy().into_owned())
    }

    /// Unmount the root (and with it anything bound inside it), the shareable `/dev/shm`, the
    /// pinned volume subpaths and the mounted images.
    pub(crate) fn unmount_root_only(&self, id: &str) {
        let dir = self.container_dir(id);
        let mut pins: Vec<PathBuf> = ["mounts/subpath", "mounts/image"]
            .iter()
            .flat_map(|d| fs::read_dir(dir.join(d)).into_iter().flatten().flatten())
            .map(|e| e.path())
            .collect();
        // A subpath of an image before the image it is in.
        pins.sort_by(|a, b| b.cmp(a));
        for m in [dir.join("merged"), dir.join("mounts/shm")].iter().chain(&pins) {
            // Mounts may be stacked (a copy or export mounted the root as the container
            // started): take them all off.
            for _ in 0..8 {
                if !is_mountpoint(m) {
                    break;
                }
                if let Err(e) = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH) {
                    tracing::warn!(%id, "unmount {}: {e}", m.display());
                    break;
                }
            }
        }
        // A pin is made again, as a file or a directory, at the next start.
        for p in pins.iter().filter(|p| !is_mountpoint(p)) {
            let _ = fs::remove_dir(p).or_else(|_| fs::remove_file(p));
        }
    }

    /// `ps -s` and `inspect --size`: the bytes in the container's read-write layer and in its
    /// whole root (image layers plus that layer), counting each hard-linked inode once.
    pub fn sizes(&self, name: &str) -> Result<(u64, u64)> {
        let rec = self.lookup(name)?.snapshot();
        let image: Digest = rec
            .image
            .parse()
            .map_err(|_| ContainerError::Internal(format!("bad image id {}", rec.image)))?;
        let image_size: u64 = self
            .images
            .rootfs_of(&image)
            .map(|(_, layers)| layers.iter().map(|l| l.size).sum())
            .unwrap_or(0);
        let dir = self.container_dir(&rec.id);
        let rw = match self.images.driver() {
            Driver::Overlay2 => dir_size(&dir.join("rw/diff")),
            Driver::Vfs => dir_size(&dir.join("rootfs")).saturating_sub(image_size),
        };
        Ok((rw, rw + image_size))
    }

    /// The running container another one joins a namespace of (`--pid`/`--ipc`/`--network
    /// container:`): its host PID and full ID. Not running is a conflict, in Docker 28's words
    /// (which name the container as the mode does).
    fn join_target(&self, name: &str, what: &str) -> Result<(i64, String)> {
        let e = self.lookup(name)?;
        let r = e.snapshot();
        if !matches!(r.state.status.as_str(), "running" | "paused") || r.state.pid <= 0 {
            return Err(ContainerError::Conflict(if what == "network" {
                format!("cannot join network of a non running container: {name}")
            } else {
                format!("container {name} is not running")
            }));
        }
        Ok((r.state.pid, r.id))
    }

    /// `--ipc shareable`: a tmpfs on the host that this container and its joiners mount at
    /// `/dev/shm`; it lives while the container runs.
    fn shareable_shm(&self, rec: &Record) -> Result<PathBuf> {
        let shm = self.container_dir(&rec.id).join("mounts/shm");
        if !is_mountpoint(&shm) {
            fs::create_dir_all(&shm)?;
            let size = rec.host_config.shm_size.filter(|s| *s > 0).unwrap_or(64 << 20);
            rustix::mount::mount(
                "shm",
                &shm,
                "tmpfs",
                rustix::mount::MountFlags::NOSUID
                    | rustix::mount::MountFlags::NODEV
                    | rustix::mount::MountFlags::NOEXEC,
                std::ffi::CString::new(format!("mode=1777,size={size}"))
                    .expect("no NUL")
                    .as_c_str(),
            )
            .map_err(|e| ContainerError::Internal(format!("mount {}: {e}", shm.display())))?;
        }
        Ok(shm)
    }

    pub(crate) fn save(&self, e: &Entry) -> Result<()> {
        let rec = e.snapshot();
        if rec.state.status == "removing" {
            // The removal owns the directory now: a record written into it would stop the
            // directory's removal and bring the container back at the next start.
            return Ok(());
        }
        rec.save(&self.container_dir(&rec.id))?;
        Ok(())
    }

    fn bump(e: &Entry, exited: bool, removed: bool) {
        e.gen.send_modify(|g| {
            if exited {
                g.exits += 1;
            }
            g.removed |= removed;
        });
    }

    /// `POST /containers/{id}/start`.
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        self.start_locked(&e).await
    }

    async fn start_locked(self: &Arc<Self>, e: &Arc<Entry>) -> Result<()> {
        let rec = e.snapshot();
        match rec.state.status.as_str() {
            "running" => return Err(ContainerError::NotModified),
            "paused" => {
                return Err(ContainerError::Conflict(
                    "cannot start a paused container, try unpause instead".into(),
                ))
            }
            "removing" | "dead" => {
                return Err(ContainerError::Conflict(format!(
                    "container {} is marked for removal and cannot be started",
                    rec.id
                )))
            }
            _ => {}
        }
        match self.launch(&rec).await {
            Ok((pid, stream, net)) => {
                {
                    let mut r = e.rec.lock().expect("record lock");
                    r.net = net;
                    r.state.status = "running".into();
                    r.state.pid = i64::from(pid);
                    r.state.started_at = now_nanos();
                    r.state.error.clear();
                    r.state.oom_killed = false;
                    r.state.health = health::probe(&r.config).map(|_| health::Health::starting());
                    r.manually_stopped = false;
                }
                self.save(e)?;
                Self::bump(e, false, false);
                let now = e.snapshot();
                self.emit_network(&now, "connect");
                self.emit(&now, "start", &[]);
                self.spawn_monitor(e.clone(), stream);
                self.spawn_health(e.clone());
                Ok(())
            }
            Err(err) => {
                self.unmount_root(&rec.id);
                let msg = match &err {
                    ContainerError::Runtime(m) => start_error(m),
                    other => other.to_string(),
                };
                {
                    let mut r = e.rec.lock().expect("record lock");
                    r.state.error = msg.clone();
                    r.state.exit_code = if msg.contains("executable file not found") || msg.contains("no such file") {
                        127
                    } else if msg.contains("permission denied") {
                        126
                    } else {
                        128
                    };
                    if r.state.status == "running" {
                        r.state.status = "exited".into();
                    }
                }
                let _ = self.save(e);
                // Fail pending attaches so their clients do not hang.
                for a in e.attaches.lock().expect("attaches").drain(..) {
                    let _ = a.tx.send(Err(ContainerError::Conflict(msg.clone())));
                }
                Self::bump(e, true, false);
                // `run --rm` waits for the removal after a failed start, as with Docker.
                if rec.host_config.auto_remove.unwrap_or(false) {
                    let me = self.clone();
                    let id = rec.id.clone();
                    tokio::spawn(async move {
                        let _ = me.remove(&id, true, true).await;
                    });
                }
                Err(match err {
                    ContainerError::Runtime(_) => ContainerError::Runtime(msg),
                    other => other,
                })
            }
        }
    }

    /// Mount, write the bundle, start the shim, connect waiting attaches, let the process run.
    /// Join the container's networks, then launch it; a failed launch leaves no network behind.
    async fn launch(&self, rec: &Record) -> Result<(i32, Option<ShimStream>, netsetup::NetState)> {
        let mode = rec.host_config.network_mode.clone().unwrap_or_default();
        let (st, net_ns) = if netsetup::uses_networks(&mode) {
            let st = netsetup::start(&self.net, rec).await?;
            let key = st.sandbox_key.clone();
            (st, Some(key))
        } else if let Some(other) = mode.strip_prefix("container:") {
            let (pid, _) = self.join_target(other, "network")?;
            (netsetup::NetState::default(), Some(format!("/proc/{pid}/ns/net")))
        } else {
            (netsetup::NetState::default(), None)
        };
        // The resolver opens while the shim creates the container; the process starts after.
        let mut resolver = st.resolver.then(|| {
            let (net, rec, mut st) = (self.net.clone(), rec.clone(), st.clone());
            tokio::spawn(async move { netsetup::start_resolver(&net, &rec, &mut st).await })
        });
        let r = match self.write_net_files(rec, &st) {
            Ok(link_env) => self.launch_with(rec, net_ns, &link_env, &mut resolver).await,
            Err(e) => Err(e),
        };
        match r {
            Ok((pid, stream)) => Ok((pid, stream, st)),
            Err(e) => {
                // A resolver still opening would come back after the cleanup.
                if let Some(r) = resolver {
                    let _ = r.await;
                }
                netsetup::stop(&self.net, &rec.id, &st).await;
                Err(e)
            }
        }
    }

    /// `/etc/hosts` and `/etc/resolv.conf` for this start: its own address, its links, the
    /// network's DNS responder on user networks. Returns the legacy link environment
    /// variables (`DB_PORT=tcp://...`, `DB_ENV_X=...`) for the process.
    fn write_net_files(&self, rec: &Record, st: &netsetup::NetState) -> Result<Vec<String>> {
        let dir = self.container_dir(&rec.id);
        let gateway = self.net.get("bridge").ok().and_then(|n| n.pool.map(|p| p.gateway));
        let mut links = Vec::new();
        let mut link_env = Vec::new();
        // Legacy links (the default bridge's): /etc/hosts lines and variables. A user
        // network's links are aliases its DNS answers, for containers that may come later.
        let mut link_specs: Vec<String> = Vec::new();
        for l in rec
            .networks
            .iter()
            .filter(|(name, _)| name.as_str() == "bridge")
            .flat_map(|(_, n)| n.links.iter().chain(rec.host_config.links.iter().flatten()))
        {
            if !link_specs.contains(l) {
                link_specs.push(l.clone());
            }
        }
        for l in link_specs {
            let (name, alias) = l.split_once(':').unwrap_or((&l, &l));
            let name = name.trim_start_matches('/');
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            let other = self.lookup(name)?.snapshot();
            let ip = other
                .net
                .endpoints
                .first()
                .map(|e| e.ip)
                .filter(|_| other.state.is_running())
                .ok_or_else(|| {
                    ContainerError::Invalid(format!(
                        "Cannot link to a non running container: /{} AS /{}/{alias}",
                        other.name, rec.name
                    ))
                })?;
            if !links
                .iter()
                .any(|(a, _, _): &(String, String, std::net::Ipv4Addr)| a == alias)
            {
                links.push((alias.to_string(), other.name.clone(), ip));
                link_env.extend(netsetup::link_env(alias, &rec.name, ip, &other));
            }
        }
        fs::write(dir.join("hosts"), netsetup::hosts_file(rec, st, gateway, &links))?;
        fs::write(dir.join("resolv.conf"), resolv_conf(&rec.host_config, st.resolver))?;
        Ok(link_env)
    }

    async fn launch_with(
        &self,
        rec: &Record,
        net_ns: Option<String>,
        link_env: &[String],
        resolver: &mut Option<tokio::task::JoinHandle<Result<()>>>,
    ) -> Result<(i32, Option<ShimStream>)> {
        let rootfs = self.mount_root(rec)?;
        let bundle = self.bundle_dir(&rec.id);
        // The last run's shim may still be removing the cgroups this run is about to create.
        shim::wait_gone(&bundle).await;
        let _ = fs::remove_dir_all(&bundle);
        fs::create_dir_all(&bundle)?;
        let root = wharf_store::saferoot::SafeRoot::open(&rootfs)?;
        let read_in = |p: &str| read_in_root(&root, p);
        let user = spec::resolve_user(
            rec.config.user.as_deref().unwrap_or(""),
            &read_in("/etc/passwd"),
            &read_in("/etc/group"),
            rec.host_config.group_add.as_deref().unwrap_or(&[]),
        )?;
        // The working directory is created inside the root, never through a symlink out of it.
        if let Some(w) = rec.config.working_dir.as_deref().filter(|w| !w.is_empty() && *w != "/") {
            let rel = Path::new(w.trim_start_matches('/'));
            let comps = wharf_store::saferoot::clean_relative(rel)
                .map_err(|m| ContainerError::Invalid(format!("working directory {w}: {m}")))?;
            root.mkdir_all(&comps)
                .map_err(|e| ContainerError::Invalid(format!("working directory {w}: {e}")))?;
        }
        let mut base_env = vec![
            spec::DEFAULT_PATH.to_string(),
            format!("HOSTNAME={}", rec.config.hostname.clone().unwrap_or_default()),
        ];
        if rec.config.tty.unwrap_or(false) {
            base_env.push("TERM=xterm".into());
        }
        base_env.push(format!("HOME={}", user.home));
        // Docker's order: the daemon's variables, the links', then the container's own.
        let env = spec::merge_env(&[&base_env, link_env, rec.config.env.as_deref().unwrap_or(&[])]);
        let mut argv = vec![rec.path.clone()];
        argv.extend(rec.args.iter().cloned());
        let cgroup_path = self.cgroup_path(rec);
        let seccomp = crate::seccomp::for_container(&rec.host_config)?;
        let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let init = if rec.host_config.init.unwrap_or(self.cfg.default_init) {
            Some(self.cfg.init_path.clone().ok_or_else(|| {
                ContainerError::Invalid("--init: no init binary found (install tini, or set wharfd --init-path)".into())
            })?)
        } else {
            None
        };
        let hc = &rec.host_config;
        let pid_ns = match hc.pid_mode.as_deref().and_then(|m| m.strip_prefix("container:")) {
            Some(other) => Some(format!("/proc/{}/ns/pid", self.join_target(other, "PID")?.0)),
            None => None,
        };
        let (ipc_ns, shm) = match hc.ipc_mode.as_deref().unwrap_or("private") {
            "host" => (None, spec::Shm::Bind("/dev/shm".into())),
            "none" => (None, spec::Shm::None),
            "shareable" => (None, spec::Shm::Bind(self.shareable_shm(rec)?)),
            m => match m.strip_prefix("container:") {
                Some(other) => {
                    let (pid, donor) = self.join_target(other, "IPC")?;
                    let dshm = self.container_dir(&donor).join("mounts/shm");
                    if !is_mountpoint(&dshm) {
                        return Err(ContainerError::Invalid(format!(
                            "can't join IPC of container {donor}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
                        )));
                    }
                    (Some(format!("/proc/{pid}/ns/ipc")), spec::Shm::Bind(dshm))
                }
                None => (None, spec::Shm::Private),
            },
        };
        let user_mounts = self.prepare_mounts(rec, &rootfs)?;
        let mut spec = spec::build(
            &rec.config,
            &rec.host_config,
            spec::SpecInput {
                rootfs: &rootfs,
                files: &self.container_dir(&rec.id),
                cgroup_path: cgroup_path.clone(),
                user,
                argv,
                env,
                seccomp,
                ncpu,
                init,
                pid_ns,
                ipc_ns,
                shm,
                user_mounts,
                net_ns,
            },
        )?;
        let _ = fs::remove_file(bundle.join(crate::bpf::FILTER_FILE));
        let seccomp = crate::bpf::hand_off(&mut spec, &bundle)?;
        crate::bpf::keep_for_cgroup_seal(&mut spec);
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&spec).expect("spec"),
        )?;
        let log_opts = rec
            .host_config
            .log_config
            .as_ref()
            .and_then(|l| l.config.clone())
            .unwrap_or_default();
        let log_driver = rec
            .host_config
            .log_config
            .as_ref()
            .and_then(|l| l.typ.clone())
            .unwrap_or_else(|| "json-file".into());
        let max_size = log_opts
            .get("max-size")
            .map(|s| {
                wharf_units::ram_in_bytes(s)
                    .map(|v| v.max(0) as u64)
                    .ok_or_else(|| ContainerError::Invalid(format!("invalid max-size: {s}")))
            })
            .transpose()?
            .unwrap_or(0);
        let max_file = log_opts
            .get("max-file")
            .map(|s| {
                s.parse::<u32>()
                    .map_err(|_| ContainerError::Invalid(format!("invalid max-file: {s}")))
            })
            .transpose()?
            .unwrap_or(1);
        let sc = ShimConfig {
            id: rec.id.clone(),
            bundle: bundle.display().to_string(),
            state_root: self.cfg.exec_root.join("runtime").display().to_string(),
            socket: self.shim_socket(&rec.id).display().to_string(),
            exit_file: bundle.join("exit.json").display().to_string(),
            log_path: if log_driver == "none" {
                String::new()
            } else {
                self.log_path(&rec.id).display().to_string()
            },
            log_max_size: max_size,
            log_max_file: max_file,
            tty: rec.config.tty.unwrap_or(false),
            open_stdin: rec.config.open_stdin.unwrap_or(false),
            cgroup_path,
            seccomp,
        };
        let sc_path = bundle.join("shim.json");
        fs::write(&sc_path, serde_json::to_vec(&sc).expect("shim config"))?;
        // A stale libcontainer state dir from a crash would make create fail.
        let _ = fs::remove_dir_all(self.cfg.exec_root.join("runtime").join(&rec.id));
        let pid = shim::spawn(&self.cfg.shim, &sc_path, &bundle.join("shim.log")).await?;
        let sock = self.shim_socket(&rec.id);
        // Attaches that were waiting for this start see the output from the first byte.
        let pending: Vec<PendingAttach> =
            std::mem::take(&mut *self.lookup(&rec.id)?.attaches.lock().expect("attaches"));
        for a in pending {
            let r = shim::open(&sock, &a.req).await.map(|(_, s)| s);
            let _ = a.tx.send(r);
        }
        // The monitor's wait connection, opened before the process runs, so no exit is missed.
        let waiter = shim::send(&sock, &Request::Wait).await.ok();
        if let Some(r) = resolver.take() {
            let opened = r
                .await
                .map_err(|e| ContainerError::Internal(format!("the resolver's task: {e}")))
                .and_then(|r| r);
            if let Err(e) = opened {
                let _ = shim::call(&sock, &Request::Kill { signal: 9, all: true }).await;
                return Err(e);
            }
        }
        if let Err(e) = shim::call(&sock, &Request::Start).await {
            let _ = shim::call(&sock, &Request::Kill { signal: 9, all: true }).await;
            return Err(ContainerError::Runtime(e.to_string()));
        }
        Ok((pid, waiter))
    }

    fn spawn_monitor(self: &Arc<Self>, e: Arc<Entry>, stream: Option<ShimStream>) {
        let me = self.clone();
        tokio::spawn(async move {
            let exit = match stream {
                Some(mut s) => {
                    use tokio::io::AsyncBufReadExt;
                    let mut line = String::new();
                    match s.read_line(&mut line).await {
                        Ok(n) if n > 0 => serde_json::from_str::<wharf_shim_proto::Reply>(line.trim())
                            .ok()
                            .and_then(|r| r.exit),
                        _ => None,
                    }
                }
                None => None,
            };
            let (exit, shim_cleans) = match exit {
                Some(x) => (x, true),
                None => {
                    // The shim went away without answering (killed, or crashed): nothing
                    // supervises the container's processes any more.
                    (me.after_shim_died(&e.snapshot(), true).await, false)
                }
            };
            me.on_exit(&e, exit, shim_cleans).await;
        });
    }

    /// Probe a started container's health for as long as this run lasts (see [`health`]).
    fn spawn_health(self: &Arc<Self>, e: Arc<Entry>) {
        let rec = e.snapshot();
        let Some(p) = health::probe(&rec.config) else { return };
        let run = e.gen.borrow().exits;
        let started = crate::logs::parse_time(&rec.state.started_at).unwrap_or(0);
        let since_start = move || {
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
            Duration::from_nanos(u64::try_from(now - started).unwrap_or(0))
        };
        let me = self.clone();
        tokio::spawn(async move {
            let mut gen = e.gen.subscribe();
            loop {
                let status = e.snapshot().state.health.map(|h| h.status).unwrap_or_default();
                let wait = p.next_interval(since_start(), &status);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = async { gen.wait_for(|g| g.exits != run || g.removed).await.is_ok() } => return,
                }
                let rec = e.snapshot();
                if e.gen.borrow().exits != run || !rec.state.is_running() {
                    return;
                }
                let begun = since_start();
                let start = now_nanos();
                let (exit_code, output) = me.run_probe(&rec, &p).await;
                let result = health::ProbeResult {
                    start,
                    end: now_nanos(),
                    exit_code,
                    output,
                };
                let changed = {
                    let mut r = e.rec.lock().expect("record lock");
                    if e.gen.borrow().exits != run {
                        return;
                    }
                    let h = r.state.health.get_or_insert_with(health::Health::starting);
                    health::record(h, &p, result, begun)
                };
                if let Some(status) = changed {
                    if let Err(err) = me.save(&e) {
                        tracing::warn!(id = %rec.id, "saving health: {err}");
                    }
                    me.emit(&e.snapshot(), &format!("health_status: {status}"), &[]);
                }
            }
        });
    }

    /// One health probe: an exec of `p.argv` in the container, its output and exit code, or
    /// -1 and why when it could not run or outlived its timeout. The exec is forgotten after.
    async fn run_probe(&self, rec: &Record, p: &health::Probe) -> (i64, String) {
        let cfg = m::ExecConfig {
            cmd: Some(p.argv.clone()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let xid = match self.exec_create(&rec.id, cfg) {
            Ok(x) => x,
            Err(err) => return (-1, err.to_string()),
        };
        let run = async {
            let mut s = self.exec_start(&xid).await?;
            let (mut buf, mut out, mut code) = (Vec::new(), Vec::new(), -1i64);
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                while let Some((stream, payload, used)) = wharf_shim_proto::parse_frame(&buf) {
                    if stream == wharf_shim_proto::STREAM_EXIT {
                        if let Ok(b) = <[u8; 4]>::try_from(payload) {
                            code = i64::from(i32::from_be_bytes(b));
                        }
                    } else if out.len() < health::MAX_OUTPUT {
                        out.extend_from_slice(payload);
                    }
                    buf.drain(..used);
                }
                match tokio::io::AsyncReadExt::read(&mut s, &mut chunk).await {
                    Ok(0) | Err(_) => return Ok::<_, ContainerError>((code, out)),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
        let (code, output) = match tokio::time::timeout(p.timeout, run).await {
            Ok(Ok((code, out))) => (code, health::clip_output(&out)),
            Ok(Err(err)) => (-1, err.to_string()),
            Err(_) => {
                if let Some(pid) = self
                    .exec_get(&xid)
                    .ok()
                    .and_then(|x| rustix::process::Pid::from_raw(x.pid as i32))
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                (
                    -1,
                    format!(
                        "Health check exceeded timeout ({})",
                        wharf_units::go_duration(p.timeout)
                    ),
                )
            }
        };
        self.exec_exited(&xid, i32::try_from(code).ok());
        self.execs.lock().expect("execs").remove(&xid);
        if let Ok(e) = self.lookup(&rec.id) {
            e.rec.lock().expect("record lock").exec_ids.retain(|x| *x != xid);
        }
        (code, output)
    }

    /// Record a container's end. `shim_cleans`: its shim answered and removes the container's
    /// cgroups and runtime state itself after answering; otherwise the shim is gone (or going)
    /// and the daemon clears what it left once its lock is free.
    async fn on_exit(self: &Arc<Self>, e: &Arc<Entry>, exit: ExitInfo, shim_cleans: bool) {
        let (id, auto_remove, policy, max_retry, manually, restarts, started_at) = {
            let mut r = e.rec.lock().expect("record lock");
            // A container its policy restarts shows `restarting` from its exit on, never a
            // moment of `exited` between the failure and the restart.
            let p = r.host_config.restart_policy.clone().unwrap_or_default();
            let name = p.name.map(|n| n.to_string()).unwrap_or_default();
            let retry = p.maximum_retry_count.unwrap_or(0);
            let will_restart = !r.host_config.auto_remove.unwrap_or(false)
                && !r.manually_stopped
                && match name.as_str() {
                    "always" | "unless-stopped" => true,
                    "on-failure" => exit.exit_code != 0 && (retry == 0 || r.restart_count < retry),
                    _ => false,
                };
            r.state.status = if will_restart { "restarting" } else { "exited" }.into();
            r.state.pid = 0;
            // Its execs ended with it.
            r.exec_ids.clear();
            r.state.exit_code = i64::from(exit.exit_code);
            r.state.oom_killed = exit.oom_killed;
            r.state.finished_at = if exit.finished_at.is_empty() {
                now_nanos()
            } else {
                exit.finished_at.clone()
            };
            (
                r.id.clone(),
                r.host_config.auto_remove.unwrap_or(false),
                p.name.map(|n| n.to_string()).unwrap_or_default(),
                p.maximum_retry_count.unwrap_or(0),
                r.manually_stopped,
                r.restart_count,
                r.state.started_at.clone(),
            )
        };
        self.unmount_root(&id);
        let net_state = std::mem::take(&mut e.rec.lock().expect("record lock").net);
        netsetup::stop(&self.net, &id, &net_state).await;
        if !shim_cleans {
            shim::wait_gone(&self.bundle_dir(&id)).await;
            let _ = fs::remove_dir_all(self.cfg.exec_root.join("runtime").join(&id));
        }
        // An auto-removed container's record goes next; after a crash in between, the record
        // still says running, which ends the same way (exit 255, then removal).
        if !auto_remove {
            if let Err(err) = self.save(e) {
                tracing::warn!(%id, "saving exit: {err}");
            }
        }
        Self::bump(e, true, false);
        // Whole seconds the process ran, as dockerd's `execDuration`.
        let ran = match (
            crate::logs::parse_time(&started_at),
            crate::logs::parse_time(&e.snapshot().state.finished_at),
        ) {
            (Some(a), Some(b)) if b > a => ((b - a) / 1_000_000_000).to_string(),
            _ => "0".into(),
        };
        let done = e.snapshot();
        self.emit(
            &done,
            "die",
            &[("exitCode", &exit.exit_code.to_string()), ("execDuration", &ran)],
        );
        self.emit_network(&done, "disconnect");
        if auto_remove {
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(err) = me.remove(&id, true, true).await {
                    tracing::debug!(%id, "auto-remove: {err}");
                }
            });
            return;
        }
        let restart = !manually
            && match policy.as_str() {
                "always" | "unless-stopped" => true,
                "on-failure" => exit.exit_code != 0 && (max_retry == 0 || restarts < max_retry),
                _ => false,
            };
        if !restart {
            return;
        }
        // Docker's backoff: 100 ms doubling to a minute, reset after 10 s of running.
        let ran = crate::logs::parse_time(&started_at)
            .map(|s| {
                let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
                (now - s) / 1_000_000
            })
            .unwrap_or(0);
        let delay = {
            let mut d = e.restart_delay.lock().expect("delay");
            if ran >= 10_000 {
                *d = Duration::from_millis(100);
            }
            let cur = *d;
            *d = (*d * 2).min(Duration::from_secs(60));
            cur
        };
        {
            let mut r = e.rec.lock().expect("record lock");
            r.state.status = "restarting".into();
        }
        let me = self.clone();
        let e = e.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _op = e.op.lock().await;
            let (status, manually) = {
                let r = e.rec.lock().expect("record lock");
                (r.state.status.clone(), r.manually_stopped)
            };
            if status != "restarting" || manually {
                return;
            }
            // Still `restarting` until the start says otherwise (`running`, or `exited` with
            // the start's error).
            e.rec.lock().expect("record lock").restart_count += 1;
            if let Err(err) = me.start_locked(&e).await {
                tracing::warn!(id = %e.snapshot().id, "restart: {err}");
            }
        });
    }

    /// Signal number from a name (`HUP`, `SIGHUP`) or a number.
    pub fn parse_signal(s: &str) -> Result<i32> {
        let up = s.trim().to_ascii_uppercase();
        let name = up.strip_prefix("SIG").unwrap_or(&up);
        if let Ok(n) = name.parse::<i32>() {
            if (1..=64).contains(&n) {
                return Ok(n);
            }
        }
        let n = match name {
            "HUP" => 1,
            "INT" => 2,
            "QUIT" => 3,
            "ILL" => 4,
            "TRAP" => 5,
            "ABRT" | "IOT" => 6,
            "BUS" => 7,
            "FPE" => 8,
            "KILL" => 9,
            "USR1" => 10,
            "SEGV" => 11,
            "USR2" => 12,
            "PIPE" => 13,
            "ALRM" => 14,
            "TERM" => 15,
            "STKFLT" => 16,
            "CHLD" => 17,
            "CONT" => 18,
            "STOP" => 19,
            "TSTP" => 20,
            "TTIN" => 21,
            "TTOU" => 22,
            "URG" => 23,
            "XCPU" => 24,
            "XFSZ" => 25,
            "VTALRM" => 26,
            "PROF" => 27,
            "WINCH" => 28,
            "IO" | "POLL" => 29,
            "PWR" => 30,
            "SYS" => 31,
            _ => return Err(ContainerError::Invalid(format!("Invalid signal: {s}"))),
        };
        Ok(n)
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        let e = self.lookup(name)?;
        let sig = Self::parse_signal(if signal.is_empty() { "KILL" } else { signal })?;
        let rec = e.snapshot();
        if !rec.state.is_running() {
            return Err(ContainerError::Conflict(format!(
                "cannot kill container: {name}: container {} is not running",
                rec.id
            )));
        }
        // A kill with a stopping signal, the container's own StopSignal included, is a stop the
        // user asked for: restart policies leave it down.
        let own_stop = rec
            .config
            .stop_signal
            .as_deref()
            .and_then(|s| Self::parse_signal(s).ok());
        if sig == 9 || sig == 15 || sig == 2 || own_stop == Some(sig) {
            e.rec.lock().expect("record lock").manually_stopped = true;
        }
        let seen = e.gen.borrow().exits;
        shim::call(
            &self.shim_socket(&rec.id),
            &Request::Kill {
                signal: sig,
                all: false,
            },
        )
        .await?;
        self.emit(&rec, "kill", &[("signal", &sig.to_string())]);
        // As dockerd: a SIGKILL returns once the container has exited (up to 10 s), so an
        // inspect that follows sees it stopped with its exit code.
        if sig == 9 {
            Self::wait_exit(&e, seen, Some(Duration::from_secs(10))).await;
        }
        Ok(())
    }

    /// Wait until the number of exits passes `seen`, or `timeout` passes.
    async fn wait_exit(e: &Entry, seen: u64, timeout: Option<Duration>) -> bool {
        let mut rx = e.gen.subscribe();
        let fut = rx.wait_for(|g| g.exits > seen || g.removed);
        match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.is_ok(),
            None => fut.await.is_ok(),
        }
    }

    /// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after the timeout.
    pub async fn stop(&self, name: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        self.stop_locked(&e, timeout, signal).await?;
        self.emit(&e.snapshot(), "stop", &[]);
        Ok(())
    }

    async fn stop_locked(&self, e: &Arc<Entry>, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let rec = e.snapshot();
        if rec.state.status == "restarting" {
            e.rec.lock().expect("record lock").manually_stopped = true;
            e.rec.lock().expect("record lock").state.status = "exited".into();
            self.save(e)?;
            return Ok(());
        }
        if !rec.state.is_running() {
            return Err(ContainerError::NotModified);
        }
        e.rec.lock().expect("record lock").manually_stopped = true;
        let _ = self.save(e);
        let sock = self.shim_socket(&rec.id);
        if rec.state.status == "paused" {
            let _ = shim::call(&sock, &Request::Resume).await;
        }
        let seen = e.gen.borrow().exits;
        let sig = Self::parse_signal(
            signal
                .filter(|s| !s.is_empty())
                .or(rec.config.stop_signal.as_deref())
                .unwrap_or("TERM"),
        )?;
        let t = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let _ = shim::call(
            &sock,
            &Request::Kill {
                signal: sig,
                all: false,
            },
        )
        .await;
        if t < 0 {
            Self::wait_exit(e, seen, None).await;
            return Ok(());
        }
        if Self::wait_exit(e, seen, Some(Duration::from_secs(t as u64))).await {
            return Ok(());
        }
        let _ = shim::call(&sock, &Request::Kill { signal: 9, all: true }).await;
        if !Self::wait_exit(e, seen, Some(Duration::from_secs(30))).await {
            return Err(ContainerError::Internal(format!(
                "container {} did not exit after SIGKILL",
                rec.id
            )));
        }
        Ok(())
    }

    /// `POST /containers/{id}/restart`.
    pub async fn restart(self: &Arc<Self>, name: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        match self.stop_locked(&e, timeout, signal).await {
            Ok(()) | Err(ContainerError::NotModified) => {}
            Err(err) => return Err(err),
        }
        self.start_locked(&e).await?;
        // As dockerd: the restart is an event of its own, after the start's.
        self.emit(&e.snapshot(), "restart", &[]);
        Ok(())
    }

    /// `POST /containers/{id}/pause` and `unpause`.
    pub async fn pause(&self, name: &str, pause: bool) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let rec = e.snapshot();
        if !rec.state.is_running() {
            return Err(ContainerError::Conflict(format!("Container {} is not running", rec.id)));
        }
        if pause && rec.state.status == "paused" {
            return Err(ContainerError::Conflict(format!(
                "Container {} is already paused",
                rec.id
            )));
        }
        if !pause && rec.state.status != "paused" {
            return Err(ContainerError::Conflict(format!("Container {} is not paused", rec.id)));
        }
        let req = if pause { Request::Pause } else { Request::Resume };
        shim::call(&self.shim_socket(&rec.id), &req).await?;
        e.rec.lock().expect("record lock").state.status = if pause { "paused" } else { "running" }.into();
        self.save(&e)?;
        self.emit(&rec, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// `DELETE /containers/{id}`.
    /// `DELETE /containers/{id}`; with `volumes` (`rm -v`, `--rm`) its anonymous volumes go too.
    pub async fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let rec = e.snapshot();
        if rec.state.is_running() || rec.state.status == "restarting" {
            if !force {
                let what = if rec.state.status == "paused" {
                    "paused"
                } else {
                    "running"
                };
                return Err(ContainerError::Conflict(format!(
                    "cannot remove container \"/{}\": container is {what}: stop the container before removing or force remove",
                    rec.name
                )));
            }
            e.rec.lock().expect("record lock").manually_stopped = true;
            if rec.state.is_running() {
                let seen = e.gen.borrow().exits;
                let sock = self.shim_socket(&rec.id);
                if rec.state.status == "paused" {
                    let _ = shim::call(&sock, &Request::Resume).await;
                }
                let _ = shim::call(&sock, &Request::Kill { signal: 9, all: true }).await;
                if !Self::wait_exit(&e, seen, Some(Duration::from_secs(30))).await {
                    return Err(ContainerError::Internal(format!(
                        "could not kill container {} for removal",
                        rec.id
                    )));
                }
                // The shim removes the cgroups after it answers; a removal returns once they
                // are gone (and removes what the shim could not, a process having held them).
                self.clear_cgroups(&rec).await;
            }
        }
        if e.snapshot().state.status == "removing" {
            return Err(ContainerError::Conflict(format!(
                "removal of container {} is already in progress",
                rec.id
            )));
        }
        // Nothing of the container may outlive its record, whatever its shim did: the cgroup
        // says what is left.
        if crate::cgroup::any_process(&self.cgroup_path(&rec)) {
            if !force && !rec.state.is_running() {
                tracing::warn!(id = %rec.id, "an exited container's cgroup still holds processes: killing them");
            }
            self.kill_leftovers(&rec).await.map_err(|err| {
                ContainerError::Internal(format!("could not kill container {} for removal: {err}", rec.id))
            })?;
            // The shim could not remove cgroups that still held a process: they go here.
            self.clear_cgroups(&rec).await;
        }
        e.rec.lock().expect("record lock").state.status = "removing".into();
        self.unmount_root(&rec.id);
        let dir = self.container_dir(&rec.id);
        if is_mountpoint(&dir.join("merged")) {
            // Removing through a mounted root would delete the image's files in it.
            e.rec.lock().expect("record lock").state.status = rec.state.status.clone();
            return Err(ContainerError::Internal(format!(
                "container {}: its root filesystem is still mounted; try again",
                rec.id
            )));
        }
        // The record goes first, so a crash mid-removal never resurrects half a container.
        let _ = fs::remove_file(dir.join("config.v2.json"));
        // Its files go in the background, out of the caller's way (`run --rm` waits for this
        // removal): freeing blocks can be slow (ext4 discards them as it frees them). What a
        // crash leaves in the trash goes when the daemon next starts.
        let trash = self.trash_dir().join(&rec.id);
        let removed = match fs::rename(&dir, &trash) {
            Ok(()) => {
                tokio::task::spawn_blocking(move || {
                    if let Err(err) = fs::remove_dir_all(&trash) {
                        tracing::warn!("emptying {}: {err}", trash.display());
                    }
                });
                Ok(())
            }
            Err(_) => fs::remove_dir_all(&dir),
        };
        if let Err(err) = removed {
            // A file written as the removal ran (the shim's last log line): once more.
            tracing::debug!(id = %rec.id, "removing {}: {err}; retrying", dir.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Err(err) = fs::remove_dir_all(&dir) {
                // As dockerd: the container is dead, and another `rm` tries again.
                let msg = format!("removal of container {} failed: {err}", rec.id);
                {
                    let mut r = e.rec.lock().expect("record lock");
                    r.state.status = "dead".into();
                    r.state.error = msg.clone();
                }
                return Err(ContainerError::Internal(msg));
            }
        }
        let _ = fs::remove_dir_all(self.bundle_dir(&rec.id));
        self.map.write().expect("map").remove(&rec.id);
        self.names.lock().expect("names").remove(&rec.name);
        self.execs.lock().expect("execs").retain(|_, x| x.container != rec.id);
        for a in e.attaches.lock().expect("attaches").drain(..) {
            let _ = a.tx.send(Err(ContainerError::NotFound(rec.id.clone())));
        }
        Self::bump(&e, false, true);
        self.emit(&rec, "destroy", &[]);
        if volumes {
            for mp in rec.mount_points.iter().filter(|m| m.typ == "volume" && m.anonymous) {
                if let Err(err) = self.volumes.remove(&mp.name, true) {
                    tracing::info!(volume = %mp.name, "kept with its container gone: {err}");
                }
            }
        }
        Ok(())
    }

    /// `POST /containers/{id}/wait`: a future for the exit code, set up before it is awaited
    /// (so the caller can flush its headers first).
    pub fn wait(
        &self,
        name: &str,
        cond: WaitCondition,
    ) -> Result<impl std::future::Future<Output = (i64, Option<String>)>> {
        let e = self.lookup(name)?;
        let mut rx = e.gen.subscribe();
        let start = *rx.borrow();
        let running = e.snapshot().state.is_running() || e.snapshot().state.status == "restarting";
        Ok(async move {
            let code = |e: &Entry| {
                let r = e.rec.lock().expect("record lock");
                let err = (!r.state.error.is_empty()).then(|| r.state.error.clone());
                (r.state.exit_code, err)
            };
            match cond {
                WaitCondition::NotRunning if !running => code(&e),
                WaitCondition::NotRunning | WaitCondition::NextExit => {
                    let _ = rx.wait_for(|g| g.exits > start.exits || g.removed).await;
                    code(&e)
                }
                WaitCondition::Removed => {
                    let _ = rx.wait_for(|g| g.removed).await;
                    code(&e)
                }
            }
        })
    }

    /// `POST /containers/{id}/rename`.
    pub async fn rename(&self, name: &str, new: &str) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        if new.is_empty() {
            return Err(ContainerError::Invalid("Neither old nor new names may be empty".into()));
        }
        let id = e.snapshot().id;
        let old = e.snapshot().name;
        let new = self.reserve_name(Some(new), &id)?;
        self.names.lock().expect("names").remove(&old);
        e.rec.lock().expect("record lock").name = new.clone();
        if let Err(err) = self.save(&e) {
            self.names.lock().expect("names").remove(&new);
            self.names.lock().expect("names").insert(old.clone(), id);
            e.rec.lock().expect("record lock").name = old;
            return Err(err);
        }
        self.emit(&e.snapshot(), "rename", &[("oldName", &format!("/{old}"))]);
        Ok(())
    }

    /// `GET /containers/{id}/changes`: what the read-write layer adds (`A`, kind 1), changes
    /// (`C`, 0) and deletes (`D`, 2) against the image, sorted by path.
    pub fn changes(&self, name: &str) -> Result<Vec<(String, u8)>> {
        let rec = self.lookup(name)?.snapshot();
        let image: Digest = rec
            .image
            .parse()
            .map_err(|_| ContainerError::Internal(format!("bad image id {}", rec.image)))?;
        let (_, layers) = self.images.rootfs_of(&image)?;
        let store = self.images.layer_store();
        let mut out = Vec::new();
        match self.images.driver() {
            Driver::Overlay2 => {
                let lowers = store.lower_dirs(&layers);
                let upper = self.container_dir(&rec.id).join("rw/diff");
                crate::archive::overlay_changes(&upper, &lowers, &mut out)?;
            }
            Driver::Vfs => {
                // vfs keeps no read-write layer: the root is compared with the image's, as
                // Docker's naive diff does. A container never started has no root yet.
                let root = self.container_dir(&rec.id).join("rootfs");
                if root.exists() {
                    let old = layers.last().map(|l| store.diff_dir(l)).unwrap_or_default();
                    crate::archive::naive_changes(&root, &old, &mut out)?;
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// `POST /commit`: the container's read-write layer as a new image over its image, with
    /// the container's config (`config` fields the caller set win) and `changes` applied.
    /// A running container is frozen for the copy when `pause` is set, as Docker does.
    pub async fn commit(&self, name: &str, opts: CommitOptions) -> Result<Digest> {
        let e = self.lookup(name)?;
        let rec = e.snapshot();

        let image: Digest = rec
            .image
            .parse()
            .map_err(|_| ContainerError::Internal(format!("bad image id {}", rec.image)))?;
        let container_config =
            serde_json::to_value(&rec.config).map_err(|e| ContainerError::Internal(e.to_string()))?;
        let mut config = container_config.clone();
        if let (Some(Value::Object(user)), Some(cfg)) = (opts.config, config.as_object_mut()) {
            for (k, v) in user {
                let unset = match &v {
                    Value::Null => true,
                    Value::String(s) => s.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    Value::Bool(b) => !b,
                    _ => false,
                };
                if !unset {
                    cfg.insert(k, v);
                }
            }
        }
        let spec = wharf_image::CommitSpec {
            config,
            changes: opts.changes,
            container: rec.id.clone(),
            container_config,
            author: opts.author,
            comment: opts.comment.clone(),
            created_by: std::iter::once(rec.path.clone())
                .chain(rec.args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" "),
            tag: opts.reference.clone(),
        };
        let mut freeze = opts.pause && rec.state.is_running() && rec.state.status != "paused";
        if freeze {
            let seen = e.gen.borrow().exits;
            if let Err(err) = shim::call(&self.shim_socket(&rec.id), &Request::Pause).await {
                // A container that was exiting as the commit began has nothing left to
                // freeze: commit it as it stands. Any other failure is the caller's.
                Self::wait_exit(&e, seen, Some(Duration::from_secs(1))).await;
                if e.snapshot().state.is_running() {
                    return Err(err);
                }
                freeze = false;
            }
        }
        let dir = self.container_dir(&rec.id);
        let images = self.images.clone();
        // vfs: the naive diff of the root against the image (taken while frozen, as the copy).
        let naive = match self.images.driver() {
            Driver::Overlay2 => None,
            Driver::Vfs => Some(self.changes(&rec.id)),
        };
        let r = tokio::task::spawn_blocking(move || -> Result<Digest> {
            Ok(match naive {
                None => {
                    let upper = dir.join("rw/diff");
                    images.commit(&image, |w| wharf_store::archive::write_overlay_diff(&upper, w), spec)?
                }
                Some(changes) => {
                    let changes = changes?;
                    let root = dir.join("rootfs");
                    images.commit(
                        &image,
                        |w| wharf_store::archive::write_changes_diff(&root, &changes, w),
                        spec,
                    )?
                }
            })
        })
        .await
        .map_err(|e| ContainerError::Internal(e.to_string()));
        if freeze {
            if let Err(e) = shim::call(&self.shim_socket(&rec.id), &Request::Resume).await {
                tracing::warn!(container = %rec.id, "resuming after commit: {e}");
            }
        }
        let id = r??;
        self.emit(
            &rec,
            "commit",
            &[
                ("comment", &opts.comment),
                ("imageID", &id.to_string()),
                ("imageRef", opts.reference.as_deref().unwrap_or("")),
            ],
        );
        Ok(id)
    }

    /// `GET /containers/{id}/export`: the container's filesystem (image and read-write layer,
    /// no volumes) as a tar, written to `w` (blocking: call from a blocking thread).
    pub fn export(&self, name: &str, w: &mut dyn std::io::Write) -> Result<()> {
        let rec = self.lookup(name)?.snapshot();
        let was_mounted = is_mountpoint(&self.container_dir(&rec.id).join("merged"));
        let merged = self.mount_root(&rec)?;
        let root = wharf_store::saferoot::SafeRoot::open(&merged)?;
        let r = wharf_store::archive::stat(&root, "/.")
            .map_err(ContainerError::from)
            .and_then(|s| {
                let (r, _) = s.ok_or_else(|| ContainerError::Internal("the root vanished".into()))?;
                wharf_store::archive::write_tar(&r, ".", w).map_err(ContainerError::from)
            });
        let running = self.get(&rec.id).map(|r| r.state.is_running()).unwrap_or(false);
        if !was_mounted && !running {
            self.unmount_root_only(&rec.id);
        }
        r
    }

    /// `POST /containers/prune`: remove every stopped container that `keep` spares not; their
    /// IDs and the bytes their read-write layers held.
    pub async fn prune(&self, keep: &(dyn Fn(&Record) -> bool + Sync)) -> (Vec<String>, u64) {
        let mut gone = Vec::new();
        let mut bytes = 0;
        for r in self.records() {
            if r.state.is_running() || r.state.status == "restarting" || keep(&r) {
                continue;
            }
            let size = self.sizes(&r.id).map(|s| s.0).unwrap_or(0);
            if self.remove(&r.id, false, false).await.is_ok() {
                bytes += size;
                gone.push(r.id);
            }
        }
        (gone, bytes)
    }

    /// One reading of a container's cgroup through its shim (`None`: it is not running).
    pub async fn cgroup_reading(&self, name: &str) -> Result<(Record, Option<Value>)> {
        let rec = self.lookup(name)?.snapshot();
        if !rec.state.is_running() {
            return Ok((rec, None));
        }
        match shim::call(&self.shim_socket(&rec.id), &Request::Stats).await {
            Ok(r) => Ok((rec, r.stats)),
            Err(_) => Ok((rec, None)),
        }
    }

    /// `POST /networks/{id}/connect`: join a network now (running) or at the next start.
    pub async fn network_connect(&self, name: &str, network: &str, settings: Option<&Value>) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let n = self.net.get(network)?;
        let rec = e.snapshot();
        let mode = rec.host_config.network_mode.clone().unwrap_or_default();
        if !netsetup::uses_networks(&mode) {
            return Err(ContainerError::Invalid(format!(
                "container sharing network namespace with another container or host cannot be connected to any other network (mode {mode})"
            )));
        }
        if rec.networks.contains_key(&n.name) {
            return Err(ContainerError::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, n.name
            )));
        }
        let ec = netsetup::endpoint_config(&n.id, settings)?;
        if n.default_bridge && (ec.ipv4.is_some() || !ec.aliases.is_empty()) {
            return Err(ContainerError::Invalid(
                "user specified IP address or aliases are supported on user defined networks only".into(),
            ));
        }
        if rec.state.is_running() {
            // The new network takes the default route over if its priority says so.
            let mut all: Vec<(&str, i64)> = rec
                .net
                .endpoints
                .iter()
                .map(|ep| {
                    (
                        ep.network_name.as_str(),
                        rec.networks.get(&ep.network_name).map_or(0, |c| c.gw_priority),
                    )
                })
                .collect();
            all.push((n.name.as_str(), ec.gw_priority));
            let gateway = netsetup::gateway_network(&self.net, all);
            let req = wharf_network::EndpointRequest {
                default_route: gateway == Some(n.name.as_str()),
                network: n.id.clone(),
                ip: ec.ipv4.as_deref().and_then(|i| i.parse().ok()),
                ip6: ec.ipv6.as_deref().and_then(|i| i.parse().ok()),
                mac: ec.mac.as_deref().and_then(wharf_network::link::parse_mac),
                dns_names: netsetup::dns_names(&rec, &ec),
                links: netsetup::link_aliases(&ec),
            };
            let target = wharf_network::link::Target::Existing(self.net.sandbox_key(&rec.id));
            let eps = self
                .net
                .attach(&rec.id, target, &[req], free_ifindex(&rec.net.endpoints))
                .await?;
            let mut st = {
                let mut r = e.rec.lock().expect("record lock");
                r.net.endpoints.extend(eps);
                r.net.clone()
            };
            if st.resolver {
                self.net.update_resolver(&rec.id, &st.endpoints);
            } else {
                // A container of the default bridge joining a user network gets the resolver.
                netsetup::start_resolver(&self.net, &rec, &mut st).await?;
                e.rec.lock().expect("record lock").net.resolver = st.resolver;
            }
        }
        e.rec.lock().expect("record lock").networks.insert(n.name.clone(), ec);
        self.save(&e)?;
        self.rewrite_hosts(&e)
    }

    /// `DELETE /containers/{parent}/{alias}?link=1`: remove the legacy link `alias` from
    /// `parent` (both containers stay); a running parent's `/etc/hosts` loses the name.
    pub async fn remove_link(&self, parent: &str, alias: &str) -> Result<()> {
        let e = self.lookup(parent)?;
        let _op = e.op.lock().await;
        let matches = |l: &String| {
            let (target, a) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
            a.trim_start_matches('/') == alias || (a == target && target.trim_start_matches('/') == alias)
        };
        let found = {
            let mut rec = e.rec.lock().expect("record lock");
            let mut found = false;
            if let Some(links) = rec.host_config.links.as_mut() {
                let before = links.len();
                links.retain(|l| !matches(l));
                found |= links.len() != before;
            }
            for ec in rec.networks.values_mut() {
                let before = ec.links.len();
                ec.links.retain(|l| !matches(l));
                found |= ec.links.len() != before;
            }
            found
        };
        if !found {
            return Err(ContainerError::NotFound(format!(
                "No such link: /{}/{alias}",
                e.snapshot().name
            )));
        }
        self.save(&e)?;
        self.rewrite_hosts(&e)
    }

    /// After a running container joined or left a network: its `/etc/hosts` (the file its
    /// bind mount shows) gets the addresses it has now, as Docker rewrites it.
    fn rewrite_hosts(&self, e: &Arc<Entry>) -> Result<()> {
        let rec = e.snapshot();
        if rec.state.is_running() {
            let st = rec.net.clone();
            if let Err(err) = self.write_net_files(&rec, &st) {
                tracing::warn!(container = %rec.id, "rewriting /etc/hosts: {err}");
            }
        }
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`: leave a network at once.
    pub async fn network_disconnect(&self, name: &str, network: &str, force: bool) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let n = self.net.get(network)?;
        let rec = e.snapshot();
        if !rec.networks.contains_key(&n.name) {
            return Err(ContainerError::Conflict(format!(
                "container {} is not connected to network {}",
                rec.id, n.name
            )));
        }
        if let Some(ep) = rec.net.endpoints.iter().find(|x| x.network_id == n.id) {
            if let Err(err) = self.net.detach(&rec.id, ep).await {
                if !force {
                    return Err(err.into());
                }
            }
            let left = {
                let mut r = e.rec.lock().expect("record lock");
                r.net.endpoints.retain(|x| x.network_id != n.id);
                r.net.endpoints.clone()
            };
            self.net.update_resolver(&rec.id, &left);
            // The default route moves to the next network in line when it went with this one.
            let prio = |name: &str| rec.networks.get(name).map_or(0, |c| c.gw_priority);
            let before = netsetup::gateway_network(
                &self.net,
                rec.net
                    .endpoints
                    .iter()
                    .map(|x| (x.network_name.as_str(), prio(&x.network_name))),
            );
            if before == Some(n.name.as_str()) {
                let next = netsetup::gateway_network(
                    &self.net,
                    left.iter().map(|x| (x.network_name.as_str(), prio(&x.network_name))),
                );
                if let Some(ep) = left.iter().find(|x| Some(x.network_name.as_str()) == next) {
                    if let Err(err) = self.net.route_through(&rec.id, ep).await {
                        tracing::warn!(container = %rec.id, "moving the default route: {err}");
                    }
                }
            }
        }
        e.rec.lock().expect("record lock").networks.remove(&n.name);
        self.save(&e)?;
        self.rewrite_hosts(&e)
    }

    /// `POST /containers/{id}/update`: merge the new limits into the container's config as
    /// Docker does (only the values given), check them, and apply them to a running container's
    /// cgroup. Nothing changes when any step fails.
    pub async fn update(&self, name: &str, body: UpdateBody) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let id = e.snapshot().id;
        let wrap = |m: String| format!("Cannot update container {id}: {m}");
        self.update_locked(&e, body).await.map_err(|err| match err {
            ContainerError::Invalid(m) => ContainerError::Invalid(wrap(m)),
            ContainerError::Internal(m) => ContainerError::Internal(wrap(m)),
            other => other,
        })
    }

    async fn update_locked(&self, e: &Arc<Entry>, body: UpdateBody) -> Result<()> {
        let old = e.snapshot();
        let mut hc = old.host_config.clone();
        let r = &body.resources;
        let conflict = |m: &str| Err(ContainerError::Invalid(format!("Conflicting options: {m}")));
        let set = |v: Option<i64>| v.filter(|v| *v != 0);
        if set(r.nano_cpus).is_some() && set(hc.cpu_period).is_some() {
            return conflict("Nano CPUs cannot be updated as CPU Period has already been set");
        }
        if set(r.nano_cpus).is_some() && set(hc.cpu_quota).is_some() {
            return conflict("Nano CPUs cannot be updated as CPU Quota has already been set");
        }
        if set(r.cpu_period).is_some() && set(hc.nano_cpus).is_some() {
            return conflict("CPU Period cannot be updated as NanoCPUs has already been set");
        }
        if set(r.cpu_quota).is_some() && set(hc.nano_cpus).is_some() {
            return conflict("CPU Quota cannot be updated as NanoCPUs has already been set");
        }
        if let Some(w) = r.blkio_weight.filter(|w| *w != 0) {
            hc.blkio_weight = Some(w);
        }
        for (new, cur) in [
            (r.cpu_shares, &mut hc.cpu_shares),
            (r.nano_cpus, &mut hc.nano_cpus),
            (r.cpu_period, &mut hc.cpu_period),
            (r.cpu_quota, &mut hc.cpu_quota),
            (r.memory_reservation, &mut hc.memory_reservation),
        ] {
            if let Some(v) = set(new) {
                *cur = Some(v);
            }
        }
        if let Some(v) = r.cpuset_cpus.clone().filter(|v| !v.is_empty()) {
            hc.cpuset_cpus = Some(v);
        }
        if let Some(v) = r.cpuset_mems.clone().filter(|v| !v.is_empty()) {
            hc.cpuset_mems = Some(v);
        }
        if let Some(m) = set(r.memory) {
            if m > hc.memory_swap.unwrap_or(0) && set(r.memory_swap).is_none() {
                return Err(ContainerError::Invalid(
                    "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into(),
                ));
            }
            hc.memory = Some(m);
        }
        if let Some(v) = set(r.memory_swap) {
            hc.memory_swap = Some(v);
        }
        // Not above zero: unlimited, shown as 0 (as dockerd); the cgroup gets "max".
        if let Some(p) = r.pids_limit {
            hc.pids_limit = Some(p.max(0));
        }
        if let Some(p) = body.restart_policy.as_ref().filter(|p| p.name.is_some()) {
            let none = matches!(
                p.name,
                Some(m::RestartPolicyNameEnum::NO) | Some(m::RestartPolicyNameEnum::EMPTY)
            );
            if hc.auto_remove.unwrap_or(false) && !none {
                return Err(ContainerError::Conflict(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container".into(),
                ));
            }
            hc.restart_policy = Some(p.clone());
        }
        let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        spec::validate_resources(&hc, ncpu)?;
        let mut resources = spec::resources(&hc)?;
        if r.pids_limit.is_some_and(|p| p <= 0) {
            resources["pids"] = serde_json::json!({"limit": -1});
        }
        e.rec.lock().expect("record lock").host_config = hc;
        let applied = async {
            if matches!(old.state.status.as_str(), "running" | "paused") {
                shim::call(&self.shim_socket(&old.id), &Request::Update { resources })
                    .await
                    .map_err(|err| ContainerError::Internal(err.to_string()))?;
            }
            self.save(e)
        };
        if let Err(err) = applied.await {
            e.rec.lock().expect("record lock").host_config = old.host_config;
            return Err(err);
        }
        Ok(())
    }

    /// Attach to a container's stdio. The attach is registered before this returns; for a
    /// container not yet started the stream arrives when it starts, so no output is lost.
    pub fn attach(
        &self,
        name: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<impl std::future::Future<Output = Result<ShimStream>> + Send + 'static> {
        let e = self.lookup(name)?;
        let rec = e.snapshot();
        self.emit(&rec, "attach", &[]);
        let req = Request::Attach { stdin, stdout, stderr };
        let sock = self.shim_socket(&rec.id);
        let rx = if rec.state.is_running() {
            None
        } else {
            let (tx, rx) = oneshot::channel();
            e.attaches
                .lock()
                .expect("attaches")
                .push(PendingAttach { req: req.clone(), tx });
            Some(rx)
        };
        Ok(async move {
            match rx {
                None => shim::open(&sock, &req).await.map(|(_, s)| s),
                Some(rx) => rx
                    .await
                    .map_err(|_| ContainerError::Internal("attach abandoned".into()))?,
            }
        })
    }

    /// The client's stdin ended: close the container's stdin if it is `StdinOnce`, or the
    /// exec's stdin.
    pub async fn close_stdin(&self, container: &str, exec: Option<&str>) -> Result<()> {
        let rec = self.get(container)?;
        if exec.is_none() && !rec.config.stdin_once.unwrap_or(false) {
            return Ok(());
        }
        shim::call(
            &self.shim_socket(&rec.id),
            &Request::CloseStdin {
                exec: exec.map(String::from),
            },
        )
        .await?;
        Ok(())
    }

    /// Resize the container's terminal.
    pub async fn resize(&self, name: &str, height: u16, width: u16) -> Result<()> {
        let rec = self.get(name)?;
        if !rec.state.is_running() {
            return Err(ContainerError::Conflict(format!("Container {} is not running", rec.id)));
        }
        shim::call(
            &self.shim_socket(&rec.id),
            &Request::Resize {
                exec: None,
                height,
                width,
            },
        )
        .await?;
        Ok(())
    }

    /// PIDs of the processes in a container's cgroup.
    pub fn pids(&self, rec: &Record) -> Vec<i64> {
        crate::cgroup::procs(&self.cgroup_path(rec))
            .into_iter()
            .map(i64::from)
            .collect()
    }

    /// The container's cgroup, relative to each hierarchy's root (the spec's `cgroupsPath`):
    /// `--cgroup-parent`, else the daemon's, then the container's ID.
    fn cgroup_path(&self, rec: &Record) -> String {
        let parent = rec
            .host_config
            .cgroup_parent
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| self.cfg.cgroup_parent.clone());
        format!("/{}/{}", parent.trim_matches('/'), rec.id)
    }

    /// Kill whatever the container's cgroups still hold (its shim is gone, or a removal must
    /// not leave anything behind) and wait until they are empty; see [`crate::cgroup`].
    async fn kill_leftovers(&self, rec: &Record) -> Result<usize> {
        let rel = self.cgroup_path(rec);
        let id = rec.id.clone();
        tokio::task::spawn_blocking(move || crate::cgroup::kill_all(&rel, Duration::from_secs(10)))
            .await
            .map_err(|e| ContainerError::Internal(e.to_string()))?
            .map_err(|e| ContainerError::Internal(format!("container {id}: {e}")))
    }

    /// Remove the container's cgroups once its shim's lock is free (a shim still finishing its
    /// own cleanup is never raced); what is already gone is no error.
    async fn clear_cgroups(&self, rec: &Record) {
        shim::wait_gone(&self.bundle_dir(&rec.id)).await;
        let rel = self.cgroup_path(rec);
        let _ = tokio::task::spawn_blocking(move || crate::cgroup::remove(&rel)).await;
    }

    /// The end of a container whose shim went away without telling it: the exit the shim
    /// recorded, if it got that far. Otherwise, when the daemon saw the shim die (`watched`)
    /// or found processes to kill, they were killed (by the kernel as the shim died, or here),
    /// which Docker reports as 137; a container found with no shim and no process at daemon
    /// start ended unseen: 255.
    async fn after_shim_died(&self, rec: &Record, watched: bool) -> ExitInfo {
        let killed = match self.kill_leftovers(rec).await {
            Ok(0) => false,
            Ok(n) => {
                tracing::warn!(id = %rec.id, "its shim is gone: {n} processes were left in its cgroup, killed");
                true
            }
            Err(err) => {
                tracing::error!(id = %rec.id, "its shim is gone: {err}");
                true
            }
        };
        // What the shim would have removed after the exit: its cgroups.
        self.clear_cgroups(rec).await;
        self.exit_file(&rec.id).unwrap_or_else(|| ExitInfo {
            exit_code: if watched || killed { 137 } else { 255 },
            oom_killed: false,
            finished_at: now_nanos(),
        })
    }

    /// Stop every running container's monitor bookkeeping at daemon shutdown (containers keep
    /// running: live restore).
    pub fn shutdown(&self) {}
}

/// A small text file from inside a container root (`/etc/passwd`), resolved inside the root;
/// empty when missing.
pub(crate) fn read_in_root(root: &wharf_store::saferoot::SafeRoot, path: &str) -> String {
    use std::io::Read;
    let comps: Vec<&std::ffi::OsStr> = Path::new(path).iter().skip(1).collect();
    root.open_in_root(&comps, rustix::fs::OFlags::RDONLY)
        .ok()
        .and_then(|fd| {
            let mut s = String::new();
            fs::File::from(fd).take(4 << 20).read_to_string(&mut s).ok().map(|_| s)
        })
        .unwrap_or_default()
}

/// The host's resolver config with loopback nameservers removed (they mean nothing inside a
/// network namespace), or `--dns`/`--dns-search`/`--dns-option` when given. A container on a
/// user-defined network (`embedded`) has the resolver at 127.0.0.11 as its one nameserver
/// (it forwards to `--dns` or the host's), with `ndots:0` unless options say otherwise, and
/// the comments Docker writes.
fn resolv_conf(hc: &m::HostConfig, embedded: bool) -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let dns = hc.dns.clone().unwrap_or_default();
    let search = hc.dns_search.clone().unwrap_or_default();
    let opts = hc.dns_options.clone().unwrap_or_default();
    let mut out = String::new();
    if hc.network_mode.as_deref() == Some("host") && dns.is_empty() {
        return host;
    }
    if search.is_empty() {
        for l in host
            .lines()
            .filter(|l| l.starts_with("search ") || l.starts_with("domain "))
        {
            out.push_str(l);
            out.push('\n');
        }
    } else {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if embedded {
        out.push_str(&format!("nameserver {}\n", wharf_network::resolver::ADDRESS));
    } else if dns.is_empty() {
        let mut any = false;
        for l in host.lines().filter(|l| l.starts_with("nameserver")) {
            let ip = l.split_whitespace().nth(1).unwrap_or("");
            if ip.starts_with("127.") || ip == "::1" {
                continue;
            }
            out.push_str(l);
            out.push('\n');
            any = true;
        }
        if !any {
            out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        }
    } else {
        for d in &dns {
            out.push_str(&format!("nameserver {d}\n"));
        }
    }
    let mut options: Vec<String> = if opts.is_empty() {
        host.lines()
            .filter_map(|l| l.strip_prefix("options "))
            .flat_map(|l| l.split_whitespace().map(String::from))
            .collect()
    } else {
        opts
    };
    if embedded && !options.iter().any(|o| o.starts_with("ndots:")) {
        // Docker's: a name without dots goes to the resolver as it is first.
        options.push("ndots:0".into());
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    if embedded {
        let ext: Vec<String> = if dns.is_empty() {
            wharf_network::dns::servers(&host)
                .iter()
                .map(|a| format!("host({})", a.ip()))
                .collect()
        } else {
            dns
        };
        out.push_str(&format!(
            "\n# Based on host file: '/etc/resolv.conf' (internal resolver)\n# ExtServers: [{}]\n",
            ext.join(" ")
        ));
    }
    out
}

/// The lowest `ethN` a running container does not have (a network left frees its name).
fn free_ifindex(eps: &[wharf_network::Endpoint]) -> usize {
    (0..)
        .find(|i| !eps.iter().any(|e| e.ifname == format!("eth{i}")))
        .unwrap_or(eps.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(ContainerService::parse_signal("HUP").unwrap(), 1);
        assert_eq!(ContainerService::parse_signal("sigterm").unwrap(), 15);
        assert_eq!(ContainerService::parse_signal("9").unwrap(), 9);
        assert!(ContainerService::parse_signal("NOPE").is_err());
        assert!(ContainerService::parse_signal("0").is_err());
    }

    #[test]
    fn log_configs_checked_like_dockerd() {
        let lc = |t: &str, opts: &[(&str, &str)]| m::HostConfigLogConfig {
            typ: Some(t.into()),
            config: Some(opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        };
        assert!(validate_log_config(&lc("json-file", &[("max-size", "1m"), ("max-file", "3")])).is_ok());
        assert!(validate_log_config(&lc("none", &[])).is_ok());
        let err = |c| validate_log_config(&c).unwrap_err().to_string();
        assert_eq!(
            err(lc("asdf", &[])),
            "error looking up logging plugin asdf: plugin \"asdf\" not found"
        );
        assert_eq!(
            err(lc("json-file", &[("bogus", "1")])),
            "unknown log opt 'bogus' for json-file log driver"
        );
        assert!(err(lc("syslog", &[])).contains("not supported"));
    }

    #[test]
    fn start_errors_read_like_docker() {
        let m = start_error("executor validation failed: executable 'nosuch' not found in $PATH");
        assert!(
            m.contains("exec: \"nosuch\": executable file not found in $PATH"),
            "{m}"
        );
    }
}
