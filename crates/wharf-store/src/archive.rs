//! Reading files out of a root: `docker cp`'s stat (`X-Docker-Container-Path-Stat`), the
//! resolution of a container path the way the kernel would with the root as `/`, and a tree
//! written out as a tar. The counterpart of [`crate::apply`].
//!
//! Every file is opened relative to its already-opened parent directory with `O_NOFOLLOW`
//! (directories with `O_DIRECTORY` too), and the first parent through `openat2`
//! `RESOLVE_IN_ROOT`: a symlink swapped in while the walk runs is archived as the symlink it is,
//! never followed out of the root.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use serde_json::json;

use crate::saferoot::{lstat_at, SafeRoot};

/// What `HEAD /containers/{id}/archive` reports about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// The last element of the path asked for.
    pub name: String,
    /// Bytes.
    pub size: i64,
    /// A Go `os.FileMode`.
    pub mode: u32,
    /// RFC 3339 with nanoseconds.
    pub mtime: String,
    /// For a symlink: the absolute path it resolves to inside the root.
    pub link_target: String,
}

impl PathStat {
    /// The JSON Docker base64-encodes into the stat header.
    pub fn to_json(&self) -> serde_json::Value {
        json!({"name": self.name, "size": self.size, "mode": self.mode, "mtime": self.mtime, "linkTarget": self.link_target})
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.mode & GO_DIR != 0
    }
}

const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;
const GO_DEVICE: u32 = 1 << 26;
const GO_PIPE: u32 = 1 << 25;
const GO_SOCKET: u32 = 1 << 24;
const GO_SETUID: u32 = 1 << 23;
const GO_SETGID: u32 = 1 << 22;
const GO_CHARDEV: u32 = 1 << 21;
const GO_STICKY: u32 = 1 << 20;

/// A `stat` mode as Go's `os.FileMode`.
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    if st_mode & 0o4000 != 0 {
        m |= GO_SETUID;
    }
    if st_mode & 0o2000 != 0 {
        m |= GO_SETGID;
    }
    if st_mode & 0o1000 != 0 {
        m |= GO_STICKY;
    }
    m | match FileType::from_raw_mode(st_mode) {
        FileType::Directory => GO_DIR,
        FileType::Symlink => GO_SYMLINK,
        FileType::BlockDevice => GO_DEVICE,
        FileType::CharacterDevice => GO_DEVICE | GO_CHARDEV,
        FileType::Fifo => GO_PIPE,
        FileType::Socket => GO_SOCKET,
        _ => 0,
    }
}

/// A container path split as Docker's `ResolvePath` does: the directory part (whose symlinks
/// are all followed) and the last element (followed only when the path ends in `/` or `/.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPath {
    /// Lexically cleaned components of the directory part.
    pub dir: Vec<OsString>,
    /// The last element; empty for `/`, a trailing `/` or `/.`.
    pub base: OsString,
    /// The name the client sees (`filepath.Base` of the path; `.` for `dir/.`).
    pub name: String,
}

/// Split `path` (relative paths are taken from `/`).
pub fn split_path(path: &str) -> ContainerPath {
    let trailing = path.ends_with('/') || path.ends_with("/.") || path == ".";
    let mut comps: Vec<OsString> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => comps.push(s.to_os_string()),
            Component::ParentDir => {
                comps.pop();
            }
            _ => {}
        }
    }
    let name = if path.ends_with("/.") || path == "." {
        ".".to_string()
    } else {
        comps
            .last()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into())
    };
    if trailing {
        ContainerPath {
            dir: comps,
            base: OsString::new(),
            name,
        }
    } else {
        let base = comps.pop().unwrap_or_default();
        ContainerPath { dir: comps, base, name }
    }
}

