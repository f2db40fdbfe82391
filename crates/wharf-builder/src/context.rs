//! The build context: the client's tar (plain or compressed) unpacked with the store's
//! hardened extractor into a directory of the build's own (no entry lands outside it, links
//! and `..` included), and `.dockerignore` applied the way Docker reads its patterns.

use std::io::Read;
use std::path::{Path, PathBuf};

use wharf_store::saferoot::SafeRoot;
use wharf_store::{ApplyOptions, WhiteoutMode};

use crate::{BuildError, Result};

/// Unpack a context tar into `dir` (which exists and is empty). Owners become root's: the
/// client's numbers mean nothing here, and COPY sets its own.
pub fn unpack(body: impl Read, dir: &Path) -> Result<()> {
    let root = SafeRoot::open(dir).map_err(|e| BuildError::Context(format!("{}: {e}", dir.display())))?;
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Keep,
        chown: Some((0, 0)),
        no_overwrite_dir_non_dir: false,
        record_files: false,
    };
    let r = wharf_store::decompress(body).map_err(|e| BuildError::Context(e.to_string()))?;
    wharf_store::apply_tar_in(&root, &[], r, opts)
        .map_err(|e| BuildError::Context(format!("the build context: {e}")))?;
    Ok(())
}

pub use wharf_dockerfile::ignore::{clean, glob, Ignore};

/// Remove what `.dockerignore` leaves out (the Dockerfile and `.dockerignore` themselves stay
/// readable to the builder, as in Docker), so no step can see it.
pub fn apply_ignore(dir: &Path, ignore: &Ignore, keep: &[&str]) -> Result<()> {
    fn walk(base: &Path, rel: &mut PathBuf, ignore: &Ignore, keep: &[&str]) -> std::io::Result<()> {
        for e in std::fs::read_dir(base.join(&*rel))? {
            let e = e?;
            rel.push(e.file_name());
            let name = rel.to_string_lossy().into_owned();
            let ft = e.file_type()?;
            if ignore.excludes(&name) && !keep.contains(&name.as_str()) {
                let p = base.join(&*rel);
                if ft.is_dir() {
                    // An exception may take back something below it.
                    walk(base, rel, ignore, keep)?;
                    let _ = std::fs::remove_dir(&p);
                } else {
                    std::fs::remove_file(&p)?;
                }
            } else if ft.is_dir() {
                walk(base, rel, ignore, keep)?;
            }
            rel.pop();
        }
        Ok(())
    }
    walk(dir, &mut PathBuf::new(), ignore, keep).map_err(|e| BuildError::Context(e.to_string()))
}
