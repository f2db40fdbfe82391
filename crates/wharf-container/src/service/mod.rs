//! The container service: the records of every container in memory and on disk, names,
//! lookups and the paths of a container's files; each verb is a module of its own (`create`,
//! `start`, `stop`, `kill`, `pause`, `remove`, `wait`, `rename`, `update`, `attach`, `commit`,
//! `connect`), with the root and files a container gets (`rootfs`), the monitor of exits,
//! restart policies and restore (`monitor`), and the healthcheck probes (`probe`); execs are
//! the crate's `exec` module.
//!
//! Invariants: the daemon never forks a container (the shim does); a record on disk is always
//! whole; a container's root is mounted only while it runs; every running container has a
//! monitor task waiting on its shim, so an exit is recorded even when nobody asks.

use crate::record::ContainerStatus;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;
use tokio::sync::{oneshot, watch};
use wharf_image::ImageService;
use wharf_network::NetworkService;
use wharf_reference::Digest;
use wharf_shim_proto::{ExitInfo, Request};
use wharf_volume::VolumeStore;

use crate::error::{ContainerError, Result};
use crate::names;
use crate::record::{Record, ZERO_TIME};
use crate::shim::ShimStream;

mod attach;
mod commit;
mod connect;
mod create;
mod kill;
mod monitor;
mod pause;
mod probe;
mod remove;
mod rename;
mod rootfs;
mod start;
mod stop;
mod update;
mod wait;

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
    /// `config` is the new image's whole config, not fields over the container's (the
    /// builder's steps: the step's command must not become the image's).
    pub replace_config: bool,
    /// The history line, instead of the container's command.
    pub created_by: Option<String>,
    /// The image's `container_config`, instead of the container's own (the builder's steps
    /// record the step as Docker's classic builder does).
    pub container_config: Option<Value>,
    /// A reproducible build's epoch (`SOURCE_DATE_EPOCH`): the image's time, and the latest
    /// time of any file in its layer; the container's ID is not recorded.
    pub epoch: Option<i64>,
    /// Paths left out of the layer, with what is under them (relative to the root, no
    /// leading `/`): a build step's mount points, which the runtime made only to mount over.
    pub omit: Vec<std::path::PathBuf>,
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

