//! Applying a layer tar onto a directory: the one place where untrusted archive bytes become
//! files. Every entry is created through [`SafeRoot`], so nothing an archive names, links or
//! whiteouts can touch anything outside the target directory.
//!
//! Whiteouts are written in the form the target needs: for overlay2, a `.wh.name` entry becomes
//! a 0/0 character device and `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr (what the
//! kernel's overlayfs reads); for vfs, they delete what the lower layers put there.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps};
use tar::EntryType;

use crate::saferoot::{self, clean_relative, lstat_at, SafeRoot};
use crate::split::FileData;

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";

/// How whiteouts are materialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Store them as overlayfs expects (char device 0/0, opaque xattr).
    Overlay,
    /// Apply them: delete the named files from the tree below.
    Delete,
    /// They are plain files (`docker cp`): names starting `.wh.` mean nothing special.
    Keep,
}

/// How an archive is applied.
#[derive(Clone, Copy, Debug)]
pub struct ApplyOptions {
    /// What whiteout entries do.
    pub whiteouts: WhiteoutMode,
    /// Owner for every entry instead of the archive's (`docker cp` without `-a`).
    pub chown: Option<(u32, u32)>,
    /// Refuse to replace a directory with a non-directory and the reverse (`docker cp`).
    pub no_overwrite_dir_non_dir: bool,
    /// Note where each regular file's data is in the stream ([`ApplyStats::files`]).
    pub record_files: bool,
}

