//! Garbage collection, online or offline: marks every blob a manifest revision of any
//! repository names (the revisions themselves, configs, layers), then deletes the unmarked blobs
//! older than the minimum age (a blob just uploaded may belong to a push whose manifest is still
//! to come) and the links to them, and purges upload sessions older than their maximum age that
//! no request is writing. The server runs it under the lock that manifest pushes, commits and
//! mounts hold while they check and link, so no manifest is accepted naming a blob being swept.

use std::collections::HashSet;
use std::io;
use std::time::{Duration, SystemTime};

use crate::manifest::{parse, MAX_MANIFEST};
use crate::storage::{read_blob, Storage};
use wharf_reference::oci::OciDigest;

/// What a collection may do.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Unreferenced blobs younger than this stay.
    pub min_age: Duration,
    /// Sessions older than this are purged.
    pub upload_max_age: Duration,
    /// Report only.
    pub dry_run: bool,
}

/// What a collection did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Blobs kept because something names them.
    pub marked: usize,
    /// Blobs deleted.
    pub deleted: Vec<OciDigest>,
    /// Their bytes.
    pub freed: u64,
    /// Sessions purged.
    pub uploads_purged: usize,
}

/// Every blob a revision of any repository names.
fn mark(s: &dyn Storage) -> io::Result<HashSet<OciDigest>> {
    let mut marked = HashSet::new();
    for repo in s.repositories()? {
        for m in s.manifest_links(&repo)? {
            marked.insert(m.clone());
            let mt = s.manifest_link(&repo, &m)?.unwrap_or_default();
            let Some(body) = read_blob(s, &m, MAX_MANIFEST as u64).ok().flatten() else {
                continue;
            };
            if let Ok(p) = parse(&body, &mt) {
                marked.extend(p.blobs);
                marked.extend(p.manifests);
            }
        }
    }
    Ok(marked)
}

/// One collection; `live` are the sessions requests are writing now.
pub fn collect(s: &dyn Storage, o: &GcOptions, live: &HashSet<String>) -> io::Result<Report> {
    let now = SystemTime::now();
    let old = |t: SystemTime, age: Duration| now.duration_since(t).is_ok_and(|d| d >= age);
    let marked = mark(s)?;
    let mut report = Report {
        marked: marked.len(),
        ..Report::default()
    };
    for b in s.list_blobs()? {
        if marked.contains(&b.digest) || !old(b.modified, o.min_age) {
            continue;
        }
        if !o.dry_run {
            s.delete_blob(&b.digest)?;
        }
        report.freed += b.size;
        report.deleted.push(b.digest);
    }
    if !o.dry_run && !report.deleted.is_empty() {
        let gone: HashSet<&OciDigest> = report.deleted.iter().collect();
        for repo in s.repositories()? {
            for l in s.blob_links(&repo)? {
                if gone.contains(&l) {
                    s.unlink_blob(&repo, &l)?;
                }
            }
        }
    }
    report.uploads_purged = purge_uploads(s, o.upload_max_age, live, o.dry_run)?;
    Ok(report)
}

/// Removes the sessions older than `max_age` that no request is writing (`live`); returns how
/// many (dry: would).
pub fn purge_uploads(s: &dyn Storage, max_age: Duration, live: &HashSet<String>, dry_run: bool) -> io::Result<usize> {
    let now = SystemTime::now();
    let mut n = 0;
    for id in s.list_uploads()? {
        if live.contains(&id) {
            continue;
        }
        if let Some(info) = s.upload_info(&id)? {
            if now.duration_since(info.started).is_ok_and(|d| d >= max_age) {
                if !dry_run {
                    s.upload_cancel(&id)?;
                }
                n += 1;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::OCI_MANIFEST;
    use crate::storage::fs::FsStorage;
    use std::io::Write;

    #[test]
    fn only_unreferenced_old_blobs_and_stale_sessions_go() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::open(dir.path()).unwrap();
        let (cfg, layer, orphan) = (b"{}".as_slice(), b"layer".as_slice(), b"orphan".as_slice());
        let digests: Vec<OciDigest> = [cfg, layer, orphan].iter().map(|b| OciDigest::sha256_of(b)).collect();
        for (d, b) in digests.iter().zip([cfg, layer, orphan]) {
            s.put_blob(d, b).unwrap();
            s.link_blob("r", d).unwrap();
        }
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "c", "digest": digests[0].to_string(), "size": 2},
            "layers": [{"mediaType": "l", "digest": digests[1].to_string(), "size": 5}]})
        .to_string();
        let md = OciDigest::sha256_of(m.as_bytes());
        s.put_blob(&md, m.as_bytes()).unwrap();
        s.link_manifest("r", &md, OCI_MANIFEST).unwrap();
        let id = s.upload_start("r").unwrap();
        s.upload_writer(&id).unwrap().write_all(b"half").unwrap();
        let young = GcOptions {
            min_age: Duration::from_secs(3600),
            upload_max_age: Duration::from_secs(3600),
            dry_run: false,
        };
        let r = collect(&s, &young, &HashSet::new()).unwrap();
        assert!(
            r.deleted.is_empty() && r.uploads_purged == 0,
            "young blobs and sessions stay: {r:?}"
        );
        let now = GcOptions {
            min_age: Duration::ZERO,
            upload_max_age: Duration::ZERO,
            dry_run: true,
        };
        let dry = collect(&s, &now, &HashSet::from([id.clone()])).unwrap();
        assert_eq!((dry.deleted.clone(), dry.uploads_purged), (vec![digests[2].clone()], 0));
        assert_eq!(s.blob_size(&digests[2]).unwrap(), Some(6), "a dry run deletes nothing");
        let r = collect(&s, &GcOptions { dry_run: false, ..now }, &HashSet::new()).unwrap();
        assert_eq!(
            (r.deleted, r.freed, r.uploads_purged, r.marked),
            (vec![digests[2].clone()], 6, 1, 3)
        );
        assert_eq!(s.blob_size(&digests[2]).unwrap(), None);
        assert!(!s.has_blob_link("r", &digests[2]).unwrap());
        assert!(s.blob_size(&digests[1]).unwrap().is_some() && s.blob_size(&md).unwrap().is_some());
        assert!(s.upload_info(&id).unwrap().is_none());
    }
}
