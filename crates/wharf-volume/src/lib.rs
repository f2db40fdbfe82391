//! Volumes with Docker's `local` driver: each is a directory `<data-root>/volumes/<name>/_data`
//! with its record `volume.json` beside it. A volume with driver options (`type`, `device`,
//! `o`) is mounted onto its `_data` when its first container starts and unmounted when the last
//! one stops, as Docker's local driver does; a plain one is just the directory.
//!
//! Invariants: a volume exists exactly when its record does (the record is written last,
//! atomically, and a directory without one is the leftover of a crash that [`VolumeStore::open`]
//! removes); a volume some container refers to is never removed; names are Docker's
//! `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, so a name can never be a path.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::mount::{self as rmount, MountFlags, UnmountFlags};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wharf_reference::ErrorKind;

/// The label Docker puts on volumes a container created for itself (`-v /path`, image `VOLUME`).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The option keys the local driver accepts.
const VALID_OPTS: [&str; 3] = ["type", "device", "o"];

/// What can go wrong with a volume. Messages are Docker's.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// `get NAME: no such volume`.
    #[error("get {0}: no such volume")]
    NotFound(String),
    /// Removal of a volume a container refers to.
    #[error("remove {name}: volume is in use - [{}]", ids.join(", "))]
    InUse {
        /// The volume.
        name: String,
        /// The containers that use it.
        ids: Vec<String>,
    },
    /// A name the local driver cannot hold.
    #[error("create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidName(String),
    /// A driver other than `local`.
    #[error("create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found")]
    NoDriver {
        /// The volume.
        name: String,
        /// The driver asked for.
        driver: String,
    },
    /// Bad options.
    #[error("{0}")]
    Invalid(String),
    /// The filesystem failed.
    #[error("{0}")]
    Io(String),
}

impl VolumeError {
    /// The kind, for the API's one status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            VolumeError::NotFound(_) | VolumeError::NoDriver { .. } => ErrorKind::NotFound,
            VolumeError::InUse { .. } => ErrorKind::Conflict,
            VolumeError::InvalidName(_) | VolumeError::Invalid(_) => ErrorKind::InvalidArgument,
            VolumeError::Io(_) => ErrorKind::Internal,
        }
    }
}

impl From<std::io::Error> for VolumeError {
    fn from(e: std::io::Error) -> Self {
        VolumeError::Io(e.to_string())
    }
}

/// Results of this crate.
pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// One volume as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    /// The name (64 hex for anonymous volumes).
    pub name: String,
    /// Always `local`.
    pub driver: String,
    /// RFC 3339, seconds.
    pub created_at: String,
    /// Labels as given (`None` when the client sent none).
    pub labels: Option<BTreeMap<String, String>>,
    /// Driver options as given.
    pub options: Option<BTreeMap<String, String>>,
}

impl Volume {
    /// Created by a container for itself rather than by name.
    pub fn is_anonymous(&self) -> bool {
        self.labels.as_ref().is_some_and(|l| l.contains_key(ANONYMOUS_LABEL))
    }

    fn has_mount_options(&self) -> bool {
        self.options.as_ref().is_some_and(|o| o.contains_key("type"))
    }
}

/// Which containers refer to a volume (set by the container service).
pub type UsageCheck = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// Where the store's events go (`volume` events: the action, the volume's name, attributes),
/// set by the daemon to its event stream.
pub type EventSink = Arc<dyn Fn(&'static str, &str, BTreeMap<String, String>) + Send + Sync>;

/// What a create asks for.
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    /// The name; a random 64-hex one when absent or empty.
    pub name: Option<String>,
    /// `local` (or empty).
    pub driver: Option<String>,
    /// `type`, `device`, `o`.
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
}

/// The volume store.
pub struct VolumeStore {
    root: PathBuf,
    vols: Mutex<HashMap<String, Volume>>,
    /// Containers holding each option-mounted volume mounted.
    holders: Mutex<HashMap<String, HashSet<String>>>,
    usage: Mutex<Option<UsageCheck>>,
    events: Mutex<Option<EventSink>>,
}

