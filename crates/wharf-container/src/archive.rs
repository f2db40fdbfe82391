//! `docker cp` (`HEAD`/`GET`/`PUT /containers/{id}/archive`) and the copy of an image's files
//! into a new volume.
//!
//! A running container's files are reached through `/proc/<pid>/root`, the root as its own
//! mount namespace sees it, so its volumes, binds and tmpfs mounts are where the container sees
//! them. A stopped container's root is mounted for the copy, with its volumes and binds bound
//! into it (each destination resolved inside the root), and unmounted after. Either way every
//! path goes through `SafeRoot` (`openat2` `RESOLVE_IN_ROOT`), so a container that swaps a
//! directory for a symlink to `/` while a copy runs only ever redirects it inside itself.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustix::fs::OFlags;
use wharf_store::archive as ar;
/// What `docker cp` says of a path (the `X-Docker-Container-Path-Stat` header).
pub use wharf_store::archive::PathStat;
use wharf_store::saferoot::{clean_relative, SafeRoot};
use wharf_store::{ApplyOptions, WhiteoutMode};

use crate::error::{ContainerError, Result};
use crate::mounts::{self, MountPoint};
use crate::record::Record;
use crate::service::ContainerService;

/// Copy what the image has at `dest` into the volume directory `vol` if the volume is empty
/// (Docker's copy-up of a new volume): contents, ownership and mode of the directory.
pub fn copy_up(rootfs: &Path, dest: &str, vol: &Path) -> Result<()> {
    if std::fs::read_dir(vol)?.next().is_some() {
        return Ok(());
    }
    let root = SafeRoot::open(rootfs)?;
    let comps = clean_relative(Path::new(dest.trim_start_matches('/')))
        .map_err(|m| ContainerError::Invalid(format!("volume destination {dest}: {m}")))?;
    let src = match root.open_dir(&comps, OFlags::RDONLY) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(2) | Some(20)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&src)?;
    rustix::fs::chown(
        vol,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::chmod(vol, rustix::fs::Mode::from_raw_mode(st.st_mode & 0o7777))?;
    // cp walks from the descriptor already resolved inside the root, and -a never follows the
    // symlinks it finds below it.
    let from = format!("/proc/{}/fd/{}/.", std::process::id(), src.as_raw_fd());
    let out = Command::new("cp")
        .args(["-a", "--reflink=auto", &from])
        .arg(vol)
        .output()?;
    if !out.status.success() {
        return Err(ContainerError::Internal(format!(
            "copying the image's {dest} into its volume: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Create a mount's destination in the root before the runtime mounts onto it: the path's
/// symlinks are followed inside the root (as runc does), so an image's `/data -> /srv/data`
/// gets `/srv/data` made in the container, never on the host; a file is made for a file source.
pub fn make_destination(rootfs: &Path, dest: &str, is_dir: bool) -> Result<()> {
    let root = SafeRoot::open(rootfs)?;
    let comps: Vec<std::ffi::OsString> = clean_relative(Path::new(dest.trim_start_matches('/')))
        .map_err(|m| ContainerError::Invalid(format!("mount destination {dest}: {m}")))?
        .into_iter()
        .map(|c| c.to_os_string())
        .collect();
    let resolved = ar::resolve(&root, &comps, true)?;
    let refs: Vec<&OsStr> = resolved.iter().map(|c| c.as_os_str()).collect();
    let Some((last, parent)) = refs.split_last() else {
        return Err(ContainerError::Invalid(format!(
            "mount destination {dest} resolves to /"
        )));
    };
    if is_dir {
        root.mkdir_all(&refs)?;
        return Ok(());
    }
    let pdir = root.mkdir_all(parent)?;
    match rustix::fs::openat(
        &pdir,
        *last,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::from_raw_mode(0o644),
    ) {
        Ok(_) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Where `GET .../archive` writes its tar: a writer that can also end the stream as failed, so
/// that a client never takes a cut-short archive for a whole one.
pub trait ArchiveSink: Write + Send {
    /// End the stream with an error.
    fn abort(&mut self, e: std::io::Error);
}

/// Where a copy reads and writes, and what it must undo.
struct CpRoot {
    root: SafeRoot,
    /// Mounted for this copy (the container was not running).
    mounted: bool,
}

fn not_found(path: &str, id: &str) -> ContainerError {
    ContainerError::PathNotFound(format!("Could not find the file {path} in container {id}"))
}

impl ContainerService {
    /// Open the container's root for a copy.
    fn cp_root(&self, rec: &Record) -> Result<CpRoot> {
        if rec.state.is_running() && rec.state.pid > 0 {
            if let Ok(root) = SafeRoot::open(Path::new(&format!("/proc/{}/root", rec.state.pid))) {
                return Ok(CpRoot { root, mounted: false });
            }
        }
        let merged = self.mount_root(rec)?;
        let root = SafeRoot::open(&merged)?;
        let mut mps = rec.mount_points.clone();
        mounts::sort_for_mounting(&mut mps);
        for mp in mps.iter().filter(|m| m.typ != "tmpfs") {
            if let Err(e) = self.bind_for_copy(rec, &root, mp) {
                self.cp_done(rec, true);
                return Err(e);
            }
        }
        Ok(CpRoot { root, mounted: true })
    }

    fn bind_for_copy(&self, rec: &Record, root: &SafeRoot, mp: &MountPoint) -> Result<()> {
        let src = if mp.typ == "volume" {
            self.volumes().mount(&mp.name, &format!("cp-{}", rec.id))?
        } else {
            PathBuf::from(&mp.source)
        };
        let Ok(meta) = std::fs::metadata(&src) else {
            return Ok(()); // a bind whose source went away: nothing to show there
        };
        let comps = clean_relative(Path::new(mp.destination.trim_start_matches('/')))
            .map_err(|m| ContainerError::Invalid(format!("mount destination {}: {m}", mp.destination)))?;
        let target = if meta.is_dir() {
            root.mkdir_all(&comps)?
        } else {
            let (last, parent) = comps.split_last().expect("destination is never /");
            let pdir = root.mkdir_all(parent)?;
            match rustix::fs::openat(
                &pdir,
                *last,
                OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                rustix::fs::Mode::from_raw_mode(0o644),
            ) {
                Ok(_) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(std::io::Error::from(e).into()),
            }
            root.open_in_root(&comps, OFlags::PATH | OFlags::NOFOLLOW)?
        };
        // Mounting onto the descriptor's magic link: the destination is what was resolved in
        // the root, whatever the path's symlinks say now.
        let at = format!("/proc/self/fd/{}", target.as_raw_fd());
        rustix::mount::mount_bind_recursive(&src, at.as_str())
            .map_err(|e| ContainerError::Internal(format!("binding {} for the copy: {e}", mp.destination)))?;
        if !mp.rw {
            rustix::mount::mount_remount(
                at.as_str(),
                rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY,
                "",
            )
            .map_err(|e| ContainerError::Internal(format!("read-only {}: {e}", mp.destination)))?;
        }
        Ok(())
    }

    /// Undo [`cp_root`]: unmount what it mounted, unless the container started meanwhile
    /// (it then owns the mounted root).
    fn cp_done(&self, rec: &Record, mounted: bool) {
        if !mounted {
            return;
        }
        for mp in rec.mount_points.iter().filter(|m| m.typ == "volume") {
            self.volumes().unmount(&mp.name, &format!("cp-{}", rec.id));
        }
        let now = self.get(&rec.id).map(|r| r.state.is_running()).unwrap_or(false);
        if !now {
            self.unmount_root_only(&rec.id);
        }
    }

    /// Run `f` on the container's root (blocking: call from a blocking thread).
    fn with_cp_root<T>(&self, name: &str, f: impl FnOnce(&SafeRoot, &Record) -> Result<T>) -> Result<T> {
        let rec = self.get(name)?;
        let cp = self.cp_root(&rec)?;
        let r = f(&cp.root, &rec);
        self.cp_done(&rec, cp.mounted);
        r
    }

    /// `HEAD /containers/{id}/archive?path=`.
    pub fn archive_stat(&self, name: &str, path: &str) -> Result<PathStat> {
        self.with_cp_root(name, |root, _| match ar::stat(root, path)? {
            Some((_, st)) => directory_if_asked(path, st),
            None => Err(not_found(path, name)),
        })
    }

    /// `GET /containers/{id}/archive?path=`: the stat, then the tar written to `w` by the
    /// returned closure's caller (the stat goes out in a header before the body).
    pub fn archive_get(
        self: &Arc<Self>,
        name: &str,
        path: &str,
        stat_ready: impl FnOnce(&PathStat) -> Option<Box<dyn ArchiveSink>>,
    ) -> Result<()> {
        // The body ends when the sink is dropped: only after the root mounted for the copy is
        // unmounted again, so a client that has read it all finds nothing of the copy left.
        let mut sink = None;
        let r = self.with_cp_root(name, |root, _| {
            let Some((r, st)) = ar::stat(root, path)? else {
                return Err(not_found(path, name));
            };
            let st = directory_if_asked(path, st)?;
            let Some(mut w) = stat_ready(&st) else { return Ok(()) };
            if let Err(e) = ar::write_tar(&r, &st.name, &mut w) {
                let msg = e.to_string();
                w.abort(e);
                return Err(ContainerError::Internal(msg));
            }
            sink = Some(w);
            Ok(())
        });
        drop(sink);
        r
    }

    /// `PUT /containers/{id}/archive?path=`: extract the tar `body` into the directory `path`.
    pub fn archive_put(
        &self,
        name: &str,
        path: &str,
        body: impl Read,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Result<()> {
        self.with_cp_root(name, |root, rec| {
            let cp = ar::split_path(path);
            let mut all = cp.dir.clone();
            if !cp.base.is_empty() {
                all.push(cp.base.clone());
            }
            let resolved = ar::resolve(root, &all, true)?;
            let refs: Vec<&OsStr> = resolved.iter().map(|c| c.as_os_str()).collect();
            match root.open_dir(&refs, OFlags::PATH) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(20) => {
                    return Err(ContainerError::Invalid("extraction point is not a directory".into()))
                }
                Err(e) if e.raw_os_error() == Some(2) => return Err(not_found(path, name)),
                Err(e) => return Err(e.into()),
            }
            let abs: PathBuf = Path::new("/").join(resolved.iter().collect::<PathBuf>());
            let in_mount = rec
                .mount_points
                .iter()
                .filter(|m| m.typ != "tmpfs" && abs.starts_with(&m.destination))
                .max_by_key(|m| m.destination.len());
            match in_mount {
                Some(m) if !m.rw => return Err(ContainerError::Invalid("mounted volume is marked read-only".into())),
                None if rec.host_config.storage.readonly_rootfs.unwrap_or(false) => {
                    return Err(ContainerError::Invalid("container rootfs is marked read-only".into()))
                }
                _ => {}
            }
            let opts = ApplyOptions {
                whiteouts: WhiteoutMode::Keep,
                chown: if copy_uid_gid { None } else { Some((0, 0)) },
                no_overwrite_dir_non_dir,
                record_files: false,
            };
            wharf_store::apply_tar_in(root, &refs, wharf_store::decompress(body)?, opts).map_err(|e| match e {
                wharf_store::ApplyError::Io { ref source, .. } if source.raw_os_error() == Some(30) => {
                    ContainerError::Invalid(format!("{e}"))
                }
                wharf_store::ApplyError::Io { .. } => ContainerError::Internal(e.to_string()),
                other => ContainerError::Invalid(other.to_string()),
            })?;
            Ok(())
        })
    }
}

/// A path that ends in `/` or `/.` names a directory: anything else there is the client's
/// error (dockerd's "not a directory", 400), never the file's contents.
fn directory_if_asked(path: &str, st: PathStat) -> Result<PathStat> {
    let asks_dir = path.ends_with('/') || path.ends_with("/.");
    if asks_dir && st.mode & (1 << 31) == 0 {
        return Err(ContainerError::Invalid(format!("lstat {path}: not a directory")));
    }
    Ok(st)
}
