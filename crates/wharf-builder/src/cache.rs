//! The build cache: a step's key (its parent image, the instruction as expanded, the build
//! arguments it can see, and for COPY and ADD the digest of the files' contents and metadata,
//! never their times) to the image this builder made for it. Only this builder writes entries,
//! so an image that was loaded or pulled is never a cache hit (moby's CVE-2024-24557). Each
//! entry is a file written whole (temporary file, fsync, rename), so the cache survives a
//! daemon restart and a crash leaves no half entry.

use std::io::Write;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use wharf_reference::Digest;

/// A step's cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// The key of a step: `parent` (`None`: `scratch`), the instruction as the build shows it
    /// with its variables expanded, the build arguments in scope (`NAME=value`, any order),
    /// and what else decides the result (COPY's content digest, RUN's network).
    pub fn new(parent: Option<&Digest>, instruction: &str, args: &[String], extra: &[&str]) -> Key {
        let mut h = Sha256::new();
        let mut field = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        field(&parent.map_or("scratch".to_string(), |p| p.to_string()));
        field(instruction);
        let mut args = args.to_vec();
        args.sort();
        field(&args.len().to_string());
        for a in &args {
            field(a);
        }
        for e in extra {
            field(e);
        }
        Key(hex::encode(h.finalize()))
    }
}

impl Key {
    /// This key for a build that differs in how it records what it makes (a reproducible
    /// build's epoch): its images are not another build's.
    pub fn salted(&self, salt: &str) -> Key {
        Key::new(None, &self.0, &[], &[salt])
    }
}

/// What the cache holds for a key: the image and what made it, and how it has been used
/// (what `system df` shows and `builder prune` and the size limit go by).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The step's image.
    pub image: Digest,
    /// The step as the build showed it (`RUN make`).
    #[serde(default)]
    pub description: String,
    /// When it was made, and last used (seconds since 1970).
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub last_used: i64,
    /// Builds that took it from the cache.
    #[serde(default)]
    pub uses: u64,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The cache's entries, under the daemon's data root: one file per key.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache in `dir` (made if missing).
    pub fn open(dir: PathBuf) -> std::io::Result<Cache> {
        std::fs::create_dir_all(&dir)?;
        Ok(Cache { dir })
    }

    fn read(&self, id: &str) -> Option<Entry> {
        let text = std::fs::read_to_string(self.dir.join(id)).ok()?;
        match serde_json::from_str(&text) {
            Ok(e) => Some(e),
            // An entry of an earlier wharf: the image's ID alone.
            Err(_) => Some(Entry {
                image: text.trim().parse().ok()?,
                description: String::new(),
                created: 0,
                last_used: 0,
                uses: 0,
            }),
        }
    }

    /// Writes an entry whole (temporary file, rename); `durable` syncs it first.
    fn write(&self, id: &str, e: &Entry, durable: bool) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{id}.{}.tmp", wharf_store::random_name()));
        let r = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(e).map_err(std::io::Error::other)?)?;
            if durable {
                f.sync_all()?;
            }
            std::fs::rename(&tmp, self.dir.join(id))
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    /// The image recorded for `key`, counted as a use.
    pub fn get(&self, key: &Key) -> Option<Digest> {
        let mut e = self.read(&key.0)?;
        e.uses += 1;
        e.last_used = now();
        // Usage is a hint: rewritten in place, neither synced nor a new file (a torn write
        // reads as no entry, a miss, never as another image).
        if let Ok(bytes) = serde_json::to_vec(&e) {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(self.dir.join(&key.0))
                .and_then(|mut f| f.write_all(&bytes));
        }
        Some(e.image)
    }

    /// Record `image` for `key`, made by the step `description`.
    pub fn put(&self, key: &Key, image: &Digest, description: &str) -> std::io::Result<()> {
        let t = now();
        let e = Entry {
            image: *image,
            description: description.to_string(),
            created: t,
            last_used: t,
            uses: 0,
        };
        self.write(&key.0, &e, true)
    }

    /// Every entry, with its ID (its key).
    pub fn list(&self) -> std::io::Result<Vec<(String, Entry)>> {
        let mut out = Vec::new();
        for f in std::fs::read_dir(&self.dir)? {
            let name = f?.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Some(e) = self.read(&name) {
                out.push((name, e));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Forget entry `id`.
    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.dir.join(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_every_input_and_entries_survive_reopening() {
        let d = tempfile::tempdir().unwrap();
        let p: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let q: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let base = Key::new(Some(&p), "RUN make", &["A=1".into(), "B=2".into()], &[]);
        assert_eq!(base, Key::new(Some(&p), "RUN make", &["B=2".into(), "A=1".into()], &[]));
        for other in [
            Key::new(None, "RUN make", &["A=1".into(), "B=2".into()], &[]),
            Key::new(Some(&q), "RUN make", &["A=1".into(), "B=2".into()], &[]),
            Key::new(Some(&p), "RUN make ", &["A=1".into(), "B=2".into()], &[]),
            Key::new(Some(&p), "RUN make", &["A=1".into()], &[]),
            Key::new(Some(&p), "RUN make", &["A=1".into(), "B=3".into()], &[]),
            Key::new(Some(&p), "RUN make", &["A=1".into(), "B=2".into()], &["sha256:x"]),
            // Field boundaries count: no two inputs run together.
            Key::new(Some(&p), "RUN make", &["A=1B=2".into()], &[]),
        ] {
            assert_ne!(base, other);
        }
        let c = Cache::open(d.path().join("cache")).unwrap();
        assert_eq!(c.get(&base), None);
        c.put(&base, &q, "RUN make").unwrap();
        assert_eq!(Cache::open(d.path().join("cache")).unwrap().get(&base), Some(q));
        c.get(&base).unwrap();
        let all = c.list().unwrap();
        assert_eq!(all.len(), 1);
        let (id, e) = &all[0];
        assert_eq!((e.image, e.description.as_str(), e.uses), (q, "RUN make", 2));
        assert!(e.created > 0 && e.last_used >= e.created);
        // An entry an earlier wharf wrote (the image's ID alone) still reads.
        std::fs::write(d.path().join("cache").join(id), q.to_string()).unwrap();
        assert_eq!(c.get(&base), Some(q));
        c.remove(id).unwrap();
        assert_eq!(c.get(&base), None);
        assert!(c.list().unwrap().is_empty());
    }
}