impl std::fmt::Debug for VolumeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeStore").field("root", &self.root).finish()
    }
}

/// Docker's rule for local volume names.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "0001-01-01T00:00:00Z".into())
}

fn random_name() -> String {
    let mut b = [0u8; 32];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).expect("getrandom");
    hex::encode(b)
}

fn is_mountpoint(p: &Path) -> bool {
    wharf_store::saferoot::is_mount_point(p)
}

/// The bytes under `dir`, each inode counted once.
pub fn dir_size(dir: &Path) -> u64 {
    fn walk(p: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
        let Ok(rd) = fs::read_dir(p) else { return 0 };
        let mut n = 0;
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                n += walk(&e.path(), seen);
            } else if seen.insert((md.dev(), md.ino())) {
                n += md.len();
            }
        }
        n
    }
    walk(dir, &mut HashSet::new())
}

/// Split a local driver `o=` value into mount flags and filesystem data, as `mount(8)` does.
fn split_mount_options(o: &str) -> (MountFlags, bool, String) {
    let mut flags = MountFlags::empty();
    let mut bind = false;
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        match opt {
            "ro" => flags |= MountFlags::RDONLY,
            "rw" | "defaults" => {}
            "nosuid" => flags |= MountFlags::NOSUID,
            "nodev" => flags |= MountFlags::NODEV,
            "noexec" => flags |= MountFlags::NOEXEC,
            "sync" => flags |= MountFlags::SYNCHRONOUS,
            "dirsync" => flags |= MountFlags::DIRSYNC,
            "noatime" => flags |= MountFlags::NOATIME,
            "nodiratime" => flags |= MountFlags::NODIRATIME,
            "relatime" => flags |= MountFlags::RELATIME,
            "strictatime" => flags |= MountFlags::STRICTATIME,
            "bind" => bind = true,
            "rbind" => {
                bind = true;
                flags |= MountFlags::REC;
            }
            other => data.push(other),
        }
    }
    (flags, bind, data.join(","))
}

