//! Blobs: `GET`/`HEAD /v2/<name>/blobs/<digest>` (whole, or one `Range` answered 206, an
//! unsatisfiable one 416) and `DELETE` (the repository's link only; GC deletes the content).
//! A blob is served only to a repository that links it.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request};

use super::{answer, empty, header, Body, Ctx, Registry, Resp};
use crate::error::{RegistryError, Result};
use wharf_reference::oci::OciDigest;

/// A parsed `Range: bytes=...` against a size: `Ok(None)` for no range, `Err` for unsatisfiable.
fn byte_range(v: Option<&str>, size: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
    let Some(v) = v else {
        return Ok(None);
    };
    let spec = v.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (s, "") => (s.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (s, e) => {
            let e: u64 = e.parse().map_err(|_| ())?;
            (s.parse().map_err(|_| ())?, e.min(size.saturating_sub(1)))
        }
    };
    if size == 0 || start > end || start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// The piece a blob is read and sent in: large enough for few system calls, small enough that
/// 50 clients at once hold little memory (measured: 1 MiB pieces four deep peaked at 302 MiB).
const PIECE: u64 = 256 << 10;

/// Streams `len` bytes of a reader, read off the reactor in [`PIECE`]s, one piece ahead.
pub fn stream(mut r: Box<dyn Read + Send>, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Frame<Bytes>>>(1);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            // read_to_end fills spare capacity: no zeroing of each piece (7% of the CPU of 50
            // concurrent pulls, measured with perf).
            let want = left.min(PIECE);
            let mut buf = Vec::with_capacity(want as usize);
            match (&mut r).take(want).read_to_end(&mut buf) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other("blob shorter than its size")));
                    return;
                }
                Ok(n) => {
                    left -= n as u64;
                    if tx.blocking_send(Ok(Frame::data(Bytes::from(buf)))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let s = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    StreamBody::new(s).boxed()
}

/// The blob's digest and size, if `repo` links it.
pub fn linked(reg: &Registry, repo: &str, d: &OciDigest) -> Result<Option<u64>> {
    if !reg.storage.has_blob_link(repo, d)? {
        return Ok(None);
    }
    Ok(reg.storage.blob_size(d)?)
}

/// `GET`/`HEAD` a blob.
pub async fn get(reg: &Arc<Registry>, _ctx: &Ctx, req: &Request<Incoming>, repo: &str, digest: &str) -> Result<Resp> {
    let d = OciDigest::parse(digest)?;
    if let Some(p) = &reg.proxy {
        if linked(reg, repo, &d)?.is_none() {
            p.blob(reg, repo, &d).await?;
        }
    }
    let size = linked(reg, repo, &d)?.ok_or_else(|| RegistryError::BlobUnknown(d.to_string()))?;
    let mut headers = vec![
        ("content-type", "application/octet-stream".to_string()),
        ("docker-content-digest", d.to_string()),
        ("etag", format!("\"{d}\"")),
        ("accept-ranges", "bytes".to_string()),
        ("cache-control", "max-age=31536000".to_string()),
    ];
    let (status, start, len) = match byte_range(header(req, "range"), size) {
        Ok(None) => (200, 0, size),
        Ok(Some((s, e))) => {
            headers.push(("content-range", format!("bytes {s}-{e}/{size}")));
            (206, s, e - s + 1)
        }
        Err(()) => {
            return Ok(answer(416, &[("content-range", format!("bytes */{size}"))], empty()));
        }
    };
    headers.push(("content-length", len.to_string()));
    if req.method() == Method::HEAD || len == 0 {
        return Ok(answer(status, &headers, empty()));
    }
    // A plain connection sends the file itself (zerocopy); TLS reads it in pieces, as does a
    // process out of mappings (vm.max_map_count).
    if !reg.tls {
        if let Some(f) = reg.storage.blob_file(&d)? {
            match super::zerocopy::map(f, start, len) {
                Ok(b) => return Ok(answer(status, &headers, super::full(b))),
                Err(e) => tracing::warn!(error = %e, "mapping a blob failed: reading it instead"),
            }
        }
    }
    let r = reg.storage.open_blob(&d, start, len)?;
    Ok(answer(status, &headers, stream(r, len)))
}

/// `DELETE` a blob from a repository.
pub async fn delete(reg: &Registry, ctx: &Ctx, repo: &str, digest: &str) -> Result<Resp> {
    if !reg.cfg.delete {
        return Err(RegistryError::Unsupported("deletes are disabled".into()));
    }
    let d = OciDigest::parse(digest)?;
    if !reg.storage.unlink_blob(repo, &d)? {
        return Err(RegistryError::BlobUnknown(d.to_string()));
    }
    reg.audit(ctx, "delete", repo, "", &d.to_string());
    Ok(answer(202, &[("content-length", "0".into())], empty()))
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 10), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(byte_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(byte_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(byte_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=-0",
            "bytes=x-1",
        ] {
            assert_eq!(byte_range(Some(bad), 10), Err(()), "{bad}");
        }
    }
}
