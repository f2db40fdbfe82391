//! A layer's changes as Docker lists them (`docker diff`, and the entries of a layer tar):
//! from an overlay upper directory (a 0/0 character device is a deletion), or by comparing two
//! whole trees (Docker's naive diff, for vfs). Kinds: 0 changed, 1 added, 2 deleted.

use std::path::{Path, PathBuf};

/// Walk an overlay upper directory: a 0/0 character device is a deletion, a path the lower
/// layers have too is a change, anything else an addition (Docker's overlay2 diff).
pub fn overlay_changes(upper: &Path, lowers: &[PathBuf], out: &mut Vec<(String, u8)>) -> std::io::Result<()> {
    fn walk(dir: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<(String, u8)>) -> std::io::Result<()> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut ents: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
        ents.sort_by_key(|e| e.file_name());
        for e in ents {
            let md = e.path().symlink_metadata()?;
            let r = rel.join(e.file_name());
            let path = format!("/{}", r.display());
            if md.file_type().is_char_device() && md.rdev() == 0 {
                out.push((path, 2));
                continue;
            }
            let in_lower = lowers.iter().any(|l| l.join(&r).symlink_metadata().is_ok());
            out.push((path, if in_lower { 0 } else { 1 }));
            if md.is_dir() {
                walk(&e.path(), &r, lowers, out)?;
            }
        }
        Ok(())
    }
    walk(upper, Path::new(""), lowers, out)?;
    Ok(())
}

/// Paths of the init layer (bind-mounted files and the runtime's mount points): never part of
/// a container's changes, as they are not in Docker's read-write layer.
const INIT_FILES: &[&str] = &["/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/console"];
/// Mount point directories the runtime makes when the image lacks them.
const INIT_DIRS: &[&str] = &["/dev", "/dev/pts", "/dev/shm", "/proc", "/sys", "/etc"];

/// Docker's naive diff (`ChangesDirs`, what it uses for vfs): compare the container's root
/// `new` with its image's `old` by type, mode, owner, device and, for non-directories, size,
/// modification time and link count (a new hard link to a file changes it, as overlayfs's copy
/// up shows it); a directory holding changes is itself changed. Kinds: 0 changed,
/// 1 added, 2 deleted; unsorted.
pub fn naive_changes(new: &Path, old: &Path, out: &mut Vec<(String, u8)>) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    fn differs(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
        a.mode() != b.mode()
            || a.uid() != b.uid()
            || a.gid() != b.gid()
            || a.rdev() != b.rdev()
            || (!a.is_dir()
                && (a.size() != b.size()
                    || a.mtime() != b.mtime()
                    || a.mtime_nsec() != b.mtime_nsec()
                    || a.nlink() != b.nlink()))
    }
    fn names(dir: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
        match std::fs::read_dir(dir) {
            Ok(rd) => Ok(rd.flatten().map(|e| e.file_name()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
    /// Everything below an added directory is added.
    fn all_added(dir: &Path, rel: &str, out: &mut Vec<(String, u8)>) -> std::io::Result<()> {
        for n in names(dir)? {
            let path = format!("{rel}/{}", n.to_string_lossy());
            let p = dir.join(&n);
            out.push((path.clone(), 1));
            if p.symlink_metadata()?.is_dir() {
                all_added(&p, &path, out)?;
            }
        }
        Ok(())
    }
    /// Returns whether anything below `rel` changed.
    fn walk(new: &Path, old: &Path, rel: &str, out: &mut Vec<(String, u8)>) -> std::io::Result<bool> {
        let mut changed = false;
        let new_names = names(new)?;
        for n in &new_names {
            let path = format!("{rel}/{}", n.to_string_lossy());
            let (np, op) = (new.join(n), old.join(n));
            let nmd = np.symlink_metadata()?;
            let omd = op.symlink_metadata().ok();
            if INIT_FILES.contains(&path.as_str()) || (omd.is_none() && INIT_DIRS.contains(&path.as_str())) {
                continue;
            }
            match omd {
                None => {
                    out.push((path.clone(), 1));
                    if nmd.is_dir() {
                        all_added(&np, &path, out)?;
                    }
                    changed = true;
                }
                Some(omd) => {
                    let inner = nmd.is_dir() && omd.is_dir() && walk(&np, &op, &path, out)?;
                    let mine = differs(&nmd, &omd) || nmd.file_type() != omd.file_type();
                    if mine || inner {
                        out.push((path.clone(), 0));
                        changed = true;
                    }
                    if nmd.is_dir() && !omd.is_dir() {
                        all_added(&np, &path, out)?;
                    }
                }
            }
        }
        for n in names(old)? {
            if !new_names.contains(&n) {
                out.push((format!("{rel}/{}", n.to_string_lossy()), 2));
                changed = true;
            }
        }
        Ok(changed)
    }
    walk(new, old, "", out)?;
    Ok(())
}
