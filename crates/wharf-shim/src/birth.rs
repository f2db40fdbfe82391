//! A container's init created by the shim itself, without libcontainer's builder.
//!
//! libcontainer's create forks an intermediate process that builds a cgroup manager (reading
//! `/proc/self/mountinfo` and `/proc/self/cgroup` once per controller through its procfs
//! checks) and moves itself into the container's cgroups with a `cgroup.procs` write, which
//! takes the kernel's global threadgroup lock and waits for an RCU grace period (about 11 ms
//! of every `docker run` on an otherwise idle host). The spec is the daemon's, so what the init
//! must do is a bounded set, and the shim does it directly:
//!
//! - the parent makes the container's cgroup directories (`Cgroups`: every v1 controller
//!   hierarchy libcgroups manages, with `cpuset` filled from its parent; or the v2 path with
//!   the controllers enabled above it) and clones the init with its new namespaces, straight
//!   into the v2 cgroup where the kernel can; while the child builds the root it makes
//!   libcgroups' manager, and applies the limits once the child's device nodes exist and
//!   before the child becomes the container's process;
//! - the child joins the v1 hierarchies by writing `0` to `tasks` (its one thread, no global
//!   lock), unshares its cgroup namespace, joins the namespaces the spec names by path, and
//!   builds its root with libcontainer's own mount code (`RootFS::prepare_rootfs`: mounts,
//!   devices, symlinks), then pivots into it, sets the hostname, sysctls, console, read-only
//!   root, read-only and masked paths, seals the cgroup mounts, becomes the process's user as
//!   an exec does (`enter::become_user`), reports ready and waits for `start`;
//! - `start` wakes it; it loads the filter and executes the command (`enter::run`), and the
//!   shim learns over a close-on-exec pipe whether that worked.
//!
//! Specs asking for what only libcontainer does (user namespaces, hooks, AppArmor, SELinux,
//! a personality, Intel RDT, network devices, a memory policy, a time namespace, a
//! libcontainer-side seccomp profile) still go through libcontainer (`direct`).

use std::convert::Infallible;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libcontainer::rootfs::RootFS;
use libcontainer::syscall::syscall::create_syscall;
use nix::errno::Errno;
use nix::libc;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::enter::{self, errno, Plan};
use crate::payload::Filter;

/// Whether the shim can create this spec's init itself: nothing only libcontainer applies.
pub(crate) fn direct(spec: &Spec) -> bool {
    let (Some(p), Some(linux)) = (spec.process(), spec.linux()) else {
        return false;
    };
    let namespaces_ok = linux.namespaces().iter().flatten().all(|n| match n.typ() {
        LinuxNamespaceType::User | LinuxNamespaceType::Time => false,
        LinuxNamespaceType::Mount => n.path().is_none(),
        _ => true,
    });
    enter::direct(p)
        && namespaces_ok
        && spec.hooks().is_none()
        && linux.uid_mappings().is_none()
        && linux.gid_mappings().is_none()
        && linux.personality().is_none()
        && linux.intel_rdt().is_none()
        && linux.mount_label().is_none()
        && linux.net_devices().is_none()
        && linux.memory_policy().is_none()
        && linux.seccomp().is_none()
        && matches!(
            linux.rootfs_propagation().as_deref(),
            None | Some("slave" | "private" | "shared" | "unbindable")
        )
}

/// An init made and waiting for `start`.
pub(crate) struct Born {
    pub(crate) init: Pid,
    /// Written once to let the init go on to its command.
    start: Option<OwnedFd>,
    /// Closed empty by the init's `execve`; its error otherwise.
    errors: Option<OwnedFd>,
    /// The terminal's master for a container with one.
    pub(crate) master: Option<OwnedFd>,
    /// libcgroups' manager of the container's cgroup, which made its limits.
    pub(crate) manager: libcgroups::common::AnyCgroupManager,
}

/// The container's stdio as the init gets it: the child ends of three pipes, or a terminal
/// it makes in the container and sends back.
pub(crate) enum InitIo {
    Pipes(Vec<OwnedFd>),
    Terminal,
}

/// What the child needs, made before the clone.
struct Setup<'a> {
    spec: &'a Spec,
    rootfs: PathBuf,
    plan: Plan,
    /// The v1 `tasks` files (or the v2 `cgroup.procs` when not cloned into it) to write `0` to.
    join: Vec<OwnedFd>,
    /// Namespaces the spec names by path (but the PID one, joined by the parent).
    enter: Vec<(CloneFlags, OwnedFd)>,
    cgroup_ns: bool,
    new_uts: bool,
    stdio: Option<[RawFd; 3]>,
    console: Option<RawFd>,
    filter: Option<&'a Filter>,
}

