//! An exec started straight from the shim, without libcontainer's tenant builder: the shim
//! forks once into the container's PID namespace and the child joins the container's cgroups
//! and namespaces, becomes the process's user with its capabilities, loads the container's
//! seccomp filter and executes the command.
//!
//! libcontainer's tenant path costs an exec several milliseconds: it reloads the container's
//! state and spec, forks an intermediate process that builds a cgroup manager (reading
//! `/proc/self/mountinfo` over and over through its procfs checks) and clones the process
//! from there. What an exec joins never changes while the container runs, so the shim opens it
//! once, at the container's first exec (`Doors`): the init's namespaces that differ from the
//! shim's, and the `cgroup.procs` of the container's cgroup in every hierarchy (found under
//! the container's cgroup path the daemon chose, never from anything the container can
//! write). The child does what libcontainer's init does for an exec, in its order, with
//! libcontainer's own functions for ids, rlimits and capabilities: new session, stdio, rlimits,
//! umask, working directory, supplementary groups, user and group, capabilities, no_new_privs,
//! then the payload's signal state, filter and bounding-set drop (`payload`), then `execve`
//! along the container's `PATH`. Every descriptor but its stdio is closed before it runs
//! anything of the container's; the shim is not dumpable (`main`), so neither is the child
//! before its `execve`, and nothing in the container can open the descriptors it still holds.
//! A failure before `execve` comes back as text over a close-on-exec pipe; a successful
//! `execve` closes it empty.
//!
//! A terminal is made in the container by the child (`terminal`). Processes asking for what
//! this path does not set (an AppArmor profile, an SELinux label, I/O priority, a scheduler,
//! CPU affinity) still go through libcontainer (`direct`).

use std::convert::Infallible;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use libcontainer::capabilities;
use libcontainer::syscall::syscall::create_syscall;
use nix::errno::Errno;
use nix::libc;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimit, Process};

use crate::payload::{child_signals, drop_unbounded, Filter};

/// The namespaces an exec joins besides the PID namespace, the user namespace first (joining
/// it gives the capabilities the others need) and the mount namespace last.
const NAMESPACES: [(&str, CloneFlags); 6] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// What every exec of one container joins, opened at its first exec.
pub(crate) struct Doors {
    /// The init's namespaces that are not the shim's, in joining order.
    ns: Vec<(CloneFlags, OwnedFd)>,
    /// The init's PID namespace and the shim's own, when they differ.
    pid: Option<(OwnedFd, OwnedFd)>,
    /// The file that joins the container's cgroup in each hierarchy (see `cgroup_mounts`).
    cgroups: Vec<OwnedFd>,
    /// The container's cgroup directory in the v2 tree, which the child is cloned straight
    /// into (`CLONE_INTO_CGROUP`: no migration, no threadgroup lock); its `cgroup.procs` is
    /// the last of `cgroups`, used only when the kernel cannot (before 5.7).
    into: Option<OwnedFd>,
}

fn open_ro(path: &str) -> Result<OwnedFd, String> {
    fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| format!("{path}: {e}"))
}

fn same_file(a: &OwnedFd, b: &OwnedFd) -> Result<bool, String> {
    let st = |fd: &OwnedFd| nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| format!("fstat: {e}"));
    let (x, y) = (st(a)?, st(b)?);
    Ok(x.st_dev == y.st_dev && x.st_ino == y.st_ino)
}

/// The mount points of the cgroup file systems (v1 hierarchies and the v2 tree), from the
/// shim's mount table.
/// The mount points of the cgroup file systems, each with the file a single-threaded process
/// joins it by: `tasks` in a v1 hierarchy, `cgroup.procs` in the v2 tree.
///
/// A process writing `0` to a v1 `tasks` file moves its one thread without the kernel's
/// global threadgroup lock, whose write side waits for an RCU grace period (several
/// milliseconds per exec on an otherwise idle host); `cgroup.procs` takes it.
pub(crate) fn cgroup_mounts(mountinfo: &str) -> Vec<(&str, &'static str)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let mountpoint = left.split(' ').nth(4)?;
            match fstype {
                "cgroup" => Some((mountpoint, "tasks")),
                "cgroup2" => Some((mountpoint, "cgroup.procs")),
                _ => None,
            }
        })
        .collect()
}

