//! The container's cgroups as the shim sees them: their directories made for an init the
//! shim creates itself (`Cgroups`), libcgroups' manager for the resources, `stats`, `update`,
//! freezing, the member list and removal (the same manager libcontainer uses, v1, v2 or
//! hybrid), and the OOM count.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libcgroups::common::{AnyCgroupManager, CgroupManager, ControllerOpt, FreezerState};
use nix::libc;

/// The v1 controllers libcgroups manages (its `CONTROLLERS`): their hierarchies get the
/// container's cgroup. Named hierarchies are `named`'s.
const V1_CONTROLLERS: [&str; 12] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];
/// `CGROUP2_SUPER_MAGIC`: `/sys/fs/cgroup` is the v2 tree (no v1 controllers).
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// The container's cgroup, made for its init, with the files the init joins it by.
pub struct Cgroups {
    /// The v1 `tasks` files, then the v2 `cgroup.procs` (a single-threaded process writes `0`).
    pub files: Vec<OwnedFd>,
    /// The v2 directory, for `CLONE_INTO_CGROUP` (its `cgroup.procs` is the last of `files`).
    pub into: Option<OwnedFd>,
}

/// The v1 controller hierarchies in a mount table: mount point and its controllers.
fn v1_hierarchies(mountinfo: &str) -> Vec<(PathBuf, Vec<&str>)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split(' ');
            let (fstype, _source, opts) = (r.next()?, r.next()?, r.next()?);
            let mountpoint = left.split(' ').nth(4)?;
            let ctls: Vec<&str> = opts.split(',').filter(|o| V1_CONTROLLERS.contains(o)).collect();
            (fstype == "cgroup" && !ctls.is_empty()).then(|| (PathBuf::from(mountpoint), ctls))
        })
        .collect()
}

fn create_dir(dir: &Path) -> Result<(), String> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("creating {}: {e}", dir.display())),
    }
}

fn open_write(path: &Path) -> Result<OwnedFd, String> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Fill an empty cpuset file at each level below `mount` from the level above (a task cannot
/// join a cpuset with no CPUs or memory nodes), as libcgroups does.
fn fill_cpuset(mount: &Path, rel: &Path) -> Result<(), String> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mut dir = mount.to_path_buf();
        let mut above = fs::read_to_string(dir.join(file)).map_err(|e| format!("{}: {e}", dir.display()))?;
        for c in rel.components() {
            dir.push(c);
            let here = dir.join(file);
            let v = fs::read_to_string(&here).map_err(|e| format!("{}: {e}", here.display()))?;
            if v.trim().is_empty() {
                fs::write(&here, above.trim()).map_err(|e| format!("{}: {e}", here.display()))?;
            } else {
                above = v;
            }
        }
    }
    Ok(())
}

impl Cgroups {
    /// Make the container's cgroup at `cgroup_path` (relative to each hierarchy's root) in
    /// every hierarchy libcgroups would, and open what the init joins it by.
    pub fn make(cgroup_path: &str) -> Result<Cgroups, String> {
        let rel = Path::new(cgroup_path.trim_start_matches('/'));
        if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(format!("{cgroup_path}: not a cgroup path of the container's own"));
        }
        let st = nix::sys::statfs::statfs("/sys/fs/cgroup").map_err(|e| format!("/sys/fs/cgroup: {e}"))?;
        if st.filesystem_type().0 as i64 == CGROUP2_MAGIC {
            return Self::make_v2(Path::new("/sys/fs/cgroup"), rel);
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("mountinfo: {e}"))?;
        let mut files = Vec::new();
        for (mount, ctls) in v1_hierarchies(&mountinfo) {
            let mut dir = mount.clone();
            for c in rel.components() {
                dir.push(c);
                create_dir(&dir)?;
            }
            if ctls.contains(&"cpuset") {
                fill_cpuset(&mount, rel)?;
            }
            files.push(open_write(&dir.join("tasks"))?);
        }
        if files.is_empty() {
            return Err("no cgroup v1 controller is mounted".into());
        }
        Ok(Cgroups { files, into: None })
    }

    /// The v2 tree: each level made, the root's controllers enabled for the levels below
    /// (failures left for the limit that needs one to report, as libcgroups does).
    fn make_v2(root: &Path, rel: &Path) -> Result<Cgroups, String> {
        let controllers = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let enable = |dir: &Path| {
            for c in controllers.split_whitespace() {
                let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
            }
        };
        enable(root);
        let mut dir = root.to_path_buf();
        let mut it = rel.components().peekable();
        while let Some(c) = it.next() {
            dir.push(c);
            create_dir(&dir)?;
            if it.peek().is_some() {
                enable(&dir);
            }
        }
        let into = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&dir)
            .map(OwnedFd::from)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Cgroups {
            files: vec![open_write(&dir.join("cgroup.procs"))?],
            into: Some(into),
        })
    }
}