/// A namespace type's flag.
fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::empty(),
    }
}

/// Create the init of `spec` (the bundle's config) in the cgroup at `cgroup_path`. Returns
/// once it waits for `start`.
pub(crate) fn create(
    spec: &Spec,
    bundle: &Path,
    id: &str,
    cgroup_path: &str,
    io: InitIo,
    filter: Option<&Filter>,
) -> Result<Born, String> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let linux = spec.linux().as_ref().ok_or("the spec has no linux section")?;
    let process = spec.process().as_ref().ok_or("the spec has no process")?;
    let root = spec.root().as_ref().ok_or("the spec has no root")?;
    let rootfs =
        fs::canonicalize(bundle.join(root.path())).map_err(|e| format!("rootfs {}: {e}", root.path().display()))?;
    let cgroups = crate::cgroups::Cgroups::make(cgroup_path)?;
    let mut new = CloneFlags::empty();
    let (mut enter_ns, mut pid_ns, mut cgroup_ns, mut new_uts) = (Vec::new(), None, false, false);
    for n in linux.namespaces().iter().flatten() {
        let f = flag(n.typ());
        match (n.path(), n.typ()) {
            (None, LinuxNamespaceType::Cgroup) => cgroup_ns = true,
            (None, t) => {
                new_uts |= t == LinuxNamespaceType::Uts;
                new |= f
            }
            (Some(p), LinuxNamespaceType::Pid) => pid_ns = Some(open(p)?),
            (Some(p), _) => enter_ns.push((f, open(p)?)),
        }
    }
    let other_pid_ns = new.contains(CloneFlags::CLONE_NEWPID) || pid_ns.is_some();
    let plan = Plan::new(process, other_pid_ns)?;
    let (console, _console_child, stdio) = match &io {
        InitIo::Pipes(fds) if fds.len() == 3 => (
            None,
            None,
            Some([fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()]),
        ),
        InitIo::Pipes(_) => return Err("the init needs three stdio descriptors".into()),
        InitIo::Terminal => {
            let (a, b) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
                .map_err(|e| format!("socketpair: {e}"))?;
            (Some(a), Some(b), None)
        }
    };
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let (start_r, start_w) = pipe()?;
    let own_pid_ns = match &pid_ns {
        Some(theirs) => {
            let own = open("/proc/self/ns/pid")?;
            nix::sched::setns(theirs, CloneFlags::CLONE_NEWPID).map_err(errno("joining the PID namespace"))?;
            Some(own)
        }
        None => None,
    };
    let (forked, cloned_into) = enter::fork_into(new.bits() as u64, cgroups.into.as_ref());
    if let Ok(ForkResult::Child) = forked {
        drop((err_r, ready_r, start_w));
        let mut join = cgroups.files;
        if cloned_into {
            join.truncate(join.len() - usize::from(cgroups.into.is_some()));
        }
        let setup = Setup {
            spec,
            rootfs,
            plan,
            join,
            enter: enter_ns,
            cgroup_ns,
            new_uts,
            stdio,
            console: _console_child.as_ref().map(|c| c.as_raw_fd()),
            filter,
        };
        child_main(&setup, err_w, ready_w, start_r)
    }
    if let Some(own) = own_pid_ns {
        if let Err(e) = nix::sched::setns(own, CloneFlags::CLONE_NEWPID) {
            eprintln!("wharf-shim: back to the shim's PID namespace: {e}");
        }
    }
    let init = match forked.map_err(|e| format!("creating the init: {e}"))? {
        ForkResult::Parent { child } => child,
        ForkResult::Child => unreachable!("the child never returns from child_main"),
    };
    drop((err_w, ready_w, start_r, _console_child));
    // While the child builds the root: libcgroups' manager (it reads the mount table and the
    // shim's cgroups once per controller). The limits go on once the child's device nodes
    // exist (libcgroups' device rules begin with a deny-all) and before it becomes the
    // container's process; nothing of the container's has run by then.
    let manager = match crate::cgroups::cgroup_manager(cgroup_path, id) {
        Ok(m) => m,
        Err(e) => return Err(abort(init, e)),
    };
    if !step(&ready_r, b'M').map_err(|e| abort(init, e))? {
        return Err(died(init, err_r));
    }
    if let Err(e) = crate::cgroups::apply(&manager, linux.resources().as_ref()) {
        return Err(abort(init, e));
    }
    if let Err(e) = nix::unistd::write(&start_w, b"A") {
        return Err(abort(init, format!("the container's init: {}", e.desc())));
    }
    if !step(&ready_r, b'R').map_err(|e| abort(init, e))? {
        return Err(died(init, err_r));
    }
    let master = match console {
        Some(sock) => Some(crate::stdio::receive_fd(
            sock.as_raw_fd(),
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        )?),
        None => None,
    };
    Ok(Born {
        init,
        start: Some(start_w),
        errors: Some(err_r),
        master,
        manager,
    })
}

