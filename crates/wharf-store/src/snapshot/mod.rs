//! Snapshots in containerd's vocabulary: a `Snapshotter` prepares an active (writable)
//! snapshot over a committed parent and answers the mounts that make it a root, commits an
//! active snapshot under a name so that others can be prepared over it, opens read-only views,
//! applies layer tars onto an active snapshot, writes the changes of a snapshot against its
//! parent as a layer tar (`diff`), measures and removes them. This is what a builder step is
//! (prepare, run, diff, commit) and what a container's root is (an active snapshot over its
//! image's layers).
//!
//! Two implementations: [`OverlaySnapshotter`] (overlayfs: a snapshot is an upper directory
//! over its parents' directories) and [`VfsSnapshotter`] (a snapshot is a whole copy of its
//! parent). Parents are the snapshotter's own committed snapshots, or layers of the layer
//! store, which a [`ParentLayers`] resolves by key (a chain ID). [`testsuite`] is the
//! conformance suite both pass.

mod meta;
mod overlay;
pub mod testsuite;
mod vfs;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::apply::{ApplyError, ApplyStats};

pub use overlay::OverlaySnapshotter;
pub use vfs::VfsSnapshotter;

/// What a snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// Writable; can be committed.
    Active,
    /// Read-only view of a committed snapshot.
    View,
    /// Immutable; can be a parent.
    Committed,
}

/// A snapshot as [`Snapshotter::stat`] and [`Snapshotter::walk`] describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its key (or, once committed, its name).
    pub key: String,
    /// The committed snapshot (or layer) it was prepared over.
    pub parent: Option<String>,
    /// What it is.
    pub kind: Kind,
}

/// How to mount a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A bind mount of one directory.
    Bind {
        /// The directory.
        source: PathBuf,
        /// Mounted read-only.
        readonly: bool,
    },
    /// An overlay: `lowers` top first; with `upper` (upper and work directories) writable.
    Overlay {
        /// The read-only layers, top first.
        lowers: Vec<PathBuf>,
        /// The upper and work directories of a writable overlay.
        upper: Option<(PathBuf, PathBuf)>,
        /// Never synced (`volatile`): for a root thrown away with its container.
        volatile: bool,
    },
}

impl Mount {
    /// Mounts this at `target`.
    pub fn mount(&self, target: &Path) -> io::Result<()> {
        use rustix::mount::{mount_bind, mount_remount, MountFlags};
        match self {
            Mount::Bind { source, readonly } => {
                mount_bind(source.as_path(), target)?;
                if *readonly {
                    mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")?;
                }
                Ok(())
            }
            Mount::Overlay {
                lowers,
                upper,
                volatile,
            } => overlay::mount(lowers, upper.as_ref(), *volatile, target),
        }
    }

    /// The same mount, never synced if it is a writable overlay (see `layer::mount_overlay`).
    pub fn volatile(self) -> Mount {
        match self {
            Mount::Overlay {
                lowers, upper: Some(u), ..
            } => Mount::Overlay {
                lowers,
                upper: Some(u),
                volatile: true,
            },
            m => m,
        }
    }

    /// The directory writes land in: a writable overlay's upper directory, or a writable bind's
    /// source.
    pub fn writable_dir(&self) -> Option<&Path> {
        match self {
            Mount::Bind {
                source,
                readonly: false,
            } => Some(source),
            Mount::Overlay {
                upper: Some((u, _)), ..
            } => Some(u),
            _ => None,
        }
    }
}

/// Unmounts what [`Mount::mount`] mounted at `target`.
pub fn unmount(target: &Path) -> io::Result<()> {
    rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH).map_err(Into::into)
}

/// The space a snapshot's own files take (not its parents').
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of regular files, each hard-linked inode once.
    pub size: u64,
    /// Inodes.
    pub inodes: u64,
}

/// Committed layers the snapshotter does not own (the layer store's), by key.
pub trait ParentLayers: Send + Sync {
    /// The directories of the layer `key` and its parents, top first; `None` when unknown.
    /// (For a vfs store, the first is the layer's whole tree.)
    fn layer_dirs(&self, key: &str) -> Option<Vec<PathBuf>>;
}

