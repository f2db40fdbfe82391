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

/// The cache's entries, under the daemon's data root.
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

    /// The image recorded for `key`.
    pub fn get(&self, key: &Key) -> Option<Digest> {
        std::fs::read_to_string(self.dir.join(&key.0)).ok()?.trim().parse().ok()
    }

    /// Record `image` for `key`.
    pub fn put(&self, key: &Key, image: &Digest) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{}.tmp", key.0));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(image.to_string().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(&key.0))
    }

    /// Forget every entry (`builder prune --all`); returns how many there were.
    pub fn clear(&self) -> std::io::Result<usize> {
        let mut n = 0;
        for e in std::fs::read_dir(&self.dir)? {
            std::fs::remove_file(e?.path())?;
            n += 1;
        }
        Ok(n)
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
        c.put(&base, &q).unwrap();
        assert_eq!(Cache::open(d.path().join("cache")).unwrap().get(&base), Some(q));
        assert_eq!(c.clear().unwrap(), 1);
        assert_eq!(c.get(&base), None);
    }
}
