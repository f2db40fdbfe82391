//! The registry's storage on a local file system, laid out as distribution lays it out:
//!
//! ```text
//! <root>/blobs/<alg>/<hex>                               content, immutable
//! <root>/uploads/<id>/data, info.json                    sessions (repository, start time)
//! <root>/repositories/<name>/_layers/<alg>/<hex>         an empty file: the repository has the blob
//! <root>/repositories/<name>/_manifests/revisions/<alg>/<hex>   the revision's media type
//! <root>/repositories/<name>/_manifests/tags/<tag>       the digest the tag points at
//! <root>/repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>  subject -> referrer
//! ```
//!
//! A blob is written in its session's directory, hashed, fsynced and renamed into `blobs/`,
//! then the directory is fsynced: nothing is visible before it is whole and verified, and a
//! crash leaves only a session (purged by age). Tags are written to a temporary file, fsynced
//! and renamed. Names, tags and digests reach this module validated; it checks again, so no
//! path it makes leaves the root.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{BlobEntry, CommitError, Storage, UploadInfo, UploadWriter};
use crate::names::{valid_name, valid_tag};
use wharf_reference::oci::{Algorithm, Hasher, OciDigest};

/// Storage under one directory.
#[derive(Debug)]
pub struct FsStorage {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct InfoFile {
    repo: String,
    started: u64,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

fn not_found_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn valid_id(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// A new random session ID in UUID v4 form.
fn new_id() -> io::Result<String> {
    let mut b = [0u8; 16];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `data` to `path` through a fsynced temporary file and a rename.
fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| invalid("no parent"))?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", new_id()?));
    let mut f = File::create(&tmp)?;
    let r = f
        .write_all(data)
        .and_then(|_| f.sync_all())
        .and_then(|_| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Creates an empty marker file (and its directories).
fn touch(path: &Path) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| invalid("no parent"))?;
    fs::create_dir_all(dir)?;
    OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    Ok(())
}

fn remove(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The digests named by the files of `dir/<alg>/<hex>`.
fn digests_in(dir: &Path) -> io::Result<Vec<OciDigest>> {
    let mut out = Vec::new();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let Some(rd) = not_found_is_none(fs::read_dir(dir.join(alg.name())))? else {
            continue;
        };
        for e in rd {
            let name = e?.file_name();
            if let Ok(d) = OciDigest::parse(&format!("{}:{}", alg.name(), name.to_string_lossy())) {
                out.push(d);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Hashes a file with `alg`.
fn hash_file(path: &Path, alg: Algorithm) -> io::Result<(OciDigest, u64)> {
    let mut f = File::open(path)?;
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finish(), n))
}

/// A session's data file open for appending: its end, and how far writeback was started.
struct FsWriter {
    f: File,
    end: u64,
    kicked: u64,
}

impl Write for FsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.f.write(buf)?;
        self.end += n as u64;
        if self.end - self.kicked >= super::writeback::KICK {
            super::writeback::start(&self.f, self.kicked, self.end - self.kicked);
            self.kicked = self.end;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.f.flush()
    }
}

impl UploadWriter for FsWriter {
    fn finish(self: Box<Self>) -> io::Result<()> {
        // A chunk is counted by the file's size; durability comes at commit, which fsyncs.
        Ok(())
    }

    fn rollback(self: Box<Self>, size: u64) -> io::Result<()> {
        self.f.set_len(size)
    }
}

impl FsStorage {
    /// Storage under `root`, created if missing.
    pub fn open(root: &Path) -> io::Result<FsStorage> {
        for d in ["blobs/sha256", "blobs/sha512", "uploads", "repositories"] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(FsStorage {
            root: root.to_path_buf(),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, d: &OciDigest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm().name()).join(d.hex())
    }

    fn upload_dir(&self, id: &str) -> io::Result<PathBuf> {
        if !valid_id(id) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such upload"));
        }
        Ok(self.root.join("uploads").join(id))
    }

    fn repo_dir(&self, repo: &str) -> io::Result<PathBuf> {
        if !valid_name(repo) {
            return Err(invalid("invalid repository name"));
        }
        Ok(self.root.join("repositories").join(repo))
    }

    fn layer_link(&self, repo: &str, d: &OciDigest) -> io::Result<PathBuf> {
        Ok(self
            .repo_dir(repo)?
            .join("_layers")
            .join(d.algorithm().name())
            .join(d.hex()))
    }

    fn revision(&self, repo: &str, d: &OciDigest) -> io::Result<PathBuf> {
        Ok(self
            .repo_dir(repo)?
            .join("_manifests/revisions")
            .join(d.algorithm().name())
            .join(d.hex()))
    }

    fn tag_path(&self, repo: &str, tag: &str) -> io::Result<PathBuf> {
        if !valid_tag(tag) {
            return Err(invalid("invalid tag"));
        }
        Ok(self.repo_dir(repo)?.join("_manifests/tags").join(tag))
    }

    fn referrer_dir(&self, repo: &str, subject: &OciDigest) -> io::Result<PathBuf> {
        Ok(self
            .repo_dir(repo)?
            .join("_referrers")
            .join(subject.algorithm().name())
            .join(subject.hex()))
    }

    /// Moves a verified file into `blobs/` (an existing blob of the digest is the same bytes).
    fn place(&self, src: &Path, d: &OciDigest) -> io::Result<()> {
        let dst = self.blob_path(d);
        fs::rename(src, &dst)?;
        sync_dir(dst.parent().unwrap_or(&self.root))
    }

    fn walk_repos(&self, dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
        let Some(rd) = not_found_is_none(fs::read_dir(dir))? else {
            return Ok(());
        };
        let mut is_repo = false;
        for e in rd {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('_') {
                is_repo |= name == "_manifests" || name == "_layers";
                continue;
            }
            if e.file_type()?.is_dir() {
                let sub = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                self.walk_repos(&e.path(), &sub, out)?;
            }
        }
        if is_repo && !prefix.is_empty() {
            out.push(prefix.to_string());
        }
        Ok(())
    }
}

impl Storage for FsStorage {
    fn blob_size(&self, d: &OciDigest) -> io::Result<Option<u64>> {
        Ok(not_found_is_none(fs::metadata(self.blob_path(d)))?.map(|m| m.len()))
    }

    fn open_blob(&self, d: &OciDigest, offset: u64, len: u64) -> io::Result<Box<dyn Read + Send>> {
        let mut f = File::open(self.blob_path(d))?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(f.take(len)))
    }

    fn blob_file(&self, d: &OciDigest) -> io::Result<Option<File>> {
        not_found_is_none(File::open(self.blob_path(d)))
    }

    fn put_blob(&self, d: &OciDigest, data: &[u8]) -> Result<(), CommitError> {
        let mut h = Hasher::new(d.algorithm());
        h.update(data);
        let actual = h.finish();
        if &actual != d {
            return Err(CommitError::Mismatch { actual });
        }
        if self.blob_path(d).exists() {
            return Ok(());
        }
        let tmp = self.root.join("uploads").join(format!(".put-{}", new_id()?));
        let r = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            self.place(&tmp, d)
        })();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        Ok(r?)
    }

