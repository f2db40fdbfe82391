//! `wharf-shim`: one small, single-threaded process per container.
//!
//! wharfd starts it with the path of a `ShimConfig`. The shim leaves the daemon's session,
//! creates the container's init itself (`birth`; libcontainer for specs asking what only
//! libcontainer does) which then waits for `start`, prints one reply
//! line with the init's PID on stdout, and serves the daemon on a unix socket (see
//! `wharf-shim-proto`). It holds the container's stdio (pipes, or a pty master received over a
//! console socket), copies output into the json-file log and to attached clients, reaps the
//! init and any exec'd processes, and when the init is gone writes the exit record, answers
//! waiters and removes the container's cgroups and runtime state. Nothing here uses threads:
//! the shim and libcontainer fork without exec, which is only safe in a single-threaded caller.
//!
//! Here: creation and the event loop (poll over the socket, the signalfd, the container's and
//! the execs' output and the clients). `clients`: connections and replies; `requests`: one
//! method per request; `exit`: output, reaping and the end; `failure`: the kind of a failure
//! the reply carries; `birth`: the init created by the shim itself; `enter`: execs started by
//! the shim itself (`terminal`: theirs); `stdio`, `log`, `cgroups`,
//! `stats`, `named`, `payload`, `initerr` as ARCHITECTURE.md lists them.

mod birth;
mod cgroups;
mod enter;
mod failure;
mod initerr;
mod log;
mod named;
mod payload;
mod stats;
mod stdio;
mod terminal;

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::MsgFlags;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use wharf_shim_proto::{ExitInfo, FailureKind, Reply, ShimConfig};

use crate::log::JsonLog;
use crate::payload::{Filter, Payload};
use crate::stdio::{finish_tty, flush_stdin, make_stdio, Stdio};

mod clients;
mod exit;
mod requests;

/// A client whose unsent output passes this is too slow; it loses output rather than stall
/// the container.
const MAX_CLIENT_BUFFER: usize = 4 << 20;
/// After the init exits, how long to wait for its pipes to reach EOF (other holders of the
/// pipe, outside the container's PID namespace, may keep them open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

pub(crate) fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: wharf-shim CONFIG");
        std::process::exit(2);
    };
    // Own session: signals to the daemon's process group do not reach the shim.
    let _ = nix::unistd::setsid();
    // Not dumpable, and so neither is an exec's child (`enter`) while it still holds the
    // shim's descriptors inside the container's PID namespace: nothing in the container may
    // ptrace it or open its /proc/<pid>/fd. execve makes the container's processes dumpable
    // again as usual.
    // SAFETY: PR_SET_DUMPABLE takes an integer and reads no memory.
    unsafe { nix::libc::prctl(nix::libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // Ignored signals survive execve: whatever started the daemon (`nohup`, a shell) must not
    // decide which signals a container can trap. SIGPIPE keeps the Rust runtime's setting; each
    // container process resets it, and unblocks SIGCHLD, right before its exec (`payload`).
    for sig in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGPIPE)) {
        // SAFETY: single-threaded here; SIG_DFL installs no handler code.
        let _ = unsafe { signal::signal(sig, SigHandler::SigDfl) };
    }
    // libcontainer's diagnostics go to a handle on the shim's log (stderr as the daemon opened
    // it), never to fd 2 of a container process.
    if let Ok(log) = nix::unistd::dup(2) {
        // SAFETY: dup just returned this descriptor; nothing else owns it.
        let f = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(log) };
        let _ = fcntl(f.as_raw_fd(), FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
        tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(f))
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .init();
    }
    let cfg: ShimConfig = match fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            report(&Reply::err(format!("reading shim config {path}: {e}")));
            std::process::exit(1);
        }
    };
    match Shim::create(cfg) {
        Ok(mut shim) => {
            report(&Reply {
                pid: Some(shim.init.as_raw()),
                ..Reply::ok()
            });
            // From here the daemon talks over the socket only.
            if let Ok(null) = fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
                let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
            }
            shim.run();
        }
        Err(e) => {
            report(&Reply::fail(failure::kind_of(&e), e));
            std::process::exit(1);
        }
    }
}

/// The reply to a request a container that has ended cannot serve.
pub(crate) fn not_running() -> Reply {
    Reply::fail(FailureKind::NotRunning, "container is not running")
}

pub(crate) fn report(r: &Reply) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(&r.line());
    let _ = out.flush();
}

enum ClientKind {
    /// Waiting for its request line.
    Request,
    /// Gets the exit record.
    Waiter,
    /// Streams the container's stdio.
    Attach { stdin: bool, stdout: bool, stderr: bool },
    /// Streams an exec's stdio.
    Exec(String),
    /// Replied; closes once its output is sent.
    Closing,
}

struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: VecDeque<u8>,
    kind: ClientKind,
    read_closed: bool,
    dead: bool,
}

impl Client {
    pub(crate) fn send(&mut self, data: &[u8]) {
        if self.out.len() + data.len() <= MAX_CLIENT_BUFFER {
            self.out.extend(data);
        }
    }

    pub(crate) fn flush(&mut self) {
        while !self.out.is_empty() {
            let (a, _) = self.out.as_slices();
            match nix::sys::socket::send(self.sock.as_raw_fd(), a, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => continue,
                Err(_) => {
                    self.dead = true;
                    self.out.clear();
                    return;
                }
            }
        }
    }
}

struct Exec {
    pid: Pid,
    stdio: Stdio,
    exit: Option<i32>,
    client: u64,
}

struct Shim {
    cfg: ShimConfig,
    init: Pid,
    stdio: Stdio,
    log: Option<JsonLog>,
    listener: UnixListener,
    sigfd: SignalFd,
    clients: HashMap<u64, Client>,
    next_client: u64,
    execs: HashMap<String, Exec>,
    exit: Option<ExitInfo>,
    exited_at: Option<Instant>,
    /// The seccomp filter for the init and every exec.
    filter: Option<std::sync::Arc<Filter>>,
    /// What execs join, opened at the first and kept while the init lives.
    doors: Option<enter::Doors>,
    /// The init the shim created itself (`birth`); `None` when libcontainer did.
    born: Option<birth::Born>,
    /// libcgroups' manager of the container's cgroup, made once (see `cgroups::cgroup_manager`).
    manager: Option<libcgroups::common::AnyCgroupManager>,
    /// Frozen by a `Pause` (a user's, or a commit's) and not yet resumed: no exec starts (its
    /// process would freeze in the cgroup before it ran, with the shim waiting on it and so
    /// unable to take the `Resume`).
    paused: bool,
    /// The container's name=systemd cgroup, which the shim is in until it exits.
    systemd: named::Entered,
    /// Held until the shim exits (see `wharf_shim_proto::LOCK_FILE`).
    _lock: nix::fcntl::Flock<fs::File>,
}

#[derive(Clone, Copy)]
enum Src {
    Signal,
    Listen,
    Out(usize),
    Stdin,
    Client(u64),
    ExecOut(u64, usize),
    ExecStdin(u64),
}

pub(crate) fn status_code(st: WaitStatus) -> Option<(Pid, i32)> {
    match st {
        WaitStatus::Exited(p, c) => Some((p, c)),
        WaitStatus::Signaled(p, s, _) => Some((p, 128 + s as i32)),
        _ => None,
    }
}

