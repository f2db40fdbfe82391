//! Blobs on a registry: small ones read whole, layers downloaded resumably (Range, verified
//! as they stream), existence checks, cross-repository mounts and uploads.

use super::*;
use crate::DistError;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Client, StatusCode};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use wharf_reference::{Digest, Sha256Writer};

impl Session {
    /// Read a small blob (a config) into memory, verified.
    pub async fn small_blob(&self, d: &Digest, size: u64, limit: u64) -> Result<Vec<u8>, DistError> {
        if size > limit {
            return Err(DistError::BadManifest(format!(
                "blob {d} is {size} bytes, over the {limit}-byte limit"
            )));
        }
        let url = self.url(&format!("blobs/{d}"));
        let r = self.send(|c| c.get(&url)).await?;
        if !r.status().is_success() {
            let (st, _, msg) = error_text(r).await;
            return Err(blob_error(d, st, &msg));
        }
        let mut body = Vec::new();
        let mut stream = r.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| DistError::Unavailable(format!("reading blob {d}: {e}")))?;
            body.extend_from_slice(&chunk);
            if body.len() as u64 > size {
                return Err(DistError::DigestMismatch(format!(
                    "blob {d} is longer than its descriptor's {size} bytes"
                )));
            }
        }
        if Digest::of(&body) != *d || body.len() as u64 != size {
            return Err(DistError::DigestMismatch(format!(
                "filesystem layer verification failed for digest {d}"
            )));
        }
        Ok(body)
    }

    /// Download a blob into `partial`, continuing from what is already there (a `Range`
    /// request) and retrying broken transfers up to five times. The file is complete and its
    /// digest and size verified when this returns; a mismatch deletes it.
    ///
    /// `foreign` names a URL of a foreign (non-distributable) layer to fetch instead of the
    /// registry's blob; no credentials are ever sent there.
    pub async fn download(
        &self,
        d: &Digest,
        size: u64,
        partial: &Path,
        foreign: Option<&str>,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), DistError> {
        let url = match foreign {
            Some(u) => u.to_string(),
            None => self.url(&format!("blobs/{d}")),
        };
        let mut attempt = 0u32;
        loop {
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(partial)
                .await?;
            let mut have = file.metadata().await?.len();
            if have > size {
                drop(file);
                tokio::fs::remove_file(partial).await?;
                continue;
            }
            let result: Result<bool, DistError> = async {
                if have == size {
                    return Ok(true);
                }
                let get = |c: &Client| {
                    let rb = c.get(&url);
                    if have > 0 {
                        rb.header(RANGE, format!("bytes={have}-"))
                    } else {
                        rb
                    }
                };
                let r = match foreign {
                    Some(u) => get(&self.client)
                        .send()
                        .await
                        .map_err(|e| DistError::Retry(format!("foreign layer {u}: {e}")))?,
                    None => self.send(get).await?,
                };
                match r.status() {
                    StatusCode::PARTIAL_CONTENT => {}
                    StatusCode::OK => {
                        if have > 0 {
                            // The server ignored the range: start over.
                            file.set_len(0).await?;
                            have = 0;
                        }
                    }
                    StatusCode::RANGE_NOT_SATISFIABLE => {
                        file.set_len(0).await?;
                        return Err(DistError::Retry(format!("blob {d}: range not satisfiable")));
                    }
                    st => {
                        let (st2, _, msg) = error_text(r).await;
                        let e = blob_error(d, st2, &msg);
                        return Err(if st.is_server_error() {
                            DistError::Retry(e.to_string())
                        } else {
                            e
                        });
                    }
                }
                progress(have);
                let mut stream = r.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| DistError::Retry(format!("downloading blob {d}: {e}")))?;
                    if have + chunk.len() as u64 > size {
                        file.set_len(0).await?;
                        return Err(DistError::DigestMismatch(format!(
                            "blob {d} is longer than its descriptor's {size} bytes"
                        )));
                    }
                    file.write_all(&chunk).await?;
                    have += chunk.len() as u64;
                    progress(have);
                }
                file.flush().await?;
                Ok(have == size)
            }
            .await;
            match result {
                Ok(true) => break,
                Ok(false) => {
                    attempt += 1;
                    if attempt > 5 {
                        return Err(DistError::Unavailable(format!(
                            "blob {d}: the registry kept closing the transfer early ({have} of {size} bytes)"
                        )));
                    }
                }
                Err(DistError::Retry(msg)) | Err(DistError::Unavailable(msg)) => {
                    attempt += 1;
                    if attempt > 5 {
                        return Err(DistError::Unavailable(msg));
                    }
                    tracing::info!(attempt, "retrying: {msg}");
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
        }
        // Verify the whole file.
        let path = partial.to_path_buf();
        let (actual, len) = tokio::task::spawn_blocking(move || -> std::io::Result<(Digest, u64)> {
            let mut f = std::fs::File::open(&path)?;
            let mut h = Sha256Writer::new();
            std::io::copy(&mut f, &mut h)?;
            f.sync_all()?;
            let n = h.len();
            Ok((h.finish(), n))
        })
        .await
        .map_err(|e| DistError::Internal(e.to_string()))??;
        if actual != *d || len != size {
            let _ = tokio::fs::remove_file(partial).await;
            return Err(DistError::DigestMismatch(format!(
                "filesystem layer verification failed for digest {d}"
            )));
        }
        Ok(())
    }

    /// True when the repository has the blob.
    pub async fn has_blob(&self, d: &Digest) -> Result<bool, DistError> {
        let url = self.url(&format!("blobs/{d}"));
        let r = self.send(|c| c.head(&url)).await?;
        Ok(r.status().is_success())
    }

    /// Ask the registry to mount `d` from `from` (another repository on it). True on success.
    pub async fn mount(&self, d: &Digest, from: &str) -> Result<bool, DistError> {
        let url = format!(
            "{}/v2/{}/blobs/uploads/?mount={d}&from={}",
            self.endpoint.base, self.repo, from
        );
        let r = self
            .send(|c| c.post(&url).header(reqwest::header::CONTENT_LENGTH, "0"))
            .await?;
        if r.status() == StatusCode::CREATED {
            return Ok(true);
        }
        // A 202 opened an upload instead; abandon it.
        if r.status() == StatusCode::ACCEPTED {
            if let Some(loc) = r.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                let loc = self.absolute(loc);
                let _ = self.send(|c| c.delete(&loc)).await;
            }
        }
        Ok(false)
    }

    pub(crate) fn absolute(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!("{}{}", self.endpoint.base, loc)
        }
    }

    /// Open an upload session; returns the URL to PUT the blob `d` to.
    pub(crate) async fn start_upload(&self, d: &Digest) -> Result<reqwest::Url, DistError> {
        let url = format!("{}/v2/{}/blobs/uploads/", self.endpoint.base, self.repo);
        let r = self
            .send(|c| c.post(&url).header(reqwest::header::CONTENT_LENGTH, "0"))
            .await?;
        if r.status() != StatusCode::ACCEPTED {
            let (st, _, msg) = error_text(r).await;
            return Err(push_error(&self.repo, st, &msg));
        }
        let loc = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| DistError::Unavailable("the registry gave no upload location".into()))?;
        let mut put = reqwest::Url::parse(&self.absolute(loc))
            .map_err(|e| DistError::Unavailable(format!("invalid upload location {loc:?}: {e}")))?;
        put.query_pairs_mut().append_pair("digest", &d.to_string());
        Ok(put)
    }

    /// Upload a blob from `file` (monolithic: POST then PUT with the digest).
    pub async fn upload(
        &self,
        d: &Digest,
        size: u64,
        file: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), DistError> {
        let put = self.start_upload(d).await?;
        let f = tokio::fs::File::open(file).await?;
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stream = futures_util::stream::unfold((f, sent.clone()), |(mut f, sent)| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 1 << 20];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    sent.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), (f, sent)))
                }
                Err(e) => Some((Err(e), (f, sent))),
            }
        });
        let body = reqwest::Body::wrap_stream(stream);
        let mut rb = self
            .client
            .put(put)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body);
        if let Some(a) = self.authz.lock().expect("authz").clone() {
            rb = rb.header(AUTHORIZATION, a);
        }
        let done = rb.send();
        tokio::pin!(done);
        let r = loop {
            tokio::select! {
                r = &mut done => break r,
                _ = tokio::time::sleep(Duration::from_millis(250)) => progress(sent.load(std::sync::atomic::Ordering::Relaxed)),
            }
        }
        .map_err(|e| transport(&self.endpoint.base, e))?;
        progress(size);
        if r.status() != StatusCode::CREATED {
            let (st, _, msg) = error_text(r).await;
            return Err(push_error(&self.repo, st, &msg));
        }
        Ok(())
    }

    /// Upload a small blob from memory.
    pub async fn upload_bytes(&self, d: &Digest, data: &[u8]) -> Result<(), DistError> {
        let put = self.start_upload(d).await?;
        let data = bytes::Bytes::copy_from_slice(data);
        let r = self
            .send(|c| {
                c.put(put.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        if r.status() != StatusCode::CREATED {
            let (st, _, msg) = error_text(r).await;
            return Err(push_error(&self.repo, st, &msg));
        }
        Ok(())
    }
}

pub(crate) fn blob_error(d: &Digest, st: StatusCode, msg: &str) -> DistError {
    match st {
        StatusCode::NOT_FOUND => DistError::NotFound(format!("blob {d} not found: {msg}")),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => DistError::Unauthorized(format!("blob {d}: {msg}")),
        _ => DistError::Unavailable(format!("blob {d}: {st}: {msg}")),
    }
}

pub(crate) fn push_error(repo: &str, st: StatusCode, msg: &str) -> DistError {
    match st {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => DistError::Unauthorized(msg.to_string()),
        StatusCode::NOT_FOUND => DistError::NotFound(format!("{repo}: {msg}")),
        StatusCode::BAD_REQUEST => DistError::Invalid(msg.to_string()),
        _ => DistError::Unavailable(format!("{st}: {msg}")),
    }
}
