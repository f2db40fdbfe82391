//! Pull-through cache mode (distribution's `proxy.remoteurl`): the registry answers pulls from
//! its own storage and fills it from a remote registry through wharf's registry client
//! (`wharf-distribution`: its endpoints, certificates, challenge and token flow, and its checks
//! that a manifest hashes to its digest). A tag is asked of the remote again once its local copy
//! is older than the TTL (the remote unreachable, the stale copy is served); a manifest by digest
//! or a blob is fetched once. A blob is streamed from the remote into an upload session, hashed
//! as it comes, and committed only when it hashes to the digest asked; one fetch per blob at a
//! time. Pushes and deletes are refused: the cache mirrors, it is not written to.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use wharf_distribution::auth::AuthConfig;
use wharf_distribution::registry::{Clients, Endpoint, Session};
use wharf_distribution::{DistError, RegistryConfig};
use wharf_reference::oci::{Hasher, OciDigest};

use super::Registry;
use crate::config::ProxyConfig;
use crate::error::{RegistryError, Result};
use crate::manifest::parse;
use crate::storage::CommitError;

/// The remote registry and what is being fetched from it.
#[derive(Debug)]
pub struct Proxy {
    clients: Clients,
    rc: RegistryConfig,
    endpoint: Endpoint,
    auth: Option<AuthConfig>,
    ttl: Duration,
    sessions: tokio::sync::Mutex<HashMap<String, Arc<Session>>>,
    fetching: std::sync::Mutex<HashMap<OciDigest, Arc<tokio::sync::Mutex<()>>>>,
}

fn remote_err(e: DistError) -> RegistryError {
    match e {
        DistError::NotFound(m) => RegistryError::ManifestUnknown(m),
        DistError::Unauthorized(m) | DistError::LoginFailed(m) => {
            RegistryError::Denied(format!("the remote registry: {m}"))
        }
        other => RegistryError::Unavailable(format!("the remote registry: {other}")),
    }
}

