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

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use sha2::{Digest as _, Sha256};
use wharf_store::saferoot::{clean_relative, SafeRoot};

use crate::copy::ContextDigests;
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
    /// A file's modification time (seconds since 1970), kept as COPY keeps it.
    #[serde(default)]
    pub mtime: Option<i64>,
}

/// The daemon's store of context files.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

/// A directory entry `comps` (in `parent`), with `mode` (an existing one keeps its place).
fn make_dir(root: &SafeRoot, parent: &OwnedFd, comps: &[&OsStr], mode: u32) -> std::io::Result<()> {
    let name = comps.last().copied().unwrap_or_default();
    match rfs::mkdirat(parent, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let d = root.open_dir(comps, OFlags::RDONLY)?;
    rfs::fchmod(&d, Mode::from_raw_mode(mode))?;
    Ok(())
}

/// A stored file's mode and (when given) modification time.
fn set_meta(path: &Path, mode: u32, mtime: Option<i64>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(t) = mtime {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
        std::fs::File::options().write(true).open(path)?.set_modified(t)?;
    }
    Ok(())
}

/// The hex of a `sha256:<hex>` digest, checked.
fn hex_of(d: &str) -> Result<&str> {
    let hex = d
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    hex.ok_or_else(|| BuildError::Context(format!("invalid digest {d:?}")))
}

/// One operation's new files: written under temporary names, and given their names only after
/// one sync of the file system, so a crash never leaves a named blob with unwritten bytes.
/// Until then the operation links to the temporary names (the same inodes).
struct Session<'a> {
    blobs: &'a Blobs,
    store: OwnedFd,
    /// Final name to temporary name.
    pending: HashMap<String, String>,
}