    fn delete_blob(&self, d: &OciDigest) -> io::Result<()> {
        remove(&self.blob_path(d)).map(|_| ())
    }

    fn list_blobs(&self) -> io::Result<Vec<BlobEntry>> {
        let mut out = Vec::new();
        for d in digests_in(&self.root.join("blobs"))? {
            if let Some(m) = not_found_is_none(fs::metadata(self.blob_path(&d)))? {
                out.push(BlobEntry {
                    digest: d,
                    size: m.len(),
                    modified: m.modified()?,
                });
            }
        }
        Ok(out)
    }

    fn upload_start(&self, repo: &str) -> io::Result<String> {
        if !valid_name(repo) {
            return Err(invalid("invalid repository name"));
        }
        let id = new_id()?;
        let dir = self.root.join("uploads").join(&id);
        fs::create_dir(&dir)?;
        File::create(dir.join("data"))?;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let info = serde_json::to_vec(&InfoFile {
            repo: repo.to_string(),
            started,
        })
        .map_err(io::Error::other)?;
        write_atomic(&dir.join("info.json"), &info)?;
        Ok(id)
    }

    fn upload_info(&self, id: &str) -> io::Result<Option<UploadInfo>> {
        let Ok(dir) = self.upload_dir(id) else {
            return Ok(None);
        };
        let Some(raw) = not_found_is_none(fs::read(dir.join("info.json")))? else {
            return Ok(None);
        };
        let Ok(info) = serde_json::from_slice::<InfoFile>(&raw) else {
            return Ok(None);
        };
        let Some(meta) = not_found_is_none(fs::metadata(dir.join("data")))? else {
            return Ok(None);
        };
        Ok(Some(UploadInfo {
            repo: info.repo,
            size: meta.len(),
            started: UNIX_EPOCH + Duration::from_secs(info.started),
        }))
    }