impl Doors {
    /// Open the namespaces of `init` and the container's cgroups at `cgroup_path` (relative to
    /// each hierarchy's root). An exec must land in the container's cgroups: with none found
    /// it fails rather than run outside its limits.
    pub(crate) fn open(init: Pid, cgroup_path: &str) -> Result<Doors, String> {
        let mut ns = Vec::new();
        for (name, flag) in NAMESPACES {
            let theirs = open_ro(&format!("/proc/{init}/ns/{name}"))?;
            if !same_file(&theirs, &open_ro(&format!("/proc/self/ns/{name}"))?)? {
                ns.push((flag, theirs));
            }
        }
        let (theirs, own) = (open_ro(&format!("/proc/{init}/ns/pid"))?, open_ro("/proc/self/ns/pid")?);
        let pid = (!same_file(&theirs, &own)?).then_some((theirs, own));
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("mountinfo: {e}"))?;
        let rel = cgroup_path.trim_start_matches('/');
        let (mut cgroups, mut v2) = (Vec::new(), None);
        for (m, file) in cgroup_mounts(&mountinfo) {
            let dir = Path::new(m).join(rel);
            let procs = dir.join(file);
            match fs::OpenOptions::new().write(true).open(&procs) {
                Ok(f) if v2.is_none() && file == "cgroup.procs" => v2 = Some((dir, OwnedFd::from(f))),
                Ok(f) => cgroups.push(OwnedFd::from(f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", procs.display())),
            }
        }
        let into = match v2 {
            Some((dir, procs)) => {
                let d = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY)
                    .open(&dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                cgroups.push(procs);
                Some(OwnedFd::from(d))
            }
            None => None,
        };
        if rel.is_empty() || cgroups.is_empty() {
            return Err(format!("no cgroup of the container at {cgroup_path}"));
        }
        Ok(Doors { ns, pid, cgroups, into })
    }
}

/// Whether `p` can start on this path: nothing libcontainer alone applies.
pub(crate) fn direct(p: &Process) -> bool {
    p.apparmor_profile().is_none()
        && p.selinux_label().is_none()
        && p.io_priority().is_none()
        && p.scheduler().is_none()
        && p.exec_cpu_affinity().is_none()
}

/// Everything the child needs, made before the fork.
pub(crate) struct Plan {
    pub(crate) argv: Vec<CString>,
    pub(crate) env: Vec<String>,
    pub(crate) path: Vec<String>,
    pub(crate) cwd: CString,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) groups: Vec<Gid>,
    pub(crate) umask: Option<u32>,
    pub(crate) rlimits: Vec<PosixRlimit>,
    pub(crate) oom_score_adj: Option<i32>,
    pub(crate) caps: Option<LinuxCapabilities>,
    pub(crate) no_new_privs: bool,
    /// The child's parent as it sees it: the shim, or 0 from inside another PID namespace.
    pub(crate) parent: Pid,
}

fn cstring(s: &str, what: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} holds a NUL byte"))
}

impl Plan {
    pub(crate) fn new(p: &Process, other_pid_ns: bool) -> Result<Plan, String> {
        let args = p.args().as_deref().unwrap_or_default();
        if args.is_empty() {
            return Err("no command to execute".into());
        }
        let argv = args
            .iter()
            .map(|a| cstring(a, "an argument"))
            .collect::<Result<_, _>>()?;
        let env = p.env().clone().unwrap_or_default();
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .map(|v| {
                v.split(':')
                    .map(|d| if d.is_empty() { ".".into() } else { d.to_string() })
                    .collect()
            })
            .unwrap_or_default();
        let user = p.user();
        Ok(Plan {
            argv,
            env,
            path,
            cwd: cstring(&p.cwd().to_string_lossy(), "the working directory")?,
            uid: user.uid(),
            gid: user.gid(),
            groups: user
                .additional_gids()
                .iter()
                .flatten()
                .map(|g| Gid::from_raw(*g))
                .collect(),
            umask: user.umask(),
            rlimits: p.rlimits().clone().unwrap_or_default(),
            oom_score_adj: p.oom_score_adj(),
            caps: p.capabilities().clone(),
            no_new_privs: p.no_new_privileges().unwrap_or(false),
            parent: if other_pid_ns { Pid::from_raw(0) } else { Pid::this() },
        })
    }
}