impl<'a> Session<'a> {
    fn new(blobs: &'a Blobs) -> Result<Session<'a>> {
        let store = rfs::open(
            &blobs.dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| BuildError::Context(format!("{}: {e}", blobs.dir.display())))?;
        Ok(Session {
            blobs,
            store,
            pending: HashMap::new(),
        })
    }

    /// The name the store has `name` under now (its temporary one while pending).
    fn current(&self, name: &str) -> Option<String> {
        if let Some(t) = self.pending.get(name) {
            return Some(t.clone());
        }
        self.blobs.dir.join(name).exists().then(|| name.to_string())
    }

    fn temp_name(name: &str) -> String {
        format!(".{name}.{}", wharf_store::random_name())
    }

    /// Adds blob `hex` from `bytes` (unless the store has it), with `mode` and `mtime`.
    fn put_bytes(&mut self, hex: &str, bytes: &[u8], mode: u32, mtime: Option<i64>) -> Result<()> {
        if self.current(hex).is_some() {
            return Ok(());
        }
        let tmp = Self::temp_name(hex);
        let path = self.blobs.dir.join(&tmp);
        std::fs::write(&path, bytes).map_err(|e| BuildError::Context(format!("storing {hex}: {e}")))?;
        set_meta(&path, mode, mtime).map_err(|e| BuildError::Context(format!("storing {hex}: {e}")))?;
        self.pending.insert(hex.to_string(), tmp);
        Ok(())
    }

    /// Adds blob `hex` written already at the temporary name `tmp` (dropped if the store has it).
    fn put_temp(&mut self, hex: &str, tmp: String) {
        if self.current(hex).is_some() {
            let _ = std::fs::remove_file(self.blobs.dir.join(&tmp));
        } else {
            self.pending.insert(hex.to_string(), tmp);
        }
    }

    /// The name of blob `hex` with `mode` (and `mtime`, when one is asked for): the blob
    /// itself when it has them (it was first stored with its first file's), else a copy of
    /// its own, made once.
    fn variant(&mut self, hex: &str, mode: u32, mtime: Option<i64>) -> Result<String> {
        let io = |e: std::io::Error| BuildError::Context(format!("context file {hex}: {e}"));
        // One stat: the blob's name now, and its mode and time.
        let src = self.pending.get(hex).cloned().unwrap_or_else(|| hex.to_string());
        let md = match std::fs::metadata(self.blobs.dir.join(&src)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BuildError::Context(format!(
                    "context file {hex}: its content was never uploaded"
                )))
            }
            r => r.map_err(io)?,
        };
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if md.permissions().mode() & 0o7777 == mode && mtime.is_none_or(|t| t == md.mtime()) {
            return Ok(src);
        }
        let name = match mtime {
            Some(t) => format!("{hex}.{mode:o}.{t}"),
            None => format!("{hex}.{mode:o}"),
        };
        if let Some(n) = self.current(&name) {
            return Ok(n);
        }
        let tmp = Self::temp_name(&name);
        let path = self.blobs.dir.join(&tmp);
        std::fs::copy(self.blobs.dir.join(&src), &path).map_err(|e| {
            let _ = std::fs::remove_file(&path);
            io(e)
        })?;
        set_meta(&path, mode, mtime).map_err(io)?;
        self.pending.insert(name, tmp.clone());
        Ok(tmp)
    }

    /// Links the store's `name` as `dir_fd/entry` (replacing a file an earlier entry left).
    fn link(&self, name: &str, dir: &OwnedFd, entry: &OsStr) -> std::io::Result<()> {
        match rfs::linkat(&self.store, OsStr::new(name), dir, entry, AtFlags::empty()) {
            Err(rustix::io::Errno::EXIST) => {
                rfs::unlinkat(dir, entry, AtFlags::empty())?;
                Ok(rfs::linkat(
                    &self.store,
                    OsStr::new(name),
                    dir,
                    entry,
                    AtFlags::empty(),
                )?)
            }
            r => Ok(r?),
        }
    }

    /// Syncs what was written, then names it.
    fn commit(self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let bad = |e: &dyn std::fmt::Display| BuildError::Context(format!("storing context files: {e}"));
        let d = rfs::open(
            &self.blobs.dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| bad(&e))?;
        rfs::syncfs(&d).map_err(|e| bad(&e))?;
        for (name, tmp) in &self.pending {
            std::fs::rename(self.blobs.dir.join(tmp), self.blobs.dir.join(name)).map_err(|e| bad(&e))?;
        }
        Ok(())
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // Not committed (an error): the temporary files go; links to them may stay in a
        // context that is about to be removed.
        for tmp in self.pending.values() {
            let _ = std::fs::remove_file(self.blobs.dir.join(tmp));
        }
    }
}

/// The directories of a context being made, each resolved once through its [`SafeRoot`].
struct Parents<'r> {
    root: &'r SafeRoot,
    open: HashMap<Vec<std::ffi::OsString>, OwnedFd>,
}

