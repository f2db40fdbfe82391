//! The distribution service: pull, push, login and search, over the image service.
//!
//! State under `<data-root>/distribution/`: `partial/<hex>` (downloads in progress, resumed by
//! the next attempt), `blobs/<hex>` (verified downloads not yet part of a registered image;
//! kept across restarts so that a pull interrupted by a crash does not download them again),
//! `upload/` (compressed layers being pushed) and `v2metadata/<diff-id hex>.json` (which
//! compressed digests a layer has on which registries and repositories, so that a push skips
//! or mounts what a registry already has, as Docker does).

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;
use wharf_image::{ImageConfig, ImageService};
use wharf_reference::{Digest, Reference, DEFAULT_DOMAIN};

use crate::auth::AuthConfig;
use crate::manifest::{self, Manifest, Platform};
use crate::registry::{endpoints, Clients, RegistryConfig, Session};
use crate::DistError;

mod download;
mod pull;
mod push;

type Result<T, E = DistError> = std::result::Result<T, E>;

/// One async lock, shared by whoever waits on the same thing.
type AsyncLock = Arc<tokio::sync::Mutex<()>>;

/// What a lock in [`Distribution::lock_for`] guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LockKind {
    /// Pulling one layer (by chain ID).
    Layer,
    /// Downloading one blob (by digest).
    Blob,
}

/// One `v2metadata` entry: a compressed form of a layer known to be on a registry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct V2Meta {
    digest: String,
    /// `registry/path`.
    source: String,
    #[serde(default)]
    media_type: String,
    /// The compressed size (kept for foreign layers, which are never uploaded).
    #[serde(default)]
    size: u64,
    /// Where a foreign layer is fetched from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    urls: Vec<String>,
}

/// One `search` result, as the v1 search API and the Engine API name its fields.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchResult {
    /// Repository name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Stars.
    #[serde(default)]
    pub star_count: i64,
    /// An official image.
    #[serde(default)]
    pub is_official: bool,
    /// Built automatically (deprecated, always false on Docker Hub now).
    #[serde(default)]
    pub is_automated: bool,
}

/// The distribution service.
pub struct Distribution {
    cfg: RegistryConfig,
    images: Arc<ImageService>,
    root: PathBuf,
    clients: Clients,
    /// Per-layer (by chain ID) and per-blob (by digest) locks: kept apart, since the first
    /// layer's chain ID is its diff ID, which an uncompressed layer's blob digest equals.
    locks: Mutex<HashMap<(LockKind, Digest), AsyncLock>>,
    downloads: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
    extracts: Arc<Semaphore>,
}

impl std::fmt::Debug for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distribution").field("cfg", &self.cfg).finish()
    }
}

pub(crate) fn blocking_err(e: tokio::task::JoinError) -> DistError {
    DistError::Internal(format!("worker failed: {e}"))
}

/// Reads through to `inner`, reporting how many bytes went by.
struct Counting<R, F: FnMut(u64)> {
    inner: R,
    n: u64,
    last: u64,
    report: F,
}

impl<R: Read, F: FnMut(u64)> Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        if self.n - self.last >= 512 << 10 || k == 0 {
            self.last = self.n;
            (self.report)(self.n);
        }
        Ok(k)
    }
}

