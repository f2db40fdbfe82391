//! An exec's terminal, made inside its container (`enter`): the child opens the container's
//! own `/dev/pts/ptmx` once it is in the container's mount namespace, hands the master to the
//! shim over a socket pair, and makes the peer its controlling terminal and stdio. This is
//! what libcontainer does through its console socket, without the socket's path and accept.
//!
//! The container controls its `/dev`: the multiplexer is opened without following any
//! symlink or magic link, and must be a devpts file system's `ptmx` (character device 5:2) or
//! nothing is handed over. The peer is opened from the master (`TIOCGPTPEER`), never by a
//! path the container could have replaced.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::libc;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Open the container's pty multiplexer, checking it is one.
fn open_ptmx() -> Result<OwnedFd, String> {
    let path = c"/dev/pts/ptmx";
    /// `struct open_how` (openat2(2)).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `path` is NUL-terminated and `how` an open_how of the size passed; both outlive
    // the call, which only reads them.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(os_err("opening the container's /dev/pts/ptmx"));
    }
    // SAFETY: openat2 just returned this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let fs = nix::sys::statfs::fstatfs(&fd).map_err(|e| format!("fstatfs ptmx: {e}"))?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| format!("fstat ptmx: {e}"))?;
    let is_chr = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
    if fs.filesystem_type().0 != libc::DEVPTS_SUPER_MAGIC || !is_chr || st.st_rdev != libc::makedev(5, 2) {
        return Err("the container's /dev/pts/ptmx is not a pty multiplexer".into());
    }
    Ok(fd)
}

/// Make a terminal in the container (the caller is in its mount namespace and leads its own
/// session), send the master over `to_shim`, and make the peer this process's controlling
/// terminal and descriptors 0, 1 and 2, sized `size` (rows, columns) when given.
pub(crate) fn attach(to_shim: RawFd, size: Option<(u16, u16)>) -> Result<(), String> {
    let master = open_ptmx()?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int, which lives for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(os_err("unlocking the terminal"));
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor; it reads no memory.
    let peer = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if peer < 0 {
        return Err(os_err("opening the terminal's peer"));
    }
    // SAFETY: the ioctl just returned this descriptor; nothing else owns it.
    let peer = unsafe { OwnedFd::from_raw_fd(peer) };
    if let Some((rows, cols)) = size {
        crate::stdio::resize(std::os::fd::AsFd::as_fd(&peer), rows, cols)?;
    }
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        to_shim,
        &[IoSlice::new(b"t")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("handing the terminal over: {e}"))?;
    drop(master);
    // SAFETY: TIOCSCTTY takes an int argument and reads no memory.
    if unsafe { libc::ioctl(peer.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(os_err("making the terminal the controlling one"));
    }
    for to in 0..3 {
        // SAFETY: dup2 onto 0..2 replaces the shim's stdio in this process only.
        if unsafe { libc::dup2(peer.as_raw_fd(), to) } < 0 {
            return Err(os_err("terminal stdio"));
        }
    }
    Ok(())
}
