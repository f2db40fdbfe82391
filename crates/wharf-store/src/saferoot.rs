//! Path operations confined to one directory tree. Every lookup goes through `openat2(2)` with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, so `..`, absolute symlinks and `/proc/self/fd`
//! tricks all resolve inside the root; the final component of a path is never followed, so a
//! symlink planted by one tar entry cannot redirect the write of a later one onto the host.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};

/// An open directory that confines every path operation to itself.
pub struct SafeRoot {
    fd: OwnedFd,
    path: PathBuf,
}

/// Lexically clean a tar name into components relative to the root. Absolute names are made
/// relative (as Docker does); a `..` that would climb above the root is refused.
pub fn clean_relative(name: &Path) -> Result<Vec<&OsStr>, &'static str> {
    let mut out: Vec<&OsStr> = Vec::new();
    for c in name.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err("path escapes the root");
                }
            }
            Component::Normal(s) => out.push(s),
        }
    }
    Ok(out)
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

impl SafeRoot {
    /// Open `path` as a root. The path itself is trusted (it is ours, under the data root).
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rfs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(SafeRoot {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The host path of the root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's own descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Open the directory named by `comps` (relative to the root, symlinks resolved inside the
    /// root) with `flags`.
    pub fn open_dir(&self, comps: &[&OsStr], flags: OFlags) -> io::Result<OwnedFd> {
        let rel = join(comps);
        Ok(rfs::openat2(
            &self.fd,
            rel.as_path(),
            flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve_flags(),
        )?)
    }

    /// Open (resolving inside the root) any path for reading, following symlinks inside the root.
    pub fn open_in_root(&self, comps: &[&OsStr], flags: OFlags) -> io::Result<OwnedFd> {
        let rel = join(comps);
        Ok(rfs::openat2(
            &self.fd,
            rel.as_path(),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            resolve_flags(),
        )?)
    }

    /// Like [`open_dir`](Self::open_dir) with `O_PATH`, creating missing directories (mode
    /// 0755) on the way, each inside the directory already resolved.
    pub fn mkdir_all(&self, comps: &[&OsStr]) -> io::Result<OwnedFd> {
        match self.open_dir(comps, OFlags::PATH) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut cur = self.open_dir(&[], OFlags::PATH)?;
        for i in 0..comps.len() {
            match self.open_dir(&comps[..=i], OFlags::PATH) {
                Ok(fd) => cur = fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match rfs::mkdirat(&cur, comps[i], Mode::from_raw_mode(0o755)) {
                        Ok(()) => {}
                        Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    cur = self.open_dir(&comps[..=i], OFlags::PATH)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(cur)
    }
}

fn join(comps: &[&OsStr]) -> PathBuf {
    if comps.is_empty() {
        return PathBuf::from(".");
    }
    let mut p = PathBuf::new();
    for c in comps {
        p.push(c);
    }
    p
}

/// `lstat` of `name` in `dir`, or `None` when it does not exist.
pub fn lstat_at(dir: impl AsFd, name: &OsStr) -> io::Result<Option<rfs::Stat>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// True when `st` is a directory.
pub fn is_dir(st: &rfs::Stat) -> bool {
    rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory
}

/// Is `path` the root of a mount? Bind mounts of a directory on the same filesystem count
/// (comparing device numbers with the parent misses them).
pub fn is_mount_point(path: &Path) -> bool {
    is_mount_root(rfs::CWD, path.as_os_str())
}

/// Is `name` in `dir` the root of a mount (a volume or bind inside a container's root)?
pub fn is_mount_root(dir: impl AsFd, name: &OsStr) -> bool {
    use rustix::fs::{StatxAttributes, StatxFlags};
    rfs::statx(
        dir,
        name,
        AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::empty(),
    )
    .map(|r| r.stx_attributes.contains(StatxAttributes::MOUNT_ROOT))
    .unwrap_or(false)
}

/// Remove `name` in `dir` and, if it is a directory, everything below it, never following a
/// symlink and never descending into a mount (`EBUSY`: a volume's files are not the archive's
/// to delete).
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if is_dir(&st) {
        if is_mount_root(dir, name) {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!("{} is a mount point", name.to_string_lossy()),
            ));
        }
        let sub = rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        clear_dir(sub.as_fd(), &|_| false)?;
        rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rfs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Remove every entry of the open directory `dir` for which `keep` is false.
pub fn clear_dir(dir: BorrowedFd<'_>, keep: &dyn Fn(&OsStr) -> bool) -> io::Result<()> {
    let mut names = Vec::new();
    let mut rd = rfs::Dir::read_from(dir)?;
    while let Some(ent) = rd.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        names.push(OsStr::from_bytes(n).to_os_string());
    }
    for n in names {
        if !keep(&n) {
            remove_all_at(dir, &n)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean() {
        let c = |s: &str| {
            clean_relative(Path::new(s)).map(|v| {
                v.iter()
                    .map(|x| x.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            })
        };
        assert_eq!(c("./a/b/"), Ok("a/b".into()));
        assert_eq!(c("/etc/passwd"), Ok("etc/passwd".into()));
        assert_eq!(c("a/../b"), Ok("b".into()));
        assert_eq!(c("."), Ok("".into()));
        assert!(c("../x").is_err());
        assert!(c("a/../../x").is_err());
    }
}
