//! Uploads: `POST /v2/<name>/blobs/uploads/` starts a session (or, with `digest=`, takes the
//! whole blob at once; with `mount=&from=`, links a blob another repository has, falling back
//! to a session when it cannot); `PATCH` appends a chunk (with `Content-Range`, only at the
//! session's end: 416 otherwise); `PUT ?digest=` appends the last bytes and commits; `GET` tells
//! the session's progress; `DELETE` cancels it. Bytes are hashed as they arrive, so a commit
//! reads nothing again (after a restart it re-reads the session once); a chunk that fails part
//! way (too long for its range, over the size limit, cut off) is rolled back whole.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;

use super::{answer, blobs, empty, header, Ctx, Registry, Resp, Running};
use crate::error::{RegistryError, Result};
use crate::storage::{CommitError, UploadInfo};
use wharf_reference::oci::{Algorithm, Hasher, OciDigest};

/// How long a body may send nothing before the chunk is given up.
const IDLE: Duration = Duration::from_secs(120);

fn location(repo: &str, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

fn progress(repo: &str, id: &str, size: u64, status: u16) -> Resp {
    answer(
        status,
        &[
            ("location", location(repo, id)),
            ("range", format!("0-{}", size.saturating_sub(1))),
            ("docker-upload-uuid", id.to_string()),
            ("content-length", "0".into()),
        ],
        empty(),
    )
}

fn created(repo: &str, d: &OciDigest) -> Resp {
    answer(
        201,
        &[
            ("location", format!("/v2/{repo}/blobs/{d}")),
            ("docker-content-digest", d.to_string()),
            ("content-length", "0".into()),
        ],
        empty(),
    )
}

/// `Content-Range` as `start-end` (inclusive), in the forms clients send.
fn content_range(v: Option<&str>) -> Result<Option<(u64, u64)>> {
    let Some(v) = v else {
        return Ok(None);
    };
    let bad = || RegistryError::RangeInvalid(format!("Content-Range {v:?}"));
    let s = v.trim().trim_start_matches("bytes=").trim_start_matches("bytes ");
    let s = s.split('/').next().unwrap_or("");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

/// The session `id` of `repo`, or BLOB_UPLOAD_UNKNOWN.
fn session(reg: &Registry, repo: &str, id: &str) -> Result<UploadInfo> {
    match reg.storage.upload_info(id)? {
        Some(i) if i.repo == repo => Ok(i),
        _ => Err(RegistryError::BlobUploadUnknown(id.chars().take(64).collect())),
    }
}

/// Marks a session busy for one request; a second request on it meanwhile is refused.
struct Busy<'a>(&'a Registry, String);

impl<'a> Busy<'a> {
    fn take(reg: &'a Registry, id: &str) -> Result<Busy<'a>> {
        if !reg
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string())
        {
            return Err(RegistryError::RangeInvalid(
                "another request is writing this upload".into(),
            ));
        }
        Ok(Busy(reg, id.to_string()))
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.1);
    }
}

/// Appends a request body to a session; returns the session's new size.
async fn receive(reg: &Registry, id: &str, start: u64, mut body: Incoming, declared: Option<u64>) -> Result<u64> {
    let mut running = reg
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id)
        .filter(|r| r.size == start);
    if running.is_none() && start == 0 {
        running = Some(Running {
            hasher: Hasher::new(Algorithm::Sha256),
            size: 0,
        });
    }
    let max = reg.cfg.max_upload_bytes;
    let mut w = reg.storage.upload_writer(id)?;
    let mut n = 0u64;
    let outcome: Result<()> = loop {
        let frame = match tokio::time::timeout(IDLE, body.frame()).await {
            Err(_) => {
                break Err(RegistryError::BlobUploadInvalid(
                    "the client sent nothing for too long".into(),
                ))
            }
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => break Err(RegistryError::BlobUploadInvalid(format!("reading the body: {e}"))),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        n += data.len() as u64;
        if declared.is_some_and(|l| n > l) {
            break Err(RegistryError::SizeInvalid(
                "more bytes than the Content-Range declares".into(),
            ));
        }
        if max > 0 && start + n > max {
            break Err(RegistryError::TooLarge(format!(
                "an upload may hold at most {max} bytes"
            )));
        }
        if let Err(e) = w.write_all(&data) {
            break Err(e.into());
        }
        if let Some(r) = running.as_mut() {
            r.hasher.update(&data);
        }
    };
    let outcome = outcome.and_then(|()| match declared {
        Some(l) if n != l => Err(RegistryError::SizeInvalid(format!(
            "{n} bytes where Content-Range declares {l}"
        ))),
        _ => Ok(()),
    });
    if let Err(e) = outcome {
        w.rollback(start)?;
        return Err(e);
    }
    w.finish()?;
    if let Some(mut r) = running {
        r.size = start + n;
        reg.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), r);
    }
    Ok(start + n)
}