/// An exec's stdio: the child ends of three pipes (stdin, stdout, stderr), or a terminal the
/// child makes in the container (`terminal`), sized (rows, columns) when given.
pub(crate) enum ExecIo<'a> {
    Pipes(&'a [OwnedFd]),
    Terminal(Option<(u16, u16)>),
}

/// The same, as the child sees it.
enum ChildIo {
    Pipes([RawFd; 3]),
    Terminal(RawFd, Option<(u16, u16)>),
}

/// Start `p` in the container with `io` as its first descriptors. Returns its PID (in the
/// shim's PID namespace) once it has executed its command, with its terminal's master for a
/// terminal, or why it could not.
pub(crate) fn spawn(
    doors: &Doors,
    p: &Process,
    io: ExecIo<'_>,
    filter: Option<&Filter>,
) -> Result<(Pid, Option<OwnedFd>), String> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let plan = Plan::new(p, doors.pid.is_some())?;
    let (child_io, shim_end, _child_end) = match io {
        ExecIo::Pipes([stdin, stdout, stderr]) => (
            ChildIo::Pipes([stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()]),
            None,
            None,
        ),
        ExecIo::Pipes(_) => return Err("an exec needs three stdio descriptors".into()),
        ExecIo::Terminal(size) => {
            let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                .map_err(|e| format!("socketpair: {e}"))?;
            (ChildIo::Terminal(b.as_raw_fd(), size), Some(a), Some(b))
        }
    };
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    if let Some((theirs, _)) = &doors.pid {
        nix::sched::setns(theirs, CloneFlags::CLONE_NEWPID).map_err(|e| format!("joining the PID namespace: {e}"))?;
    }
    let (forked, cloned_into) = fork_into(0, doors.into.as_ref());
    if let Ok(ForkResult::Child) = forked {
        drop(err_r);
        // The v2 cgroup is already the child's when it was cloned there.
        let join = if cloned_into {
            &doors.cgroups[..doors.cgroups.len() - 1]
        } else {
            &doors.cgroups[..]
        };
        child_main(doors, join, &plan, child_io, err_w, filter)
    }
    if let Some((_, own)) = &doors.pid {
        // The shim's later children (libcontainer's, the next exec's) start in its own again.
        if let Err(e) = nix::sched::setns(own, CloneFlags::CLONE_NEWPID) {
            eprintln!("wharf-shim: back to the shim's PID namespace: {e}");
        }
    }
    let pid = match forked.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { child } => child,
        ForkResult::Child => unreachable!("the child never returns from child_main"),
    };
    drop(err_w);
    match outcome(err_r, SET_UP_LIMIT) {
        Ok(msg) if msg.is_empty() => match shim_end {
            // Sent before the child's execve closed its pipe: already there.
            Some(sock) => crate::stdio::receive_fd(sock.as_raw_fd(), nix::sys::socket::MsgFlags::MSG_DONTWAIT)
                .map(|master| (pid, Some(master)))
                .map_err(|e| {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    format!("the exec's terminal: {e}")
                }),
            None => Ok((pid, None)),
        },
        Ok(msg) => {
            let _ = nix::sys::wait::waitpid(pid, None);
            Err(msg)
        }
        Err(e) => {
            // Not waited for here: a frozen child dies only once thawed. The shim's reaping
            // collects it whenever it ends.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            Err(e)
        }
    }
}

/// How long the shim waits for an exec's child to reach its `execve`. The shim serves nothing
/// else meanwhile, so a child stuck on the way (a working directory on a file system that
/// never answers, a cgroup frozen behind the shim's back) is killed rather than let it hang
/// the container's supervisor.
pub(crate) const SET_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the child wrote before its pipe closed (nothing: it executed its command), or an
/// error when it took longer than `limit`.
pub(crate) fn outcome(err_r: OwnedFd, limit: std::time::Duration) -> Result<String, String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + limit;
    let mut msg = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(err_r.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if std::time::Instant::now() >= deadline => {
                return Err(format!("the exec did not start within {} s", limit.as_secs()));
            }
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for the exec: {e}")),
        }
        match nix::unistd::read(err_r.as_raw_fd(), &mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&msg).into_owned()),
            Ok(n) => msg.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(format!("waiting for the exec: {e}")),
        }
    }
}

