//! The conformance suite every [`Storage`] implementation passes: each check gets a fresh,
//! empty storage from the caller and panics with what broke. `fs::tests::conformance` runs it
//! for the file system; a future backend runs the same.

use std::io::{Read, Write};

use super::{read_blob, CommitError, Storage};
use wharf_reference::oci::{Algorithm, Hasher, OciDigest};

/// Runs every check, each on a new storage from `make`.
pub fn run(mut make: impl FnMut() -> Box<dyn Storage>) {
    blobs_are_whole_and_verified(&*make());
    uploads_append_commit_and_cancel(&*make());
    a_mismatched_upload_leaves_nothing(&*make());
    links_tags_and_revisions(&*make());
    referrers_by_subject(&*make());
    repositories_nest_and_sort(&*make());
}

fn sha512_of(data: &[u8]) -> OciDigest {
    let mut h = Hasher::new(Algorithm::Sha512);
    h.update(data);
    h.finish()
}

fn blobs_are_whole_and_verified(s: &dyn Storage) {
    let d = OciDigest::sha256_of(b"0123456789");
    assert_eq!(s.blob_size(&d).unwrap(), None);
    s.put_blob(&d, b"0123456789").unwrap();
    s.put_blob(&d, b"0123456789").unwrap();
    assert_eq!(s.blob_size(&d).unwrap(), Some(10));
    let mut part = String::new();
    s.open_blob(&d, 3, 4).unwrap().read_to_string(&mut part).unwrap();
    assert_eq!(part, "3456");
    if let Some(mut f) = s.blob_file(&d).unwrap() {
        let mut whole = String::new();
        f.read_to_string(&mut whole).unwrap();
        assert_eq!(whole, "0123456789", "a blob's file holds exactly the blob");
    }
    assert!(
        s.blob_file(&OciDigest::sha256_of(b"absent")).unwrap().is_none(),
        "no file for an absent blob"
    );
    assert_eq!(read_blob(s, &d, 10).unwrap().unwrap(), b"0123456789");
    assert!(read_blob(s, &d, 9).is_err(), "a blob over the limit is not read");
    let wrong = OciDigest::sha256_of(b"other");
    assert!(matches!(
        s.put_blob(&wrong, b"0123456789"),
        Err(CommitError::Mismatch { .. })
    ));
    assert_eq!(s.blob_size(&wrong).unwrap(), None);
    let d5 = sha512_of(b"x");
    s.put_blob(&d5, b"x").unwrap();
    let listed: Vec<_> = s
        .list_blobs()
        .unwrap()
        .into_iter()
        .map(|b| (b.digest, b.size))
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&(d.clone(), 10)) && listed.contains(&(d5, 1)));
    s.delete_blob(&d).unwrap();
    assert_eq!(s.blob_size(&d).unwrap(), None);
}

fn uploads_append_commit_and_cancel(s: &dyn Storage) {
    let id = s.upload_start("lib/x").unwrap();
    let info = s.upload_info(&id).unwrap().unwrap();
    assert_eq!((info.repo.as_str(), info.size), ("lib/x", 0));
    for chunk in [&b"abc"[..], b"def"] {
        let mut w = s.upload_writer(&id).unwrap();
        w.write_all(chunk).unwrap();
        w.finish().unwrap();
    }
    assert_eq!(s.upload_info(&id).unwrap().unwrap().size, 6);
    assert_eq!(s.list_uploads().unwrap(), vec![id.clone()]);
    let d = OciDigest::sha256_of(b"abcdef");
    assert_eq!(s.blob_size(&d).unwrap(), None, "nothing is a blob before commit");
    assert_eq!(s.upload_commit(&id, &d, Some(&d)).unwrap(), 6);
    assert_eq!(s.blob_size(&d).unwrap(), Some(6));
    assert!(s.upload_info(&id).unwrap().is_none());
    assert!(matches!(s.upload_commit(&id, &d, None), Err(CommitError::Unknown)));
    // sha512, hashed by storage.
    let id = s.upload_start("lib/x").unwrap();
    s.upload_writer(&id).unwrap().write_all(b"q").unwrap();
    assert_eq!(s.upload_commit(&id, &sha512_of(b"q"), None).unwrap(), 1);
    let id = s.upload_start("lib/x").unwrap();
    s.upload_cancel(&id).unwrap();
    assert!(s.upload_info(&id).unwrap().is_none());
    assert!(s.list_uploads().unwrap().is_empty());
    assert!(s.upload_info("not-an-id").unwrap().is_none());
}