/// Commits a session as `digest` and links it into `repo`.
async fn commit(reg: &Arc<Registry>, ctx: &Ctx, repo: &str, id: &str, digest: &str) -> Result<Resp> {
    let d = match OciDigest::parse(digest) {
        Ok(d) => d,
        Err(e) => {
            let _ = reg.storage.upload_cancel(id);
            return Err(e.into());
        }
    };
    let computed = reg
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id)
        .map(|r| r.hasher.finish());
    let _gc = reg.gc_lock.read().await;
    let (r, id2, d2) = (reg.clone(), id.to_string(), d.clone());
    let out = tokio::task::spawn_blocking(move || r.storage.upload_commit(&id2, &d2, computed.as_ref()))
        .await
        .map_err(|e| RegistryError::Storage(std::io::Error::other(e)))?;
    let size = match out {
        Ok(size) => size,
        Err(CommitError::Unknown) => return Err(RegistryError::BlobUploadUnknown(id.to_string())),
        Err(CommitError::Mismatch { actual }) => {
            return Err(RegistryError::DigestInvalid(format!(
                "the content is {actual}, not {d}"
            )))
        }
        Err(CommitError::Io(e)) => return Err(e.into()),
    };
    if !reg.storage.has_blob_link(repo, &d)? {
        reg.check_quota(repo, size)?;
        reg.storage.link_blob(repo, &d)?;
    }
    reg.audit(ctx, "push", repo, "", &d.to_string());
    Ok(created(repo, &d))
}

/// `POST /v2/<name>/blobs/uploads/`.
pub async fn start(reg: Arc<Registry>, ctx: &Ctx, req: Request<Incoming>, repo: &str) -> Result<Resp> {
    if let (Some(m), Some(from)) = (ctx.param("mount"), ctx.param("from")) {
        if let Ok(d) = OciDigest::parse(m) {
            let ok = crate::names::valid_name(from) && reg.may(ctx, from, vec!["pull"]);
            if ok && blobs::linked(&reg, from, &d)?.is_some() {
                let _gc = reg.gc_lock.read().await;
                if !reg.storage.has_blob_link(repo, &d)? {
                    reg.check_quota(repo, reg.storage.blob_size(&d)?.unwrap_or(0))?;
                    reg.storage.link_blob(repo, &d)?;
                }
                return Ok(created(repo, &d));
            }
        }
    }
    let id = reg.storage.upload_start(repo)?;
    if let Some(digest) = ctx.param("digest").map(str::to_string) {
        let _busy = Busy::take(&reg, &id)?;
        if let Err(e) = receive(&reg, &id, 0, req.into_body(), None).await {
            let _ = reg.storage.upload_cancel(&id);
            return Err(e);
        }
        return commit(&reg, ctx, repo, &id, &digest).await;
    }
    Ok(progress(repo, &id, 0, 202))
}

/// `PATCH /v2/<name>/blobs/uploads/<id>`.
pub async fn patch(reg: Arc<Registry>, _ctx: &Ctx, req: Request<Incoming>, repo: &str, id: &str) -> Result<Resp> {
    let info = session(&reg, repo, id)?;
    let _busy = Busy::take(&reg, id)?;
    let range = content_range(header(&req, "content-range"))?;
    if let Some((a, _)) = range {
        if a != info.size {
            return Ok(answer(
                416,
                &[
                    ("location", location(repo, id)),
                    ("range", format!("0-{}", info.size.saturating_sub(1))),
                    ("docker-upload-uuid", id.to_string()),
                    ("content-type", "application/json".into()),
                ],
                super::full(
                    RegistryError::RangeInvalid(format!("the upload is at {}, the chunk starts at {a}", info.size))
                        .body(),
                ),
            ));
        }
    }
    let declared = range.map(|(a, b)| b - a + 1);
    let size = receive(&reg, id, info.size, req.into_body(), declared).await?;
    Ok(progress(repo, id, size, 202))
}

/// `PUT /v2/<name>/blobs/uploads/<id>?digest=`.
pub async fn put(reg: Arc<Registry>, ctx: &Ctx, req: Request<Incoming>, repo: &str, id: &str) -> Result<Resp> {
    let info = session(&reg, repo, id)?;
    let Some(digest) = ctx.param("digest").map(str::to_string) else {
        return Err(RegistryError::DigestInvalid("PUT needs ?digest=".into()));
    };
    let _busy = Busy::take(&reg, id)?;
    let range = content_range(header(&req, "content-range"))?;
    if range.is_some_and(|(a, _)| a != info.size) {
        return Err(RegistryError::RangeInvalid(format!("the upload is at {}", info.size)));
    }
    receive(&reg, id, info.size, req.into_body(), range.map(|(a, b)| b - a + 1)).await?;
    commit(&reg, ctx, repo, id, &digest).await
}

/// `GET /v2/<name>/blobs/uploads/<id>`.
pub fn status(reg: &Registry, repo: &str, id: &str) -> Result<Resp> {
    let info = session(reg, repo, id)?;
    Ok(progress(repo, id, info.size, 204))
}

/// `DELETE /v2/<name>/blobs/uploads/<id>`.
pub fn cancel(reg: &Registry, repo: &str, id: &str) -> Result<Resp> {
    session(reg, repo, id)?;
    let _busy = Busy::take(reg, id)?;
    reg.running.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    reg.storage.upload_cancel(id)?;
    Ok(answer(204, &[("content-length", "0".into())], empty()))
}

#[cfg(test)]
mod tests {
    use super::content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range(Some("0-9")).unwrap(), Some((0, 9)));
        assert_eq!(content_range(Some("bytes 10-19/*")).unwrap(), Some((10, 19)));
        assert!(content_range(Some("9-0")).is_err());
        assert!(content_range(Some("x")).is_err());
        assert_eq!(content_range(None).unwrap(), None);
    }
}
