//! The container's own cgroup in the `name=systemd` hierarchy of a cgroup v1 (or hybrid) host.
//!
//! libcontainer binds every v1 hierarchy into the container at the cgroup its init is in, but
//! manages only the controllers' hierarchies: in `name=systemd` the init stays wherever the
//! shim was, often the hierarchy's root, and the container would see (and, before the mounts
//! are sealed, could write) the host's whole tree. runc's cgroupfs manager joins the container
//! to a `name=systemd` cgroup at its own cgroup path; so does this: the shim steps into that
//! cgroup before libcontainer forks the init (which inherits it, as every exec does later),
//! stays there for its life (one migration per container, not two per exec), and steps back
//! out and removes it once the container is gone. Being a named hierarchy, it limits nothing:
//! the daemon never takes its member list for the container's processes.

use std::fs;
use std::path::{Path, PathBuf};

/// Where the named hierarchy is mounted on v1 and hybrid hosts.
const ROOT: &str = "/sys/fs/cgroup/systemd";
/// `CGROUP_SUPER_MAGIC`: a cgroup v1 mount (v2 is `CGROUP2_SUPER_MAGIC`).
const CGROUP_V1_MAGIC: i64 = 0x0027_e0eb;

/// The shim's place in the hierarchy while it creates the init: the container's cgroup, and
/// the one to go back to.
#[derive(Debug, Default)]
pub struct Entered {
    dir: Option<PathBuf>,
    back: Option<PathBuf>,
}

/// The container's cgroup in the named hierarchy (`cgroup_path` relative to its root), when
/// this host has that hierarchy.
pub fn path(cgroup_path: &str) -> Option<PathBuf> {
    let st = nix::sys::statfs::statfs(ROOT).ok()?;
    if st.filesystem_type().0 as i64 != CGROUP_V1_MAGIC {
        return None;
    }
    Some(Path::new(ROOT).join(cgroup_path.trim_start_matches('/')))
}

/// The shim's own cgroup in the named hierarchy, from `/proc/self/cgroup`.
fn current() -> Option<PathBuf> {
    let s = fs::read_to_string("/proc/self/cgroup").ok()?;
    s.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctl, p) = (parts.next()?, parts.next()?, parts.next()?);
        (ctl == "name=systemd").then(|| Path::new(ROOT).join(p.trim_start_matches('/')))
    })
}

/// Move the shim there. It is single-threaded, so its one thread moving itself through
/// `tasks` moves the whole process, without the kernel's global threadgroup lock a
/// `cgroup.procs` write takes (whose write side waits for an RCU grace period, milliseconds on
/// an idle host; see `enter`).
fn join(dir: &Path) -> Result<(), String> {
    fs::write(dir.join("tasks"), "0").map_err(|e| format!("joining {}: {e}", dir.display()))
}

/// Create the container's cgroup and move the shim into it.
pub fn enter(cgroup_path: &str) -> Result<Entered, String> {
    let Some(dir) = path(cgroup_path) else {
        return Ok(Entered::default());
    };
    let back = current();
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    join(&dir)?;
    Ok(Entered { dir: Some(dir), back })
}

/// Move the shim back to where it was (the init stays).
pub fn leave(e: &Entered) {
    if let Some(back) = &e.back {
        if let Err(err) = join(back) {
            eprintln!("wharf-shim: {err}");
        }
    }
}

/// Remove the container's cgroup once nothing is left in it. The container's processes are
/// gone when this runs, but the kernel may still be tearing the last one down: a few tries.
pub fn remove(dir: &Option<PathBuf>) {
    let Some(dir) = dir else { return };
    for _ in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
    }
    eprintln!("wharf-shim: {} stays: it is not empty", dir.display());
}

impl Entered {
    /// The cgroup entered, if any.
    pub fn dir(&self) -> &Option<PathBuf> {
        &self.dir
    }
}
