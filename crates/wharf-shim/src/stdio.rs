//! The stdio of a container's processes on the shim's side: pipes or a pty master received
//! over libcontainer's console socket, non-blocking reads of their output and writes of what
//! clients send to their stdin, and terminal resizes.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

pub fn set_nonblocking(fd: BorrowedFd<'_>) {
    if let Ok(fl) = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd.as_raw_fd(),
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK),
        );
    }
}

pub fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Receive the pty master that libcontainer's init sends to a console socket.
pub fn receive_console(listener: &UnixListener) -> Result<OwnedFd, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return Err(format!("console socket: {e}")),
        }
    };
    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
    receive_fd(conn.as_raw_fd(), MsgFlags::empty()).map_err(|e| format!("console socket: {e}"))
}

/// Receive one descriptor sent with SCM_RIGHTS on the socket `sock` (`flags`: e.g.
/// `MSG_DONTWAIT` when it must already be there).
pub fn receive_fd(sock: RawFd, flags: MsgFlags) -> Result<OwnedFd, String> {
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), flags | MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| e.to_string())?;
    let mut got = None;
    for c in msg.cmsgs().map_err(|e| e.to_string())? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: SCM_RIGHTS just installed this descriptor in our table; we own it.
                let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                // The first is the one; any more are closed as they drop.
                got.get_or_insert(fd);
            }
        }
    }
    got.ok_or_else(|| "no terminal received".to_string())
}

/// The stdio of a process whose terminal's master is `master`.
pub fn tty_stdio(master: OwnedFd) -> Result<Stdio, String> {
    set_nonblocking(master.as_fd());
    Ok(Stdio {
        stdin: Some(master.try_clone().map_err(|e| e.to_string())?),
        stdin_pending: Vec::new(),
        stdin_close: false,
        out: [Some(master.try_clone().map_err(|e| e.to_string())?), None],
        tty: Some(master),
    })
}

nix::ioctl_write_ptr_bad!(set_winsize, nix::libc::TIOCSWINSZ, nix::libc::winsize);

pub fn resize(fd: BorrowedFd<'_>, height: u16, width: u16) -> Result<(), String> {
    let ws = nix::libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call.
    unsafe { set_winsize(fd.as_raw_fd(), &ws) }.map_err(|e| format!("resize: {e}"))?;
    Ok(())
}

/// The stdio of one process (the init or an exec).
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdin_pending: Vec<u8>,
    pub stdin_close: bool,
    /// stdout (or the pty master) and stderr read ends; `None` once at EOF.
    pub out: [Option<OwnedFd>; 2],
    pub tty: Option<OwnedFd>,
}

impl Stdio {
    /// No stdio yet (a terminal still to come).
    pub fn none() -> Stdio {
        Stdio {
            stdin: None,
            stdin_pending: Vec::new(),
            stdin_close: false,
            out: [None, None],
            tty: None,
        }
    }

    pub fn open(&self) -> bool {
        self.out.iter().any(|o| o.is_some())
    }
}

/// Everything needed to create a process's stdio: our ends, and the ends for the child. A
/// terminal comes over a console socket bound at `console_path`, or, when that is empty, from
/// the shim's own init later (`adopt_tty`).
pub fn make_stdio(
    tty: bool,
    stdin: bool,
    console_path: &Path,
) -> Result<(Stdio, Vec<OwnedFd>, Option<UnixListener>), String> {
    if tty && console_path.as_os_str().is_empty() {
        return Ok((Stdio::none(), Vec::new(), None));
    }
    if tty {
        // Bound by its short name in the bundle (the shim's working directory): socket paths
        // are limited to 108 bytes and bundles can sit deep.
        let short = console_path.file_name().map(PathBuf::from).unwrap_or_default();
        let _ = fs::remove_file(&short);
        let l = UnixListener::bind(&short).map_err(|e| format!("console socket: {e}"))?;
        return Ok((Stdio::none(), Vec::new(), Some(l)));
    }
    let (in_r, in_w) = if stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        let null = fs::File::open("/dev/null").map_err(|e| e.to_string())?;
        (OwnedFd::from(null), None)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    for fd in [Some(&out_r), Some(&err_r), in_w.as_ref()].into_iter().flatten() {
        set_nonblocking(fd.as_fd());
    }
    Ok((
        Stdio {
            stdin: in_w,
            stdin_pending: Vec::new(),
            stdin_close: false,
            out: [Some(out_r), Some(err_r)],
            tty: None,
        },
        vec![in_r, out_w, err_w],
        None,
    ))
}

/// Complete the tty side once libcontainer has created the process.
pub fn finish_tty(stdio: &mut Stdio, listener: Option<UnixListener>, console_path: &Path) -> Result<(), String> {
    if let Some(l) = listener {
        let master = receive_console(&l);
        let _ = fs::remove_file(console_path);
        adopt_tty(stdio, master?)?;
    }
    Ok(())
}

/// Make the terminal whose master is `master` the process's stdio.
pub fn adopt_tty(stdio: &mut Stdio, master: OwnedFd) -> Result<(), String> {
    let t = tty_stdio(master)?;
    stdio.stdin = t.stdin;
    stdio.tty = t.tty;
    stdio.out = t.out;
    Ok(())
}

/// Read a non-blocking output pipe (or pty master) until it would block, handing each chunk to
/// `sink`; at EOF or an error (EIO: the pty's other side is gone) the slot is closed.
pub fn drain(slot: &mut Option<OwnedFd>, mut sink: impl FnMut(&[u8])) {
    let mut buf = [0u8; 32 * 1024];
    while let Some(fd) = slot {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => *slot = None,
            Ok(n) => sink(&buf[..n]),
            Err(Errno::EAGAIN) => return,
            Err(Errno::EINTR) => continue,
            Err(_) => *slot = None,
        }
    }
}

/// Write what is pending to a process's stdin without blocking; close it when asked and done.
pub fn flush_stdin(s: &mut Stdio) {
    while let Some(fd) = &s.stdin {
        if s.stdin_pending.is_empty() {
            break;
        }
        match nix::unistd::write(fd, &s.stdin_pending) {
            Ok(n) => {
                s.stdin_pending.drain(..n);
            }
            Err(Errno::EAGAIN) => return,
            Err(Errno::EINTR) => continue,
            Err(_) => {
                s.stdin_pending.clear();
                s.stdin = None;
                return;
            }
        }
    }
    if s.stdin_close && s.stdin_pending.is_empty() {
        if s.tty.is_some() {
            // EOF on a terminal is ^D at the start of a line.
            if let Some(fd) = &s.stdin {
                let _ = nix::unistd::write(fd, &[4u8]);
            }
        } else {
            s.stdin = None;
        }
    }
}