    fn upload_writer(&self, id: &str) -> io::Result<Box<dyn UploadWriter>> {
        let f = OpenOptions::new()
            .append(true)
            .open(self.upload_dir(id)?.join("data"))?;
        let end = f.metadata()?.len();
        Ok(Box::new(FsWriter { f, end, kicked: end }))
    }

    fn upload_commit(&self, id: &str, expected: &OciDigest, computed: Option<&OciDigest>) -> Result<u64, CommitError> {
        let dir = self.upload_dir(id).map_err(|_| CommitError::Unknown)?;
        let data = dir.join("data");
        let f = match File::open(&data) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CommitError::Unknown),
            Err(e) => return Err(e.into()),
        };
        let size = f.metadata()?.len();
        let actual = match computed {
            Some(d) if d.algorithm() == expected.algorithm() => d.clone(),
            _ => hash_file(&data, expected.algorithm())?.0,
        };
        if &actual != expected {
            let _ = fs::remove_dir_all(&dir);
            return Err(CommitError::Mismatch { actual });
        }
        if self.blob_path(expected).exists() {
            fs::remove_dir_all(&dir)?;
            return Ok(size);
        }
        f.sync_all()?;
        self.place(&data, expected)?;
        fs::remove_dir_all(&dir)?;
        Ok(size)
    }

    fn upload_cancel(&self, id: &str) -> io::Result<()> {
        let dir = self.upload_dir(id)?;
        fs::remove_dir_all(dir)
    }

    fn list_uploads(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.root.join("uploads"))? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if valid_id(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn link_blob(&self, repo: &str, d: &OciDigest) -> io::Result<()> {
        touch(&self.layer_link(repo, d)?)
    }

    fn has_blob_link(&self, repo: &str, d: &OciDigest) -> io::Result<bool> {
        Ok(self.layer_link(repo, d)?.exists())
    }

    fn unlink_blob(&self, repo: &str, d: &OciDigest) -> io::Result<bool> {
        remove(&self.layer_link(repo, d)?)
    }

    fn blob_links(&self, repo: &str) -> io::Result<Vec<OciDigest>> {
        digests_in(&self.repo_dir(repo)?.join("_layers"))
    }

    fn link_manifest(&self, repo: &str, d: &OciDigest, media_type: &str) -> io::Result<()> {
        write_atomic(&self.revision(repo, d)?, media_type.as_bytes())
    }

    fn manifest_link(&self, repo: &str, d: &OciDigest) -> io::Result<Option<String>> {
        not_found_is_none(fs::read_to_string(self.revision(repo, d)?))
    }

    fn unlink_manifest(&self, repo: &str, d: &OciDigest) -> io::Result<bool> {
        remove(&self.revision(repo, d)?)
    }

    fn manifest_links(&self, repo: &str) -> io::Result<Vec<OciDigest>> {
        digests_in(&self.repo_dir(repo)?.join("_manifests/revisions"))
    }

    fn set_tag(&self, repo: &str, tag: &str, d: &OciDigest) -> io::Result<()> {
        write_atomic(&self.tag_path(repo, tag)?, d.to_string().as_bytes())
    }

    fn tag(&self, repo: &str, tag: &str) -> io::Result<Option<OciDigest>> {
        let Some(s) = not_found_is_none(fs::read_to_string(self.tag_path(repo, tag)?))? else {
            return Ok(None);
        };
        Ok(OciDigest::parse(s.trim()).ok())
    }

    fn tag_age(&self, repo: &str, tag: &str) -> io::Result<Option<Duration>> {
        let Some(m) = not_found_is_none(fs::metadata(self.tag_path(repo, tag)?))? else {
            return Ok(None);
        };
        Ok(Some(
            SystemTime::now().duration_since(m.modified()?).unwrap_or_default(),
        ))
    }

    fn remove_tag(&self, repo: &str, tag: &str) -> io::Result<bool> {
        remove(&self.tag_path(repo, tag)?)
    }

    fn tags(&self, repo: &str) -> io::Result<Vec<String>> {
        let Some(rd) = not_found_is_none(fs::read_dir(self.repo_dir(repo)?.join("_manifests/tags")))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in rd {
            let name = e?.file_name().to_string_lossy().into_owned();
            if valid_tag(&name) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    fn add_referrer(&self, repo: &str, subject: &OciDigest, referrer: &OciDigest) -> io::Result<()> {
        let name = format!("{}-{}", referrer.algorithm().name(), referrer.hex());
        touch(&self.referrer_dir(repo, subject)?.join(name))
    }

    fn remove_referrer(&self, repo: &str, subject: &OciDigest, referrer: &OciDigest) -> io::Result<()> {
        let name = format!("{}-{}", referrer.algorithm().name(), referrer.hex());
        remove(&self.referrer_dir(repo, subject)?.join(name)).map(|_| ())
    }

    fn referrers(&self, repo: &str, subject: &OciDigest) -> io::Result<Vec<OciDigest>> {
        let Some(rd) = not_found_is_none(fs::read_dir(self.referrer_dir(repo, subject)?))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in rd {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Some(d) = name
                .split_once('-')
                .and_then(|(a, h)| OciDigest::parse(&format!("{a}:{h}")).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    fn repo_exists(&self, repo: &str) -> io::Result<bool> {
        let dir = self.repo_dir(repo)?;
        Ok(dir.join("_manifests").exists() || dir.join("_layers").exists())
    }

    fn repositories(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        self.walk_repos(&self.root.join("repositories"), "", &mut out)?;
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        super::super::testsuite::run(|| {
            n += 1;
            Box::new(FsStorage::open(&dir.path().join(n.to_string())).unwrap())
        });
    }

    #[test]
    fn a_session_survives_reopening_and_nothing_half_written_is_a_blob() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::open(dir.path()).unwrap();
        let id = s.upload_start("a/b").unwrap();
        let mut w = s.upload_writer(&id).unwrap();
        w.write_all(b"hello ").unwrap();
        w.finish().unwrap();
        drop(s);
        let s = FsStorage::open(dir.path()).unwrap();
        assert_eq!(s.upload_info(&id).unwrap().unwrap().size, 6);
        assert!(s.list_blobs().unwrap().is_empty());
        let mut w = s.upload_writer(&id).unwrap();
        w.write_all(b"world").unwrap();
        let d = OciDigest::sha256_of(b"hello world");
        assert_eq!(s.upload_commit(&id, &d, None).unwrap(), 11);
        assert_eq!(s.blob_size(&d).unwrap(), Some(11));
        assert!(fs::read_dir(dir.path().join("uploads")).unwrap().next().is_none());
    }

    #[test]
    fn paths_never_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::open(dir.path()).unwrap();
        let d = OciDigest::sha256_of(b"x");
        assert!(s.link_blob("../x", &d).is_err());
        assert!(s.set_tag("a", "../../x", &d).is_err());
        assert!(s.upload_info("../../etc").unwrap().is_none());
        assert!(s.upload_writer("../../../../tmp/x").is_err());
    }
}
