//! The daemon's own view of a container's cgroups: the authority on which processes are the
//! container's when its shim is not there to ask.
//!
//! A shim that dies (killed, crashed, OOM-killed itself) leaves its container's processes
//! behind: reparented, still in their cgroups and namespaces, reachable by no record. The
//! processes get SIGKILL from the kernel when the shim dies (`PR_SET_PDEATHSIG`, set by the
//! shim's executor), but that setting does not survive a set-user-ID exec and never covers a
//! process that joined the container some other way; the cgroup holds them all. So before the
//! daemon records the end of a container whose shim is gone, and before `rm -f` reports
//! success, it kills what the container's cgroup still holds: `cgroup.kill` on cgroup v2
//! (one write, the kernel kills every process), else freeze, SIGKILL each process, thaw (as
//! runc does: a frozen cgroup cannot fork new processes between the read and the kill), and
//! waits until the cgroup is empty. Then it removes the directories, which the dead shim would
//! have removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup";
/// `CGROUP2_SUPER_MAGIC`.
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// Is `/sys/fs/cgroup` itself the unified (v2) hierarchy?
fn unified() -> bool {
    rustix::fs::statfs(ROOT).is_ok_and(|s| s.f_type == CGROUP2_MAGIC)
}

/// The container's directory in every hierarchy mounted on this host that has it (relative
/// path `rel`, the spec's `cgroupsPath`).
pub fn dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    if unified() {
        let d = Path::new(ROOT).join(rel);
        return if d.is_dir() { vec![d] } else { Vec::new() };
    }
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(ROOT) {
        for e in rd.flatten() {
            let d = e.path().join(rel);
            if d.is_dir() {
                out.push(d);
            }
        }
    }
    out.sort();
    out
}

/// The PIDs (host namespace) of every process in any of the container's cgroups. The
/// `name=systemd` hierarchy is left out: it limits nothing, and the container's shim lives in
/// the container's cgroup there (`wharf-shim::named`).
pub fn procs(rel: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = dirs(rel)
        .iter()
        .filter(|d| !d.starts_with(Path::new(ROOT).join("systemd")))
        .flat_map(|d| {
            fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Whether any process is in the container's cgroups: a quick look for the common case (two
/// reads on v1: every process of the container is in the `pids` and `memory` hierarchies,
/// which limit it; one on v2), with [`procs`] when neither hierarchy is there.
pub fn any_process(rel: &str) -> bool {
    let rel = rel.trim_start_matches('/');
    let files: Vec<PathBuf> = if unified() {
        vec![Path::new(ROOT).join(rel).join("cgroup.procs")]
    } else {
        ["pids", "memory"]
            .iter()
            .map(|h| Path::new(ROOT).join(h).join(rel).join("cgroup.procs"))
            .collect()
    };
    let mut looked = false;
    for f in files {
        match fs::read_to_string(&f) {
            Ok(s) if !s.trim().is_empty() => return true,
            Ok(_) => looked = true,
            Err(_) => {}
        }
    }
    !looked && !procs(rel).is_empty()
}

/// The freezer's say on the container: `Some(true)` frozen, `Some(false)` thawed, `None` when
/// it has no freezer cgroup (gone, or no freezer on this host).
pub fn frozen(rel: &str) -> Option<bool> {
    let rel = rel.trim_start_matches('/');
    if unified() {
        let s = fs::read_to_string(Path::new(ROOT).join(rel).join("cgroup.freeze")).ok()?;
        return Some(s.trim() == "1");
    }
    let s = fs::read_to_string(Path::new(ROOT).join("freezer").join(rel).join("freezer.state")).ok()?;
    Some(s.trim() != "THAWED")
}

/// Freeze (`true`) or thaw the container's cgroup directly, without its shim.
fn set_frozen(rel: &str, freeze: bool) {
    let rel = rel.trim_start_matches('/');
    let (file, value) = if unified() {
        (
            Path::new(ROOT).join(rel).join("cgroup.freeze"),
            if freeze { "1" } else { "0" },
        )
    } else {
        (
            Path::new(ROOT).join("freezer").join(rel).join("freezer.state"),
            if freeze { "FROZEN" } else { "THAWED" },
        )
    };
    let _ = fs::write(file, value);
}

/// Kill every process in the container's cgroups and wait, up to `timeout`, until none is
/// left. Returns how many processes there were; an error names those still alive.
pub fn kill_all(rel: &str, timeout: Duration) -> Result<usize, String> {
    let found = procs(rel);
    if found.is_empty() {
        return Ok(0);
    }
    let kill_file = Path::new(ROOT).join(rel.trim_start_matches('/')).join("cgroup.kill");
    if !(unified() && fs::write(&kill_file, "1").is_ok()) {
        set_frozen(rel, true);
        for pid in procs(rel) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        set_frozen(rel, false);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = procs(rel);
        if left.is_empty() {
            return Ok(found.len());
        }
        if Instant::now() >= deadline {
            return Err(format!("processes {left:?} are still alive after SIGKILL"));
        }
        // A process that forked between the read and the kill (no freezer): kill it too.
        for pid in left {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Remove the container's (empty) cgroup directories, as its shim would have.
pub fn remove(rel: &str) {
    for d in dirs(rel) {
        for _ in 0..20 {
            match fs::remove_dir(&d) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_that_does_not_exist_holds_nothing() {
        let rel = "wharf-unit-test-no-such-cgroup/0123456789abcdef";
        assert!(dirs(rel).is_empty());
        assert!(procs(rel).is_empty());
        assert!(!any_process(rel));
        assert_eq!(frozen(rel), None);
        assert_eq!(kill_all(rel, Duration::from_millis(10)), Ok(0));
    }
}