/// Set the container's limits, as libcontainer does before its init runs.
pub fn apply(m: &AnyCgroupManager, res: Option<&oci_spec::runtime::LinuxResources>) -> Result<(), String> {
    let Some(res) = res else { return Ok(()) };
    let opt = ControllerOpt {
        resources: res,
        disable_oom_killer: false,
        oom_score_adj: None,
        freezer_state: None,
    };
    m.apply(&opt)
        .map_err(|e| format!("applying the container's limits: {e}"))
}

/// Freeze or thaw every process in the container's cgroup.
pub fn freeze(m: &AnyCgroupManager, frozen: bool) -> Result<(), String> {
    let state = if frozen {
        FreezerState::Frozen
    } else {
        FreezerState::Thawed
    };
    m.freeze(state).map_err(|e| e.to_string())
}

/// Signal every process in the container's cgroup, frozen meanwhile so none forks past the
/// list, and thawed after (so a paused container's processes can act on it), as libcontainer
/// and runc do.
pub fn signal_all(m: &AnyCgroupManager, sig: nix::sys::signal::Signal) -> Result<(), String> {
    if let Err(e) = m.freeze(FreezerState::Frozen) {
        eprintln!("wharf-shim: freezing before a signal to all: {e}");
    }
    let sent = m
        .get_all_pids()
        .map_err(|e| format!("the container's processes: {e}"))
        .and_then(|pids| {
            pids.into_iter().try_for_each(|p| match nix::sys::signal::kill(p, sig) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
                Err(e) => Err(format!("signalling {p}: {e}")),
            })
        });
    if let Err(e) = m.freeze(FreezerState::Thawed) {
        eprintln!("wharf-shim: thawing after a signal to all: {e}");
    }
    sent
}

/// Remove the container's cgroup once its processes are gone.
pub fn remove(m: &AnyCgroupManager) -> Result<(), String> {
    m.remove().map_err(|e| e.to_string())
}

/// libcgroups' manager for the container's cgroup (v1, v2 or hybrid, as libcontainer chose).
/// Making one reads the mount table and the shim's cgroups once per v1 controller, so the
/// shim keeps the one it made.
pub fn cgroup_manager(cgroup_path: &str, id: &str) -> Result<AnyCgroupManager, String> {
    libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: cgroup_path.into(),
        systemd_cgroup: false,
        container_name: id.to_string(),
    })
    .map_err(|e| e.to_string())
}

/// The cgroup's figures (for `docker stats`).
pub fn cgroup_stats(m: &AnyCgroupManager, cgroup_path: &str) -> Result<serde_json::Value, String> {
    crate::stats::read(m, cgroup_path)
}

/// `docker update`: the container's cgroup gets the whole new resources object.
pub fn update_resources(m: &AnyCgroupManager, res: &oci_spec::runtime::LinuxResources) -> Result<(), String> {
    let opt = ControllerOpt {
        resources: res,
        disable_oom_killer: res
            .memory()
            .as_ref()
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false),
        oom_score_adj: None,
        freezer_state: None,
    };
    m.apply(&opt).map_err(|e| e.to_string())
}

/// How often the kernel's OOM killer has acted in the cgroup (v1 or v2 layout).
pub fn oom_kills(cgroup_path: &str) -> u64 {
    let rel = cgroup_path.trim_start_matches('/');
    let candidates = [
        (format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"), "oom_kill "),
        (format!("/sys/fs/cgroup/{rel}/memory.events"), "oom_kill "),
        (format!("/sys/fs/cgroup/unified/{rel}/memory.events"), "oom_kill "),
    ];
    for (p, key) in candidates {
        if let Ok(s) = fs::read_to_string(&p) {
            if let Some(n) = s
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
            {
                return n;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_hierarchies_are_read_from_the_mount_table() {
        let mi = "31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                  32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
                  33 31 0:30 / /sys/fs/cgroup/misc rw,relatime - cgroup cgroup rw,misc\n\
                  40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n\
                  42 31 0:39 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n\
                  50 23 0:40 / /mnt/cpu rw - ext4 /dev/vda rw,cpu";
        assert_eq!(
            v1_hierarchies(mi),
            [
                (PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"), vec!["cpu", "cpuacct"]),
                (PathBuf::from("/sys/fs/cgroup/cpuset"), vec!["cpuset"]),
            ]
        );
    }

    #[test]
    fn a_cgroup_path_must_stay_below_the_roots() {
        for bad in ["", "/", "../x", "/a/../../b", "./.."] {
            assert!(Cgroups::make(bad).is_err(), "{bad:?}");
        }
    }
}