/// No parents but the snapshotter's own.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoParents;

impl ParentLayers for NoParents {
    fn layer_dirs(&self, _: &str) -> Option<Vec<PathBuf>> {
        None
    }
}

/// What a snapshot operation can get wrong.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot (or layer) has this key.
    #[error("snapshot {0}: not found")]
    NotFound(String),
    /// The key is taken.
    #[error("snapshot {0}: already exists")]
    AlreadyExists(String),
    /// The snapshot is not in the state the operation needs (committing a view, removing a
    /// parent, preparing over an active snapshot).
    #[error("snapshot {key}: {reason}")]
    FailedPrecondition {
        /// The snapshot.
        key: String,
        /// Why not.
        reason: &'static str,
    },
    /// Applying a layer tar failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The file system failed.
    #[error("snapshot storage: {0}")]
    Io(#[from] io::Error),
}

impl SnapshotError {
    fn precondition(key: &str, reason: &'static str) -> Self {
        SnapshotError::FailedPrecondition {
            key: key.to_string(),
            reason,
        }
    }
}

/// This module's results.
pub type Result<T> = std::result::Result<T, SnapshotError>;

/// Snapshots, as containerd's snapshotter service defines them. Keys are any non-empty
/// strings; a committed snapshot's key is the name it was committed under.
pub trait Snapshotter: Send + Sync + std::fmt::Debug {
    /// A new active snapshot `key` over the committed `parent` (or empty): its mounts.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// A new read-only view `key` of the committed `parent` (or empty): its mounts.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// The mounts of an active snapshot or a view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// Makes the active snapshot `key` the committed snapshot `name`; `key` is gone after.
    fn commit(&self, name: &str, key: &str) -> Result<()>;
    /// Removes a snapshot no other snapshot has as its parent.
    fn remove(&self, key: &str) -> Result<()>;
    /// The snapshot `key`.
    fn stat(&self, key: &str) -> Result<Info>;
    /// Every snapshot, in key order.
    fn walk(&self, f: &mut dyn FnMut(&Info)) -> Result<()>;
    /// The space the snapshot's own files take.
    fn usage(&self, key: &str) -> Result<Usage>;
    /// Applies a layer tar (whiteouts and all) onto the active snapshot `key`.
    fn apply(&self, key: &str, tar: &mut dyn Read) -> Result<ApplyStats>;
    /// Writes the changes of `key` against its parent as a layer tar.
    fn diff(&self, key: &str, w: &mut dyn Write) -> Result<()>;
    /// The changes of `key` against its parent as `docker diff` lists them: path and kind (0
    /// changed, 1 added, 2 deleted), sorted by path.
    fn changes(&self, key: &str) -> Result<Vec<(String, u8)>>;
    /// Deletes the files of removed snapshots ([`Snapshotter::remove`] only takes them out of
    /// sight, so that removal is quick); what a crash leaves goes at the next open.
    fn cleanup(&self) -> Result<()>;
}

/// The snapshotter for `driver`, rooted at `root`, over the layers `parents` resolves.
pub fn open(
    driver: crate::Driver,
    root: &Path,
    parents: std::sync::Arc<dyn ParentLayers>,
) -> Result<Box<dyn Snapshotter>> {
    Ok(match driver {
        crate::Driver::Overlay2 => Box::new(OverlaySnapshotter::open(root, parents)?),
        crate::Driver::Vfs => Box::new(VfsSnapshotter::open(root, parents)?),
    })
}

/// The bytes and inodes under `dir`, each hard-linked inode once.
fn usage_of(dir: &Path) -> io::Result<Usage> {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>, u: &mut Usage) -> io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let md = e.path().symlink_metadata()?;
            if !seen.insert((md.dev(), md.ino())) {
                continue;
            }
            u.inodes += 1;
            if md.is_file() {
                u.size += md.len();
            } else if md.is_dir() {
                walk(&e.path(), seen, u)?;
            }
        }
        Ok(())
    }
    let mut u = Usage::default();
    match std::fs::symlink_metadata(dir) {
        Ok(_) => walk(dir, &mut HashSet::new(), &mut u)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(u)
}