/// Fork, or clone straight into the v2 cgroup `into` when there is one and the kernel can
/// (`CLONE_INTO_CGROUP`, Linux 5.7); the second value says whether it did. `flags` are more
/// `CLONE_*` flags (new namespaces for a container's init), 0 for a plain fork.
pub(crate) fn fork_into(flags: u64, into: Option<&OwnedFd>) -> (nix::Result<ForkResult>, bool) {
    let result = |r: libc::c_long| match r {
        0 => Ok(ForkResult::Child),
        r if r > 0 => Ok(ForkResult::Parent {
            child: Pid::from_raw(r as i32),
        }),
        _ => Err(Errno::last()),
    };
    if let Some(dir) = into {
        /// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2).
        #[repr(C)]
        #[derive(Default)]
        struct CloneArgs {
            flags: u64,
            pidfd: u64,
            child_tid: u64,
            parent_tid: u64,
            exit_signal: u64,
            stack: u64,
            stack_size: u64,
            tls: u64,
            set_tid: u64,
            set_tid_size: u64,
            cgroup: u64,
        }
        const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
        let args = CloneArgs {
            flags: flags | CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: dir.as_raw_fd() as u64,
            ..CloneArgs::default()
        };
        // SAFETY: as fork (no stack given: the child runs on a copy of this one); the shim is
        // single-threaded, so no lock is held by a thread the child lacks. `args` outlives
        // the call and the kernel only reads it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match result(r) {
            // Older kernels: fork, and the child writes cgroup.procs.
            Err(Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL) => {}
            r => return (r, true),
        }
    }
    if flags == 0 {
        // SAFETY: the shim is single-threaded (see `main`), so the child may allocate and run
        // anything until its execve; it never returns to the shim's code.
        return (unsafe { nix::unistd::fork() }, false);
    }
    // SAFETY: as fork: with no new stack (0) the child runs on a copy of this one, and the
    // zero pointers ask the kernel to write no thread IDs. The shim is single-threaded.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as u64,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    (result(r), false)
}

/// The child: report why it could not execute, if it could not, and end. A panic ends it
/// too: it must never unwind back into the shim's code.
fn child_main(doors: &Doors, join: &[OwnedFd], plan: &Plan, io: ChildIo, err_w: OwnedFd, filter: Option<&Filter>) -> ! {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child(doors, join, plan, io, err_w.as_raw_fd(), filter)
    }));
    let e = match r {
        Ok(Err(e)) => e,
        Err(_) => "the exec's set-up panicked".to_string(),
    };
    let _ = nix::unistd::write(&err_w, e.as_bytes());
    // SAFETY: _exit ends the process without running the shim's destructors or atexit
    // handlers, which belong to the parent.
    unsafe { libc::_exit(127) }
}

pub(crate) fn errno(what: &str) -> impl Fn(Errno) -> String + '_ {
    move |e| format!("{what}: {}", e.desc())
}

