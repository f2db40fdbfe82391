//! The layer store: turns layer tars into directories a container root can be stacked from.
//!
//! Two drivers. **overlay2** extracts each layer into its own `overlay2/<cache-id>/diff`,
//! independent of its parents (so layers of one image extract in parallel), with whiteouts in
//! overlayfs form; a stack is mounted as one overlay whose lower directories are short symlinks
//! under `overlay2/l/` (as Docker's overlay2 does), keeping the mount data under a page.
//! **vfs** copies the parent's full tree and applies the layer onto it, deleting what whiteouts
//! name: slow and big, but it works on any filesystem.
//!
//! A layer directory becomes part of the store only when its [`LayerRecord`] is committed to the
//! metadata database; directories without a record are leftovers of a crash and
//! [`LayerStore::gc`] removes them. The uncompressed tar is kept in the content store under its
//! diff ID, so `save` reproduces the exact bytes (and so the same diff IDs) that were loaded.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use wharf_reference::Digest;

use crate::apply::{apply_tar_recorded, decompress, ApplyError, ApplyOptions, WhiteoutMode};
use crate::content::{random_name, ContentError, ContentStore};
use crate::meta::LayerRecord;
use crate::saferoot::SafeRoot;
use crate::split;
use crate::spool;

/// Storage driver names as Docker spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// overlayfs, one diff directory per layer.
    Overlay2,
    /// Full copies.
    Vfs,
}

impl Driver {
    /// Parse `overlay2` or `vfs`.
    pub fn parse(s: &str) -> Option<Driver> {
        match s {
            "overlay2" | "overlay" => Some(Driver::Overlay2),
            "vfs" => Some(Driver::Vfs),
            _ => None,
        }
    }
    /// The name Docker prints in `info`.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Overlay2 => "overlay2",
            Driver::Vfs => "vfs",
        }
    }

    /// Whether a layer is extracted over a copy of its parent (vfs: each layer is a whole
    /// tree), so that the parent must be in place first; overlay2 extracts each layer on its
    /// own, in any order.
    pub fn extracts_over_parent(self) -> bool {
        self == Driver::Vfs
    }

    /// The driver for a data root: the one `requested` names (`overlay2` only where overlayfs
    /// works there), else overlay2 where it works and vfs where not; the `bool` says a
    /// fallback to vfs was made.
    pub fn choose(requested: Option<&str>, data_root: &Path) -> Result<(Driver, bool), String> {
        let overlay = || overlay_supported(data_root);
        match requested {
            Some(name) => match Driver::parse(name) {
                Some(Driver::Overlay2) if !overlay() => Err(format!(
                    "storage driver overlay2 is not supported on {}",
                    data_root.display()
                )),
                Some(d) => Ok((d, false)),
                None => Err(format!("unknown storage driver {name:?}: use overlay2 or vfs")),
            },
            None if overlay() => Ok((Driver::Overlay2, false)),
            None => Ok((Driver::Vfs, true)),
        }
    }
}

