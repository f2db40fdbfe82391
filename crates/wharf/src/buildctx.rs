//! `wharf build`'s context by content: the directory walked as the daemon would see it (what
//! `.dockerignore` leaves out is never read, never sent), each file's digest (from a cache of
//! earlier builds' digests when the file's identity and times are unchanged, else read and
//! hashed, on every core), and the tar of only the files the daemon lacks.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use wharf_dockerfile::ignore::Ignore;

use crate::error::{CliError, Result};

/// One entry of the manifest the daemon reads (wharf-builder's `ManifestEntry`).
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub mode: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A file's modification time, which COPY keeps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    /// Where the file is here (not sent).
    #[serde(skip)]
    pub local: Option<PathBuf>,
}

impl Entry {
    /// A directory's entry.
    fn dir(path: String, mode: u32) -> Entry {
        Entry {
            path,
            kind: "dir",
            mode,
            digest: None,
            target: None,
            mtime: None,
            local: None,
        }
    }
}

/// A file's identity and times, by which its digest is remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_ns: i64,
    ctime: i64,
    ctime_ns: i64,
}

impl Stamp {
    fn of(md: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: md.mtime(),
            mtime_ns: md.mtime_nsec(),
            ctime: md.ctime(),
            ctime_ns: md.ctime_nsec(),
        }
    }
}

/// Digests of a context's files from its earlier builds, by absolute path: one file per
/// context directory (`~/.cache/wharf/contexts/<hash of its path>.json`), holding only what
/// the last build of it saw, so it never grows past the context itself.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DigestCache {
    files: HashMap<String, (Stamp, String)>,
    #[serde(skip)]
    path: Option<PathBuf>,
}

impl DigestCache {
    /// The user's cache for the context `root` (empty when there is none or it does not read).
    pub fn load(root: &Path) -> DigestCache {
        let dir = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let name = hex::encode(Sha256::digest(root.as_os_str().as_encoded_bytes()));
        let path = dir.map(|d| d.join("wharf").join("contexts").join(format!("{}.json", &name[..32])));
        let mut c: DigestCache = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        c.path = path;
        c
    }

    /// Writes back what `entries` hold (best effort: a cache that cannot be written costs
    /// only time); what they no longer hold is forgotten.
    pub fn save(&mut self, entries: &[Entry]) {
        let keep: std::collections::HashSet<String> = entries
            .iter()
            .filter_map(|e| e.local.as_ref().map(|p| p.to_string_lossy().into_owned()))
            .collect();
        self.files.retain(|k, _| keep.contains(k));
        let Some(p) = &self.path else { return };
        if let Some(d) = p.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let tmp = p.with_extension(format!("tmp.{}", std::process::id()));
        if let Ok(b) = serde_json::to_vec(self) {
            if std::fs::write(&tmp, b).is_ok() {
                let _ = std::fs::rename(&tmp, p);
            }
        }
    }
}

/// Walks `root`: every entry `.dockerignore` keeps (the Dockerfile and `.dockerignore`
/// always), sorted, directories before their contents.
pub fn walk(root: &Path, ignore: &Ignore, keep: &[&str]) -> Result<Vec<Entry>> {
    fn go(root: &Path, rel: &Path, ignore: &Ignore, keep: &[&str], out: &mut Vec<Entry>) -> std::io::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<std::io::Result<_>>()?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let r = rel.join(e.file_name());
            let name = r.to_string_lossy().into_owned();
            let md = std::fs::symlink_metadata(e.path())?;
            let left_out = ignore.excludes(&name) && !keep.contains(&name.as_str());
            let mode = md.permissions().mode() & 0o7777;
            if md.is_dir() {
                if !left_out {
                    out.push(Entry::dir(name.clone(), mode));
                }
                // An exception may take back something below a left-out directory.
                go(root, &r, ignore, keep, out)?;
            } else if left_out {
                continue;
            } else if md.file_type().is_symlink() {
                let t = std::fs::read_link(e.path())?;
                out.push(Entry {
                    path: name,
                    kind: "symlink",
                    mode,
                    digest: None,
                    target: Some(t.to_string_lossy().into_owned()),
                    mtime: None,
                    local: None,
                });
            } else if md.is_file() {
                out.push(Entry {
                    path: name,
                    kind: "file",
                    mode,
                    digest: None,
                    target: None,
                    mtime: Some(md.mtime()),
                    local: Some(e.path()),
                });
            }
            // Sockets, devices and fifos are not sent, as the docker CLI leaves them out.
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(root, Path::new(""), ignore, keep, &mut out)
        .map_err(|e| CliError::Usage(format!("reading the build context {}: {e}", root.display())))?;
    // A left-out directory whose contents were taken back: its entry, so the tree is whole.
    let mut dirs: std::collections::BTreeSet<String> =
        out.iter().filter(|e| e.kind == "dir").map(|e| e.path.clone()).collect();
    let mut extra = Vec::new();
    for e in &out {
        let mut p = Path::new(&e.path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            let s = d.to_string_lossy().into_owned();
            if dirs.insert(s.clone()) {
                let mode = std::fs::metadata(root.join(d)).map_or(0o755, |m| m.permissions().mode() & 0o7777);
                extra.push(Entry::dir(s, mode));
            }
            p = d.parent();
        }
    }
    out.extend(extra);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn hash_file(p: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(format!("sha256:{}", hex::encode(h.finalize())));
        }
        h.update(&buf[..n]);
    }
}

/// A file hashed: its entry's index, path, stamp and digest.
type Hashed = (usize, PathBuf, Stamp, String);