fn a_mismatched_upload_leaves_nothing(s: &dyn Storage) {
    let id = s.upload_start("a").unwrap();
    s.upload_writer(&id).unwrap().write_all(b"actual").unwrap();
    let claimed = OciDigest::sha256_of(b"claimed");
    match s.upload_commit(&id, &claimed, None) {
        Err(CommitError::Mismatch { actual }) => assert_eq!(actual, OciDigest::sha256_of(b"actual")),
        other => panic!("expected a mismatch, got {other:?}"),
    }
    // A wrong digest the caller computed is checked too (the caller's, not the claim, wins).
    let id2 = s.upload_start("a").unwrap();
    s.upload_writer(&id2).unwrap().write_all(b"actual").unwrap();
    let computed = OciDigest::sha256_of(b"actual");
    assert!(matches!(
        s.upload_commit(&id2, &claimed, Some(&computed)),
        Err(CommitError::Mismatch { .. })
    ));
    assert!(s.list_blobs().unwrap().is_empty());
    assert!(s.upload_info(&id).unwrap().is_none());
}

fn links_tags_and_revisions(s: &dyn Storage) {
    let d = OciDigest::sha256_of(b"layer");
    assert!(!s.repo_exists("r").unwrap());
    s.link_blob("r", &d).unwrap();
    assert!(s.repo_exists("r").unwrap());
    assert!(s.has_blob_link("r", &d).unwrap());
    assert!(!s.has_blob_link("other", &d).unwrap());
    assert_eq!(s.blob_links("r").unwrap(), vec![d.clone()]);
    assert!(s.unlink_blob("r", &d).unwrap());
    assert!(!s.unlink_blob("r", &d).unwrap());
    let m = OciDigest::sha256_of(b"manifest");
    s.link_manifest("r", &m, "application/vnd.oci.image.manifest.v1+json")
        .unwrap();
    assert_eq!(
        s.manifest_link("r", &m).unwrap().as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(s.manifest_links("r").unwrap(), vec![m.clone()]);
    s.set_tag("r", "v1", &m).unwrap();
    s.set_tag("r", "a", &m).unwrap();
    let m2 = OciDigest::sha256_of(b"m2");
    s.set_tag("r", "v1", &m2).unwrap();
    assert_eq!(s.tag("r", "v1").unwrap(), Some(m2));
    let age = s.tag_age("r", "v1").unwrap().expect("a tag just set has an age");
    assert!(age < std::time::Duration::from_secs(60), "{age:?}");
    assert_eq!(s.tag_age("r", "none").unwrap(), None);
    assert_eq!(s.tags("r").unwrap(), vec!["a".to_string(), "v1".to_string()]);
    assert!(s.remove_tag("r", "a").unwrap());
    assert_eq!(s.tag("r", "a").unwrap(), None);
    assert!(s.unlink_manifest("r", &m).unwrap());
    assert_eq!(s.manifest_link("r", &m).unwrap(), None);
}

fn referrers_by_subject(s: &dyn Storage) {
    let subject = OciDigest::sha256_of(b"subject");
    let (a, b) = (OciDigest::sha256_of(b"a"), sha512_of(b"b"));
    assert!(s.referrers("r", &subject).unwrap().is_empty());
    s.add_referrer("r", &subject, &a).unwrap();
    s.add_referrer("r", &subject, &b).unwrap();
    let mut want = vec![a.clone(), b];
    want.sort();
    assert_eq!(s.referrers("r", &subject).unwrap(), want);
    assert!(s.referrers("other", &subject).unwrap().is_empty());
    s.remove_referrer("r", &subject, &a).unwrap();
    assert_eq!(s.referrers("r", &subject).unwrap().len(), 1);
}

fn repositories_nest_and_sort(s: &dyn Storage) {
    let d = OciDigest::sha256_of(b"x");
    for r in ["b", "a/b/c", "a/b", "a-z", "z"] {
        s.link_manifest(r, &d, "t").unwrap();
    }
    assert_eq!(s.repositories().unwrap(), vec!["a-z", "a/b", "a/b/c", "b", "z"]);
}
