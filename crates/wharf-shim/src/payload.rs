//! The executor libcontainer calls last in a container's init (and in each exec'd process):
//! in the init it makes the cgroup hierarchies read-only, in every process it gives the signal
//! state a process must start with and asks for SIGKILL when the shim dies, loads the seccomp
//! filter the daemon compiled, drops what the bounding set lacks from the effective and
//! permitted sets, and executes the payload with libcontainer's default executor.
//!
//! The daemon takes the profile out of the runtime spec (see `wharf_container::bpf`), so
//! libcontainer neither compiles it on the critical path nor forgets it for execs (its exec
//! path builds a spec without the profile). Without no_new_privs, loading a filter needs
//! CAP_SYS_ADMIN, which the spec keeps in the effective and permitted sets (never the bounding
//! set) for this moment only: it goes right after the load, before any of the payload runs.
//!
//! The same capability makes `/sys/fs/cgroup` read-only. libcontainer mounts each cgroup v1
//! hierarchy as a read-write bind of the container's own cgroup whatever the spec asks, and
//! root in the container owns those files: it could raise its own memory, pids and CPU limits
//! or make cgroups the daemon never removes. So when the spec's cgroup mount says `ro` (every
//! container but `--privileged` ones), the init remounts the whole tree read-only, recursively,
//! before the user's process exists (`mount_setattr(2)`, one call for the tmpfs and every
//! hierarchy bound under it; on cgroup v2 the `cgroup2` mount is already read-only and stays so).

use std::sync::Arc;

use caps::CapSet;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::libc;
use oci_spec::runtime::Spec;
use wharf_shim_proto::SeccompFilter;

/// A compiled filter, read once when the shim starts.
#[derive(Debug)]
pub struct Filter {
    insns: Vec<libc::sock_filter>,
    flags: u32,
}

/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

impl Filter {
    /// Read the program the daemon wrote: `struct sock_filter` records in host byte order.
    pub fn read(f: &SeccompFilter) -> Result<Filter, String> {
        let bytes = std::fs::read(&f.program).map_err(|e| format!("seccomp filter {}: {e}", f.program))?;
        if bytes.is_empty() || bytes.len() % 8 != 0 || bytes.len() / 8 > MAX_INSNS {
            return Err(format!(
                "seccomp filter {}: {} bytes is no program",
                f.program,
                bytes.len()
            ));
        }
        let insns = bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Filter { insns, flags: f.flags })
    }

    /// Install the filter on the calling thread.
    pub(crate) fn load(&self) -> Result<(), String> {
        let prog = libc::sock_fprog {
            len: self.insns.len() as u16,
            filter: self.insns.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at `insns`, which outlives the call; the kernel copies the
        // program and does not keep the pointer.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            return Err(format!("loading seccomp filter: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// libcontainer's default executor behind the filter.
#[derive(Clone, Default)]
pub struct Payload {
    filter: Option<Arc<Filter>>,
    /// The container's init (not an exec): it seals the cgroup mounts.
    init: bool,
}

impl Payload {
    /// Load `filter` (when there is one) before the payload runs; `init` for the container's
    /// init process, which also makes the cgroup mounts read-only when the spec asks.
    pub fn new(filter: Option<Arc<Filter>>, init: bool) -> Payload {
        Payload { filter, init }
    }
}

/// Whether the spec's mount at `/sys/fs/cgroup` (the last one there wins) is the cgroup
/// file system asked read-only.
pub(crate) fn cgroup_read_only(spec: &Spec) -> bool {
    spec.mounts()
        .iter()
        .flatten()
        .rev()
        .find(|m| m.destination() == std::path::Path::new("/sys/fs/cgroup"))
        .is_some_and(|m| m.typ().as_deref() == Some("cgroup") && m.options().iter().flatten().any(|o| o == "ro"))
}

/// Make `/sys/fs/cgroup` and every mount below it read-only (see the module's doc).
pub(crate) fn seal_cgroups() -> Result<(), String> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let path = c"/sys/fs/cgroup";
    // SAFETY: `path` is a NUL-terminated string and `attr` a mount_attr of the size passed;
    // both outlive the call, and the kernel only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            (libc::AT_RECURSIVE | libc::AT_SYMLINK_NOFOLLOW) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(format!(
            "making /sys/fs/cgroup read-only: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The signal state a container process starts with, whatever the shim's: nothing blocked
/// (the shim keeps SIGCHLD blocked for its signalfd; a mask survives execve) and SIGPIPE at
/// its default (the Rust runtime ignores it; an ignored signal survives execve too). Then the
/// process asks for SIGKILL when its parent, the shim, dies: a shim killed or crashed takes the
/// container's processes with it instead of leaving them unsupervised. (The daemon still
/// kills whatever is left in the cgroup: this setting does not survive a set-user-ID exec.)
pub(crate) fn child_signals() -> Result<(), String> {
    // SAFETY: an empty set is a valid mask; the old mask is not asked for.
    let r = unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut())
    };
    if r < 0 {
        return Err(format!("signal mask: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: SIG_DFL installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and reads no memory.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } < 0 {
        return Err(format!("parent death signal: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Clear from the effective and permitted sets every capability the bounding set lacks.
pub(crate) fn drop_unbounded() -> Result<(), String> {
    let e = |e: caps::errors::CapsError| format!("capabilities: {e}");
    let bounding = caps::read(None, CapSet::Bounding).map_err(e)?;
    for set in [CapSet::Effective, CapSet::Permitted] {
        let held = caps::read(None, set).map_err(e)?;
        if !held.is_subset(&bounding) {
            let kept = held.intersection(&bounding).copied().collect();
            caps::set(None, set, &kept).map_err(e)?;
        }
    }
    Ok(())
}

/// A terminal starts at the client's size (`process.consoleSize`, from `ConsoleSize` at create
/// or exec): libcontainer leaves the pty at 0x0, so the process sizes its own terminal (its
/// stdin) before its exec, with nothing running yet that could read the size first.
pub(crate) fn console_size(spec: &Spec) -> Result<(), String> {
    let Some(p) = spec.process().as_ref().filter(|p| p.terminal().unwrap_or(false)) else {
        return Ok(());
    };
    let Some(size) = p.console_size() else { return Ok(()) };
    let ws = libc::winsize {
        ws_row: u16::try_from(size.height()).unwrap_or(u16::MAX),
        ws_col: u16::try_from(size.width()).unwrap_or(u16::MAX),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize, which lives for the call.
    if unsafe { libc::ioctl(0, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(format!("terminal size: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

impl Executor for Payload {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if self.init && cgroup_read_only(spec) {
            seal_cgroups().map_err(ExecutorError::Other)?;
        }
        console_size(spec).map_err(ExecutorError::Other)?;
        child_signals().map_err(ExecutorError::Other)?;
        if let Some(f) = &self.filter {
            f.load().map_err(ExecutorError::Other)?;
        }
        drop_unbounded().map_err(ExecutorError::Other)?;
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