/// Close every descriptor from 3 up except those in `keep`.
fn close_all_but(keep: &[RawFd]) -> Result<(), String> {
    let close_range = |lo: RawFd, hi: RawFd| {
        if lo > hi {
            return 0;
        }
        // SAFETY: close_range only closes descriptors; nothing in this process uses those
        // between the kept ones afterwards.
        unsafe { libc::syscall(libc::SYS_close_range, lo as libc::c_uint, hi as libc::c_uint, 0) }
    };
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    let mut lo = 3;
    for k in keep.into_iter().filter(|k| *k >= 3) {
        if close_range(lo, k - 1) < 0 {
            return Err(format!("closing descriptors: {}", std::io::Error::last_os_error()));
        }
        lo = k + 1;
    }
    if close_range(lo, RawFd::MAX) < 0 {
        return Err(format!("closing descriptors: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn child(
    doors: &Doors,
    join: &[OwnedFd],
    plan: &Plan,
    io: ChildIo,
    err_w: RawFd,
    filter: Option<&Filter>,
) -> Result<Infallible, String> {
    for fd in join {
        nix::unistd::write(fd, b"0").map_err(errno("joining the container's cgroup"))?;
    }
    if let Some(adj) = plan.oom_score_adj {
        // Still in the shim's mount namespace: this is the host's /proc.
        fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| format!("oom_score_adj: {e}"))?;
    }
    for (flag, fd) in &doors.ns {
        nix::sched::setns(fd, *flag).map_err(errno("joining a namespace"))?;
    }
    nix::unistd::setsid().map_err(errno("setsid"))?;
    let stdio = match io {
        ChildIo::Pipes(fds) => fds,
        ChildIo::Terminal(to_shim, size) => {
            crate::terminal::attach(to_shim, size)?;
            [0, 1, 2]
        }
    };
    // The child ends are descriptors above 2 (the shim's own 0..2 are open), so no dup2
    // overwrites one still to be copied.
    for (to, from) in stdio.into_iter().enumerate() {
        let to = to as RawFd;
        if from == to {
            nix::fcntl::fcntl(from, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
                .map_err(errno("stdio"))?;
            continue;
        }
        // SAFETY: dup2 onto 0..2 replaces the shim's stdio in this process only.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(format!("stdio: {}", std::io::Error::last_os_error()));
        }
    }
    let envp = become_user(plan, &[err_w])?;
    run(plan, &envp, filter)
}

/// Become the process `plan` describes, as root in the container's namespaces and root
/// directory: every descriptor from 3 up but `keep` closed, rlimits, umask, working directory,
/// supplementary groups, user and group, capabilities, no_new_privs. Returns its environment.
pub(crate) fn become_user(plan: &Plan, keep: &[RawFd]) -> Result<Vec<CString>, String> {
    close_all_but(keep)?;
    let sys = create_syscall();
    for r in &plan.rlimits {
        sys.set_rlimit(r).map_err(|e| format!("rlimit {:?}: {e}", r.typ()))?;
    }
    if let Some(m) = plan.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m));
    }
    // As root first (a directory only the container's root may enter); once more as the user
    // when root may not (a root-squashing mount).
    let chdir_failed = |e: Errno| {
        format!(
            "chdir to cwd ({:?}) set in config.json failed: {}",
            plan.cwd.to_string_lossy(),
            e.desc().to_lowercase()
        )
    };
    let chdir_later = match nix::unistd::chdir(plan.cwd.as_c_str()) {
        Ok(()) => false,
        Err(Errno::EPERM) => true,
        Err(e) => return Err(chdir_failed(e)),
    };
    let env = with_home(&plan.env, plan.uid);
    if !plan.groups.is_empty() {
        sys.set_groups(&plan.groups)
            .map_err(|e| format!("supplementary groups: {e}"))?;
    }
    sys.set_id(Uid::from_raw(plan.uid), Gid::from_raw(plan.gid))
        .map_err(|e| format!("user {}:{}: {e}", plan.uid, plan.gid))?;
    capabilities::reset_effective(sys.as_ref()).map_err(|e| format!("capabilities: {e}"))?;
    if let Some(c) = &plan.caps {
        capabilities::drop_privileges(c, sys.as_ref()).map_err(|e| format!("capabilities: {e}"))?;
    }
    if chdir_later {
        nix::unistd::chdir(plan.cwd.as_c_str()).map_err(chdir_failed)?;
    }
    nix::unistd::getcwd().map_err(errno("the working directory is outside the container"))?;
    if plan.no_new_privs {
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integers and reads no memory.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(format!("no_new_privs: {}", std::io::Error::last_os_error()));
        }
    }
    env.iter().map(|e| cstring(e, "the environment")).collect()
}