/// Resolve `comps` inside `root`, following every symlink (the last one too when
/// `follow_last`) as the kernel would with `root` as `/`; at most 40 links. Missing components
/// are kept as named. Returns the resolved components.
pub fn resolve(root: &SafeRoot, comps: &[OsString], follow_last: bool) -> io::Result<Vec<OsString>> {
    let mut todo: Vec<OsString> = comps.iter().rev().cloned().collect();
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == "." || c.is_empty() {
            continue;
        }
        if c == ".." {
            done.pop();
            continue;
        }
        let last = todo.is_empty();
        let refs: Vec<&OsStr> = done.iter().map(|d| d.as_os_str()).collect();
        let parent = match root.open_dir(&refs, OFlags::PATH) {
            Ok(p) => p,
            Err(_) => {
                done.push(c);
                continue;
            }
        };
        let st = lstat_at(&parent, &c)?;
        let is_link = st
            .as_ref()
            .is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink);
        if !is_link || (last && !follow_last) {
            done.push(c);
            continue;
        }
        links += 1;
        if links > 40 {
            return Err(io::Error::from_raw_os_error(libc_eloop()));
        }
        let target = rfs::readlinkat(&parent, c.as_os_str(), Vec::new())?;
        let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
        if target.is_absolute() {
            done.clear();
        }
        for tc in target.components().rev() {
            match tc {
                Component::Normal(s) => todo.push(s.to_os_string()),
                Component::ParentDir => todo.push("..".into()),
                _ => {}
            }
        }
    }
    Ok(done)
}

fn libc_eloop() -> i32 {
    rustix::io::Errno::LOOP.raw_os_error()
}

