//! The overlayfs snapshotter: a snapshot is `snapshots/<n>/fs` (its own files, an overlay
//! upper directory) and `snapshots/<n>/work`; mounting it stacks it over its parents' `fs`
//! directories (and the layer store's directories below them). A snapshot over nothing mounts
//! as a bind of its directory. Layer tars apply straight into `fs`, whiteouts as overlayfs
//! keeps them (0/0 character devices, `trusted.overlay.opaque`), and `diff` reads them back
//! from there: nothing is mounted to apply or diff.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::meta::{Meta, Record};
use super::{Info, Kind, Mount, ParentLayers, Result, SnapshotError, Snapshotter, Usage};
use crate::apply::{apply_tar, ApplyStats, WhiteoutMode};

/// Snapshots as overlayfs layers.
pub struct OverlaySnapshotter {
    meta: Meta,
    parents: Arc<dyn ParentLayers>,
}

impl std::fmt::Debug for OverlaySnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlaySnapshotter").field("meta", &self.meta).finish()
    }
}

impl OverlaySnapshotter {
    /// Opens (or creates) the store at `root`, with `parents` for layers it does not own.
    pub fn open(root: &Path, parents: Arc<dyn ParentLayers>) -> Result<Self> {
        Ok(OverlaySnapshotter {
            meta: Meta::open(root)?,
            parents,
        })
    }

    /// The directories of the committed snapshot or layer `key` and its parents, top first.
    fn chain(&self, key: &str) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut next = Some(key.to_string());
        while let Some(k) = next {
            match self.meta.get(&k) {
                Ok(r) => {
                    out.push(self.meta.fs(&r));
                    next = r.parent;
                }
                Err(SnapshotError::NotFound(_)) => {
                    let dirs = self.parents.layer_dirs(&k).ok_or(SnapshotError::NotFound(k.clone()))?;
                    out.extend(dirs);
                    next = None;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn mounts_of(&self, r: &Record) -> Result<Vec<Mount>> {
        let dir = self.meta.dir(r.n);
        let lowers = match &r.parent {
            Some(p) => self.chain(p)?,
            None => Vec::new(),
        };
        Ok(vec![match (r.kind, lowers.len()) {
            (Kind::Active, 0) => Mount::Bind {
                source: dir.join("fs"),
                readonly: false,
            },
            (Kind::Active, _) => Mount::Overlay {
                lowers,
                upper: Some((dir.join("fs"), dir.join("work"))),
                volatile: false,
            },
            (_, 0) => Mount::Bind {
                source: dir.join("fs"),
                readonly: true,
            },
            (_, 1) => Mount::Bind {
                source: lowers[0].clone(),
                readonly: true,
            },
            (_, _) => Mount::Overlay {
                lowers,
                upper: None,
                volatile: false,
            },
        }])
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Vec<Mount>> {
        let rec = self.meta.create(key, parent, kind, |dir| {
            // Checked once the key is reserved: the parent cannot go from here on.
            if let Some(p) = parent {
                self.chain(p)?;
            }
            std::fs::create_dir(dir.join("fs"))?;
            if kind == Kind::Active {
                std::fs::create_dir(dir.join("work"))?;
            }
            Ok(())
        })?;
        self.mounts_of(&rec)
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::View)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.mounts_of(&self.meta.mountable(key)?)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        let r = self.meta.commit(name, key)?;
        // The work directory is overlayfs's scratch space: nothing in it is the snapshot's.
        let _ = std::fs::remove_dir_all(self.meta.dir(r.n).join("work"));
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.meta.remove(key)
    }

    fn stat(&self, key: &str) -> Result<Info> {
        self.meta.info(key)
    }

    fn walk(&self, f: &mut dyn FnMut(&Info)) -> Result<()> {
        self.meta.walk(f);
        Ok(())
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        let r = self.meta.get(key)?;
        Ok(super::usage_of(&self.meta.fs(&r))?)
    }

    fn apply(&self, key: &str, tar: &mut dyn Read) -> Result<ApplyStats> {
        let r = self.meta.active(key)?;
        // Over nothing a whiteout has nothing to hide: it deletes, as in a plain directory.
        let mode = match r.parent {
            Some(_) => WhiteoutMode::Overlay,
            None => WhiteoutMode::Delete,
        };
        Ok(apply_tar(&self.meta.fs(&r), tar, mode)?)
    }

    fn diff(&self, key: &str, w: &mut dyn Write) -> Result<()> {
        let r = self.meta.get(key)?;
        Ok(crate::archive::write_overlay_diff(&self.meta.fs(&r), w)?)
    }

    fn changes(&self, key: &str) -> Result<Vec<(String, u8)>> {
        let r = self.meta.get(key)?;
        let lowers = match &r.parent {
            Some(p) => self.chain(p)?,
            None => Vec::new(),
        };
        let mut out = Vec::new();
        crate::changes::overlay_changes(&self.meta.fs(&r), &lowers, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn cleanup(&self) -> Result<()> {
        self.meta.cleanup()
    }
}

/// Mounts an overlay of `lowers` (top first), writable with `upper`. The classic mount takes
/// all its options in one page; a deeper stack than that holds is mounted through the new
/// mount API, one `lowerdir+` per layer (Linux 6.8), up to overlayfs's own limit.
pub(super) fn mount(
    lowers: &[PathBuf],
    upper: Option<&(PathBuf, PathBuf)>,
    volatile: bool,
    target: &Path,
) -> io::Result<()> {
    if let (Some((u, w)), true) = (upper, volatile) {
        // One call with everything: the classic mount's options, or its kernel refusal.
        return crate::layer::mount_overlay(lowers, u, w, target, true).map_err(|e| match e {
            crate::layer::LayerError::Mount { source, .. } => source,
            e => io::Error::other(e),
        });
    }
    let low: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let mut data = format!("lowerdir={}", low.join(":"));
    if let Some((u, w)) = upper {
        data.push_str(&format!(",upperdir={},workdir={}", u.display(), w.display()));
    }
    if data.len() < 4096 {
        let flags = match upper {
            Some(_) => rustix::mount::MountFlags::empty(),
            None => rustix::mount::MountFlags::RDONLY,
        };
        let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
        return rustix::mount::mount("overlay", target, "overlay", flags, Some(data.as_c_str())).map_err(Into::into);
    }
    mount_fsconfig(lowers, upper, target)
}

/// An overlay through `fsopen`/`fsconfig`/`fsmount`/`move_mount`.
fn mount_fsconfig(lowers: &[PathBuf], upper: Option<&(PathBuf, PathBuf)>, target: &Path) -> io::Result<()> {
    use rustix::mount::{
        fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, FsMountFlags, FsOpenFlags, MountAttrFlags,
        MoveMountFlags,
    };
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for l in lowers {
        fsconfig_set_string(&fs, "lowerdir+", l.as_path())?;
    }
    if let Some((u, w)) = upper {
        fsconfig_set_string(&fs, "upperdir", u.as_path())?;
        fsconfig_set_string(&fs, "workdir", w.as_path())?;
    }
    fsconfig_create(&fs)?;
    let attrs = match upper {
        Some(_) => MountAttrFlags::empty(),
        None => MountAttrFlags::MOUNT_ATTR_RDONLY,
    };
    let m = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
    move_mount(&m, "", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
    Ok(())
}
