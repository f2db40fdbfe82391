//! Manifests: `GET`/`HEAD /v2/<name>/manifests/<tag|digest>` with content negotiation (a type
//! the client's `Accept` leaves out is answered 404, as distribution answers it), `PUT` (at most
//! the configured size, read with that cap; its `mediaType` agreeing with its `Content-Type`;
//! every blob and manifest it names already in the repository; by digest, hashing to it; with a
//! `subject`, recorded for the referrers API and answered with `OCI-Subject`), and `DELETE` of a
//! revision (its tags and referrer entry with it) or of a tag alone.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request};

use super::{answer, empty, full, header, Ctx, Registry, Resp};
use crate::error::{RegistryError, Result};
use crate::manifest::{accepted, parse};
use crate::names::valid_tag;
use crate::storage::read_blob;
use wharf_reference::oci::OciDigest;

/// A reference: a tag or a digest.
enum Ref {
    Tag(String),
    Digest(OciDigest),
}

fn reference(r: &str) -> Result<Ref> {
    if r.contains(':') {
        return Ok(Ref::Digest(OciDigest::parse(r)?));
    }
    if !valid_tag(r) {
        return Err(RegistryError::TagInvalid(r.chars().take(200).collect()));
    }
    Ok(Ref::Tag(r.to_string()))
}

/// The revision a reference names in `repo`, with its media type.
fn resolve(reg: &Registry, repo: &str, r: &Ref) -> Result<Option<(OciDigest, String)>> {
    let d = match r {
        Ref::Digest(d) => d.clone(),
        Ref::Tag(t) => match reg.storage.tag(repo, t)? {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    Ok(reg.storage.manifest_link(repo, &d)?.map(|mt| (d, mt)))
}

/// `GET`/`HEAD` a manifest.
pub async fn get(reg: &Registry, ctx: &Ctx, req: &Request<Incoming>, repo: &str, r: &str) -> Result<Resp> {
    let rf = reference(r)?;
    if let Some(p) = &reg.proxy {
        let by_digest = match &rf {
            Ref::Digest(d) => Some(d),
            Ref::Tag(_) => None,
        };
        p.manifest(reg, repo, r, by_digest).await?;
    }
    let unknown = || RegistryError::ManifestUnknown(r.chars().take(200).collect());
    let (d, mt) = resolve(reg, repo, &rf)?.ok_or_else(unknown)?;
    let accept: Vec<String> = req
        .headers()
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    if !accepted(&accept, &mt) {
        return Err(RegistryError::ManifestUnknown(format!(
            "{mt} found, but the Accept header does not allow it"
        )));
    }
    let body = read_blob(&*reg.storage, &d, reg.cfg.max_manifest_bytes as u64)?.ok_or_else(unknown)?;
    let headers = [
        ("content-type", mt),
        ("docker-content-digest", d.to_string()),
        ("etag", format!("\"{d}\"")),
        ("content-length", body.len().to_string()),
    ];
    if req.method() == Method::HEAD {
        return Ok(answer(200, &headers, empty()));
    }
    reg.audit(ctx, "pull", repo, r, &d.to_string());
    Ok(answer(200, &headers, full(body)))
}

/// Reads a body of at most `limit` bytes.
async fn read_capped(mut body: Incoming, limit: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| RegistryError::ManifestInvalid(format!("reading the body: {e}")))?;
        if let Ok(d) = f.into_data() {
            if buf.len() + d.len() > limit {
                return Err(RegistryError::TooLarge(format!(
                    "a manifest may be at most {limit} bytes"
                )));
            }
            buf.extend_from_slice(&d);
        }
    }
    Ok(buf)
}

/// `PUT` a manifest.
pub async fn put(reg: &Registry, ctx: &Ctx, req: Request<Incoming>, repo: &str, r: &str) -> Result<Resp> {
    let rf = reference(r)?;
    let limit = reg.cfg.max_manifest_bytes;
    if header(&req, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(RegistryError::TooLarge(format!(
            "a manifest may be at most {limit} bytes"
        )));
    }
    let ct = header(&req, "content-type").unwrap_or("").to_string();
    let body = read_capped(req.into_body(), limit).await?;
    let parsed = parse(&body, &ct)?;
    let want = match &rf {
        Ref::Digest(d) => Some(d),
        Ref::Tag(_) => None,
    };
    let d = crate::manifest::stored_digest(&body, want)?;
    let _gc = reg.gc_lock.read().await;
    for b in &parsed.blobs {
        if super::blobs::linked(reg, repo, b)?.is_none() {
            return Err(RegistryError::ManifestBlobUnknown(b.to_string()));
        }
    }
    for m in &parsed.manifests {
        if reg.storage.manifest_link(repo, m)?.is_none() {
            return Err(RegistryError::ManifestBlobUnknown(m.to_string()));
        }
    }
    if reg.storage.manifest_link(repo, &d)?.is_none() {
        reg.check_quota(repo, body.len() as u64)?;
    }
    reg.storage.put_blob(&d, &body).map_err(|e| match e {
        crate::storage::CommitError::Io(e) => RegistryError::Storage(e),
        other => RegistryError::Storage(std::io::Error::other(other.to_string())),
    })?;
    reg.storage.link_manifest(repo, &d, &parsed.media_type)?;
    if let Ref::Tag(t) = &rf {
        reg.storage.set_tag(repo, t, &d)?;
    }
    let mut headers = vec![
        ("location", format!("/v2/{repo}/manifests/{d}")),
        ("docker-content-digest", d.to_string()),
        ("content-length", "0".to_string()),
    ];
    if let Some(s) = &parsed.subject {
        reg.storage.add_referrer(repo, s, &d)?;
        headers.push(("oci-subject", s.to_string()));
    }
    reg.audit(ctx, "push", repo, r, &d.to_string());
    Ok(answer(201, &headers, empty()))
}

/// `DELETE` a manifest (by digest) or a tag.
pub async fn delete(reg: &Registry, ctx: &Ctx, repo: &str, r: &str) -> Result<Resp> {
    if !reg.cfg.delete {
        return Err(RegistryError::Unsupported("deletes are disabled".into()));
    }
    let unknown = || RegistryError::ManifestUnknown(r.chars().take(200).collect());
    match reference(r)? {
        Ref::Tag(t) => {
            let d = reg.storage.tag(repo, &t)?.ok_or_else(unknown)?;
            reg.storage.remove_tag(repo, &t)?;
            reg.audit(ctx, "delete", repo, r, &d.to_string());
        }
        Ref::Digest(d) => {
            if reg.storage.manifest_link(repo, &d)?.is_none() {
                return Err(unknown());
            }
            if let Some(body) = read_blob(&*reg.storage, &d, reg.cfg.max_manifest_bytes as u64)? {
                if let Some(s) = parse(&body, "").ok().and_then(|p| p.subject) {
                    reg.storage.remove_referrer(repo, &s, &d)?;
                }
            }
            for t in reg.storage.tags(repo)? {
                if reg.storage.tag(repo, &t)?.as_ref() == Some(&d) {
                    reg.storage.remove_tag(repo, &t)?;
                }
            }
            reg.storage.unlink_manifest(repo, &d)?;
            reg.audit(ctx, "delete", repo, r, &d.to_string());
        }
    }
    Ok(answer(202, &[("content-length", "0".into())], empty()))
}