impl Shim {
    pub(crate) fn create(cfg: ShimConfig) -> Result<Shim, String> {
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None).map_err(|e| e.to_string())?;
        let sigfd = SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| format!("signalfd: {e}"))?;
        let bundle = PathBuf::from(&cfg.bundle);
        std::env::set_current_dir(&bundle).map_err(|e| format!("bundle {}: {e}", bundle.display()))?;
        let lock = fs::File::create(bundle.join(wharf_shim_proto::LOCK_FILE))
            .map_err(|e| format!("{}: {e}", wharf_shim_proto::LOCK_FILE))
            .and_then(|f| {
                nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
                    .map_err(|(_, e)| format!("{}: {e}", wharf_shim_proto::LOCK_FILE))
            })?;
        let console = bundle.join("console.sock");
        let filter = cfg
            .seccomp
            .as_ref()
            .map(Filter::read)
            .transpose()?
            .map(std::sync::Arc::new);
        let spec =
            oci_spec::runtime::Spec::load(bundle.join("config.json")).map_err(|e| format!("config.json: {e}"))?;
        // The init is created in a name=systemd cgroup of the container's own (v1 hosts), so
        // the container's `/sys/fs/cgroup/systemd` is that cgroup, never a host hierarchy's.
        // The shim stays in it for its life, so every exec is created there too.
        let systemd = named::enter(&cfg.cgroup_path)?;
        let undo = |e: String| {
            named::leave(&systemd);
            named::remove(systemd.dir());
            e
        };
        let (stdio, init, born) = if birth::direct(&spec) {
            let (mut stdio, child, _) = make_stdio(cfg.tty, cfg.open_stdin, Path::new("")).map_err(undo)?;
            let io = if cfg.tty {
                birth::InitIo::Terminal
            } else {
                birth::InitIo::Pipes(child)
            };
            let mut born =
                birth::create(&spec, &bundle, &cfg.id, &cfg.cgroup_path, io, filter.as_deref()).map_err(|e| {
                    let removed = cgroups::cgroup_manager(&cfg.cgroup_path, &cfg.id).and_then(|m| cgroups::remove(&m));
                    if let Err(r) = removed {
                        eprintln!("wharf-shim: removing the cgroup: {r}");
                    }
                    undo(e)
                })?;
            if let Some(master) = born.master.take() {
                crate::stdio::adopt_tty(&mut stdio, master)?;
            }
            (stdio, born.init, Some(born))
        } else {
            let (mut stdio, child, console_l) = make_stdio(cfg.tty, cfg.open_stdin, &console).map_err(undo)?;
            let builder =
                builder_with_stdio(&cfg.id, &cfg.state_root, cfg.tty, &console, child, &filter, true).map_err(undo)?;
            let container = builder
                .as_init(&bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
                .map_err(|e| {
                    undo(initerr::explain(
                        &e.to_string(),
                        &bundle.join("shim.log"),
                        &bundle.join("config.json"),
                    ))
                })?;
            let init = container.pid().ok_or("libcontainer reported no init pid")?;
            finish_tty(&mut stdio, console_l, &console)?;
            (stdio, init, None)
        };
        if let Err(e) = loopback_up(init) {
            eprintln!("wharf-shim: loopback: {e}");
        }
        let log = if cfg.log_path.is_empty() {
            None
        } else {
            Some(
                JsonLog::open(PathBuf::from(&cfg.log_path), cfg.log_max_size, cfg.log_max_file)
                    .map_err(|e| format!("log {}: {e}", cfg.log_path))?,
            )
        };
        let _ = fs::remove_file(&cfg.socket);
        let listener = UnixListener::bind(&cfg.socket).map_err(|e| format!("bind {}: {e}", cfg.socket))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Shim {
            cfg,
            init,
            stdio,
            log,
            listener,
            sigfd,
            clients: HashMap::new(),
            next_client: 0,
            execs: HashMap::new(),
            exit: None,
            exited_at: None,
            filter,
            doors: None,
            manager: None,
            born,
            paused: false,
            systemd,
            _lock: lock,
        })
    }

    /// The container's cgroup manager: the one that made its limits, or one made now and kept.
    pub(crate) fn manager(&mut self) -> Result<&libcgroups::common::AnyCgroupManager, String> {
        if let Some(b) = &self.born {
            return Ok(&b.manager);
        }
        if self.manager.is_none() {
            self.manager = Some(cgroups::cgroup_manager(&self.cfg.cgroup_path, &self.cfg.id)?);
        }
        Ok(self.manager.as_ref().expect("made above"))
    }

    pub(crate) fn container(&self) -> Result<Container, String> {
        Container::load(Path::new(&self.cfg.state_root).join(&self.cfg.id)).map_err(|e| e.to_string())
    }

    pub(crate) fn run(&mut self) {
        loop {
            if let Some(at) = self.exited_at {
                if !self.stdio.open() || at.elapsed() > DRAIN_AFTER_EXIT {
                    break;
                }
            }
            let ready = self.poll_once();
            for (src, ev) in ready {
                self.handle(src, ev);
            }
            self.clients.retain(|_, c| !c.dead);
        }
        self.finish();
    }

    pub(crate) fn poll_once(&mut self) -> Vec<(Src, PollFlags)> {
        let mut srcs: Vec<(Src, BorrowedFd<'_>, PollFlags)> = vec![
            (Src::Signal, self.sigfd.as_fd(), PollFlags::POLLIN),
            (Src::Listen, self.listener.as_fd(), PollFlags::POLLIN),
        ];
        for (i, o) in self.stdio.out.iter().enumerate() {
            if let Some(fd) = o {
                srcs.push((Src::Out(i), fd.as_fd(), PollFlags::POLLIN));
            }
        }
        if let Some(fd) = &self.stdio.stdin {
            if !self.stdio.stdin_pending.is_empty() && self.stdio.tty.is_none() {
                srcs.push((Src::Stdin, fd.as_fd(), PollFlags::POLLOUT));
            }
        }
        let stdin_busy = self.stdio.stdin_pending.len() > 64 * 1024;
        for (id, c) in &self.clients {
            let mut fl = PollFlags::empty();
            let exec_busy = matches!(&c.kind, ClientKind::Exec(e)
                if self.execs.get(e).is_some_and(|x| x.stdio.stdin_pending.len() > 64 * 1024));
            let attach_busy = stdin_busy && matches!(c.kind, ClientKind::Attach { .. });
            if !(c.read_closed || attach_busy || exec_busy) {
                fl |= PollFlags::POLLIN;
            }
            if !c.out.is_empty() {
                fl |= PollFlags::POLLOUT;
            }
            if !fl.is_empty() {
                srcs.push((Src::Client(*id), c.sock.as_fd(), fl));
            }
        }
        for e in self.execs.values() {
            for (i, o) in e.stdio.out.iter().enumerate() {
                if let Some(fd) = o {
                    srcs.push((Src::ExecOut(e.client, i), fd.as_fd(), PollFlags::POLLIN));
                }
            }
            if let Some(fd) = &e.stdio.stdin {
                if !e.stdio.stdin_pending.is_empty() && e.stdio.tty.is_none() {
                    srcs.push((Src::ExecStdin(e.client), fd.as_fd(), PollFlags::POLLOUT));
                }
            }
        }
        let mut fds: Vec<PollFd<'_>> = srcs.iter().map(|(_, fd, fl)| PollFd::new(*fd, *fl)).collect();
        let timeout = if self.exited_at.is_some() {
            PollTimeout::from(100u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Vec::new(),
            Err(e) => {
                eprintln!("wharf-shim: poll: {e}");
                std::thread::sleep(Duration::from_millis(10));
                return Vec::new();
            }
        }
        srcs.iter()
            .zip(fds.iter())
            .filter_map(|((s, _, _), p)| p.revents().filter(|r| !r.is_empty()).map(|r| (*s, r)))
            .collect()
    }

    pub(crate) fn handle(&mut self, src: Src, ev: PollFlags) {
        match src {
            Src::Signal => {
                while let Ok(Some(_)) = self.sigfd.read_signal() {}
                self.reap();
            }
            Src::Listen => self.accept(),
            Src::Out(i) => self.read_output(i),
            Src::Stdin => flush_stdin(&mut self.stdio),
            Src::Client(id) => {
                if ev.contains(PollFlags::POLLOUT) {
                    if let Some(c) = self.clients.get_mut(&id) {
                        c.flush();
                    }
                }
                if ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                    self.read_client(id);
                }
                self.close_if_done(id);
            }
            Src::ExecOut(client, i) => self.read_exec_output(client, i),
            Src::ExecStdin(client) => {
                if let Some(e) = self.execs.values_mut().find(|e| e.client == client) {
                    flush_stdin(&mut e.stdio);
                }
            }
        }
    }
}

