//! Host tuning wharfd applies only when asked to. `cgroup-favordynmods` sets the kernel's
//! `favordynmods` flag on the host's cgroup2 mount: moving a process into a cgroup (what every
//! container start does, once per hierarchy) then no longer waits for an RCU grace period
//! (measured here: ~10 ms of a 44 ms `run --rm`), at the cost of slightly slower fork and exit
//! for every process on the host. The lock it relaxes is shared by all hierarchies, so it helps
//! on cgroup v1 and hybrid hosts too, and any runtime on the host. The other superblock options
//! (`nsdelegate`, `memory_recursiveprot`, ...) are kept, the mount's own flags are untouched,
//! and a clean shutdown (or a failed start) puts back what was there.

use std::fs;

use rustix::fd::OwnedFd;
use rustix::mount::{fsconfig_reconfigure, fsconfig_set_flag, fspick, FsPickFlags};

/// A cgroup2 mount whose options wharfd changed, to be restored at shutdown.
pub struct FavorDynmods {
    mount_point: String,
    before: Vec<String>,
}

/// The first cgroup2 mount and its superblock options (without `rw`/`ro`).
fn cgroup2_mount() -> Option<(String, Vec<String>)> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split(' ');
        if post.next()? != "cgroup2" {
            return None;
        }
        let opts = post.nth(1)?;
        let mount_point = pre.split(' ').nth(4)?.to_string();
        let opts = opts
            .split(',')
            .filter(|o| *o != "rw" && *o != "ro")
            .map(String::from)
            .collect();
        Some((mount_point, opts))
    })
}

/// Reconfigure the cgroup2 superblock at `mount_point` with exactly the flag options `opts`.
fn reconfigure(mount_point: &str, opts: &[String]) -> rustix::io::Result<()> {
    let fd: OwnedFd = fspick(rustix::fs::CWD, mount_point, FsPickFlags::FSPICK_CLOEXEC)?;
    for o in opts {
        fsconfig_set_flag(&fd, o.as_str())?;
    }
    fsconfig_reconfigure(&fd)
}

/// Turn `favordynmods` on; `Ok(None)` when it already was (nothing to undo).
pub fn favor_dynmods() -> Result<Option<FavorDynmods>, String> {
    let (mount_point, before) = cgroup2_mount().ok_or("no cgroup2 file system is mounted")?;
    if before.iter().any(|o| o == "favordynmods") {
        return Ok(None);
    }
    let mut with = before.clone();
    with.push("favordynmods".into());
    reconfigure(&mount_point, &with).map_err(|e| format!("setting favordynmods on {mount_point}: {e}"))?;
    Ok(Some(FavorDynmods { mount_point, before }))
}

/// Dropped at shutdown, or when the start fails after the change: the options go back.
impl Drop for FavorDynmods {
    fn drop(&mut self) {
        if let Err(e) = reconfigure(&self.mount_point, &self.before) {
            tracing::warn!(mount = %self.mount_point, "restoring cgroup2 options: {e}");
        }
    }
}
