//! Where the registry keeps things, behind one trait: `Storage` is content-addressed blobs
//! (written whole or not at all), upload sessions that outlive the process, and repositories as
//! links to blobs (layers, manifest revisions, tags, referrers). [`fs::FsStorage`] keeps them on
//! a local file system; an S3-compatible backend would be a second implementation, held to the
//! same [`testsuite`].

pub mod fs;
pub mod testsuite;
mod writeback;

use std::io::{self, Read, Write};
use std::time::SystemTime;

use wharf_reference::oci::OciDigest;

/// An upload session as storage knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// The repository it was started in.
    pub repo: String,
    /// Bytes received so far.
    pub size: u64,
    /// When it was started.
    pub started: SystemTime,
}

/// A blob as storage lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    /// Its digest.
    pub digest: OciDigest,
    /// Its size.
    pub size: u64,
    /// When it was written (a new link to it counts as a write, so GC spares it a while).
    pub modified: SystemTime,
}

/// Why an upload could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// No such session.
    #[error("upload unknown")]
    Unknown,
    /// The content does not hash to the digest given (the session is removed).
    #[error("content is {actual}")]
    Mismatch {
        /// What it hashes to.
        actual: OciDigest,
    },
    /// The storage failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A writer appending to an upload session.
pub trait UploadWriter: Write + Send {
    /// Makes what was written durable enough to be counted (called before answering).
    fn finish(self: Box<Self>) -> io::Result<()>;
    /// Cuts the session back to `size` bytes (a chunk that failed part way).
    fn rollback(self: Box<Self>, size: u64) -> io::Result<()>;
}

/// The registry's storage. Every method is blocking; the server calls the slow ones (commit,
/// listing, GC) off its reactor.
pub trait Storage: std::fmt::Debug + Send + Sync + 'static {
    /// The size of a blob, if it exists.
    fn blob_size(&self, d: &OciDigest) -> io::Result<Option<u64>>;
    /// A reader of `len` bytes of a blob from `offset`.
    fn open_blob(&self, d: &OciDigest, offset: u64, len: u64) -> io::Result<Box<dyn Read + Send>>;
    /// The blob's file, where blobs are files (what `open_blob` reads, sent by `sendfile`).
    fn blob_file(&self, _d: &OciDigest) -> io::Result<Option<std::fs::File>> {
        Ok(None)
    }
    /// Stores `data` as a blob under its digest of `d`'s algorithm, checking it hashes to `d`.
    fn put_blob(&self, d: &OciDigest, data: &[u8]) -> Result<(), CommitError>;
    /// Deletes a blob (GC only).
    fn delete_blob(&self, d: &OciDigest) -> io::Result<()>;
    /// Every blob.
    fn list_blobs(&self) -> io::Result<Vec<BlobEntry>>;

    /// Starts an upload session in `repo`, returning its ID.
    fn upload_start(&self, repo: &str) -> io::Result<String>;
    /// A session, if it exists.
    fn upload_info(&self, id: &str) -> io::Result<Option<UploadInfo>>;
    /// A writer appending at the session's end.
    fn upload_writer(&self, id: &str) -> io::Result<Box<dyn UploadWriter>>;
    /// Verifies the session's content against `expected` (using `computed` when the caller
    /// hashed every byte as it streamed), makes it durable and moves it into the blobs; the
    /// session is gone afterwards, whatever the outcome but an IO error.
    fn upload_commit(&self, id: &str, expected: &OciDigest, computed: Option<&OciDigest>) -> Result<u64, CommitError>;
    /// Removes a session.
    fn upload_cancel(&self, id: &str) -> io::Result<()>;
    /// Every session's ID.
    fn list_uploads(&self) -> io::Result<Vec<String>>;

    /// Links a blob into a repository (a layer or config it may serve).
    fn link_blob(&self, repo: &str, d: &OciDigest) -> io::Result<()>;
    /// Whether the repository links the blob.
    fn has_blob_link(&self, repo: &str, d: &OciDigest) -> io::Result<bool>;
    /// Removes a blob link.
    fn unlink_blob(&self, repo: &str, d: &OciDigest) -> io::Result<bool>;
    /// Every blob the repository links.
    fn blob_links(&self, repo: &str) -> io::Result<Vec<OciDigest>>;

    /// Links a manifest revision, keeping its media type.
    fn link_manifest(&self, repo: &str, d: &OciDigest, media_type: &str) -> io::Result<()>;
    /// A revision's media type, if the repository has it.
    fn manifest_link(&self, repo: &str, d: &OciDigest) -> io::Result<Option<String>>;
    /// Removes a revision.
    fn unlink_manifest(&self, repo: &str, d: &OciDigest) -> io::Result<bool>;
    /// Every revision of the repository.
    fn manifest_links(&self, repo: &str) -> io::Result<Vec<OciDigest>>;

    /// Points `tag` at a revision (replacing what it pointed at).
    fn set_tag(&self, repo: &str, tag: &str, d: &OciDigest) -> io::Result<()>;
    /// What `tag` points at.
    fn tag(&self, repo: &str, tag: &str) -> io::Result<Option<OciDigest>>;
    /// Removes a tag.
    fn remove_tag(&self, repo: &str, tag: &str) -> io::Result<bool>;
    /// How long ago `tag` was last set, if it exists.
    fn tag_age(&self, repo: &str, tag: &str) -> io::Result<Option<std::time::Duration>>;
    /// The repository's tags, sorted.
    fn tags(&self, repo: &str) -> io::Result<Vec<String>>;

    /// Records that `referrer` names `subject` as its subject.
    fn add_referrer(&self, repo: &str, subject: &OciDigest, referrer: &OciDigest) -> io::Result<()>;
    /// Forgets a referrer.
    fn remove_referrer(&self, repo: &str, subject: &OciDigest, referrer: &OciDigest) -> io::Result<()>;
    /// The manifests naming `subject`.
    fn referrers(&self, repo: &str, subject: &OciDigest) -> io::Result<Vec<OciDigest>>;

    /// Whether the repository exists (anything was ever linked in it).
    fn repo_exists(&self, repo: &str) -> io::Result<bool>;
    /// Every repository, sorted.
    fn repositories(&self) -> io::Result<Vec<String>>;
}

/// Reads a whole blob of at most `limit` bytes.
pub fn read_blob(s: &dyn Storage, d: &OciDigest, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let Some(size) = s.blob_size(d)? else {
        return Ok(None);
    };
    if size > limit {
        return Err(io::Error::other(format!("{d} is {size} bytes, over {limit}")));
    }
    let mut buf = Vec::with_capacity(size as usize);
    s.open_blob(d, 0, size)?.read_to_end(&mut buf)?;
    Ok(Some(buf))
}