/// A libcontainer builder for the container (init or exec) with its stdio: the console socket
/// for a terminal, else the child ends of the pipes (stdin, stdout, stderr in that order).
pub(crate) fn builder_with_stdio(
    id: &str,
    state_root: &str,
    tty: bool,
    console: &Path,
    child: Vec<OwnedFd>,
    filter: &Option<std::sync::Arc<Filter>>,
    init: bool,
) -> Result<ContainerBuilder, String> {
    let mut builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(state_root)
        .map_err(|e| e.to_string())?
        .with_executor(Payload::new(filter.clone(), init));
    if tty {
        builder = builder.with_console_socket(Some(console));
    } else {
        let mut it = child.into_iter();
        let (i, o, e) = (it.next(), it.next(), it.next());
        builder = builder
            .with_stdin(i.expect("stdin"))
            .with_stdout(o.expect("stdout"))
            .with_stderr(e.expect("stderr"));
    }
    Ok(builder)
}

/// Bring `lo` up in the container's network namespace when it has one of its own (a new
/// namespace starts with loopback down). The shim is single-threaded, so it can step into the
/// namespace and back.
pub(crate) fn loopback_up(pid: Pid) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let theirs = format!("/proc/{pid}/ns/net");
    let own = fs::metadata("/proc/self/ns/net").map_err(|e| e.to_string())?;
    let other = fs::metadata(&theirs).map_err(|e| e.to_string())?;
    if own.ino() == other.ino() && own.dev() == other.dev() {
        return Ok(());
    }
    let back = fs::File::open("/proc/self/ns/net").map_err(|e| e.to_string())?;
    let target = fs::File::open(&theirs).map_err(|e| e.to_string())?;
    nix::sched::setns(&target, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
    let r = set_up("lo");
    nix::sched::setns(&back, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns back: {e}"))?;
    r
}

pub(crate) fn set_up(name: &str) -> Result<(), String> {
    use nix::libc;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags inside `req`, which lives for
    // the call; the socket fd is open.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(format!("SIOCGIFFLAGS: {}", io::Error::last_os_error()));
    }
    // SAFETY: the union member written by SIOCGIFFLAGS is ifru_flags.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(format!("SIOCSIFFLAGS: {}", io::Error::last_os_error()));
    }
    Ok(())
}