fn rfc3339(sec: i64, nsec: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(sec)
        .ok()
        .and_then(|t| t.replace_nanosecond(nsec.clamp(0, 999_999_999) as u32).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// A resolved path: its parent directory (open) and its name there (`None`: the root itself).
pub struct Resolved {
    /// The components from the root.
    pub comps: Vec<OsString>,
    parent: OwnedFd,
    last: Option<OsString>,
}

impl Resolved {
    /// `lstat` of the path (the root itself when it has no last element).
    pub fn lstat(&self) -> io::Result<Option<rfs::Stat>> {
        match &self.last {
            Some(l) => lstat_at(&self.parent, l),
            None => Ok(Some(rfs::fstat(&self.parent)?)),
        }
    }

    /// The path as an absolute container path.
    pub fn display(&self) -> String {
        let p: PathBuf = self.comps.iter().collect();
        format!("/{}", p.display())
    }
}

/// Resolve a container path as `docker cp` does: the directory part fully, the last element
/// only behind a trailing `/`.
pub fn locate(root: &SafeRoot, cp: &ContainerPath) -> io::Result<Resolved> {
    let mut comps = resolve(root, &cp.dir, true)?;
    if !cp.base.is_empty() {
        comps.push(cp.base.clone());
    }
    // `..` as a last element is lexical, handled by split_path; here every element is normal.
    let (parent_comps, last) = match comps.split_last() {
        Some((l, p)) => (p.to_vec(), Some(l.clone())),
        None => (Vec::new(), None),
    };
    let refs: Vec<&OsStr> = parent_comps.iter().map(|c| c.as_os_str()).collect();
    let parent = root.open_dir(&refs, OFlags::PATH)?;
    Ok(Resolved { comps, parent, last })
}

/// The stat header for `path`; `None` when it does not exist.
pub fn stat(root: &SafeRoot, path: &str) -> io::Result<Option<(Resolved, PathStat)>> {
    let cp = split_path(path);
    let r = match locate(root, &cp) {
        Ok(r) => r,
        Err(e) if matches!(e.raw_os_error(), Some(2) | Some(20)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(st) = r.lstat()? else { return Ok(None) };
    let link_target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        let full = resolve(root, &r.comps, true)?;
        let p: PathBuf = full.iter().collect();
        format!("/{}", p.display())
    } else {
        String::new()
    };
    let ps = PathStat {
        name: cp.name.clone(),
        size: st.st_size,
        mode: go_file_mode(st.st_mode),
        mtime: rfc3339(st.st_mtime, st.st_mtime_nsec as i64),
        link_target,
    };
    Ok(Some((r, ps)))
}

/// Write the file or tree at `r` as a tar whose entries are named under `name` (`.`: the
/// directory's contents at the top).
/// A failure stops the stream short of the tar's end marker, so the reader sees a truncated
/// archive rather than a complete one with files missing.
pub fn write_tar(r: &Resolved, name: &str, w: impl Write) -> io::Result<()> {
    let poisoned = std::rc::Rc::new(std::cell::Cell::new(false));
    let mut b = tar::Builder::new(Poison {
        w,
        poisoned: poisoned.clone(),
    });
    if let Err(e) = build(&mut b, r, name) {
        poisoned.set(true);
        return Err(e);
    }
    b.into_inner()?.flush()
}

struct Poison<W> {
    w: W,
    poisoned: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<W: Write> Write for Poison<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.poisoned.get() {
            return Err(io::Error::other("archive abandoned"));
        }
        self.w.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

fn build<W: Write>(b: &mut tar::Builder<W>, r: &Resolved, name: &str) -> io::Result<()> {
    b.follow_symlinks(false);
    let mut links = HashMap::new();
    match &r.last {
        Some(last) => {
            let st = lstat_at(&r.parent, last)?.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            if !entry(b, r.parent.as_fd(), last, &st, Path::new(name), &mut links)? {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the file changed while it was archived",
                ));
            }
        }
        None => {
            let dir = rfs::openat(
                &r.parent,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            children(b, &dir, Path::new(if name == "/" { "." } else { name }), &mut links)?;
        }
    }
    Ok(())
}

fn header(st: &rfs::Stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Append a symlink entry whose target is `target`, byte for byte. The tar crate's own
/// `append_link` cleans the target as a path (`/` becomes `//`, `a//b/./c` becomes `a/b/c`),
/// and a layer's digest must not depend on that: Docker stores what `readlink` returned. A
/// target longer than the header's 100 bytes goes in a GNU long-link entry first, as the tar
/// crate writes long link names.
pub(crate) fn append_symlink<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &Path,
    target: &[u8],
) -> io::Result<()> {
    const FIELD: usize = 100;
    if target.len() > FIELD {
        let mut k = tar::Header::new_gnu();
        if let Some(g) = k.as_gnu_mut() {
            g.name[..13].copy_from_slice(b"././@LongLink");
        }
        k.set_mode(0o644);
        k.set_uid(0);
        k.set_gid(0);
        k.set_mtime(0);
        // With its terminating NUL, as GNU tar writes it.
        k.set_size(target.len() as u64 + 1);
        k.set_entry_type(tar::EntryType::GNULongLink);
        k.set_cksum();
        b.append(&k, target.chain(&[0u8][..]))?;
        h.set_link_name_literal(&target[..FIELD])?;
    } else {
        h.set_link_name_literal(target)?;
    }
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_data(h, name, io::empty())
}

fn entry<W: Write>(
    b: &mut tar::Builder<W>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &rfs::Stat,
    tar_name: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<bool> {
    let is_top_dot = tar_name == Path::new(".");
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            let fd = match rfs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Replaced by something else since the listing: leave it out.
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR | rustix::io::Errno::NOENT) => {
                    return Ok(false)
                }
                Err(e) => return Err(e.into()),
            };
            if !is_top_dot {
                let mut h = header(st, tar::EntryType::Directory);
                b.append_data(&mut h, tar_name, io::empty())?;
            }
            children(b, &fd, tar_name, links)?;
        }
        FileType::RegularFile => {
            let key = (st.st_dev, st.st_ino);
            if st.st_nlink > 1 {
                if let Some(first) = links.get(&key) {
                    let mut h = header(st, tar::EntryType::Link);
                    b.append_link(&mut h, tar_name, first)?;
                    return Ok(true);
                }
            }
            let fd = match rfs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOENT) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            let now = rfs::fstat(&fd)?;
            if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile {
                return Ok(false);
            }
            let size = now.st_size.max(0) as u64;
            let mut h = header(&now, tar::EntryType::Regular);
            h.set_size(size);
            // A file that shrinks while it is read is padded: the header's size is the contract.
            let data = std::fs::File::from(fd).take(size).chain(io::repeat(0)).take(size);
            b.append_data(&mut h, tar_name, data)?;
            if st.st_nlink > 1 {
                links.insert(key, tar_name.to_path_buf());
            }
        }
        FileType::Symlink => {
            let target = match rfs::readlinkat(dir, name, Vec::new()) {
                Ok(t) => t,
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            let mut h = header(st, tar::EntryType::Symlink);
            append_symlink(b, &mut h, tar_name, target.as_bytes())?;
        }
        ft @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
            let kind = match ft {
                FileType::CharacterDevice => tar::EntryType::Char,
                FileType::BlockDevice => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            };
            let mut h = header(st, kind);
            if kind != tar::EntryType::Fifo {
                h.set_device_major(rfs::major(st.st_rdev))?;
                h.set_device_minor(rfs::minor(st.st_rdev))?;
            }
            b.append_data(&mut h, tar_name, io::empty())?;
        }
        // Sockets are not archived (as in Docker).
        _ => return Ok(false),
    }
    Ok(true)
}

