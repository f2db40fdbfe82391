//! Contexts by content, for clients that can do better than a tar of everything (`wharf
//! build`): the client sends a manifest of its context (paths, types, modes, and each file's
//! digest), learns which digests the daemon lacks, and uploads only those. The daemon keeps
//! every file it was sent once in a store of its own, one file per digest, and makes a
//! build's context of links into it, so the second build of a large context moves almost
//! nothing.
//!
//! A blob is verified against its digest before it is visible, and the upload is synced to
//! disk (once, for the whole file system) before the client hears it was taken. A context is
//! made through [`SafeRoot`]: a path of the manifest resolves inside the context, whatever
//! links other entries planted. A file's mode is its own: the store keeps one copy per digest
//! and mode, which every context with that file links to.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use sha2::{Digest as _, Sha256};
use wharf_store::saferoot::{clean_relative, SafeRoot};

use crate::{BuildError, Result};

/// A context as a client describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Every entry; a directory before what is in it.
    pub entries: Vec<ManifestEntry>,
    /// `--secret`s: id to content (base64), for `RUN --mount=type=secret`; never stored.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

/// One path of a context.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestEntry {
    /// Relative, `/`-separated.
    pub path: String,
    /// `file`, `dir` or `symlink`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Permission bits.
    #[serde(default)]
    pub mode: u32,
    /// A file's `sha256:<hex>`.
    #[serde(default)]
    pub digest: Option<String>,
    /// A link's target.
    #[serde(default)]
    pub target: Option<String>,
}

/// The daemon's store of context files.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

/// The hex of a `sha256:<hex>` digest, checked.
fn hex_of(d: &str) -> Result<&str> {
    let hex = d
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    hex.ok_or_else(|| BuildError::Context(format!("invalid digest {d:?}")))
}

impl Blobs {
    /// The store in `dir` (made if missing).
    pub fn open(dir: PathBuf) -> std::io::Result<Blobs> {
        std::fs::create_dir_all(&dir)?;
        Ok(Blobs { dir })
    }

    /// Of `digests`, those the store lacks.
    pub fn missing(&self, digests: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for d in digests {
            if !self.dir.join(hex_of(d)?).exists() {
                out.push(d.clone());
            }
        }
        Ok(out)
    }