impl Born {
    /// Let the init go on to its command; returns once it has executed it, or why it could
    /// not.
    pub(crate) fn start(&mut self) -> Result<(), String> {
        let (Some(start), Some(errors)) = (self.start.take(), self.errors.take()) else {
            return Err("the container has been started already".into());
        };
        nix::unistd::write(&start, b"S").map_err(errno("starting the container"))?;
        drop(start);
        match enter::outcome(errors, enter::SET_UP_LIMIT) {
            Ok(msg) if msg.is_empty() => Ok(()),
            Ok(msg) => Err(msg),
            Err(e) => Err(e.replace("exec", "container's command")),
        }
    }
}

/// Wait for the child's next step (`want`): `Ok(false)` when it ended first (its error is on
/// its error pipe), an error when it took longer than the exec limit.
fn step(from: &OwnedFd, want: u8) -> Result<bool, String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + enter::SET_UP_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the container's init was not ready within {} s",
                enter::SET_UP_LIMIT.as_secs()
            ));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        match poll(
            &mut [PollFd::new(from.as_fd(), PollFlags::POLLIN)],
            PollTimeout::from(ms),
        ) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for the container's init: {e}")),
        }
        let mut b = [0u8; 1];
        match nix::unistd::read(from.as_raw_fd(), &mut b) {
            Ok(0) => return Ok(false),
            Ok(_) if b[0] == want => return Ok(true),
            Ok(_) => return Err("the container's init is out of step".into()),
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(format!("waiting for the container's init: {e}")),
        }
    }
}

/// Kill a child that is not to be the container's init, and say why.
fn abort(init: Pid, why: String) -> String {
    let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(init, None);
    why
}

/// Why a child that ended before it was ready did.
fn died(init: Pid, err_r: OwnedFd) -> String {
    let msg = enter::outcome(err_r, enter::SET_UP_LIMIT).unwrap_or_default();
    let _ = nix::sys::wait::waitpid(init, None);
    if msg.is_empty() {
        "the container's init ended before it was ready".into()
    } else {
        msg
    }
}

fn open(path: impl AsRef<Path>) -> Result<OwnedFd, String> {
    let path = path.as_ref();
    fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// The child: report why it could not become the container's init, if it could not, and end.
fn child_main(s: &Setup<'_>, err_w: OwnedFd, ready_w: OwnedFd, start_r: OwnedFd) -> ! {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child(s, err_w.as_raw_fd(), ready_w, start_r)
    }));
    let e = match r {
        Ok(Err(e)) => e,
        Err(_) => "the init's set-up panicked".to_string(),
    };
    let _ = nix::unistd::write(&err_w, e.as_bytes());
    // SAFETY: _exit ends the process without running the shim's destructors or atexit
    // handlers, which belong to the parent.
    unsafe { libc::_exit(127) }
}

fn child(s: &Setup<'_>, err_w: RawFd, ready_w: OwnedFd, start_r: OwnedFd) -> Result<Infallible, String> {
    for fd in &s.join {
        nix::unistd::write(fd, b"0").map_err(errno("joining the container's cgroup"))?;
    }
    if s.cgroup_ns {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(errno("the cgroup namespace"))?;
    }
    if let Some(adj) = s.plan.oom_score_adj {
        // Still the host's /proc.
        fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| format!("oom_score_adj: {e}"))?;
    }
    for (flag, fd) in &s.enter {
        nix::sched::setns(fd, *flag).map_err(errno("joining a namespace"))?;
    }
    nix::unistd::setsid().map_err(errno("setsid"))?;
    if let Some(fds) = s.stdio {
        for (to, from) in fds.into_iter().enumerate() {
            // SAFETY: dup2 onto 0..2 replaces the shim's stdio in this process only; the
            // child ends are above 2, so none is overwritten before it is copied.
            if unsafe { libc::dup2(from, to as RawFd) } < 0 {
                return Err(format!("stdio: {}", std::io::Error::last_os_error()));
            }
        }
    }
    if s.plan.no_new_privs {
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integers and reads no memory.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    }
    make_root(s)?;
    // The shim sets the limits now, and says so.
    nix::unistd::write(&ready_w, b"M").map_err(errno("reporting the root made"))?;
    if !matches!(read_byte(&start_r), Some(b'A')) {
        // SAFETY: as in child_main: the shim is gone or gave up on this init.
        unsafe { libc::_exit(127) }
    }
    let envp = enter::become_user(&s.plan, &[err_w, ready_w.as_raw_fd(), start_r.as_raw_fd()])?;
    validate(&s.plan)?;
    nix::unistd::write(&ready_w, b"R").map_err(errno("reporting ready"))?;
    drop(ready_w);
    if read_byte(&start_r) != Some(b'S') {
        // SAFETY: as in child_main: the shim is gone, or let the container go unstarted.
        unsafe { libc::_exit(127) }
    }
    drop(start_r);
    enter::run(&s.plan, &envp, s.filter)
}