fn children<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &OwnedFd,
    tar_name: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let mut names: Vec<OsString> = Vec::new();
    for e in rfs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    names.sort();
    for n in names {
        let Ok(st) = rfs::statat(dir, n.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let child = if tar_name == Path::new(".") {
            PathBuf::from(&n)
        } else {
            tar_name.join(&n)
        };
        // An entry that vanished or changed type since the listing is left out.
        entry(b, dir.as_fd(), &n, &st, &child, links)?;
    }
    Ok(())
}

/// Write an overlay upper directory as a layer tar in the image format: a 0/0 character
/// device becomes a `.wh.<name>` whiteout and a directory marked opaque
/// (`trusted.overlay.opaque=y`, or `user.overlay.opaque` with `userxattr`) gets a
/// `.wh..wh..opq` entry. Entries are sorted by name so the same tree gives the same diff ID.
/// Symlinks are stored, never followed.
pub fn write_overlay_diff(upper: &Path, w: impl Write) -> io::Result<()> {
    fn opaque(p: &Path) -> bool {
        let mut buf = [0u8; 4];
        ["trusted.overlay.opaque", "user.overlay.opaque"]
            .iter()
            .any(|k| matches!(rfs::lgetxattr(p, *k, &mut buf[..]), Ok(1) if buf[0] == b'y'))
    }
    fn walk<W: Write>(b: &mut tar::Builder<W>, dir: &Path, rel: &Path, links: &mut Links) -> io::Result<()> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut ents: Vec<_> = std::fs::read_dir(dir)?.collect::<io::Result<_>>()?;
        ents.sort_by_key(|e| e.file_name());
        for e in ents {
            let p = e.path();
            let name = e.file_name();
            let r = rel.join(&name);
            let md = p.symlink_metadata()?;
            if md.file_type().is_char_device() && md.rdev() == 0 {
                whiteout(b, rel, &name, &md)?;
                continue;
            }
            append_one(b, &p, &r, &md, links)?;
            if md.is_dir() {
                if opaque(&p) {
                    marker(b, &r.join(".wh..wh..opq"), &md)?;
                }
                walk(b, &p, &r, links)?;
            }
        }
        Ok(())
    }
    let mut b = diff_builder(w);
    walk(&mut b, upper, Path::new(""), &mut Links::new())?;
    b.into_inner()?.flush()
}

/// A layer tar of the `changes` (path, kind: 0 changed, 1 added, 2 deleted) of the tree at
/// `root`, as Docker exports a naive diff: deletions become `.wh.` files, everything else is
/// its own entry (a directory without its children: they are changes of their own).
pub fn write_changes_diff(root: &Path, changes: &[(String, u8)], w: impl Write) -> io::Result<()> {
    let mut b = diff_builder(w);
    let mut links = Links::new();
    for (path, kind) in changes {
        let rel = Path::new(path.trim_start_matches('/'));
        if *kind == 2 {
            let parent = rel.parent().unwrap_or(Path::new(""));
            let name = rel.file_name().unwrap_or_default();
            let md = root.join(parent).symlink_metadata()?;
            whiteout(&mut b, parent, name, &md)?;
        } else {
            let p = root.join(rel);
            append_one(&mut b, &p, rel, &p.symlink_metadata()?, &mut links)?;
        }
    }
    b.into_inner()?.flush()
}