impl Proxy {
    /// A proxy of `cfg.remoteurl`.
    pub fn new(cfg: &ProxyConfig) -> std::result::Result<Proxy, String> {
        let base = cfg.remoteurl.trim_end_matches('/').to_string();
        let host = base
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) || host.is_empty() {
            return Err(format!("proxy.remoteurl {:?} is not an http(s) URL", cfg.remoteurl));
        }
        let auth = cfg.username.as_ref().map(|u| AuthConfig {
            username: u.clone(),
            password: cfg.password.clone().unwrap_or_default(),
            server_address: host.clone(),
            ..Default::default()
        });
        Ok(Proxy {
            clients: Clients::default(),
            rc: RegistryConfig::default(),
            endpoint: Endpoint {
                base,
                registry: host,
                skip_verify: cfg.insecure,
                mirror: false,
            },
            auth,
            ttl: Duration::from_secs(cfg.ttl),
            sessions: tokio::sync::Mutex::new(HashMap::new()),
            fetching: std::sync::Mutex::new(HashMap::new()),
        })
    }

    async fn session(&self, repo: &str) -> Result<Arc<Session>> {
        let mut s = self.sessions.lock().await;
        if let Some(x) = s.get(repo) {
            return Ok(x.clone());
        }
        let scopes = vec![format!("repository:{repo}:pull")];
        let sess = Session::open(
            &self.clients,
            &self.rc,
            std::slice::from_ref(&self.endpoint),
            repo,
            scopes,
            self.auth.clone(),
        )
        .await
        .map_err(remote_err)?;
        let sess = Arc::new(sess);
        s.insert(repo.to_string(), sess.clone());
        Ok(sess)
    }

    /// Makes the manifest `reference` (a tag or digest) of `repo` current in local storage.
    pub async fn manifest(
        &self,
        reg: &Registry,
        repo: &str,
        reference: &str,
        by_digest: Option<&OciDigest>,
    ) -> Result<()> {
        let s = &reg.storage;
        if let Some(d) = by_digest {
            if s.manifest_link(repo, d)?.is_some() {
                return Ok(());
            }
        } else if let Some(age) = s.tag_age(repo, reference)? {
            if age < self.ttl {
                return Ok(());
            }
        }
        let fetched = match self.session(repo).await {
            Ok(sess) => sess
                .manifest(reference, &format!("{repo}:{reference}"))
                .await
                .map_err(remote_err),
            Err(e) => Err(e),
        };
        let body = match fetched {
            Ok((body, _, _)) => body,
            // The remote is unreachable or refuses: a copy already here is served as it is.
            Err(e) if by_digest.is_none() && s.tag(repo, reference)?.is_some() => {
                tracing::warn!(repo, reference, error = %e, "serving the cached tag");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let p = parse(&body, "")?;
        let d = crate::manifest::stored_digest(&body, by_digest)?;
        let _gc = reg.gc_lock.read().await;
        s.put_blob(&d, &body)
            .map_err(|e| RegistryError::Storage(std::io::Error::other(e.to_string())))?;
        s.link_manifest(repo, &d, &p.media_type)?;
        if by_digest.is_none() {
            s.set_tag(repo, reference, &d)?;
        }
        if let Some(sub) = &p.subject {
            s.add_referrer(repo, sub, &d)?;
        }
        Ok(())
    }

    /// Makes the blob `d` of `repo` present in local storage, fetching it once.
    pub async fn blob(&self, reg: &Arc<Registry>, repo: &str, d: &OciDigest) -> Result<()> {
        let lock = {
            let mut f = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
            f.entry(d.clone()).or_default().clone()
        };
        let _one = lock.lock().await;
        let out = self.fetch_blob(reg, repo, d).await;
        self.fetching.lock().unwrap_or_else(|e| e.into_inner()).remove(d);
        out
    }

    async fn fetch_blob(&self, reg: &Arc<Registry>, repo: &str, d: &OciDigest) -> Result<()> {
        let s = &reg.storage;
        if s.blob_size(d)?.is_some() {
            let _gc = reg.gc_lock.read().await;
            return Ok(s.link_blob(repo, d)?);
        }
        let sess = self.session(repo).await?;
        let url = format!("{}/v2/{repo}/blobs/{d}", self.endpoint.base);
        let r = sess.send(|c| c.get(&url)).await.map_err(remote_err)?;
        if !r.status().is_success() {
            return Err(match r.status().as_u16() {
                404 => RegistryError::BlobUnknown(d.to_string()),
                401 | 403 => RegistryError::Denied(format!("the remote registry answered {}", r.status())),
                st => RegistryError::Unavailable(format!("the remote registry answered {st}")),
            });
        }
        let id = s.upload_start(repo)?;
        let mut w = s.upload_writer(&id)?;
        let mut h = Hasher::new(d.algorithm());
        let mut n = 0u64;
        let max = reg.cfg.max_upload_bytes;
        let mut body = r.bytes_stream();
        let copied: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| RegistryError::Unavailable(format!("the remote registry: {e}")))?;
                n += chunk.len() as u64;
                if max > 0 && n > max {
                    return Err(RegistryError::TooLarge(format!(
                        "the remote's blob is over {max} bytes"
                    )));
                }
                h.update(&chunk);
                w.write_all(&chunk)?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = copied {
            let _ = s.upload_cancel(&id);
            return Err(e);
        }
        w.finish()?;
        let computed = h.finish();
        let _gc = reg.gc_lock.read().await;
        let (r2, id2, d2) = (reg.clone(), id.clone(), d.clone());
        let out = tokio::task::spawn_blocking(move || r2.storage.upload_commit(&id2, &d2, Some(&computed)))
            .await
            .map_err(|e| RegistryError::Storage(std::io::Error::other(e)))?;
        match out {
            Ok(_) => Ok(s.link_blob(repo, d)?),
            Err(CommitError::Mismatch { actual }) => Err(RegistryError::DigestInvalid(format!(
                "the remote sent {actual} for {d}"
            ))),
            Err(CommitError::Unknown) => Err(RegistryError::BlobUploadUnknown(id)),
            Err(CommitError::Io(e)) => Err(e.into()),
        }
    }
}