impl Distribution {
    /// Open the service for `images`, keeping state under `data_root/distribution`.
    pub fn open(cfg: RegistryConfig, images: Arc<ImageService>, data_root: &Path) -> Result<Distribution> {
        cfg.validate()?;
        let root = data_root.join("distribution");
        for d in ["partial", "blobs", "upload", "v2metadata", "compressed"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        // Uploads in progress died with the last daemon.
        for e in std::fs::read_dir(root.join("upload"))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let dist = Distribution {
            downloads: Arc::new(Semaphore::new(cfg.max_downloads.max(1))),
            uploads: Arc::new(Semaphore::new(cfg.max_uploads.max(1))),
            extracts: Arc::new(Semaphore::new(ncpu.max(1))),
            cfg,
            images,
            root,
            clients: Clients::default(),
            locks: Mutex::new(HashMap::new()),
        };
        if let Err(e) = dist.prune_compressed() {
            tracing::warn!("pruning kept layer blobs: {e}");
        }
        Ok(dist)
    }

    /// The registry settings in force (for `/info`).
    pub fn config(&self) -> &RegistryConfig {
        &self.cfg
    }

    pub(crate) fn lock_for(&self, kind: LockKind, d: &Digest) -> AsyncLock {
        self.locks.lock().expect("locks").entry((kind, *d)).or_default().clone()
    }

    pub(crate) fn unlock_done(&self, kind: LockKind, d: &Digest) {
        let mut m = self.locks.lock().expect("locks");
        if m.get(&(kind, *d)).is_some_and(|l| Arc::strong_count(l) == 1) {
            m.remove(&(kind, *d));
        }
    }

    pub(crate) fn v2meta(&self, diff: &Digest) -> Vec<V2Meta> {
        std::fs::read(self.root.join("v2metadata").join(format!("{}.json", diff.hex())))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Where the gzip blob `d` of a layer is kept once it was pulled or pushed, so that a push
    /// of the layer (to any registry) sends it without compressing again.
    pub(crate) fn compressed_path(&self, d: &Digest) -> PathBuf {
        self.root.join("compressed").join(d.hex())
    }

    /// Keeps a verified gzip blob of a layer: moved into `compressed/` (same file system).
    pub(crate) fn keep_compressed(&self, from: &Path, d: &Digest) {
        if std::fs::rename(from, self.compressed_path(d)).is_err() {
            let _ = std::fs::remove_file(from);
        }
    }

    /// Forgets what belongs to layers no longer registered: their v2metadata and kept gzip
    /// blobs (called after image removals and at start). Returns the bytes freed.
    pub fn prune_compressed(&self) -> Result<u64> {
        let _g = self.locks.lock().expect("locks");
        let live = self.images.diff_ids()?;
        let mut wanted = std::collections::HashSet::new();
        for e in std::fs::read_dir(self.root.join("v2metadata"))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(diff) = Digest::from_hex(hex) else { continue };
            if !live.contains(&diff) {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            for m in self.v2meta(&diff) {
                if let Ok(d) = m.digest.parse::<Digest>() {
                    wanted.insert(d.hex());
                }
            }
        }
        let mut freed = 0;
        for e in std::fs::read_dir(self.root.join("compressed"))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !wanted.contains(&name) {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(freed)
    }

    pub(crate) fn add_v2meta(&self, diff: &Digest, m: V2Meta) {
        let _g = self.locks.lock().expect("locks");
        let mut all = self.v2meta(diff);
        all.retain(|x| !(x.digest == m.digest && x.source == m.source));
        all.insert(0, m);
        all.truncate(50);
        let path = self.root.join("v2metadata").join(format!("{}.json", diff.hex()));
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, serde_json::to_vec(&all).expect("serialise")).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }

    // ---------------------------------------------------------------- pull

    // ---------------------------------------------------------------- push

    // ---------------------------------------------------------------- import from a URL

    /// Open `url` (http or https, no credentials) for `import`: its body as a channel of
    /// chunks, pumped by a task. A status other than 2xx is an error before any byte.
    pub async fn open_url(&self, url: &str) -> Result<tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>> {
        use futures_util::StreamExt;
        let u = reqwest::Url::parse(url).map_err(|e| DistError::Invalid(format!("invalid URL {url:?}: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(DistError::Invalid(format!(
                "unsupported URL scheme in {url:?}: use http or https"
            )));
        }
        let host = host_port(&u);
        let ep = crate::registry::Endpoint {
            base: format!("{}://{host}", u.scheme()),
            registry: host.clone(),
            skip_verify: false,
            mirror: false,
        };
        let client = self.clients.get(&self.cfg, &ep)?;
        let r = client
            .get(u)
            .send()
            .await
            .map_err(|e| DistError::Unavailable(format!("Get {url:?}: {e}")))?;
        if !r.status().is_success() {
            return Err(DistError::NotFound(format!("Get {url:?}: {}", r.status())));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut body = r.bytes_stream();
            while let Some(chunk) = body.next().await {
                let item = chunk.map_err(std::io::Error::other);
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(rx)
    }

    /// `GET /distribution/{name}/json`: the descriptor of `r`'s manifest (or index) in its
    /// registry and the platforms it offers: an index lists its entries' platforms, an image
    /// manifest the platform its config names. Nothing is stored.
    pub async fn inspect(&self, r: &Reference, auth: Option<AuthConfig>) -> Result<serde_json::Value> {
        let eps = endpoints(&self.cfg, r.domain(), false);
        let scope = vec![format!("repository:{}:pull", r.path())];
        let s = Session::open(&self.clients, &self.cfg, &eps, r.path(), scope, auth).await?;
        let reference = match (r.digest(), r.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        };
        let shown = r.familiar();
        let (body, digest, m) = s.manifest(&reference, &shown).await?;
        let declared = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_string))
            .filter(|t| !t.is_empty());
        let platform_json = |p: &Platform| {
            let mut v = json!({"architecture": p.architecture, "os": p.os});
            if !p.variant.is_empty() {
                v["variant"] = json!(p.variant);
            }
            v
        };
        let (media_type, platforms) = match m {
            Manifest::Index(list) => (
                declared.unwrap_or_else(|| manifest::OCI_INDEX.to_string()),
                list.iter()
                    .filter_map(|d| d.platform.as_ref())
                    .map(platform_json)
                    .collect(),
            ),
            Manifest::Image(im) => {
                let cfg = s
                    .small_blob(
                        &im.config.digest()?,
                        im.config.size()?,
                        wharf_image::config::MAX_CONFIG_BYTES,
                    )
                    .await?;
                let parsed = ImageConfig::parse(&cfg).map_err(DistError::BadManifest)?;
                let p = Platform {
                    architecture: parsed.architecture.clone(),
                    os: parsed.os.clone(),
                    variant: parsed.variant.clone().unwrap_or_default(),
                };
                (
                    declared.unwrap_or_else(|| manifest::OCI_MANIFEST.to_string()),
                    vec![platform_json(&p)],
                )
            }
        };
        Ok(json!({
            "Descriptor": {"mediaType": media_type, "digest": digest.to_string(), "size": body.len()},
            "Platforms": platforms,
        }))
    }

    // ---------------------------------------------------------------- login and search

    /// `login`: check `auth` against its registry. Returns Docker's status line.
    pub async fn login(&self, mut auth: AuthConfig) -> Result<String> {
        auth.fill_from_auth();
        let registry = normalize_server(&auth.server_address);
        let eps = endpoints(&self.cfg, &registry, true);
        let login = async {
            let s = Session::open(&self.clients, &self.cfg, &eps, "", vec![], Some(auth)).await?;
            s.check_login().await
        };
        login.await.map_err(|e| match e {
            DistError::Unauthorized(m) => DistError::LoginFailed(m),
            e => e,
        })?;
        Ok("Login Succeeded".into())
    }

    /// `search`: the registry's v1 search API (Docker Hub's index has it; Distribution does
    /// not). `term` may name a registry (`host/query`).
    pub async fn search(&self, term: &str, limit: usize, auth: Option<AuthConfig>) -> Result<Vec<SearchResult>> {
        let (registry, q) = match term.split_once('/') {
            Some((h, rest)) if h.contains('.') || h.contains(':') || h == "localhost" => (h.to_string(), rest),
            _ => (DEFAULT_DOMAIN.to_string(), term),
        };
        if q.is_empty() {
            return Err(DistError::Invalid("search term is empty".into()));
        }
        let bases: Vec<String> = if registry == DEFAULT_DOMAIN {
            vec!["https://index.docker.io".into()]
        } else {
            endpoints(&self.cfg, &registry, true)
                .into_iter()
                .map(|e| e.base)
                .collect()
        };
        let mut last = DistError::Unavailable(format!("search on {registry}: no endpoint"));
        for (i, base) in bases.iter().enumerate() {
            let ep = crate::registry::Endpoint {
                base: base.clone(),
                registry: registry.clone(),
                skip_verify: registry != DEFAULT_DOMAIN && self.cfg.is_insecure(&registry),
                mirror: false,
            };
            let client = self.clients.get(&self.cfg, &ep)?;
            let mut url = reqwest::Url::parse(&format!("{base}/v1/search"))
                .map_err(|e| DistError::Invalid(format!("search: {e}")))?;
            url.query_pairs_mut()
                .append_pair("q", q)
                .append_pair("n", &limit.clamp(1, 100).to_string());
            let mut rb = client.get(url);
            if let Some(a) = auth.as_ref().filter(|a| a.has_basic()) {
                rb = rb.header(reqwest::header::AUTHORIZATION, a.basic());
            }
            match rb.send().await {
                Ok(r) if r.status().is_success() => {
                    #[derive(Deserialize)]
                    struct Res {
                        results: Vec<SearchResult>,
                    }
                    let res: Res = r
                        .json()
                        .await
                        .map_err(|e| DistError::Unavailable(format!("invalid search response from {base}: {e}")))?;
                    let mut v = res.results;
                    v.truncate(limit.max(1));
                    return Ok(v);
                }
                Ok(r) => {
                    last = if r.status() == reqwest::StatusCode::NOT_FOUND {
                        DistError::NotFound(format!("{registry} does not offer the v1 search API"))
                    } else {
                        DistError::Unavailable(format!("search on {registry}: {}", r.status()))
                    };
                }
                Err(e) if i + 1 < bases.len() => last = DistError::Unavailable(e.to_string()),
                Err(e) => return Err(DistError::Unavailable(format!("search on {registry}: {e}"))),
            }
        }
        Err(last)
    }
}

/// `host[:port]` of a URL.
pub(crate) fn host_port(u: &reqwest::Url) -> String {
    let h = u.host_str().unwrap_or("");
    match u.port() {
        Some(p) => format!("{h}:{p}"),
        None => h.to_string(),
    }
}

/// Docker's spellings of Docker Hub (`https://index.docker.io/v1/`, empty) become
/// `docker.io`; a URL loses its scheme and path.
pub fn normalize_server(s: &str) -> String {
    let t = s.trim();
    let t = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .unwrap_or(t);
    let host = t.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "" | "index.docker.io" | "docker.io" | "registry-1.docker.io" => DEFAULT_DOMAIN.into(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_normalise() {
        assert_eq!(normalize_server("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_server(""), "docker.io");
        assert_eq!(normalize_server("localhost:5000"), "localhost:5000");
        assert_eq!(normalize_server("http://127.0.0.1:5000/"), "127.0.0.1:5000");
    }
}