impl ApplyOptions {
    /// A layer: whiteouts as `mode` says, the archive's owners.
    pub fn layer(mode: WhiteoutMode) -> Self {
        ApplyOptions {
            whiteouts: mode,
            chown: None,
            no_overwrite_dir_non_dir: false,
            record_files: false,
        }
    }
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The archive itself is malformed or truncated.
    #[error("invalid tar stream: {0}")]
    Tar(#[source] io::Error),
    /// The archive ends, or breaks, inside an entry's data.
    #[error("invalid tar stream: entry {name:?}: {source}")]
    Data {
        /// The entry whose data is cut short.
        name: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// An entry's name or link leaves the root.
    #[error("invalid tar entry {name:?}: {reason}")]
    Breakout {
        /// The offending entry name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `noOverwriteDirNonDir`: the entry would replace a directory with a file or the reverse.
    #[error("cannot overwrite {existing} {name:?} with {new}")]
    Overwrite {
        /// The entry name.
        name: String,
        /// What is there: `directory` or `non-directory`.
        existing: &'static str,
        /// What the archive has.
        new: &'static str,
    },
    /// An entry type Docker does not accept in layers.
    #[error("unhandled tar header type {kind:?} for {name:?}")]
    UnsupportedType {
        /// The type byte.
        kind: u8,
        /// The entry name.
        name: String,
    },
    /// A filesystem operation failed.
    #[error("applying {name:?}: {source}")]
    Io {
        /// The entry being applied.
        name: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// What applying a layer produced.
#[derive(Debug, Default, Clone)]
pub struct ApplyStats {
    /// Sum of regular file sizes written (Docker's layer `Size`).
    pub size: u64,
    /// Entries processed.
    pub entries: u64,
    /// With [`ApplyOptions::record_files`]: each regular file's data, in stream order.
    pub files: Vec<FileData>,
}

fn io_err(name: &Path) -> impl FnOnce(io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Io {
        name: name.display().to_string(),
        source,
    }
}

fn errno(name: &Path) -> impl FnOnce(rustix::io::Errno) -> ApplyError + '_ {
    move |e| ApplyError::Io {
        name: name.display().to_string(),
        source: e.into(),
    }
}

/// Apply the (uncompressed) tar `reader` onto `target`.
pub fn apply_tar(target: &Path, reader: impl Read, mode: WhiteoutMode) -> Result<ApplyStats, ApplyError> {
    let root = SafeRoot::open(target).map_err(io_err(target))?;
    apply_tar_in(&root, &[], reader, ApplyOptions::layer(mode))
}

/// What an extraction tells whoever keeps the archive's bytes (the layer store's spool).
pub trait Recorder {
    /// The next `size` bytes of the stream, from `pos`, are a regular file's data.
    fn data(&mut self, pos: u64, size: u64);
    /// A regular file was written with that data (with [`ApplyOptions::record_files`]).
    fn written(&mut self, f: &FileData);
    /// `comps` (and everything below it) is about to be removed or replaced.
    fn before_remove(&mut self, comps: &[&OsStr]);
}

/// Tells nobody.
struct Nobody;

impl Recorder for Nobody {
    fn data(&mut self, _: u64, _: u64) {}
    fn written(&mut self, _: &FileData) {}
    fn before_remove(&mut self, _: &[&OsStr]) {}
}

/// Apply the (uncompressed) tar `reader` under the directory `base` of `root`: entry names are
/// relative to `base` and may not climb out of it, and every path (symlinks included) resolves
/// inside `root`.
pub fn apply_tar_in(
    root: &SafeRoot,
    base: &[&OsStr],
    reader: impl Read,
    opts: ApplyOptions,
) -> Result<ApplyStats, ApplyError> {
    apply_tar_recorded(root, base, reader, opts, &mut Nobody)
}

/// [`apply_tar_in`], telling `rec` where file data lies and what is removed.
pub fn apply_tar_recorded(
    root: &SafeRoot,
    base: &[&OsStr],
    reader: impl Read,
    opts: ApplyOptions,
    rec: &mut dyn Recorder,
) -> Result<ApplyStats, ApplyError> {
    let mode = opts.whiteouts;
    let mut ar = tar::Archive::new(reader);
    let mut stats = ApplyStats::default();
    // Directory times are set last: creating entries inside a directory changes its mtime.
    let mut dir_times: Vec<(Vec<OsString>, Timespec)> = Vec::new();
    // Paths this layer created, so that an opaque whiteout (vfs) spares them.
    let mut unpacked: HashSet<PathBuf> = HashSet::new();

    for entry in ar.entries().map_err(ApplyError::Tar)? {
        let mut entry = entry.map_err(ApplyError::Tar)?;
        stats.entries += 1;
        let raw_path = entry.path().map_err(ApplyError::Tar)?.into_owned();
        let rel = clean_relative(&raw_path).map_err(|reason| ApplyError::Breakout {
            name: raw_path.display().to_string(),
            reason,
        })?;
        if rel.is_empty() {
            continue; // the root itself ("./"): Docker applies nothing but its metadata; keep ours
        }
        let comps: Vec<&OsStr> = base.iter().copied().chain(rel).collect();
        let header = entry.header().clone();
        let kind = header.entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let xattrs = xattrs_of(&mut entry);
        let Some((last, parent)) = comps.split_last() else {
            continue;
        };
        let last: &OsStr = last;
        let name_bytes = last.as_bytes();

        // Whiteouts.
        if mode != WhiteoutMode::Keep && name_bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            apply_whiteout(root, parent, name_bytes, &raw_path, mode, &unpacked, rec)?;
            continue;
        }

        let pdir = root.mkdir_all(parent).map_err(io_err(&raw_path))?;
        let existing = lstat_at(&pdir, last).map_err(io_err(&raw_path))?;
        if let Some(st) = &existing {
            let new_dir = kind == EntryType::Directory;
            if opts.no_overwrite_dir_non_dir && new_dir != saferoot::is_dir(st) {
                let what = |d: bool| if d { "directory" } else { "non-directory" };
                return Err(ApplyError::Overwrite {
                    name: raw_path.display().to_string(),
                    existing: what(saferoot::is_dir(st)),
                    new: what(new_dir),
                });
            }
            let keep = new_dir && saferoot::is_dir(st);
            if !keep {
                rec.before_remove(&comps);
                saferoot::remove_all_at(pdir.as_fd(), last).map_err(io_err(&raw_path))?;
            }
        }
        let perm = Mode::from_raw_mode(numeric(header.mode().map(u64::from), &header.as_old().mode)? as u32 & 0o7777);
        let mut file_fd: Option<OwnedFd> = None;
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let (f, data) = write_file(&pdir, last, &mut entry, &header, &raw_path, opts.record_files, rec)?;
                stats.size += data.size;
                if opts.record_files {
                    let data = FileData {
                        path: comps.iter().collect(),
                        ..data
                    };
                    rec.written(&data);
                    stats.files.push(data);
                }
                file_fd = Some(f);
            }
            EntryType::Directory => {
                if existing.as_ref().map(saferoot::is_dir) != Some(true) {
                    rfs::mkdirat(&pdir, last, Mode::from_raw_mode(0o700)).map_err(errno(&raw_path))?;
                }
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(ApplyError::Tar)?
                    .ok_or_else(|| ApplyError::Breakout {
                        name: raw_path.display().to_string(),
                        reason: "symlink without a target",
                    })?
                    .into_owned();
                // The target is stored verbatim: it is only ever resolved inside the root.
                rfs::symlinkat(target.as_path(), &pdir, last).map_err(errno(&raw_path))?;
            }
            EntryType::Link => {
                link_entry(root, base, &pdir, last, &mut entry, &raw_path)?;
                unpacked.insert(comps.iter().collect());
                continue; // a hardlink shares its target's metadata
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match kind {
                    EntryType::Char => rfs::FileType::CharacterDevice,
                    EntryType::Block => rfs::FileType::BlockDevice,
                    _ => rfs::FileType::Fifo,
                };
                let dev = rfs::makedev(
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                rfs::mknodat(&pdir, last, ft, perm, dev).map_err(errno(&raw_path))?;
            }
            other => {
                return Err(ApplyError::UnsupportedType {
                    kind: other.as_byte(),
                    name: raw_path.display().to_string(),
                })
            }
        }
        unpacked.insert(comps.iter().collect());

        // Ownership, then mode (chown clears setuid bits), then times; never through a symlink.
        let mtime = set_metadata(&pdir, last, &header, perm, file_fd.as_ref(), opts.chown, &raw_path)?;
        set_xattrs(&pdir, last, file_fd.as_ref(), &xattrs, &raw_path)?;
        if kind == EntryType::Directory {
            dir_times.push((comps.iter().map(|c| c.to_os_string()).collect(), mtime));
        }
    }
    for (comps, t) in dir_times.iter().rev() {
        let refs: Vec<&OsStr> = comps.iter().map(|c| c.as_os_str()).collect();
        if let Some((last, parent)) = refs.split_last() {
            if let Ok(pdir) = root.open_dir(parent, OFlags::PATH) {
                let ts = Timestamps {
                    last_access: *t,
                    last_modification: *t,
                };
                let _ = rfs::utimensat(&pdir, *last, &ts, AtFlags::SYMLINK_NOFOLLOW);
            }
        }
    }
    Ok(stats)
}

/// A whiteout entry: an opaque directory marked (overlay) or emptied of what earlier layers
/// put there (vfs), or one name removed (and, for overlay, a whiteout device made in its place).
fn apply_whiteout(
    root: &SafeRoot,
    parent: &[&OsStr],
    name_bytes: &[u8],
    raw_path: &Path,
    mode: WhiteoutMode,
    unpacked: &HashSet<PathBuf>,
    rec: &mut dyn Recorder,
) -> Result<(), ApplyError> {
    let pdir = root.mkdir_all(parent).map_err(io_err(raw_path))?;
    if name_bytes == WHITEOUT_OPAQUE.as_bytes() {
        match mode {
            WhiteoutMode::Overlay => {
                let d = root.open_dir(parent, OFlags::RDONLY).map_err(io_err(raw_path))?;
                rfs::fsetxattr(&d, "trusted.overlay.opaque", b"y", rfs::XattrFlags::empty())
                    .map_err(errno(raw_path))?;
            }
            WhiteoutMode::Delete | WhiteoutMode::Keep => {
                let d = root.open_dir(parent, OFlags::RDONLY).map_err(io_err(raw_path))?;
                let base: PathBuf = parent.iter().collect();
                rec.before_remove(parent);
                saferoot::clear_dir(d.as_fd(), &|n| unpacked.contains(&base.join(n))).map_err(io_err(raw_path))?;
            }
        }
        return Ok(());
    }
    if name_bytes.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
        // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): Docker skips these.
        return Ok(());
    }
    let victim = OsStr::from_bytes(&name_bytes[WHITEOUT_PREFIX.len()..]);
    if victim.is_empty() || victim == ".." || victim == "." {
        return Err(ApplyError::Breakout {
            name: raw_path.display().to_string(),
            reason: "whiteout of the root or a parent",
        });
    }
    let comps: Vec<&OsStr> = parent.iter().copied().chain([victim]).collect();
    rec.before_remove(&comps);
    saferoot::remove_all_at(pdir.as_fd(), victim).map_err(io_err(raw_path))?;
    if mode == WhiteoutMode::Overlay {
        rfs::mknodat(&pdir, victim, rfs::FileType::CharacterDevice, Mode::empty(), 0).map_err(errno(raw_path))?;
    }
    Ok(())
}

/// Ownership, then mode (chown clears setuid bits), then the time of an entry; never through a
/// symlink. A directory's time is returned instead of set: entries made inside it would change
/// it again.
fn set_metadata(
    pdir: &OwnedFd,
    last: &OsStr,
    header: &tar::Header,
    perm: Mode,
    file_fd: Option<&OwnedFd>,
    chown: Option<(u32, u32)>,
    raw_path: &Path,
) -> Result<Timespec, ApplyError> {
    let kind = header.entry_type();
    let (uid, gid) = match chown {
        Some((u, g)) => (u64::from(u), u64::from(g)),
        None => (
            numeric(header.uid(), &header.as_old().uid)?,
            numeric(header.gid(), &header.as_old().gid)?,
        ),
    };
    if uid > u32::MAX as u64 || gid > u32::MAX as u64 {
        return Err(ApplyError::Breakout {
            name: raw_path.display().to_string(),
            reason: "uid or gid out of range",
        });
    }
    rfs::chownat(
        pdir,
        last,
        Some(rfs::Uid::from_raw(uid as u32)),
        Some(rfs::Gid::from_raw(gid as u32)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(errno(raw_path))?;
    if kind != EntryType::Symlink {
        match file_fd {
            Some(fd) => rfs::fchmod(fd, perm).map_err(errno(raw_path))?,
            None => rfs::chmodat(pdir, last, perm, AtFlags::empty()).map_err(errno(raw_path))?,
        }
    }
    let mtime = Timespec {
        tv_sec: header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    if kind != EntryType::Directory {
        let ts = Timestamps {
            last_access: mtime,
            last_modification: mtime,
        };
        rfs::utimensat(pdir, last, &ts, AtFlags::SYMLINK_NOFOLLOW).map_err(errno(raw_path))?;
    }
    Ok(mtime)
}

/// A hard link entry: its target resolved inside the root under `base`, linked without
/// following a final symlink (a link to a symlink links the symlink itself).
fn link_entry<R: Read>(
    root: &SafeRoot,
    base: &[&OsStr],
    pdir: &OwnedFd,
    last: &OsStr,
    entry: &mut tar::Entry<'_, R>,
    raw_path: &Path,
) -> Result<(), ApplyError> {
    let target = entry
        .link_name()
        .map_err(ApplyError::Tar)?
        .ok_or_else(|| ApplyError::Breakout {
            name: raw_path.display().to_string(),
            reason: "hardlink without a target",
        })?
        .into_owned();
    let trel = clean_relative(&target).map_err(|reason| ApplyError::Breakout {
        name: raw_path.display().to_string(),
        reason,
    })?;
    let tcomps: Vec<&OsStr> = base.iter().copied().chain(trel).collect();
    let Some((tlast, tparent)) = tcomps.split_last() else {
        return Err(ApplyError::Breakout {
            name: raw_path.display().to_string(),
            reason: "hardlink to the root",
        });
    };
    let tdir = root.open_dir(tparent, OFlags::PATH).map_err(io_err(raw_path))?;
    // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
    rfs::linkat(&tdir, *tlast, pdir, last, AtFlags::empty()).map_err(errno(raw_path))?;
    Ok(())
}

/// A regular file's content written to a new file (never through a symlink, never over one):
/// the file, and where its data was in the tar, its size and (when `record`) its inode; the
/// path is left empty.
fn write_file<R: Read>(
    pdir: &OwnedFd,
    last: &OsStr,
    entry: &mut tar::Entry<'_, R>,
    header: &tar::Header,
    raw_path: &Path,
    record: bool,
    rec: &mut dyn Recorder,
) -> Result<(OwnedFd, FileData), ApplyError> {
    let fd = rfs::openat(
        pdir,
        last,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(errno(raw_path))?;
    let mut f = std::fs::File::from(fd);
    let pos = entry.raw_file_position();
    let data_err = |source| ApplyError::Data {
        name: raw_path.display().to_string(),
        source,
    };
    rec.data(pos, entry.size());
    let n = io::copy(entry, &mut f).map_err(data_err)?;
    if n != header.entry_size().map_err(ApplyError::Tar)? && entry.size() != n {
        return Err(data_err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "entry shorter than its header says",
        )));
    }
    let (dev, ino) = match record {
        true => rfs::fstat(&f)
            .map(|st| (st.st_dev, st.st_ino))
            .map_err(errno(raw_path))?,
        false => (0, 0),
    };
    let data = FileData {
        pos,
        size: n,
        path: PathBuf::new(),
        dev,
        ino,
    };
    Ok((OwnedFd::from(f), data))
}

/// The extended attributes of an entry (PAX `SCHILY.xattr.<name>` records, as GNU tar and
/// Docker write them). overlayfs's own (`trusted.overlay.*`) are never taken from a layer:
/// opaque directories come from `.wh..wh..opq` entries, and nothing else of overlayfs's
/// bookkeeping is a layer's to set.
fn xattrs_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Vec::new();
    };
    exts.flatten()
        .filter_map(|e| {
            let name = e.key().ok()?.strip_prefix("SCHILY.xattr.")?;
            (!name.starts_with("trusted.overlay.")).then(|| (name.to_string(), e.value_bytes().to_vec()))
        })
        .collect()
}

/// Sets `xattrs` on the entry just made (after its owner: a chown clears file capabilities),
/// through its open file or, never following a final symlink, by name in its directory. A
/// file system without extended attributes ignores them, as Docker does.
fn set_xattrs(
    pdir: &OwnedFd,
    last: &OsStr,
    file_fd: Option<&OwnedFd>,
    xattrs: &[(String, Vec<u8>)],
    raw_path: &Path,
) -> Result<(), ApplyError> {
    use std::os::fd::AsRawFd;
    for (name, value) in xattrs {
        let r = match file_fd {
            Some(fd) => rfs::fsetxattr(fd, name.as_str(), value, rfs::XattrFlags::empty()),
            None => {
                let at = Path::new("/proc/self/fd").join(pdir.as_raw_fd().to_string()).join(last);
                rfs::lsetxattr(&at, name.as_str(), value, rfs::XattrFlags::empty())
            }
        };
        match r {
            Ok(()) | Err(rustix::io::Errno::OPNOTSUPP) => {}
            Err(e) => return Err(errno(raw_path)(e)),
        }
    }
    Ok(())
}

/// A numeric header field; an empty one (all NUL or spaces, as some writers leave fields
/// they do not use) reads as 0, as Go's `archive/tar` reads it.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> Result<u64, ApplyError> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(ApplyError::Tar(e)),
    }
}