/// Layer store failures.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The tar could not be applied.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The tar's bytes are not the diff ID the image names.
    #[error("layer digest mismatch: expected {expected}, got {actual}")]
    DiffMismatch {
        /// What the image config says.
        expected: Digest,
        /// What the tar hashes to.
        actual: Digest,
    },
    /// The layer tar blob is missing or broken.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// A mount failed.
    #[error("mounting layers at {target}: {source}")]
    Mount {
        /// Where.
        target: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The overlay mount options would exceed a page.
    #[error("too many layers to mount ({0})")]
    TooManyLayers(usize),
    /// Filesystem failure.
    #[error("layer store: {0}")]
    Io(#[from] io::Error),
}

/// Checks that the running kernel can mount overlayfs on `dir`'s filesystem.
pub fn overlay_supported(dir: &Path) -> bool {
    let base = dir.join(format!("overlay-check-{}", random_name()));
    let mk = |n: &str| fs::create_dir_all(base.join(n));
    if mk("l1").and(mk("l2")).and(mk("m")).is_err() {
        let _ = fs::remove_dir_all(&base);
        return false;
    }
    let data = format!("lowerdir={}:{}", base.join("l1").display(), base.join("l2").display());
    let ok = rustix::mount::mount(
        "overlay",
        base.join("m").as_path(),
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        Some(std::ffi::CString::new(data).expect("no NUL").as_c_str()),
    )
    .is_ok();
    if ok {
        let _ = rustix::mount::unmount(base.join("m").as_path(), rustix::mount::UnmountFlags::DETACH);
    }
    let _ = fs::remove_dir_all(&base);
    ok
}

/// Layer directories for one driver.
#[derive(Clone, Debug)]
pub struct LayerStore {
    root: PathBuf,
    driver: Driver,
    content: ContentStore,
}

/// Mark `dir` as the top of independent directory trees (ext4's `FS_TOPDIR_FL`, `chattr +T`):
/// the Orlov allocator then spreads the directories made in it (one per layer, container or
/// volume) over the block groups instead of packing them into the parent's. Besides locality,
/// this keeps new trees away from the inodes the last `rmi` freed: without a journal, ext4
/// skips every inode freed in the last minutes one buffer lookup at a time, which made a
/// 4,000-file `load` spend two thirds of its time allocating inodes (measured: 4.0 s → 0.85 s).
/// File systems without the flag (xfs, btrfs, tmpfs) refuse it; that is fine.
pub fn spread_subdirs(dir: &Path) {
    let Ok(f) = fs::File::open(dir) else { return };
    if let Ok(flags) = rustix::fs::ioctl_getflags(&f) {
        if !flags.contains(rustix::fs::IFlags::TOPDIR) {
            let _ = rustix::fs::ioctl_setflags(&f, flags | rustix::fs::IFlags::TOPDIR);
        }
    }
}

impl LayerStore {
    /// Open the store for `driver` under `data_root`.
    pub fn open(data_root: &Path, driver: Driver, content: ContentStore) -> Result<Self, LayerError> {
        let root = match driver {
            Driver::Overlay2 => data_root.join("overlay2"),
            Driver::Vfs => data_root.join("vfs/dir"),
        };
        fs::create_dir_all(&root)?;
        spread_subdirs(&root);
        if driver == Driver::Overlay2 {
            fs::create_dir_all(root.join("l"))?;
        }
        Ok(LayerStore { root, driver, content })
    }

    /// The driver in use.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// The driver's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding a layer's own files (overlay2) or its full tree (vfs).
    pub fn diff_dir(&self, rec: &LayerRecord) -> PathBuf {
        match self.driver {
            Driver::Overlay2 => self.root.join(&rec.cache_id).join("diff"),
            Driver::Vfs => self.root.join(&rec.cache_id),
        }
    }

    /// Extract a (possibly compressed) layer tar on top of the layer `parent_chain`, verifying
    /// it against `expected_diff` when given. vfs copies `vfs_base` (the parent's record) first;
    /// overlay2 needs only the parent's chain ID, so layers of one image can be created in
    /// parallel. The result is not yet registered: commit the returned record to the metadata
    /// database, or call [`discard`](Self::discard) on failure.
    pub fn create(
        &self,
        parent_chain: Option<Digest>,
        vfs_base: Option<&LayerRecord>,
        reader: impl Read,
        expected_diff: Option<Digest>,
    ) -> Result<LayerRecord, LayerError> {
        let cache_id = random_name();
        let dir = match self.driver {
            Driver::Overlay2 => {
                let d = self.root.join(&cache_id);
                fs::create_dir_all(d.join("diff"))?;
                fs::create_dir(d.join("work"))?;
                d.join("diff")
            }
            Driver::Vfs => {
                let d = self.root.join(&cache_id);
                match vfs_base {
                    Some(p) => copy_tree(&self.diff_dir(p), &d)?,
                    None => fs::create_dir(&d)?,
                }
                d
            }
        };
        let result = (|| {
            let plain = decompress(reader)?;
            let mode = match self.driver {
                Driver::Overlay2 => WhiteoutMode::Overlay,
                Driver::Vfs => WhiteoutMode::Delete,
            };
            let content = self.content.clone();
            let scratch = Box::new(move || content.scratch_file());
            let (mut tee, mut hooks) = spool::spool(plain, &dir, scratch)?;
            let root = SafeRoot::open(&dir)?;
            let opts = ApplyOptions {
                record_files: true,
                ..ApplyOptions::layer(mode)
            };
            let stats = apply_tar_recorded(&root, &[], &mut tee, opts, &mut hooks)?;
            // Drain trailing padding so the digest covers the whole stream, as Docker's does.
            io::copy(&mut tee, &mut io::sink())?;
            drop(tee);
            let (diff_id, tar_size, kept) = hooks.finish()?;
            if let Some(expected) = expected_diff {
                if expected != diff_id {
                    return Err(LayerError::DiffMismatch {
                        expected,
                        actual: diff_id,
                    });
                }
            }
            // The tar without the file contents the directory holds; the whole tar only when
            // a later entry replaced or removed a file an earlier one wrote.
            match kept {
                spool::Kept::Compact(mut raw, files) => {
                    if !split::still_in_place(&dir, &files) {
                        return Err(LayerError::Io(io::Error::other(
                            "a file of the layer changed while it was extracted",
                        )));
                    }
                    self.content.write_split(&diff_id, |out| {
                        split::write_compact_record(&mut raw, tar_size, &files, out)
                    })?;
                }
                spool::Kept::Whole(mut whole) => {
                    self.content.write_from(&mut whole, Some(diff_id), Some(tar_size))?;
                }
            }
            let chain_id = match parent_chain {
                None => diff_id,
                Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
            };
            Ok(LayerRecord {
                chain_id,
                diff_id,
                parent: parent_chain,
                cache_id: cache_id.clone(),
                size: stats.size,
                tar_size,
            })
        })();
        match result {
            Ok(rec) => {
                if self.driver == Driver::Overlay2 {
                    self.write_link(&rec)?;
                }
                Ok(rec)
            }
            Err(e) => {
                let _ = self.remove_cache_dir(&cache_id);
                Err(e)
            }
        }
    }

    fn link_name(cache_id: &str) -> String {
        // 26 characters as Docker's overlay2 uses; derived from the cache ID so it is stable.
        cache_id[..26].to_uppercase()
    }

    fn write_link(&self, rec: &LayerRecord) -> Result<(), LayerError> {
        let short = Self::link_name(&rec.cache_id);
        let link = self.root.join("l").join(&short);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("../{}/diff", rec.cache_id), &link)?;
        fs::write(self.root.join(&rec.cache_id).join("link"), &short)?;
        Ok(())
    }

    /// Remove an unregistered or deleted layer's directory.
    pub fn discard(&self, rec: &LayerRecord) -> Result<(), LayerError> {
        self.remove_cache_dir(&rec.cache_id)
    }

    fn remove_cache_dir(&self, cache_id: &str) -> Result<(), LayerError> {
        if self.driver == Driver::Overlay2 && cache_id.len() >= 26 {
            let _ = fs::remove_file(self.root.join("l").join(Self::link_name(cache_id)));
        }
        match fs::remove_dir_all(self.root.join(cache_id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Remove every layer directory whose cache ID is not in `known`: what a crash left behind.
    pub fn gc(&self, known: &HashSet<String>) -> Result<usize, LayerError> {
        let mut removed = 0;
        for ent in fs::read_dir(&self.root)? {
            let name = ent?.file_name().to_string_lossy().into_owned();
            if name == "l" || known.contains(&name) {
                continue;
            }
            self.remove_cache_dir(&name)?;
            removed += 1;
        }
        if self.driver == Driver::Overlay2 {
            for ent in fs::read_dir(self.root.join("l"))? {
                let p = ent?.path();
                if !p.exists() {
                    let _ = fs::remove_file(p);
                }
            }
        }
        Ok(removed)
    }

    /// The overlay lower directories of `layers` (given bottom first), top first, each
    /// shortened through its `l/` link as overlay2 does.
    pub fn lower_dirs(&self, layers: &[LayerRecord]) -> Vec<PathBuf> {
        layers
            .iter()
            .rev()
            .map(|l| self.root.join("l").join(Self::link_name(&l.cache_id)))
            .collect()
    }

    /// What a snapshotter stacks on for the chain `layers` (bottom first): overlay2's lower
    /// directories, top first; vfs's top layer, which is a whole tree.
    pub fn snapshot_dirs(&self, layers: &[LayerRecord]) -> Vec<PathBuf> {
        match self.driver {
            Driver::Overlay2 => self.lower_dirs(layers),
            Driver::Vfs => layers.last().map(|l| self.diff_dir(l)).into_iter().collect(),
        }
    }

    /// Copy a layer's whole tree to `dest` (a vfs container's root).
    pub fn copy_layer(&self, top: &LayerRecord, dest: &Path) -> Result<(), LayerError> {
        Ok(copy_tree(&self.diff_dir(top), dest)?)
    }

    /// Mount the stack `layers` (bottom first) read-only at `target`. With `upper`, mount it
    /// writable with `upper/diff` and `upper/work` on top (a container's root).
    pub fn mount(&self, layers: &[LayerRecord], target: &Path, upper: Option<&Path>) -> Result<(), LayerError> {
        use rustix::mount::{mount, mount_bind, MountFlags};
        let merr = |source: io::Error| LayerError::Mount {
            target: target.to_path_buf(),
            source,
        };
        match self.driver {
            Driver::Vfs => {
                let top = layers.last().ok_or(LayerError::TooManyLayers(0))?;
                mount_bind(self.diff_dir(top).as_path(), target).map_err(|e| merr(e.into()))?;
                if upper.is_none() {
                    rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
                        .map_err(|e| merr(e.into()))?;
                }
                Ok(())
            }
            Driver::Overlay2 => {
                let lowers: Vec<String> = layers
                    .iter()
                    .rev()
                    .map(|l| {
                        self.root
                            .join("l")
                            .join(Self::link_name(&l.cache_id))
                            .display()
                            .to_string()
                    })
                    .collect();
                if lowers.is_empty() {
                    return Err(LayerError::TooManyLayers(0));
                }
                if lowers.len() == 1 && upper.is_none() {
                    mount_bind(self.diff_dir(&layers[0]).as_path(), target).map_err(|e| merr(e.into()))?;
                    rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
                        .map_err(|e| merr(e.into()))?;
                    return Ok(());
                }
                let mut data = format!("lowerdir={}", lowers.join(":"));
                if let Some(u) = upper {
                    data.push_str(&format!(
                        ",upperdir={},workdir={}",
                        u.join("diff").display(),
                        u.join("work").display()
                    ));
                }
                if data.len() >= 4096 {
                    return Err(LayerError::TooManyLayers(layers.len()));
                }
                let flags = if upper.is_some() {
                    MountFlags::empty()
                } else {
                    MountFlags::RDONLY
                };
                let data = std::ffi::CString::new(data).expect("no NUL in paths");
                mount("overlay", target, "overlay", flags, Some(data.as_c_str())).map_err(|e| merr(e.into()))
            }
        }
    }
}

/// Copy a tree preserving everything (vfs parents). `cp -a` keeps owners, modes, times,
/// devices, hardlinks and xattrs exactly, which a hand-written walk would have to relearn.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let st = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(from)
        .arg(to)
        .status()?;
    if !st.success() {
        return Err(io::Error::other(format!(
            "cp -a {} {} failed: {st}",
            from.display(),
            to.display()
        )));
    }
    Ok(())
}

/// Mount a writable overlay of `lowers` (top first) with `upper` and `work` at `target`.
///
/// `volatile` (for a layer that is thrown away with its container, `run --rm`): overlayfs
/// then never syncs the upper file system, neither for the container's own fsync calls nor at
/// unmount, where it would otherwise write back every dirty inode of the whole host file system
/// the layer lives on (milliseconds on a quiet host, far more on a busy one). The kernel marks
/// such a work directory (`work/incompat/volatile`) and refuses to mount it again until the
/// mark is removed; the mark is removed here, since only a cleanly unmounted layer of a
/// container that still exists is ever mounted again.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> Result<(), LayerError> {
    let merr = |source: io::Error| LayerError::Mount {
        target: target.to_path_buf(),
        source,
    };
    let low: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        low.join(":"),
        upper.display(),
        work.display()
    );
    if volatile {
        data.push_str(",volatile");
        match fs::remove_dir_all(work.join("work/incompat")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(merr(e)),
            _ => {}
        }
    }
    if data.len() >= 4096 {
        return Err(LayerError::TooManyLayers(lowers.len()));
    }
    let data = std::ffi::CString::new(data).map_err(|e| merr(io::Error::other(e)))?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        rustix::mount::MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| merr(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_layers_mount_again_after_a_clean_unmount() {
        if crate::root_tier::skip_unless_root("volatile_layers_mount_again_after_a_clean_unmount") {
            return;
        }
        // A disk file system (overlayfs refuses tmpfs upper dirs with some options).
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let p = |n: &str| dir.path().join(n);
        for d in ["low", "up", "work", "m"] {
            fs::create_dir(p(d)).unwrap();
        }
        fs::write(p("low/f"), "lower").unwrap();
        for round in 0..2 {
            mount_overlay(&[p("low")], &p("up"), &p("work"), &p("m"), true).unwrap();
            let opts = fs::read_to_string("/proc/self/mountinfo").unwrap();
            let line = opts
                .lines()
                .find(|l| l.contains(p("m").to_str().unwrap()))
                .unwrap()
                .to_string();
            rustix::mount::unmount(p("m").as_path(), rustix::mount::UnmountFlags::DETACH).unwrap();
            assert!(line.contains("volatile"), "round {round}: {line}");
            // The kernel leaves its mark; without removing it a second mount fails.
            assert!(p("work/work/incompat/volatile").is_dir(), "round {round}");
        }
        // Without the option nothing is marked, and the layer still mounts.
        fs::remove_dir_all(p("work/work/incompat")).unwrap();
        mount_overlay(&[p("low")], &p("up"), &p("work"), &p("m"), false).unwrap();
        let line = fs::read_to_string("/proc/self/mountinfo").unwrap();
        rustix::mount::unmount(p("m").as_path(), rustix::mount::UnmountFlags::DETACH).unwrap();
        assert!(!line.contains("volatile"));
        assert!(!p("work/work/incompat").exists());
    }

    #[test]
    fn drivers_are_chosen_by_name_or_by_what_works() {
        let here = Path::new("/var/tmp");
        assert_eq!(Driver::choose(Some("vfs"), here), Ok((Driver::Vfs, false)));
        assert_eq!(
            Driver::choose(Some("zfs"), here),
            Err("unknown storage driver \"zfs\": use overlay2 or vfs".to_string())
        );
        assert!(Driver::Vfs.extracts_over_parent() && !Driver::Overlay2.extracts_over_parent());
        if rustix::process::geteuid().is_root() {
            // overlayfs works on this machine's /var/tmp: chosen when nothing is asked.
            assert_eq!(Driver::choose(None, here), Ok((Driver::Overlay2, false)));
            assert_eq!(Driver::choose(Some("overlay"), here), Ok((Driver::Overlay2, false)));
        }
    }

    #[test]
    fn layer_roots_spread_their_trees() {
        // /var/tmp: a disk file system here (ext4), where the flag exists.
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let f = fs::File::open(dir.path()).unwrap();
        assert!(!rustix::fs::ioctl_getflags(&f)
            .unwrap()
            .contains(rustix::fs::IFlags::TOPDIR));
        spread_subdirs(dir.path());
        assert!(rustix::fs::ioctl_getflags(&f)
            .unwrap()
            .contains(rustix::fs::IFlags::TOPDIR));
        // Where inode flags do not exist it is a no-op, not an error.
        spread_subdirs(Path::new("/proc"));
    }
}