fn diff_builder<W: Write>(w: W) -> tar::Builder<W> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    b
}

/// An empty regular file entry (whiteouts and opaque markers) with `md`'s owner and time.
fn marker<W: Write>(b: &mut tar::Builder<W>, name: &Path, md: &std::fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_uid(md.uid() as u64);
    h.set_gid(md.gid() as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    b.append_data(&mut h, name, io::empty())
}

/// The `.wh.<name>` entry in `dir` that deletes `name` from the layers below.
fn whiteout<W: Write>(b: &mut tar::Builder<W>, dir: &Path, name: &OsStr, md: &std::fs::Metadata) -> io::Result<()> {
    let mut wh = OsString::from(".wh.");
    wh.push(name);
    marker(b, &dir.join(wh), md)
}

/// The first name written of each inode with several, by device and inode.
type Links = std::collections::HashMap<(u64, u64), std::path::PathBuf>;

/// One file system object as a tar entry named `name` (sockets are left out, as Docker does).
fn append_one<W: Write>(
    b: &mut tar::Builder<W>,
    p: &Path,
    name: &Path,
    md: &std::fs::Metadata,
    links: &mut Links,
) -> io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let ft = md.file_type();
    if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
        // (The tar crate's own path for special files sets the name wrongly.)
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(if ft.is_fifo() {
            tar::EntryType::Fifo
        } else if ft.is_char_device() {
            tar::EntryType::Char
        } else {
            tar::EntryType::Block
        });
        h.set_size(0);
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(md.uid() as u64);
        h.set_gid(md.gid() as u64);
        h.set_mtime(md.mtime().max(0) as u64);
        if !ft.is_fifo() {
            h.set_device_major(rustix::fs::major(md.rdev()))?;
            h.set_device_minor(rustix::fs::minor(md.rdev()))?;
        }
        return b.append_data(&mut h, name, io::empty());
    }
    if ft.is_socket() {
        return Ok(());
    }
    if ft.is_symlink() {
        use std::os::unix::ffi::OsStrExt;
        // The header the tar crate would make for it, with the target kept as it is.
        let target = std::fs::read_link(p)?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(md, tar::HeaderMode::Complete);
        return append_symlink(b, &mut h, name, target.as_os_str().as_bytes());
    }
    // Docker carries one extended attribute in layers: file capabilities.
    let mut cap = [0u8; 64];
    if let Ok(n) = rfs::lgetxattr(p, "security.capability", &mut cap[..]) {
        b.append_pax_extensions([("SCHILY.xattr.security.capability", &cap[..n])])?;
    }
    // A further name of an inode already written is a link to the first, as in Docker's tars.
    if md.is_file() && md.nlink() > 1 {
        if let Some(first) = links.get(&(md.dev(), md.ino())) {
            let mut h = tar::Header::new_gnu();
            h.set_metadata_in_mode(md, tar::HeaderMode::Complete);
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            return b.append_link(&mut h, name, first);
        }
        links.insert((md.dev(), md.ino()), name.to_path_buf());
    }
    b.append_path_with_name(p, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn split_follows_dockers_rules() {
        let p = split_path("/etc/passwd");
        assert_eq!(
            (p.dir.len(), p.base.to_str(), p.name.as_str()),
            (1, Some("passwd"), "passwd")
        );
        let p = split_path("/etc/");
        assert_eq!((p.dir.len(), p.base.is_empty(), p.name.as_str()), (1, true, "etc"));
        let p = split_path("/etc/.");
        assert_eq!((p.dir.len(), p.name.as_str()), (1, "."));
        let p = split_path("../../etc/../x");
        assert_eq!((p.dir.len(), p.base.to_str()), (0, Some("x")));
        assert_eq!(split_path("/").name, "/");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/f"), b"hi").unwrap();
        symlink("/a/b", d.path().join("abs")).unwrap();
        symlink("../../../../a", d.path().join("a/up")).unwrap();
        symlink("/", d.path().join("a/b/root")).unwrap();
        symlink("loop2", d.path().join("loop1")).unwrap();
        symlink("loop1", d.path().join("loop2")).unwrap();
        let root = SafeRoot::open(d.path()).unwrap();
        let (_, st) = stat(&root, "/abs").unwrap().unwrap();
        assert_eq!(st.link_target, "/a/b");
        assert_eq!(st.mode & GO_SYMLINK, GO_SYMLINK);
        let (_, st) = stat(&root, "/a/up").unwrap().unwrap();
        assert_eq!(st.link_target, "/a", "a link climbing past / stops at /");
        let (_, st) = stat(&root, "/abs/f").unwrap().unwrap();
        assert_eq!((st.name.as_str(), st.size), ("f", 2));
        let (_, st) = stat(&root, "/a/b/root/").unwrap().unwrap();
        assert!(st.is_dir());
        assert!(stat(&root, "/nope/x").unwrap().is_none());
        assert!(stat(&root, "/loop1/").is_err());
    }

    #[test]
    fn tar_names_entries_under_the_requested_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("data/sub")).unwrap();
        std::fs::write(d.path().join("data/sub/f"), b"12345").unwrap();
        std::fs::hard_link(d.path().join("data/sub/f"), d.path().join("data/g")).unwrap();
        symlink("/etc/shadow", d.path().join("data/l")).unwrap();
        let root = SafeRoot::open(d.path()).unwrap();
        let list = |path: &str| {
            let (r, st) = stat(&root, path).unwrap().unwrap();
            let mut buf = Vec::new();
            write_tar(&r, &st.name, &mut buf).unwrap();
            let mut ar = tar::Archive::new(&buf[..]);
            let mut out: Vec<String> = ar
                .entries()
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    format!("{} {:?}", e.path().unwrap().display(), e.header().entry_type())
                })
                .collect();
            out.sort();
            out
        };
        assert_eq!(
            list("/data"),
            [
                "data Directory",
                "data/g Regular",
                "data/l Symlink",
                "data/sub Directory",
                "data/sub/f Link"
            ]
        );
        assert_eq!(
            list("/data/."),
            ["g Regular", "l Symlink", "sub Directory", "sub/f Link"]
        );
        assert_eq!(list("/data/l"), ["l Symlink"]);
    }

    /// The (name, link target bytes) of every symlink entry of a tar.
    fn symlinks(buf: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut ar = tar::Archive::new(buf);
        let mut out: Vec<(String, Vec<u8>)> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.header().entry_type() == tar::EntryType::Symlink)
            .map(|e| {
                let target = e.link_name_bytes().unwrap().into_owned();
                (e.path().unwrap().display().to_string(), target)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn symlink_targets_are_kept_byte_for_byte() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("t")).unwrap();
        let long = format!("{}/end", "x/./".repeat(40));
        let targets: [&str; 5] = ["/", "a//b/./c", "../", "//etc//passwd/", &long];
        for (i, t) in targets.iter().enumerate() {
            symlink(t, d.path().join(format!("t/l{i}"))).unwrap();
        }
        let want: Vec<(String, Vec<u8>)> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("l{i}"), t.as_bytes().to_vec()))
            .collect();
        // A layer diff (commit)...
        let mut buf = Vec::new();
        write_overlay_diff(&d.path().join("t"), &mut buf).unwrap();
        assert_eq!(symlinks(&buf), want);
        // ...a naive diff (commit on vfs)...
        let changes: Vec<(String, u8)> = (0..targets.len()).map(|i| (format!("/l{i}"), 1)).collect();
        let mut buf = Vec::new();
        write_changes_diff(&d.path().join("t"), &changes, &mut buf).unwrap();
        assert_eq!(symlinks(&buf), want);
        // ...and `docker cp` / `export`.
        let root = SafeRoot::open(d.path()).unwrap();
        let (r, st) = stat(&root, "/t/.").unwrap().unwrap();
        let mut buf = Vec::new();
        write_tar(&r, &st.name, &mut buf).unwrap();
        let got: Vec<(String, Vec<u8>)> = symlinks(&buf);
        assert_eq!(got, want);
    }
}