impl VolumeStore {
    /// Open `<data_root>/volumes`, loading every record and removing what a crash left.
    pub fn open(data_root: &Path) -> Result<Self> {
        let root = data_root.join("volumes");
        fs::create_dir_all(&root)?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o701))?;
        wharf_store::spread_subdirs(&root);
        let mut vols = HashMap::new();
        for ent in fs::read_dir(&root)? {
            let ent = ent?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let dir = ent.path();
            match fs::read(dir.join("volume.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Volume>(&b).ok())
            {
                Some(v) if v.name == name => {
                    vols.insert(name, v);
                }
                _ => {
                    if is_mountpoint(&dir.join("_data")) {
                        continue; // never delete through a mount
                    }
                    tracing::warn!(dir = %dir.display(), "removing volume directory without a record");
                    let _ = fs::remove_dir_all(&dir);
                }
            }
        }
        Ok(VolumeStore {
            root,
            vols: Mutex::new(vols),
            holders: Mutex::new(HashMap::new()),
            usage: Mutex::new(None),
            events: Mutex::new(None),
        })
    }

    /// Tell the store where its events go.
    pub fn set_event_sink(&self, f: EventSink) {
        *self.events.lock().expect("events") = Some(f);
    }

    fn publish(&self, action: &'static str, v: &Volume) {
        let f = self.events.lock().expect("events").clone();
        if let Some(f) = f {
            f(
                action,
                &v.name,
                BTreeMap::from([("driver".to_string(), v.driver.clone())]),
            );
        }
    }

    /// Tell the store how to find the containers that use a volume.
    pub fn set_usage_check(&self, f: UsageCheck) {
        *self.usage.lock().expect("usage") = Some(f);
    }

    /// The containers that refer to `name`.
    pub fn users(&self, name: &str) -> Vec<String> {
        let f = self.usage.lock().expect("usage").clone();
        f.map(|f| f(name)).unwrap_or_default()
    }

    /// The directory a container mounts: `<data-root>/volumes/<name>/_data`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
    }

    /// `POST /volumes/create`: create a volume, or return the one of that name.
    pub fn create(&self, opts: CreateOptions, anonymous: bool) -> Result<Volume> {
        let name = opts.name.filter(|n| !n.is_empty()).unwrap_or_else(random_name);
        if !valid_name(&name) {
            return Err(VolumeError::InvalidName(name));
        }
        let driver = opts.driver.filter(|d| !d.is_empty()).unwrap_or_else(|| "local".into());
        if driver != "local" {
            return Err(VolumeError::NoDriver { name, driver });
        }
        let options = opts.driver_opts.filter(|o| !o.is_empty());
        if let Some(o) = &options {
            for k in o.keys() {
                if !VALID_OPTS.contains(&k.as_str()) {
                    return Err(VolumeError::Invalid(format!(
                        "create {name}: invalid option key: \"{k}\""
                    )));
                }
            }
            for need in ["type", "device"] {
                if !o.contains_key(need) {
                    return Err(VolumeError::Invalid(format!(
                        "create {name}: missing required option: \"{need}\""
                    )));
                }
            }
        }
        let mut vols = self.vols.lock().expect("volumes");
        if let Some(v) = vols.get(&name).cloned() {
            drop(vols);
            // As dockerd: a create that finds the volume is a create all the same.
            self.publish("create", &v);
            return Ok(v);
        }
        let mut labels = opts.labels;
        if anonymous {
            labels
                .get_or_insert_with(BTreeMap::new)
                .insert(ANONYMOUS_LABEL.into(), String::new());
        }
        let v = Volume {
            name: name.clone(),
            driver,
            created_at: now(),
            labels,
            options,
        };
        let dir = self.root.join(&name);
        let r = (|| -> std::io::Result<()> {
            fs::create_dir_all(dir.join("_data"))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o701))?;
            let tmp = dir.join(".volume.json.tmp");
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(&v).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            fs::rename(&tmp, dir.join("volume.json"))
        })();
        if let Err(e) = r {
            let _ = fs::remove_dir_all(&dir);
            return Err(VolumeError::Io(format!("create {name}: {e}")));
        }
        vols.insert(name, v.clone());
        drop(vols);
        self.publish("create", &v);
        Ok(v)
    }

    /// One volume.
    pub fn get(&self, name: &str) -> Result<Volume> {
        self.vols
            .lock()
            .expect("volumes")
            .get(name)
            .cloned()
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<Volume> {
        let mut v: Vec<Volume> = self.vols.lock().expect("volumes").values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// `DELETE /volumes/{name}`. `force` only forgives a missing volume: one in use is kept.
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let v = match self.get(name) {
            Ok(v) => v,
            Err(e) => return if force { Ok(()) } else { Err(e) },
        };
        let ids = self.users(name);
        if !ids.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_string(),
                ids,
            });
        }
        let mut vols = self.vols.lock().expect("volumes");
        let dir = self.root.join(name);
        let data = dir.join("_data");
        if is_mountpoint(&data) {
            rmount::unmount(&data, UnmountFlags::DETACH)
                .map_err(|e| VolumeError::Io(format!("remove {name}: unmount: {e}")))?;
        }
        // The record goes first: a crash part way leaves a directory `open` removes.
        let _ = fs::remove_file(dir.join("volume.json"));
        vols.remove(name);
        drop(vols);
        let removed = fs::remove_dir_all(&dir).map_err(|e| VolumeError::Io(format!("remove {name}: {e}")));
        self.publish("destroy", &v);
        removed
    }

    /// `POST /volumes/prune`: remove unused volumes (only anonymous ones unless `all`) that
    /// `keep` does not spare; the names removed and the bytes freed.
    pub fn prune(&self, all: bool, keep: &dyn Fn(&Volume) -> bool) -> (Vec<String>, u64) {
        let mut gone = Vec::new();
        let mut bytes = 0;
        for v in self.list() {
            if (!all && !v.is_anonymous()) || keep(&v) || !self.users(&v.name).is_empty() {
                continue;
            }
            let size = dir_size(&self.path(&v.name));
            if self.remove(&v.name, false).is_ok() {
                bytes += size;
                gone.push(v.name);
            }
        }
        (gone, bytes)
    }

    /// Make the volume ready for `holder` (a container ID) and return the directory to bind:
    /// a volume with driver options is mounted on its first holder.
    pub fn mount(&self, name: &str, holder: &str) -> Result<PathBuf> {
        let v = self.get(name)?;
        let data = self.path(name);
        if !v.has_mount_options() {
            return Ok(data);
        }
        let mut holders = self.holders.lock().expect("holders");
        let set = holders.entry(name.to_string()).or_default();
        if !is_mountpoint(&data) {
            let o = v.options.clone().unwrap_or_default();
            let typ = o.get("type").cloned().unwrap_or_default();
            let device = o.get("device").cloned().unwrap_or_default();
            let (flags, bind, d) = split_mount_options(o.get("o").map(String::as_str).unwrap_or(""));
            let r = if bind {
                rmount::mount(
                    device.as_str(),
                    &data,
                    "",
                    flags | MountFlags::BIND,
                    None::<&std::ffi::CStr>,
                )
            } else {
                let data_c = CString::new(d).map_err(|_| VolumeError::Invalid("NUL in options".into()))?;
                rmount::mount(device.as_str(), &data, typ.as_str(), flags, data_c.as_c_str())
            };
            r.map_err(|e| {
                VolumeError::Io(format!(
                    "error while mounting volume '{}': failed to mount local volume: mount {device}:{} , data: {}: {e}",
                    data.display(),
                    data.display(),
                    o.get("o").map(String::as_str).unwrap_or("")
                ))
            })?;
        }
        set.insert(holder.to_string());
        Ok(data)
    }

    /// `holder` no longer needs the volume; the last one out unmounts it.
    pub fn unmount(&self, name: &str, holder: &str) {
        let mut holders = self.holders.lock().expect("holders");
        let Some(set) = holders.get_mut(name) else { return };
        set.remove(holder);
        if set.is_empty() {
            holders.remove(name);
            let data = self.path(name);
            if is_mountpoint(&data) {
                if let Err(e) = rmount::unmount(&data, UnmountFlags::DETACH) {
                    tracing::warn!(volume = name, "unmount: {e}");
                }
            }
        }
    }

    /// Unmount every option-mounted volume nobody holds (daemon shutdown without live restore).
    pub fn unmount_all(&self) {
        let names: Vec<String> = self.holders.lock().expect("holders").keys().cloned().collect();
        for n in names {
            let data = self.path(&n);
            if is_mountpoint(&data) {
                let _ = rmount::unmount(&data, UnmountFlags::DETACH);
            }
        }
        self.holders.lock().expect("holders").clear();
    }

    /// The volume as the API shows it.
    pub fn to_json(&self, v: &Volume) -> Value {
        json!({
            "CreatedAt": v.created_at,
            "Driver": v.driver,
            "Labels": v.labels,
            "Mountpoint": self.path(&v.name),
            "Name": v.name,
            "Options": v.options,
            "Scope": "local",
        })
    }

    /// Does `v` pass the `volume ls` filters (`name`, `label`, `driver`, `dangling`)?
    pub fn matches(&self, v: &Volume, filters: &HashMap<String, Vec<String>>) -> Result<bool> {
        for (k, vals) in filters {
            let ok = match k.as_str() {
                "name" => vals.iter().any(|n| v.name.contains(n.as_str())),
                "driver" => vals.iter().any(|d| &v.driver == d),
                "label" => vals.iter().all(|l| {
                    let labels = v.labels.clone().unwrap_or_default();
                    match l.split_once('=') {
                        Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
                        None => labels.contains_key(l),
                    }
                }),
                "dangling" => {
                    let unused = self.users(&v.name).is_empty();
                    vals.iter().any(|d| match d.as_str() {
                        "true" | "1" => unused,
                        _ => !unused,
                    })
                }
                "label!" => vals.iter().all(|l| {
                    let labels = v.labels.clone().unwrap_or_default();
                    match l.split_once('=') {
                        Some((k, val)) => labels.get(k).is_none_or(|x| x != val),
                        None => !labels.contains_key(l),
                    }
                }),
                "all" => true,
                other => return Err(VolumeError::Invalid(format!("invalid filter '{other}'"))),
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, VolumeStore) {
        let d = tempfile::tempdir().unwrap();
        let s = VolumeStore::open(d.path()).unwrap();
        (d, s)
    }

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["ab", "data", "my-vol_1.2", "0x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["a", "", "../x", "a/b", ".x", "-x", "a b", "x\0"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn create_is_idempotent_and_survives_reopen() {
        let (d, s) = store();
        let v = s
            .create(
                CreateOptions {
                    name: Some("data".into()),
                    ..Default::default()
                },
                false,
            )
            .unwrap();
        assert!(s.path("data").is_dir());
        let again = s
            .create(
                CreateOptions {
                    name: Some("data".into()),
                    ..Default::default()
                },
                false,
            )
            .unwrap();
        assert_eq!(v, again);
        let anon = s.create(CreateOptions::default(), true).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(anon.is_anonymous());
        // A crash between mkdir and the record: the directory goes at the next open.
        fs::create_dir_all(d.path().join("volumes/half/_data")).unwrap();
        let s2 = VolumeStore::open(d.path()).unwrap();
        assert_eq!(s2.list().len(), 2);
        assert!(!d.path().join("volumes/half").exists());
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let (_d, s) = store();
        let e = s
            .create(
                CreateOptions {
                    name: Some("../etc".into()),
                    ..Default::default()
                },
                false,
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("includes invalid characters"), "{e}");
        let mut o = BTreeMap::new();
        o.insert("colour".to_string(), "red".to_string());
        let e = s
            .create(
                CreateOptions {
                    name: Some("x1".into()),
                    driver_opts: Some(o),
                    ..Default::default()
                },
                false,
            )
            .unwrap_err();
        assert!(e.to_string().contains("invalid option key: \"colour\""), "{e}");
        let e = s
            .create(
                CreateOptions {
                    name: Some("x2".into()),
                    driver: Some("nfs".into()),
                    ..Default::default()
                },
                false,
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(s.list().is_empty());
    }

    #[test]
    fn in_use_volumes_stay_and_prune_takes_only_anonymous() {
        let (_d, s) = store();
        let named = CreateOptions {
            name: Some("keep".into()),
            ..Default::default()
        };
        s.create(named, false).unwrap();
        let anon = s.create(CreateOptions::default(), true).unwrap();
        let busy = s.create(CreateOptions::default(), true).unwrap();
        let busy_name = busy.name.clone();
        s.set_usage_check(Arc::new(
            move |n: &str| {
                if n == busy_name {
                    vec!["c1".into()]
                } else {
                    vec![]
                }
            },
        ));
        let e = s.remove(&busy.name, true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.to_string(), format!("remove {}: volume is in use - [c1]", busy.name));
        fs::write(s.path(&anon.name).join("f"), b"12345").unwrap();
        let (gone, bytes) = s.prune(false, &|_| false);
        assert_eq!(gone, vec![anon.name.clone()]);
        assert_eq!(bytes, 5);
        assert!(s.get("keep").is_ok());
        let (gone, _) = s.prune(true, &|_| false);
        assert_eq!(gone, vec!["keep".to_string()]);
        assert!(s.get(&busy.name).is_ok());
        assert!(s.remove("nothere", true).is_ok());
        assert_eq!(
            s.remove("nothere", false).unwrap_err().to_string(),
            "get nothere: no such volume"
        );
    }

    #[test]
    fn mount_options_split_like_mount8() {
        let (f, bind, d) = split_mount_options("size=10m,uid=1000,ro,nosuid");
        assert!(f.contains(MountFlags::RDONLY | MountFlags::NOSUID));
        assert!(!bind);
        assert_eq!(d, "size=10m,uid=1000");
        let (f, bind, _) = split_mount_options("rbind");
        assert!(bind && f.contains(MountFlags::REC));
    }
}