/// The next byte from the shim, `None` at its end.
fn read_byte(from: &OwnedFd) -> Option<u8> {
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(from.as_raw_fd(), &mut b) {
            Ok(1) => return Some(b[0]),
            Err(Errno::EINTR) => continue,
            _ => return None,
        }
    }
}

/// The container's root: its mounts, devices and links (libcontainer's code), the pivot, the
/// host name, sysctls, the console, and what is read-only or masked.
fn make_root(s: &Setup<'_>) -> Result<(), String> {
    let linux = s.spec.linux().as_ref().ok_or("the spec has no linux section")?;
    let sys = create_syscall();
    let rootfs = RootFS::new();
    rootfs
        .prepare_rootfs(s.spec, &s.rootfs, false, s.cgroup_ns)
        .map_err(|e| format!("preparing the rootfs: {e}"))?;
    sys.pivot_rootfs(&s.rootfs).map_err(|e| format!("pivot_root: {e}"))?;
    rootfs
        .adjust_root_mount_propagation(linux)
        .map_err(|e| format!("root propagation: {e}"))?;
    if s.new_uts {
        if let Some(h) = s.spec.hostname() {
            nix::unistd::sethostname(h).map_err(errno("sethostname"))?;
        }
        if let Some(d) = s.spec.domainname() {
            // SAFETY: the pointer and length describe `d`, which outlives the call.
            if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } < 0 {
                return Err(format!("setdomainname: {}", std::io::Error::last_os_error()));
            }
        }
    }
    for (k, v) in linux.sysctl().iter().flatten() {
        sysctl(k, v)?;
    }
    if let Some(sock) = s.console {
        libcontainer::tty::setup_console(sys.as_ref(), sock, true).map_err(|e| format!("console: {e}"))?;
        crate::payload::console_size(s.spec)?;
    }
    if s.spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        let flags = nix::sys::statvfs::statvfs("/")
            .map(|st| MsFlags::from_bits_truncate(st.flags().bits() as libc::c_ulong))
            .map_err(errno("statvfs /"))?;
        mount(
            None,
            "/",
            None,
            MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
            None,
        )
        .map_err(|e| format!("making the root read-only: {e}"))?;
    }
    for p in linux.readonly_paths().iter().flatten() {
        read_only(p)?;
    }
    mask(linux.masked_paths().as_deref().unwrap_or_default())?;
    if crate::payload::cgroup_read_only(s.spec) {
        crate::payload::seal_cgroups()?;
    }
    Ok(())
}

fn mount(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Errno> {
    nix::mount::mount(src, target, fstype, flags, data)
}

/// Write one sysctl in the container's own /proc (keys name files under /proc/sys with dots).
fn sysctl(key: &str, value: &str) -> Result<(), String> {
    if key.contains('/') || key.is_empty() {
        return Err(format!("sysctl {key:?}: not a key"));
    }
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()))
        .map_err(|e| format!("sysctl {key}={value}: {e}"))
}

/// Bind `path` on itself read-only (nothing there: nothing to do).
fn read_only(path: &str) -> Result<(), String> {
    match mount(Some(path), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None) {
        Ok(()) => {}
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(format!("read-only path {path}: {}", e.desc())),
    }
    let flags = MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
        | MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY;
    mount(Some(path), path, None, flags, None).map_err(|e| format!("read-only path {path}: {}", e.desc()))
}