    /// Takes a tar of blobs, each a regular file named by its digest; returns how many. A blob
    /// whose bytes do not match its name is refused, and nothing of it stays.
    pub fn receive(&self, r: impl Read) -> Result<usize> {
        let bad = |e: &dyn std::fmt::Display| BuildError::Context(format!("context upload: {e}"));
        let mut ar = tar::Archive::new(r);
        let mut n = 0;
        for e in ar.entries().map_err(|e| bad(&e))? {
            let mut e = e.map_err(|e| bad(&e))?;
            if e.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = e.path().map_err(|e| bad(&e))?.to_string_lossy().into_owned();
            let hex = hex_of(&name)?.to_string();
            let tmp = self.dir.join(format!(".{hex}.{}", wharf_store::random_name()));
            let r = (|| -> Result<()> {
                let mut f = std::fs::File::create(&tmp).map_err(|e| bad(&e))?;
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let k = e.read(&mut buf).map_err(|e| bad(&e))?;
                    if k == 0 {
                        break;
                    }
                    h.update(&buf[..k]);
                    f.write_all(&buf[..k]).map_err(|e| bad(&e))?;
                }
                if hex::encode(h.finalize()) != hex {
                    return Err(BuildError::Context(format!(
                        "context upload: {name} does not match its content"
                    )));
                }
                std::fs::rename(&tmp, self.dir.join(&hex)).map_err(|e| bad(&e))
            })();
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r?;
            n += 1;
        }
        // One sync for the lot, before the client is told they are here.
        let d = rfs::open(
            &self.dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| bad(&e))?;
        rfs::syncfs(&d).map_err(|e| bad(&e))?;
        Ok(n)
    }

    /// The store's copy of `hex` with `mode`, made once.
    fn variant(&self, hex: &str, mode: u32) -> Result<String> {
        let name = format!("{hex}.{mode:o}");
        let path = self.dir.join(&name);
        if path.exists() {
            return Ok(name);
        }
        let io = |e: std::io::Error| BuildError::Context(format!("context file {hex}: {e}"));
        let tmp = self.dir.join(format!(".{name}.{}", wharf_store::random_name()));
        std::fs::copy(self.dir.join(hex), &tmp).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(name)
    }

    /// Makes the context `m` describes in `dir` (which exists and is empty).
    pub fn materialize(&self, m: &Manifest, dir: &Path) -> Result<()> {
        let root = SafeRoot::open(dir).map_err(|e| BuildError::Context(format!("{}: {e}", dir.display())))?;
        let store = rfs::open(
            &self.dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| BuildError::Context(e.to_string()))?;
        for e in &m.entries {
            let bad = |why: &dyn std::fmt::Display| BuildError::Context(format!("context entry {:?}: {why}", e.path));
            let p = Path::new(&e.path);
            let comps = clean_relative(p).map_err(|w| bad(&w))?;
            let Some((name, parent)) = comps.split_last() else {
                continue;
            };
            let pfd = root.mkdir_all(parent).map_err(|w| bad(&w))?;
            let mode = e.mode & 0o7777;
            match e.kind.as_str() {
                "dir" => {
                    match rfs::mkdirat(&pfd, *name, Mode::from_raw_mode(mode)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(w) => return Err(bad(&w)),
                    }
                    let d = root.open_dir(&comps, OFlags::RDONLY).map_err(|w| bad(&w))?;
                    rfs::fchmod(&d, Mode::from_raw_mode(mode)).map_err(|w| bad(&w))?;
                }
                "file" => {
                    let hex = hex_of(e.digest.as_deref().unwrap_or(""))?;
                    if !self.dir.join(hex).exists() {
                        return Err(bad(&"its content was never uploaded"));
                    }
                    let v = self.variant(hex, mode)?;
                    rfs::linkat(&store, OsStr::new(&v), &pfd, *name, AtFlags::empty()).map_err(|w| bad(&w))?;
                }
                "symlink" => {
                    let target = e.target.as_deref().unwrap_or("");
                    rfs::symlinkat(target, &pfd, *name).map_err(|w| bad(&w))?;
                }
                other => return Err(bad(&format!("unknown type {other:?}"))),
            }
            let _ = pfd.as_fd();
        }
        Ok(())
    }

    /// The store's size in bytes, and when it was last written (seconds since 1970).
    pub fn usage(&self) -> (u64, i64) {
        let mut size = 0;
        let mut last = 0;
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if let Ok(md) = e.metadata() {
                    size += md.len();
                    last = last.max(
                        md.modified()
                            .ok()
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map_or(0, |d| d.as_secs() as i64),
                    );
                }
            }
        }
        (size, last)
    }

    /// Forgets every blob; returns the bytes freed.
    pub fn clear(&self) -> std::io::Result<u64> {
        let (size, _) = self.usage();
        for e in std::fs::read_dir(&self.dir)? {
            std::fs::remove_file(e?.path())?;
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob_tar(items: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, body) in items {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *body).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn digest(b: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(b)))
    }

    fn entry(path: &str, kind: &str, mode: u32, digest: Option<String>, target: Option<&str>) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            kind: kind.into(),
            mode,
            digest,
            target: target.map(String::from),
        }
    }

    #[test]
    fn only_missing_content_travels_and_contexts_are_made_of_it_safely() {
        let d = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(d.path().join("blobs")).unwrap();
        let (a, b) = (digest(b"alpha"), digest(b"beta"));
        assert_eq!(blobs.missing(&[a.clone(), b.clone()]).unwrap(), [a.clone(), b.clone()]);
        assert_eq!(blobs.receive(&blob_tar(&[(&a, b"alpha")])[..]).unwrap(), 1);
        assert_eq!(
            blobs.missing(&[a.clone(), b.clone()]).unwrap(),
            std::slice::from_ref(&b)
        );
        // Bytes that are not what their name says are refused, and leave nothing.
        assert!(blobs.receive(&blob_tar(&[(&b, b"not beta")])[..]).is_err());
        assert_eq!(
            blobs.missing(std::slice::from_ref(&b)).unwrap(),
            std::slice::from_ref(&b)
        );
        assert!(blobs.missing(&["sha256:../../etc".into()]).is_err());

        let m = Manifest {
            entries: vec![
                entry("app", "dir", 0o750, None, None),
                entry("app/run", "file", 0o755, Some(a.clone()), None),
                entry("app/data", "file", 0o600, Some(a.clone()), None),
                entry("etc", "dir", 0o755, None, None),
                entry("link", "symlink", 0o777, None, Some("/etc")),
                // Through a link to "/etc": the context's own etc, never the host's.
                entry("link/passwd", "file", 0o644, Some(a.clone()), None),
            ],
            secrets: BTreeMap::new(),
        };
        let ctx = d.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        blobs.materialize(&m, &ctx).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::symlink_metadata(ctx.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode("app"), mode("app/run"), mode("app/data")), (0o750, 0o755, 0o600));
        assert_eq!(std::fs::read(ctx.join("app/run")).unwrap(), b"alpha");
        assert_eq!(std::fs::read_link(ctx.join("link")).unwrap(), Path::new("/etc"));
        assert_eq!(std::fs::read(ctx.join("etc/passwd")).unwrap(), b"alpha");
        for bad in [
            entry("../escape", "file", 0o644, Some(a.clone()), None),
            entry("nowhere/x", "file", 0o644, Some(a.clone()), None),
        ] {
            let m = Manifest {
                entries: vec![entry("nowhere", "symlink", 0o777, None, Some("/tmp/none-such")), bad],
                secrets: BTreeMap::new(),
            };
            let c = tempfile::tempdir().unwrap();
            assert!(blobs.materialize(&m, c.path()).is_err());
        }
        assert!(!d.path().join("escape").exists() && !Path::new("/tmp/none-such").exists());
        // A file whose content never came is an error, not an empty file.
        let m2 = Manifest {
            entries: vec![entry("f", "file", 0o644, Some(b.clone()), None)],
            secrets: BTreeMap::new(),
        };
        let ctx2 = d.path().join("ctx2");
        std::fs::create_dir(&ctx2).unwrap();
        assert!(blobs.materialize(&m2, &ctx2).is_err());
        assert!(blobs.clear().unwrap() > 0);
        assert_eq!(blobs.missing(std::slice::from_ref(&a)).unwrap(), [a]);
    }
}