/// The last steps before the payload, with as little as possible between them and its
/// `execve`: the signal state, the parent check, the seccomp filter, the bounding-set drop.
pub(crate) fn run(plan: &Plan, envp: &[CString], filter: Option<&Filter>) -> Result<Infallible, String> {
    child_signals()?;
    if nix::unistd::getppid() != plan.parent {
        return Err("the shim is gone".into());
    }
    if let Some(f) = filter {
        f.load()?;
    }
    drop_unbounded()?;
    execute(&plan.argv, envp, &plan.path)
}

/// `HOME` from the container's `/etc/passwd` when the environment has none (as
/// libcontainer and runc), read as plain text (no name service modules of the container's).
fn with_home(env: &[String], uid: u32) -> Vec<String> {
    let mut env = env.to_vec();
    if env
        .iter()
        .any(|e| e.strip_prefix("HOME=").is_some_and(|v| !v.is_empty()))
    {
        return env;
    }
    let mut text = String::new();
    if let Ok(f) = fs::File::open("/etc/passwd") {
        let _ = f.take(4 << 20).read_to_string(&mut text);
    }
    env.retain(|e| !e.starts_with("HOME="));
    env.push(format!("HOME={}", home_in(&text, uid).unwrap_or("/")));
    env
}

/// The home directory of `uid` in the text of a passwd file.
fn home_in(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[2].parse() == Ok(uid)).then(|| f[5])
    })
}

/// `execve` the command, along the container's `PATH` when its name has no slash (as
/// `execvp`: a directory that refuses goes on to the next, and only if none has it is it not
/// found).
pub(crate) fn execute(argv: &[CString], envp: &[CString], path: &[String]) -> Result<Infallible, String> {
    let name = argv[0].to_string_lossy().into_owned();
    let fail = |e: Errno| format!("exec: \"{name}\": {}", e.desc().to_lowercase());
    if name.contains('/') {
        return Err(fail(nix::unistd::execve(&argv[0], argv, envp).unwrap_err()));
    }
    let mut denied = None;
    for dir in path {
        let Ok(full) = CString::new(format!("{dir}/{name}")) else {
            continue;
        };
        match nix::unistd::execve(&full, argv, envp).unwrap_err() {
            Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG => {}
            e @ (Errno::EACCES | Errno::EPERM) => denied = Some(e),
            e => return Err(fail(e)),
        }
    }
    Err(match denied {
        Some(e) => fail(e),
        None => format!("executable '{name}' not found in $PATH"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_mounts_are_read_from_the_mount_table() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                  32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,name=systemd\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                  50 23 0:40 / /mnt/x rw - ext4 /dev/vda rw";
        assert_eq!(
            cgroup_mounts(mi),
            [
                ("/sys/fs/cgroup/cpu", "tasks"),
                ("/sys/fs/cgroup/systemd", "tasks"),
                ("/sys/fs/cgroup/unified", "cgroup.procs")
            ]
        );
    }

    #[test]
    fn the_shim_waits_for_a_child_only_so_long() {
        let ms = std::time::Duration::from_millis;
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        drop(w);
        assert_eq!(outcome(r, ms(500)), Ok(String::new()));
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        nix::unistd::write(&w, b"exec: \"x\": permission denied").unwrap();
        drop(w);
        assert_eq!(outcome(r, ms(500)).unwrap(), "exec: \"x\": permission denied");
        let (r, _w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let started = std::time::Instant::now();
        assert!(outcome(r, ms(50)).unwrap_err().contains("did not start"));
        assert!(started.elapsed() < ms(2000));
    }

    #[test]
    fn home_comes_from_the_environment_or_passwd() {
        let env = vec!["PATH=/bin".to_string(), "HOME=/root".to_string()];
        assert_eq!(with_home(&env, 0), env);
        let passwd = "root:x:0:0:root:/root:/bin/sh\nbad line\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
        assert_eq!(home_in(passwd, 65534), Some("/nonexistent"));
        assert_eq!(home_in(passwd, 0), Some("/root"));
        assert_eq!(home_in(passwd, 1000), None);
    }

    #[test]
    fn profiles_go_through_libcontainer() {
        let mut p = Process::default();
        p.set_terminal(Some(true));
        assert!(direct(&p));
        p.set_apparmor_profile(Some("docker-default".into()));
        assert!(!direct(&p));
    }
}