/// What `update` may change, in the engine's terms (the API converts Docker's body). Absent
/// or zero values leave a limit as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateBody {
    /// `--cpu-shares`.
    pub cpu_shares: Option<i64>,
    /// `--cpus`, in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// `--cpu-period`.
    pub cpu_period: Option<i64>,
    /// `--cpu-quota`.
    pub cpu_quota: Option<i64>,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`.
    pub cpuset_mems: Option<String>,
    /// `--memory`.
    pub memory: Option<i64>,
    /// `--memory-swap`.
    pub memory_swap: Option<i64>,
    /// `--memory-reservation`.
    pub memory_reservation: Option<i64>,
    /// `--blkio-weight`.
    pub blkio_weight: Option<u16>,
    /// `--pids-limit` (not above zero: unlimited).
    pub pids_limit: Option<i64>,
    /// A new restart policy: its name as given and its retry limit.
    pub restart_policy: Option<(String, i64)>,
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
    restart_delay: Mutex<crate::restart::Backoff>,
    /// Held while the record is written: two writers (a verb and the exit monitor) never
    /// share the temporary file, and the later write always carries the later state.
    saving: Mutex<()>,
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
    /// Container roots: an active snapshot per container, over a shared init snapshot per
    /// image (`rootfs`).
    snapshots: Arc<dyn wharf_store::snapshot::Snapshotter>,
    /// Held while an init snapshot is made, so that two creates do not both make it.
    init_lock: Mutex<()>,
    /// What requests reach a container's process through (its shim).
    pub(crate) runtime: Arc<dyn crate::runtime::Runtime>,
}

impl std::fmt::Debug for ContainerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerService").field("cfg", &self.cfg).finish()
    }
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

impl ContainerService {
    /// Open the service: load every record under `<data-root>/containers`.
    pub fn open(
        cfg: ServiceConfig,
        images: Arc<ImageService>,
        volumes: Arc<VolumeStore>,
        net: Arc<NetworkService>,
    ) -> Result<Arc<Self>> {
        Self::open_with(cfg, images, volumes, net, None)
    }

    /// [`ContainerService::open`] with another runtime than the shims (the lifecycle tests'
    /// fake).
    pub fn open_with(
        cfg: ServiceConfig,
        images: Arc<ImageService>,
        volumes: Arc<VolumeStore>,
        net: Arc<NetworkService>,
        runtime: Option<Arc<dyn crate::runtime::Runtime>>,
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
        let driver = images.driver();
        let snapshots: Arc<dyn wharf_store::snapshot::Snapshotter> = Arc::from(wharf_store::snapshot::open(
            driver,
            &cfg.data_root.join("snapshots").join(driver.name()),
            Arc::new(wharf_image::service::ImageLayers(images.clone())),
        )?);
        let runtime: Arc<dyn crate::runtime::Runtime> = match runtime {
            Some(r) => r,
            None => Arc::new(crate::runtime::ShimRuntime::new(
                cfg.exec_root.clone(),
                cfg.shim.clone(),
            )),
        };
        let svc = Arc::new(ContainerService {
            cfg,
            images,
            volumes,
            net,
            events: Arc::default(),
            map: RwLock::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            snapshots,
            init_lock: Mutex::new(()),
            runtime,
        });
        for ent in fs::read_dir(&root)? {
            let dir = ent?.path();
            match Record::load(&dir) {
                Ok(rec) => {
                    // A data root written before container roots were snapshots.
                    if let Err(e) = svc.adopt_root(&rec) {
                        tracing::warn!(id = %rec.id, "its root could not be moved to a snapshot: {e}");
                    }
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
        // Networks and volumes publish their own events into the daemon's stream.
        let events = svc.events.clone();
        svc.net.set_event_sink(Arc::new(move |action, id, attrs| {
            events.publish("network", action, id, attrs)
        }));
        let events = svc.events.clone();
        svc.volumes.set_event_sink(Arc::new(move |action, name, attrs| {
            events.publish("volume", action, name, attrs)
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
    pub(crate) fn emit_network(&self, rec: &Record, action: &str) {
        let mode = rec.host_config.network.network_mode.clone().unwrap_or_default();
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

    /// The image service containers are made from.
    pub fn images(&self) -> &Arc<ImageService> {
        &self.images
    }

    /// The volume store containers mount from.
    pub fn volumes(&self) -> &Arc<VolumeStore> {
        &self.volumes
    }

    pub(crate) fn insert(&self, rec: Record) -> Arc<Entry> {
        let (gen, _) = watch::channel(Gen::default());
        let id = rec.id.clone();
        let e = Arc::new(Entry {
            rec: Mutex::new(rec),
            op: tokio::sync::Mutex::new(()),
            gen,
            attaches: Mutex::new(Vec::new()),
            restart_delay: Mutex::new(crate::restart::Backoff::default()),
            saving: Mutex::new(()),
        });
        self.map.write().expect("map").insert(id, e.clone());
        e
    }

    pub(crate) fn all(&self) -> Vec<Arc<Entry>> {
        self.map.read().expect("map").values().cloned().collect()
    }

    /// Where removed containers' directories wait to be deleted (same file system).
    pub(crate) fn trash_dir(&self) -> PathBuf {
        self.cfg.data_root.join("containers-trash")
    }

    /// Where the container's own files are (hosts, hostname, resolv.conf; inspect shows them).
    pub fn files_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id)
    }

    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("containers").join(id)
    }

    pub(crate) fn bundle_dir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("containers").join(id)
    }

    /// Short, because unix socket paths are limited to 108 bytes.
    pub(crate) fn shim_socket(&self, id: &str) -> PathBuf {
        crate::runtime::shim_socket(&self.cfg.exec_root, id)
    }

    /// The json-file log of a container.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    /// The exit record the container's shim wrote, if it wrote one.
    pub(crate) fn exit_file(&self, id: &str) -> Option<ExitInfo> {
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

    pub(crate) fn reserve_name(&self, name: Option<&str>, id: &str) -> Result<String> {
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

    pub(crate) fn save(&self, e: &Entry) -> Result<()> {
        let _saving = e.saving.lock().expect("save lock");
        let rec = e.snapshot();
        if rec.state.status == ContainerStatus::Removing {
            // The removal owns the directory now: a record written into it would stop the
            // directory's removal and bring the container back at the next start.
            return Ok(());
        }
        rec.save(&self.container_dir(&rec.id))?;
        Ok(())
    }

    pub(crate) fn bump(e: &Entry, exited: bool, removed: bool) {
        e.gen.send_modify(|g| {
            if exited {
                g.exits += 1;
            }
            g.removed |= removed;
        });
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
    pub(crate) fn cgroup_path(&self, rec: &Record) -> String {
        let parent = rec
            .host_config
            .resources
            .cgroup_parent
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| self.cfg.cgroup_parent.clone());
        format!("/{}/{}", parent.trim_matches('/'), rec.id)
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

pub(crate) fn now_nanos() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| ZERO_TIME.into())
}

pub(crate) fn is_mountpoint(p: &Path) -> bool {
    wharf_store::saferoot::is_mount_point(p)
}
