//! Manifests and tags on a registry: fetched by tag or digest with content negotiation and
//! verified, pushed, listed.

use super::blobs::push_error;
use super::*;
use crate::manifest::{self, Manifest, MAX_MANIFEST_BYTES};
use crate::DistError;
use futures_util::StreamExt;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;
use wharf_reference::Digest;

impl Session {
    /// Fetch a manifest by tag or digest. Returns the bytes, their digest and the parsed form.
    /// By digest, the bytes must hash to it; by tag, to the `Docker-Content-Digest` header
    /// when the registry sends one.
    pub async fn manifest(&self, reference: &str, shown: &str) -> Result<(Vec<u8>, Digest, Manifest), DistError> {
        let url = self.url(&format!("manifests/{reference}"));
        let r = self
            .send(|c| c.get(&url).header(ACCEPT, HeaderValue::from_static(manifest::ACCEPT)))
            .await?;
        if !r.status().is_success() {
            let (st, code, msg) = error_text(r).await;
            return Err(match st {
                StatusCode::NOT_FOUND if code == "NAME_UNKNOWN" || code.is_empty() && !reference.contains(':') => {
                    DistError::NotFound(format!(
                        "pull access denied for {shown}, repository does not exist or may require 'docker login': {msg}"
                    ))
                }
                StatusCode::NOT_FOUND => DistError::NotFound(format!("manifest for {shown} not found: {msg}")),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => DistError::NotFound(format!(
                    "pull access denied for {shown}, repository does not exist or may require 'docker login': {msg}"
                )),
                _ => DistError::Unavailable(format!("fetching the manifest of {shown}: {st}: {msg}")),
            });
        }
        let ct = r
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let header_digest = r
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if r.content_length().is_some_and(|l| l > MAX_MANIFEST_BYTES as u64) {
            return Err(DistError::BadManifest(format!(
                "the manifest of {shown} is over {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        let mut body = Vec::new();
        let mut stream = r.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| DistError::Unavailable(format!("reading the manifest of {shown}: {e}")))?;
            body.extend_from_slice(&chunk);
            if body.len() > MAX_MANIFEST_BYTES {
                return Err(DistError::BadManifest(format!(
                    "the manifest of {shown} is over {MAX_MANIFEST_BYTES} bytes"
                )));
            }
        }
        let actual = Digest::of(&body);
        if let Ok(want) = reference.parse::<Digest>() {
            if want != actual {
                return Err(DistError::DigestMismatch(format!(
                    "manifest verification failed for digest {want}: the registry sent {actual}"
                )));
            }
        } else if let Some(h) = header_digest {
            if let Ok(d) = h.parse::<Digest>() {
                if d != actual {
                    return Err(DistError::DigestMismatch(format!(
                        "manifest of {shown}: Docker-Content-Digest {d} does not match its content {actual}"
                    )));
                }
            }
        }
        let m = manifest::parse(&body, &ct)?;
        Ok((body, actual, m))
    }

    /// PUT a manifest under `reference` (a tag).
    pub async fn put_manifest(&self, reference: &str, media_type: &str, body: &[u8]) -> Result<(), DistError> {
        let url = self.url(&format!("manifests/{reference}"));
        let data = bytes::Bytes::copy_from_slice(body);
        let mt = media_type.to_string();
        let r = self
            .send(|c| c.put(&url).header(CONTENT_TYPE, mt.as_str()).body(data.clone()))
            .await?;
        if !r.status().is_success() {
            let (st, _, msg) = error_text(r).await;
            return Err(push_error(&self.repo, st, &msg));
        }
        Ok(())
    }

    /// Every tag of the repository (`pull -a`).
    pub async fn tags(&self) -> Result<Vec<String>, DistError> {
        let url = self.url("tags/list");
        let r = self.send(|c| c.get(&url)).await?;
        if !r.status().is_success() {
            let (st, _, msg) = error_text(r).await;
            return Err(if st == StatusCode::NOT_FOUND {
                DistError::NotFound(format!("repository {} not found: {msg}", self.repo))
            } else {
                DistError::Unavailable(format!("listing tags: {st}: {msg}"))
            });
        }
        #[derive(serde::Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let t: Tags = r
            .json()
            .await
            .map_err(|e| DistError::Unavailable(format!("invalid tag list: {e}")))?;
        Ok(t.tags.unwrap_or_default())
    }
}
