//! The content store: blobs addressed by digest under `content/blobs/sha256/<hex>`.
//!
//! A blob becomes visible only after it was written to `content/ingest/`, fsynced, hashed and
//! checked against the digest and size the caller expected, then renamed into place: a reader
//! never sees a partial or unverified blob, and a crash leaves only ingest files that the next
//! start deletes.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use wharf_reference::{BackgroundSha256, Digest};

/// Content store failures.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// No blob with this digest.
    #[error("content {0} not found")]
    NotFound(Digest),
    /// The bytes written hash to something other than expected.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What the caller said.
        expected: Digest,
        /// What the bytes are.
        actual: Digest,
    },
    /// The bytes written are not as long as expected.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// What the caller said.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// A blob is larger than the caller allows for reading it into memory.
    #[error("content {digest} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Filesystem failure.
    #[error("content store: {0}")]
    Io(#[from] io::Error),
}

/// Blobs by digest.
#[derive(Clone, Debug)]
pub struct ContentStore {
    root: PathBuf,
}

/// A blob being written; hashes as it goes. Dropped without [`commit`](Ingest::commit), it is
/// deleted.
pub struct Ingest {
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    /// Taken when the ingest finishes.
    hasher: Option<BackgroundSha256>,
    store: ContentStore,
}

impl ContentStore {
    /// Open (creating) the store under `root`, and drop what a crash left in the ingest area.
    pub fn open(root: &Path) -> Result<Self, ContentError> {
        fs::create_dir_all(root.join("blobs/sha256"))?;
        fs::create_dir_all(root.join("split/sha256"))?;
        let ingest = root.join("ingest");
        let _ = fs::remove_dir_all(&ingest);
        fs::create_dir_all(&ingest)?;
        Ok(ContentStore {
            root: root.to_path_buf(),
        })
    }

    /// A fresh path for scratch data under `ingest/` (emptied at every start, so a crash leaves
    /// nothing behind). The caller removes it when done.
    /// An unlinked scratch file beside the store's ingests (gone once closed).
    pub fn scratch_file(&self) -> io::Result<File> {
        let path = self.scratch_path();
        let f = File::options().read(true).write(true).create_new(true).open(&path)?;
        fs::remove_file(&path)?;
        Ok(f)
    }

    pub fn scratch_path(&self) -> PathBuf {
        self.root.join("ingest").join(format!("scratch-{}", random_name()))
    }

    /// Where the blob lives (whether or not it exists).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Where a layer tar's split record lives (see [`crate::split`]).
    fn split_path(&self, d: &Digest) -> PathBuf {
        self.root.join("split/sha256").join(d.hex())
    }

    /// Open the split record of the layer tar `d`.
    pub fn open_split(&self, d: &Digest) -> Result<File, ContentError> {
        open_as(&self.split_path(d), d)
    }

    /// Write the split record of the layer tar `d` with `fill`: fsynced, then renamed into place.
    pub fn write_split(&self, d: &Digest, fill: impl FnOnce(&mut File) -> io::Result<()>) -> Result<(), ContentError> {
        let tmp = self.root.join("ingest").join(random_name());
        let result = (|| {
            let mut f = File::options().write(true).create_new(true).open(&tmp)?;
            fill(&mut f)?;
            f.sync_all()?;
            fs::rename(&tmp, self.split_path(d))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        Ok(result?)
    }

    /// True when the blob is present.
    pub fn has(&self, d: &Digest) -> bool {
        self.path(d).exists()
    }

    /// Size of a present blob.
    pub fn size(&self, d: &Digest) -> Result<u64, ContentError> {
        match fs::metadata(self.path(d)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ContentError::NotFound(*d)),
            Err(e) => Err(e.into()),
        }
    }

    /// Open a blob for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File, ContentError> {
        open_as(&self.path(d), d)
    }

    /// Read a whole blob, refusing ones over `limit` bytes (configs and manifests are small;
    /// a huge one is hostile).
    pub fn read(&self, d: &Digest, limit: u64) -> Result<Vec<u8>, ContentError> {
        let f = self.open_blob(d)?;
        let size = f.metadata()?.len();
        if size > limit {
            return Err(ContentError::TooLarge {
                digest: *d,
                size,
                limit,
            });
        }
        let mut v = Vec::with_capacity(size as usize);
        f.take(limit + 1).read_to_end(&mut v)?;
        Ok(v)
    }

