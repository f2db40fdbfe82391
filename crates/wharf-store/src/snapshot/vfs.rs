//! The vfs snapshotter: every active snapshot is a whole copy of its parent's tree
//! (`snapshots/<n>/fs`, copied with `cp -a`, which keeps owners, modes, times, devices, hard
//! links and xattrs), mounted as a bind; a view binds its parent's tree read-only. `diff`
//! compares the tree with its parent's as Docker's naive diff does.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::meta::{Meta, Record};
use super::{Info, Kind, Mount, ParentLayers, Result, SnapshotError, Snapshotter, Usage};
use crate::apply::{apply_tar, ApplyStats, WhiteoutMode};

/// Snapshots as whole copies.
pub struct VfsSnapshotter {
    meta: Meta,
    parents: Arc<dyn ParentLayers>,
}

impl std::fmt::Debug for VfsSnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfsSnapshotter").field("meta", &self.meta).finish()
    }
}

impl VfsSnapshotter {
    /// Opens (or creates) the store at `root`, with `parents` for layers it does not own.
    pub fn open(root: &Path, parents: Arc<dyn ParentLayers>) -> Result<Self> {
        Ok(VfsSnapshotter {
            meta: Meta::open(root)?,
            parents,
        })
    }

    /// The whole tree of the committed snapshot or layer `key`.
    fn tree(&self, key: &str) -> Result<PathBuf> {
        match self.meta.get(key) {
            Ok(r) => Ok(self.meta.fs(&r)),
            Err(SnapshotError::NotFound(_)) => self
                .parents
                .layer_dirs(key)
                .and_then(|d| d.into_iter().next())
                .ok_or_else(|| SnapshotError::NotFound(key.to_string())),
            Err(e) => Err(e),
        }
    }

    fn mounts_of(&self, r: &Record) -> Result<Vec<Mount>> {
        let own = self.meta.fs(r);
        Ok(vec![match (r.kind, &r.parent) {
            (Kind::View, Some(p)) => Mount::Bind {
                source: self.tree(p)?,
                readonly: true,
            },
            (kind, _) => Mount::Bind {
                source: own,
                readonly: kind != Kind::Active,
            },
        }])
    }
}

impl Snapshotter for VfsSnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        let rec = self.meta.create(key, parent, Kind::Active, |dir| {
            // Checked once the key is reserved: the parent cannot go from here on.
            let from = parent.map(|p| self.tree(p)).transpose()?;
            match &from {
                Some(tree) => crate::layer::copy_tree(tree, &dir.join("fs"))?,
                None => std::fs::create_dir(dir.join("fs"))?,
            }
            Ok(())
        })?;
        self.mounts_of(&rec)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        let rec = self.meta.create(key, parent, Kind::View, |dir| {
            if let Some(p) = parent {
                self.tree(p)?;
            }
            std::fs::create_dir(dir.join("fs"))?;
            Ok(())
        })?;
        self.mounts_of(&rec)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.mounts_of(&self.meta.mountable(key)?)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.meta.commit(name, key).map(|_| ())
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

    /// A copy holds its parent's files too: its own are what changed (Docker's vfs counts
    /// the same), each added or changed regular file once.
    fn usage(&self, key: &str) -> Result<Usage> {
        use std::os::unix::fs::MetadataExt;
        let r = self.meta.get(key)?;
        let fs = self.meta.fs(&r);
        let mut seen = std::collections::HashSet::new();
        let mut u = Usage::default();
        for (path, kind) in self.changes(key)? {
            let Ok(md) = fs.join(path.trim_start_matches('/')).symlink_metadata() else {
                continue;
            };
            if kind != 2 && seen.insert((md.dev(), md.ino())) {
                u.inodes += 1;
                if md.is_file() {
                    u.size += md.len();
                }
            }
        }
        Ok(u)
    }

    fn apply(&self, key: &str, tar: &mut dyn Read) -> Result<ApplyStats> {
        let r = self.meta.active(key)?;
        Ok(apply_tar(&self.meta.fs(&r), tar, WhiteoutMode::Delete)?)
    }

    fn diff(&self, key: &str, w: &mut dyn Write) -> Result<()> {
        let r = self.meta.get(key)?;
        let changes = self.changes(key)?;
        Ok(crate::archive::write_changes_diff(&self.meta.fs(&r), &changes, w)?)
    }

    fn changes(&self, key: &str) -> Result<Vec<(String, u8)>> {
        let r = self.meta.get(key)?;
        // Over nothing, everything is added (the comparison is with a directory that is not).
        let old = match &r.parent {
            Some(p) => self.tree(p)?,
            None => self.meta.dir(r.n).join("no-parent"),
        };
        let mut out = Vec::new();
        crate::changes::naive_changes(&self.meta.fs(&r), &old, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn cleanup(&self) -> Result<()> {
        self.meta.cleanup()
    }
}