/// Hide each of `paths`: a read-only empty tmpfs over a directory, `/dev/null` over a file.
fn mask(paths: &[String]) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let null = fs::symlink_metadata("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    if !null.file_type().is_char_device() || nix::sys::stat::major(std::os::unix::fs::MetadataExt::rdev(&null)) != 1 {
        return Err("/dev/null in the container is not the null device".into());
    }
    for p in paths {
        let Ok(meta) = fs::metadata(p) else { continue };
        let r = if meta.is_dir() {
            mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY, None)
        } else {
            mount(Some("/dev/null"), p, None, MsFlags::MS_BIND, None)
        };
        r.map_err(|e| format!("masking {p}: {}", e.desc()))?;
    }
    Ok(())
}

/// The command must exist and be executable before the container counts as created (as
/// libcontainer's executor checks): a name without a slash along the container's `PATH`.
fn validate(plan: &Plan) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let name = plan.argv[0].to_string_lossy().into_owned();
    let check = |p: &Path| -> Option<Result<(), String>> {
        let meta = fs::metadata(p).ok()?;
        if meta.is_dir() {
            return Some(Err(format!("exec: \"{name}\": is a directory")));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Some(Err(format!("exec: \"{name}\": permission denied")));
        }
        Some(Ok(()))
    };
    if name.contains('/') {
        return check(Path::new(&name)).unwrap_or_else(|| Err(format!("executable '{name}' not found")));
    }
    plan.path
        .iter()
        .find_map(|d| check(&Path::new(d).join(&name)).filter(|r| r.is_ok()))
        .unwrap_or_else(|| Err(format!("executable '{name}' not found in $PATH")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, ProcessBuilder, SpecBuilder};

    fn spec(ns: &[LinuxNamespaceType]) -> Spec {
        let namespaces = ns
            .iter()
            .map(|t| LinuxNamespaceBuilder::default().typ(*t).build().unwrap())
            .collect::<Vec<_>>();
        SpecBuilder::default()
            .process(
                ProcessBuilder::default()
                    .args(vec!["true".to_string()])
                    .build()
                    .unwrap(),
            )
            .linux(LinuxBuilder::default().namespaces(namespaces).build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn only_what_the_shim_does_itself_skips_libcontainer() {
        use LinuxNamespaceType::*;
        assert!(direct(&spec(&[Mount, Pid, Network, Ipc, Uts, Cgroup])));
        assert!(!direct(&spec(&[Mount, User])), "user namespaces");
        assert!(!direct(&spec(&[Mount, Time])), "time namespaces");
        let mut s = spec(&[Mount]);
        s.set_hooks(Some(Default::default()));
        assert!(!direct(&s), "hooks");
        let mut s = spec(&[Mount]);
        s.process_mut().as_mut().unwrap().set_apparmor_profile(Some("x".into()));
        assert!(!direct(&s), "apparmor");
        let mut s = spec(&[Mount]);
        s.linux_mut().as_mut().unwrap().set_seccomp(Some(Default::default()));
        assert!(!direct(&s), "a profile for libcontainer to compile");
        let mut s = spec(&[Mount]);
        s.set_linux(None);
        assert!(!direct(&s));
    }

    #[test]
    fn the_command_is_checked_before_the_container_counts_as_created() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("wharf-birth-{}", std::process::id()));
        fs::create_dir_all(d.join("bin")).unwrap();
        fs::write(d.join("bin/run"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(d.join("bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(d.join("bin/data"), "x").unwrap();
        fs::set_permissions(d.join("bin/data"), fs::Permissions::from_mode(0o644)).unwrap();
        let plan = |cmd: &str| {
            let p = ProcessBuilder::default()
                .args(vec![cmd.to_string()])
                .env(vec![format!("PATH=/nowhere:{}", d.join("bin").display())])
                .build()
                .unwrap();
            Plan::new(&p, true).unwrap()
        };
        assert_eq!(validate(&plan("run")), Ok(()));
        assert_eq!(validate(&plan(&d.join("bin/run").display().to_string())), Ok(()));
        assert_eq!(
            validate(&plan("nosuch")),
            Err("executable 'nosuch' not found in $PATH".into())
        );
        assert_eq!(
            validate(&plan("data")),
            Err("executable 'data' not found in $PATH".into())
        );
        let dir = d.join("bin").display().to_string();
        assert_eq!(validate(&plan(&dir)), Err(format!("exec: \"{dir}\": is a directory")));
        let data = d.join("bin/data").display().to_string();
        assert_eq!(
            validate(&plan(&data)),
            Err(format!("exec: \"{data}\": permission denied"))
        );
        fs::remove_dir_all(&d).unwrap();
    }
}