    /// Start writing a blob.
    pub fn ingest(&self) -> Result<Ingest, ContentError> {
        let path = self.root.join("ingest").join(random_name());
        let file = File::options().write(true).create_new(true).open(&path)?;
        Ok(Ingest {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            path,
            hasher: Some(BackgroundSha256::new()),
            store: self.clone(),
        })
    }

    /// Write `data` as a blob and return its digest.
    pub fn write_bytes(&self, data: &[u8]) -> Result<Digest, ContentError> {
        let d = Digest::of(data);
        if self.has(&d) {
            return Ok(d);
        }
        let mut w = self.ingest()?;
        w.write_all(data)?;
        w.commit(Some(d), Some(data.len() as u64))
    }

    /// Copy `r` into a blob, verifying it when `expected` is given.
    pub fn write_from(
        &self,
        r: &mut dyn Read,
        expected: Option<Digest>,
        size: Option<u64>,
    ) -> Result<Digest, ContentError> {
        let mut w = self.ingest()?;
        io::copy(r, &mut w)?;
        w.commit(expected, size)
    }

    /// Delete a blob only, leaving a split record under the same digest; absent is fine.
    pub fn delete_blob(&self, d: &Digest) -> Result<(), ContentError> {
        remove_present(&self.path(d))
    }

    /// Delete a blob and any split record under its digest; absent is fine.
    pub fn delete(&self, d: &Digest) -> Result<(), ContentError> {
        remove_present(&self.path(d))?;
        remove_present(&self.split_path(d))
    }

    /// Every digest with a blob or a split record.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let mut out = std::collections::BTreeSet::new();
        for dir in ["blobs/sha256", "split/sha256"] {
            for ent in fs::read_dir(self.root.join(dir))? {
                if let Ok(d) = Digest::from_hex(&ent?.file_name().to_string_lossy()) {
                    out.insert(d);
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}

impl Ingest {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.as_ref().map_or(0, |h| h.len())
    }
    /// True before anything was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finish: fsync, verify, rename into place. Returns the digest of what was written.
    pub fn commit(mut self, expected: Option<Digest>, size: Option<u64>) -> Result<Digest, ContentError> {
        let mut f = self.file.take().expect("ingest committed twice");
        f.flush()?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        let hasher = self.hasher.take().expect("ingest committed twice");
        let len = hasher.len();
        let actual = hasher.finish()?;
        if let Some(expected) = expected {
            if expected != actual {
                return Err(ContentError::DigestMismatch { expected, actual });
            }
        }
        if let Some(size) = size {
            if size != len {
                return Err(ContentError::SizeMismatch {
                    digest: actual,
                    expected: size,
                    actual: len,
                });
            }
        }
        fs::rename(&self.path, self.store.path(&actual))?;
        Ok(actual)
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.as_mut().expect("ingest committed").write(buf)?;
        self.hasher.as_mut().expect("ingest committed").update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("ingest committed").flush()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.file.is_some() || self.path.exists() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Open the file stored under `d` at `path`; missing is [`ContentError::NotFound`].
fn open_as(path: &Path, d: &Digest) -> Result<File, ContentError> {
    match File::open(path) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ContentError::NotFound(*d)),
        Err(e) => Err(e.into()),
    }
}

/// Remove a file; absent is fine.
fn remove_present(path: &Path) -> Result<(), ContentError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// 32 random hex characters from the kernel's generator.
pub fn random_name() -> String {
    let mut b = [0u8; 16];
    let mut f = File::open("/dev/urandom").expect("/dev/urandom");
    f.read_exact(&mut b).expect("/dev/urandom");
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_then_commit() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let d = cs.write_bytes(b"hello").unwrap();
        assert!(cs.has(&d));
        assert_eq!(cs.read(&d, 100).unwrap(), b"hello");
        let wrong = Digest::of(b"other");
        let err = cs.write_from(&mut &b"hello!"[..], Some(wrong), None).unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }));
        assert!(!cs.has(&Digest::of(b"hello!")), "unverified blob must not land");
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
        assert!(matches!(cs.read(&d, 2), Err(ContentError::TooLarge { .. })));
    }
}