/// A compressed stream may grow this many times over its compressed size...
pub const MAX_EXPANSION: u64 = 1000;
/// ...once it has produced this much: smaller outputs are never refused.
pub const EXPANSION_FLOOR: u64 = 1 << 30;

/// Wrap `r` in the decompressor its first bytes call for: gzip, zstd, bzip2, xz, or none. A compressed
/// stream that grows more than [`MAX_EXPANSION`] times its size past [`EXPANSION_FLOOR`] is a
/// decompression bomb: reading fails with `InvalidData` (gzip cannot even reach that ratio on
/// real data; zeros reach ~1030 in gzip and far more in zstd).
pub fn decompress<'a>(r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    decompress_limited(r, EXPANSION_FLOOR, MAX_EXPANSION)
}

/// [`decompress`] with the bomb limits given.
pub fn decompress_limited<'a>(r: impl Read + 'a, floor: u64, ratio: u64) -> io::Result<Box<dyn Read + 'a>> {
    let consumed = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let counted = Counted {
        inner: r,
        n: consumed.clone(),
    };
    let mut br = io::BufReader::with_capacity(1 << 20, counted);
    let head = {
        use std::io::BufRead;
        br.fill_buf()?.get(..6).map(|h| h.to_vec()).unwrap_or_default()
    };
    let (inner, kind): (Box<dyn Read + 'a>, &str) = if head.starts_with(&[0x1f, 0x8b]) {
        (Box::new(flate2::bufread::MultiGzDecoder::new(br)), "gzip")
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        (Box::new(zstd::stream::read::Decoder::with_buffer(br)?), "zstd")
    } else if head.starts_with(b"BZh") {
        (Box::new(bzip2::bufread::MultiBzDecoder::new(br)), "bzip2")
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        (Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(br)), "xz")
    } else {
        return Ok(Box::new(br));
    };
    Ok(Box::new(BombGuard {
        inner,
        kind,
        consumed,
        produced: 0,
        floor,
        ratio,
    }))
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    n: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.set(self.n.get() + k as u64);
        Ok(k)
    }
}