/// Fills in every file's digest: the cache's when the file is unchanged, else hashed (the
/// files split over the machine's cores).
pub fn digest_all(entries: &mut [Entry], cache: &mut DigestCache) -> Result<()> {
    let mut todo: Vec<(usize, PathBuf, Stamp)> = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        let Some(p) = &e.local else { continue };
        let md = std::fs::metadata(p).map_err(|err| CliError::Usage(format!("{}: {err}", p.display())))?;
        let stamp = Stamp::of(&md);
        match cache.files.get(&p.to_string_lossy().into_owned()) {
            Some((s, d)) if *s == stamp => e.digest = Some(d.clone()),
            _ => todo.push((i, p.clone(), stamp)),
        }
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let chunks: Vec<Vec<(usize, PathBuf, Stamp)>> = {
        let mut c = vec![Vec::new(); workers];
        for (n, t) in todo.into_iter().enumerate() {
            c[n % workers].push(t);
        }
        c
    };
    let results: Vec<std::io::Result<Vec<Hashed>>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(i, p, st)| hash_file(&p).map(|d| (i, p, st, d)))
                        .collect::<std::io::Result<Vec<_>>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("hashing thread")).collect()
    });
    for r in results {
        for (i, p, st, d) in r.map_err(|e| CliError::Usage(format!("hashing the build context: {e}")))? {
            cache.files.insert(p.to_string_lossy().into_owned(), (st, d.clone()));
            entries[i].digest = Some(d);
        }
    }
    Ok(())
}

/// Writes a tar of the files whose digests are in `want` (each once, named by its digest).
pub fn write_blobs(entries: &[Entry], want: &[String], w: impl Write) -> std::io::Result<()> {
    let want: std::collections::HashSet<&String> = want.iter().collect();
    let mut sent = std::collections::HashSet::new();
    let mut b = tar::Builder::new(w);
    for e in entries {
        let (Some(d), Some(p)) = (&e.digest, &e.local) else {
            continue;
        };
        if !want.contains(d) || !sent.insert(d.clone()) {
            continue;
        }
        let mut f = std::fs::File::open(p)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(f.metadata()?.len());
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, d, &mut f)?;
    }
    b.into_inner()?.flush()
}

/// The manifest's JSON: entries and secrets (id to base64).
pub fn manifest(entries: &[Entry], secrets: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::json!({"entries": entries, "secrets": secrets})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_is_what_dockerignore_keeps_and_digests_are_remembered() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("src/keep")).unwrap();
        std::fs::create_dir_all(p.join("node_modules/x")).unwrap();
        std::fs::write(p.join("Dockerfile"), "FROM x\n").unwrap();
        std::fs::write(p.join(".dockerignore"), "node_modules\n*.log\nsrc\n!src/keep\n").unwrap();
        std::fs::write(p.join("src/keep/a"), "a").unwrap();
        std::fs::write(p.join("src/gone"), "g").unwrap();
        std::fs::write(p.join("node_modules/x/big"), "b").unwrap();
        std::fs::write(p.join("debug.log"), "l").unwrap();
        std::os::unix::fs::symlink("src/keep/a", p.join("ln")).unwrap();
        let ig = Ignore::parse(&std::fs::read_to_string(p.join(".dockerignore")).unwrap());
        let mut e = walk(p, &ig, &["Dockerfile", ".dockerignore"]).unwrap();
        let names: Vec<(&str, &str)> = e.iter().map(|e| (e.path.as_str(), e.kind)).collect();
        assert_eq!(
            names,
            [
                (".dockerignore", "file"),
                ("Dockerfile", "file"),
                ("ln", "symlink"),
                ("src", "dir"),
                ("src/keep", "dir"),
                ("src/keep/a", "file"),
            ]
        );
        let mut cache = DigestCache::default();
        digest_all(&mut e, &mut cache).unwrap();
        let a = e
            .iter()
            .find(|x| x.path == "src/keep/a")
            .unwrap()
            .digest
            .clone()
            .unwrap();
        assert_eq!(a, format!("sha256:{}", hex::encode(Sha256::digest(b"a"))));
        // Remembered: a file the cache knows is not read again (a planted wrong digest shows it).
        let key = p.join("src/keep/a").to_string_lossy().into_owned();
        cache.files.get_mut(&key).unwrap().1 = "sha256:remembered".into();
        let mut e2 = walk(p, &ig, &["Dockerfile", ".dockerignore"]).unwrap();
        digest_all(&mut e2, &mut cache).unwrap();
        assert_eq!(
            e2.iter().find(|x| x.path == "src/keep/a").unwrap().digest.as_deref(),
            Some("sha256:remembered")
        );
        // Changed (same size, its times moved): hashed again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(p.join("src/keep/a"), "b").unwrap();
        let mut e3 = walk(p, &ig, &["Dockerfile", ".dockerignore"]).unwrap();
        digest_all(&mut e3, &mut cache).unwrap();
        let b = format!("sha256:{}", hex::encode(Sha256::digest(b"b")));
        assert_eq!(
            e3.iter().find(|x| x.path == "src/keep/a").unwrap().digest.as_deref(),
            Some(b.as_str())
        );
        // Only what is asked for travels, once.
        let mut tar = Vec::new();
        write_blobs(&e3, std::slice::from_ref(&b), &mut tar).unwrap();
        let mut ar = tar::Archive::new(tar.as_slice());
        let got: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|x| x.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(got, [b]);
        // What the context no longer holds is forgotten when the cache is written back.
        std::fs::remove_file(p.join("src/keep/a")).unwrap();
        let e4 = walk(p, &ig, &["Dockerfile", ".dockerignore"]).unwrap();
        cache.save(&e4);
        assert!(!cache.files.contains_key(&key));
        assert_eq!(cache.files.len(), 2, "the Dockerfile and .dockerignore");
    }
}