impl<'r> Parents<'r> {
    fn new(root: &'r SafeRoot) -> Parents<'r> {
        Parents {
            root,
            open: HashMap::new(),
        }
    }

    /// The directory `comps` (made when missing), as `SafeRoot::mkdir_all` finds it.
    fn get(&mut self, comps: &[&OsStr]) -> std::io::Result<&OwnedFd> {
        let key: Vec<std::ffi::OsString> = comps.iter().map(|c| c.to_os_string()).collect();
        if !self.open.contains_key(&key) {
            let fd = self.root.mkdir_all(comps)?;
            self.open.insert(key.clone(), fd);
        }
        Ok(&self.open[&key])
    }
}

/// Files up to this size are hashed in memory before they are written (most of a context).
const IN_MEMORY: u64 = 8 << 20;

impl Blobs {
    /// The store in `dir` (made if missing; what a crash left half done is removed).
    pub fn open(dir: PathBuf) -> std::io::Result<Blobs> {
        std::fs::create_dir_all(&dir)?;
        for e in std::fs::read_dir(&dir)?.flatten() {
            if e.file_name().as_encoded_bytes().starts_with(b".") {
                let _ = std::fs::remove_file(e.path());
            }
        }
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

    /// Reads `r` into the store as a blob (a new one with `mode` and `mtime`); returns its hex.
    fn take(&self, s: &mut Session<'_>, r: &mut dyn Read, size: u64, mode: u32, mtime: Option<i64>) -> Result<String> {
        let bad = |e: &dyn std::fmt::Display| BuildError::Context(format!("context file: {e}"));
        let mut h = Sha256::new();
        if size <= IN_MEMORY {
            let mut bytes = Vec::with_capacity(size as usize);
            r.read_to_end(&mut bytes).map_err(|e| bad(&e))?;
            h.update(&bytes);
            let hex = hex::encode(h.finalize());
            s.put_bytes(&hex, &bytes, mode, mtime)?;
            return Ok(hex);
        }
        let tmp = Session::temp_name("big");
        let path = self.dir.join(&tmp);
        let r2 = (|| -> Result<String> {
            let mut f = std::fs::File::create(&path).map_err(|e| bad(&e))?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let k = r.read(&mut buf).map_err(|e| bad(&e))?;
                if k == 0 {
                    break;
                }
                h.update(&buf[..k]);
                f.write_all(&buf[..k]).map_err(|e| bad(&e))?;
            }
            drop(f);
            set_meta(&path, mode, mtime).map_err(|e| bad(&e))?;
            Ok(hex::encode(h.finalize()))
        })();
        match r2 {
            Ok(hex) => {
                s.put_temp(&hex, tmp);
                Ok(hex)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Takes a tar of blobs, each a regular file named by its digest; returns how many. A blob
    /// whose bytes do not match its name is refused, and nothing of it stays.
    pub fn receive(&self, r: impl Read) -> Result<usize> {
        let bad = |e: &dyn std::fmt::Display| BuildError::Context(format!("context upload: {e}"));
        let mut s = Session::new(self)?;
        let mut ar = tar::Archive::new(r);
        let mut n = 0;
        for e in ar.entries().map_err(|e| bad(&e))? {
            let mut e = e.map_err(|e| bad(&e))?;
            if e.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = e.path().map_err(|e| bad(&e))?.to_string_lossy().into_owned();
            let want = hex_of(&name)?.to_string();
            let size = e.size();
            let got = self.take(&mut s, &mut e, size, 0o644, None)?;
            if got != want {
                return Err(bad(&format!("{name} does not match its content")));
            }
            n += 1;
        }
        // One sync for the lot, before the client is told they are here.
        s.commit()?;
        Ok(n)
    }

    /// Makes the context `m` describes in `dir` (which exists and is empty); returns its
    /// files' content digests.
    pub fn materialize(&self, m: &Manifest, dir: &Path) -> Result<ContextDigests> {
        let root = SafeRoot::open(dir).map_err(|e| BuildError::Context(format!("{}: {e}", dir.display())))?;
        let mut parents = Parents::new(&root);
        let mut s = Session::new(self)?;
        let mut known = ContextDigests::new();
        self.touch();
        for e in &m.entries {
            let bad = |why: &dyn std::fmt::Display| BuildError::Context(format!("context entry {:?}: {why}", e.path));
            let p = Path::new(&e.path);
            let comps = clean_relative(p).map_err(|w| bad(&w))?;
            let Some((name, parent)) = comps.split_last() else {
                continue;
            };
            let pfd = parents.get(parent).map_err(|w| bad(&w))?;
            let mode = e.mode & 0o7777;
            match e.kind.as_str() {
                "dir" => make_dir(&root, pfd, &comps, mode).map_err(|w| bad(&w))?,
                "file" => {
                    let hex = hex_of(e.digest.as_deref().unwrap_or(""))?;
                    let v = s.variant(hex, mode, e.mtime)?;
                    s.link(&v, pfd, name).map_err(|w| bad(&w))?;
                    known.insert(dir.join(comps.iter().collect::<PathBuf>()), hex.to_string());
                }
                "symlink" => {
                    let target = e.target.as_deref().unwrap_or("");
                    rfs::symlinkat(target, pfd, *name).map_err(|w| bad(&w))?;
                }
                other => return Err(bad(&format!("unknown type {other:?}"))),
            }
        }
        s.commit()?;
        Ok(known)
    }

    /// A context tar (plain or compressed, as the docker CLI sends it) made into `dir` (empty)
    /// of links into the store: a file the store holds already (the same context built again)
    /// is only hashed, never written, and no file of the context costs an inode of its own.
    /// Paths resolve inside `dir` through [`SafeRoot`]; owners are root's, as with any context.
    pub fn unpack_context(&self, r: impl Read, dir: &Path) -> Result<ContextDigests> {
        let bad = |e: &dyn std::fmt::Display| BuildError::Context(format!("the build context: {e}"));
        let root = SafeRoot::open(dir).map_err(|e| bad(&e))?;
        let mut parents = Parents::new(&root);
        let mut s = Session::new(self)?;
        self.touch();
        let mut ar = tar::Archive::new(wharf_store::decompress(r).map_err(|e| bad(&e))?);
        // Files by their path in the context, for hard links (the store's name, the digest).
        let mut seen: HashMap<PathBuf, (String, String)> = HashMap::new();
        for e in ar.entries().map_err(|e| bad(&e))? {
            let mut e = e.map_err(|e| bad(&e))?;
            let path = e.path().map_err(|e| bad(&e))?.into_owned();
            let comps = clean_relative(&path).map_err(|w| bad(&format!("{}: {w}", path.display())))?;
            let Some((name, parent)) = comps.split_last() else {
                continue;
            };
            let key: PathBuf = comps.iter().collect();
            let pfd = parents
                .get(parent)
                .map_err(|w| bad(&format!("{}: {w}", path.display())))?;
            let mode = e.header().mode().map_err(|w| bad(&w))? & 0o7777;
            match e.header().entry_type() {
                tar::EntryType::Directory => {
                    make_dir(&root, pfd, &comps, mode).map_err(|w| bad(&format!("{}: {w}", path.display())))?
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = e.size();
                    let mtime = e.header().mtime().ok().map(|t| t.min(i64::MAX as u64) as i64);
                    let hex = self.take(&mut s, &mut e, size, mode, mtime)?;
                    let v = s.variant(&hex, mode, mtime)?;
                    s.link(&v, pfd, name)
                        .map_err(|w| bad(&format!("{}: {w}", path.display())))?;
                    seen.insert(key, (v, hex));
                }
                tar::EntryType::Link => {
                    let target = e.link_name().map_err(|w| bad(&w))?.unwrap_or_default().into_owned();
                    let t: PathBuf = clean_relative(&target).map_err(|w| bad(&w))?.iter().collect();
                    let v = seen
                        .get(&t)
                        .cloned()
                        .ok_or_else(|| bad(&format!("{}: a link to {} before it", path.display(), target.display())))?;
                    s.link(&v.0, pfd, name)
                        .map_err(|w| bad(&format!("{}: {w}", path.display())))?;
                    seen.insert(key, v);
                }
                tar::EntryType::Symlink => {
                    let target = e.link_name().map_err(|w| bad(&w))?.unwrap_or_default().into_owned();
                    let _ = rfs::unlinkat(pfd, *name, AtFlags::empty());
                    rfs::symlinkat(target.as_path(), pfd, *name)
                        .map_err(|w| bad(&format!("{}: {w}", path.display())))?;
                }
                // Devices, fifos and the like mean nothing in a context, as in Docker.
                _ => {}
            }
        }
        s.commit()?;
        Ok(seen.into_iter().map(|(k, (_, hex))| (dir.join(k), hex)).collect())
    }

    /// The store's size in bytes (each stored file once), and when a build last used it
    /// (seconds since 1970; 0 when never).
    pub fn usage(&self) -> (u64, i64) {
        use std::os::unix::fs::MetadataExt;
        let mut size = 0;
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if let Ok(md) = e.metadata() {
                    size += md.len();
                }
            }
        }
        let last = std::fs::metadata(self.used_mark()).map_or(0, |m| m.mtime());
        (size, last)
    }

    /// Beside the store: its modification time is when a build last used it.
    fn used_mark(&self) -> PathBuf {
        self.dir.with_extension("used")
    }

    /// A build uses the store now (the mark is rewritten in place: no new file each time).
    fn touch(&self) {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(self.used_mark())
            .and_then(|mut f| f.write_all(b"used\n"));
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
            mtime: None,
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

    #[test]
    fn a_context_tar_becomes_links_to_the_store_safely_and_twice_costs_no_writes() {
        let d = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(d.path().join("blobs")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, kind: tar::EntryType, mode: u32, body: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_mtime(1_600_000_000);
            h.set_size(body.len() as u64);
            match link {
                Some(l) => b.append_link(&mut h, name, l).unwrap(),
                None => b.append_data(&mut h, name, body).unwrap(),
            }
        };
        add("app/", tar::EntryType::Directory, 0o750, b"", None);
        add("app/run", tar::EntryType::Regular, 0o755, b"#!/bin/sh\n", None);
        add("app/same", tar::EntryType::Regular, 0o644, b"#!/bin/sh\n", None);
        add("app/hard", tar::EntryType::Link, 0o755, b"", Some("app/run"));
        add("up", tar::EntryType::Symlink, 0o777, b"", Some("/"));
        add("up/etc/evil", tar::EntryType::Regular, 0o644, b"x", None);
        let ok = b.into_inner().unwrap();
        let ctx = d.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        blobs.unpack_context(&ok[..], &ctx).unwrap();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let md = |p: &str| std::fs::symlink_metadata(ctx.join(p)).unwrap();
        assert_eq!(std::fs::read(ctx.join("app/run")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(md("app").permissions().mode() & 0o7777, 0o750);
        assert_eq!(md("app/run").permissions().mode() & 0o7777, 0o755);
        assert_eq!(md("app/same").permissions().mode() & 0o7777, 0o644);
        assert_eq!(md("app/run").mtime(), 1_600_000_000);
        assert_eq!(md("app/hard").ino(), md("app/run").ino());
        // Through a link to "/": the context's own etc, never the host's.
        assert_eq!(std::fs::read(ctx.join("etc/evil")).unwrap(), b"x");
        let files = |d: &Path| std::fs::read_dir(d).unwrap().count();
        let stored = files(&d.path().join("blobs"));
        // The same context again: every file from the store, nothing written to it.
        let ctx2 = d.path().join("ctx2");
        std::fs::create_dir(&ctx2).unwrap();
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&ok).unwrap();
            e.finish().unwrap()
        };
        blobs.unpack_context(&gz[..], &ctx2).unwrap();
        assert_eq!(files(&d.path().join("blobs")), stored);
        assert_eq!(
            std::fs::metadata(ctx2.join("app/run")).unwrap().ino(),
            md("app/run").ino()
        );
        // Entries that climb out are refused; nothing lands outside.
        for (name, kind, link) in [
            ("../out", tar::EntryType::Regular, None),
            ("a/../../out", tar::EntryType::Regular, None),
            ("x", tar::EntryType::Link, Some("../../etc/passwd")),
        ] {
            let mut t = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(if link.is_some() { 0 } else { 1 });
            h.set_mode(0o644);
            // The tar crate refuses to write `..` itself: the name goes in the header's bytes.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            t.append(&h, if link.is_some() { &b""[..] } else { &b"x"[..] }).unwrap();
            let c = tempfile::tempdir().unwrap();
            assert!(
                blobs.unpack_context(&t.into_inner().unwrap()[..], c.path()).is_err(),
                "{name}"
            );
        }
        assert!(!d.path().join("out").exists());
    }
}