/// Fails a decompression whose output outgrows its input past the limits.
struct BombGuard<'a> {
    inner: Box<dyn Read + 'a>,
    kind: &'static str,
    consumed: std::rc::Rc<std::cell::Cell<u64>>,
    produced: u64,
    floor: u64,
    ratio: u64,
}

impl Read for BombGuard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.produced += k as u64;
        let consumed = self.consumed.get().max(1);
        if self.produced > self.floor && self.produced / consumed > self.ratio {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "refused as a decompression bomb: {} {} bytes became more than {} bytes ({}x; the limit is {}x past {} bytes)",
                    self.kind,
                    consumed,
                    self.produced,
                    self.produced / consumed,
                    self.ratio,
                    self.floor
                ),
            ));
        }
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decompression_bombs_are_refused() {
        use std::io::Write;
        // 64 MiB of zeros: zstd makes it a few KiB, gzip ~64 KiB.
        let zeros = vec![0u8; 1 << 20];
        let mut z = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..64 {
            z.write_all(&zeros).unwrap();
            g.write_all(&zeros).unwrap();
        }
        let (z, g) = (z.finish().unwrap(), g.finish().unwrap());
        let drain = |r: &mut dyn Read| io::copy(r, &mut io::sink());
        // Past an 8 MiB floor at 1000x, both are bombs; the error says what happened.
        let e = drain(&mut decompress_limited(&z[..], 8 << 20, 1000).unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("decompression bomb: zstd"), "{e}");
        let e = drain(&mut decompress_limited(&g[..], 8 << 20, 500).unwrap()).unwrap_err();
        assert!(e.to_string().contains("decompression bomb: gzip"), "{e}");
        // Under the floor, or under the ratio, they are only data.
        assert_eq!(
            drain(&mut decompress_limited(&z[..], 128 << 20, 1000).unwrap()).unwrap(),
            64 << 20
        );
        assert_eq!(
            drain(&mut decompress_limited(&g[..], 8 << 20, 2000).unwrap()).unwrap(),
            64 << 20
        );
        assert_eq!(drain(&mut decompress(&z[..]).unwrap()).unwrap(), 64 << 20);
        // An uncompressed stream is never limited.
        assert_eq!(
            drain(&mut decompress_limited(&zeros[..], 0, 0).unwrap()).unwrap(),
            1 << 20
        );
    }

    #[test]
    fn every_compression_docker_reads_is_read_and_bombs_of_each_are_refused() {
        use std::io::Write;
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&data).unwrap();
        let bz = bz.finish().unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&data).unwrap();
        let xz = xz.finish().unwrap();
        for (name, c) in [("bzip2", &bz), ("xz", &xz)] {
            let mut got = Vec::new();
            decompress(&c[..]).unwrap().read_to_end(&mut got).unwrap();
            assert!(got == data, "{name} round trip");
            // Two streams back to back read as one, as gzip's members do.
            let twice = [c.as_slice(), c.as_slice()].concat();
            let mut got = Vec::new();
            decompress(&twice[..]).unwrap().read_to_end(&mut got).unwrap();
            assert_eq!(got.len(), data.len() * 2, "{name} multi-stream");
            let e = io::copy(&mut decompress_limited(&c[..], 1024, 1).unwrap(), &mut io::sink()).unwrap_err();
            assert!(e.to_string().contains(&format!("decompression bomb: {name}")), "{e}");
        }
    }
}
