//! The distribution service: pull, push, login and search, over the image service.
//!
//! State under `<data-root>/distribution/`: `partial/<hex>` (downloads in progress, resumed by
//! the next attempt), `blobs/<hex>` (verified downloads not yet part of a registered image;
//! kept across restarts so that a pull interrupted by a crash does not download them again),
//! `upload/` (compressed layers being pushed) and `v2metadata/<diff-id hex>.json` (which
//! compressed digests a layer has on which registries and repositories, so that a push skips
//! or mounts what a registry already has, as Docker does).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;
use wharf_image::{ImageConfig, ImageService, ListFilter};
use wharf_reference::{chain_ids, Digest, Reference, Sha256Writer, DEFAULT_DOMAIN};

use crate::auth::AuthConfig;
use crate::manifest::{self, Descriptor, ImageManifest, Manifest, Platform};
use crate::progress::Progress;
use crate::registry::{endpoints, Clients, RegistryConfig, Session};
use crate::DistError;

type Result<T, E = DistError> = std::result::Result<T, E>;

/// One async lock, shared by whoever waits on the same thing.
type AsyncLock = Arc<tokio::sync::Mutex<()>>;

/// What a lock in [`Distribution::lock_for`] guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum LockKind {
    /// Pulling one layer (by chain ID).
    Layer,
    /// Downloading one blob (by digest).
    Blob,
}

/// One `v2metadata` entry: a compressed form of a layer known to be on a registry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct V2Meta {
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

fn blocking_err(e: tokio::task::JoinError) -> DistError {
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
        for d in ["partial", "blobs", "upload", "v2metadata"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        // Uploads in progress died with the last daemon.
        for e in std::fs::read_dir(root.join("upload"))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Ok(Distribution {
            downloads: Arc::new(Semaphore::new(cfg.max_downloads.max(1))),
            uploads: Arc::new(Semaphore::new(cfg.max_uploads.max(1))),
            extracts: Arc::new(Semaphore::new(ncpu.max(1))),
            cfg,
            images,
            root,
            clients: Clients::default(),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// The registry settings in force (for `/info`).
    pub fn config(&self) -> &RegistryConfig {
        &self.cfg
    }

    fn lock_for(&self, kind: LockKind, d: &Digest) -> AsyncLock {
        self.locks.lock().expect("locks").entry((kind, *d)).or_default().clone()
    }

    fn unlock_done(&self, kind: LockKind, d: &Digest) {
        let mut m = self.locks.lock().expect("locks");
        if m.get(&(kind, *d)).is_some_and(|l| Arc::strong_count(l) == 1) {
            m.remove(&(kind, *d));
        }
    }

    fn v2meta(&self, diff: &Digest) -> Vec<V2Meta> {
        std::fs::read(self.root.join("v2metadata").join(format!("{}.json", diff.hex())))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn add_v2meta(&self, diff: &Digest, m: V2Meta) {
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

    /// `pull`: `r` by tag or digest; with neither, every tag (`-a`). Progress goes to `p`.
    /// Returns the references pulled.
    pub async fn pull(
        self: &Arc<Self>,
        r: &Reference,
        platform: Option<Platform>,
        auth: Option<AuthConfig>,
        p: &Progress,
    ) -> Result<Vec<Reference>> {
        let want = platform.unwrap_or_else(Platform::host);
        let eps = endpoints(&self.cfg, r.domain(), false);
        let session = Session::open(
            &self.clients,
            &self.cfg,
            &eps,
            r.path(),
            vec![format!("repository:{}:pull", r.path())],
            auth,
        )
        .await?;
        if r.tag().is_none() && r.digest().is_none() {
            let tags = session.tags().await?;
            if tags.is_empty() {
                return Err(DistError::NotFound(format!(
                    "repository {} has no tags",
                    r.familiar_name()
                )));
            }
            let mut any_new = false;
            let mut out = Vec::new();
            for t in tags {
                let tr = r.with_tag(&t).map_err(|e| DistError::Invalid(e.to_string()))?;
                let (_, up) = self.pull_one(&session, &tr, &want, p).await?;
                any_new |= !up;
                out.push(tr);
            }
            p.status(if any_new {
                format!("Status: Downloaded newer image for {}", r.familiar_name())
            } else {
                format!("Status: Image is up to date for {}", r.familiar_name())
            });
            return Ok(out);
        }
        let (_, up) = self.pull_one(&session, r, &want, p).await?;
        p.status(if up {
            format!("Status: Image is up to date for {}", r.familiar())
        } else {
            format!("Status: Downloaded newer image for {}", r.familiar())
        });
        Ok(vec![r.clone()])
    }

    /// Resolve `r` to one image manifest for `want`: (manifest digest, manifest).
    async fn resolve(&self, s: &Session, r: &Reference, want: &Platform) -> Result<(Digest, ImageManifest)> {
        let shown = r.familiar();
        let reference = match (r.digest(), r.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        };
        let (_, digest, m) = s.manifest(&reference, &shown).await?;
        match m {
            Manifest::Image(im) => Ok((digest, im)),
            Manifest::Index(list) => {
                let pick = manifest::select(&list, want)?;
                let d = pick.digest()?;
                let (_, _, m2) = s.manifest(&d.to_string(), &shown).await?;
                match m2 {
                    Manifest::Image(im) => Ok((digest, im)),
                    Manifest::Index(_) => Err(DistError::BadManifest(format!(
                        "the manifest list of {shown} points at another list"
                    ))),
                }
            }
        }
    }

    async fn pull_one(
        self: &Arc<Self>,
        s: &Session,
        r: &Reference,
        want: &Platform,
        p: &Progress,
    ) -> Result<(Digest, bool)> {
        let (mdigest, im) = self.resolve(s, r, want).await?;
        let label = r.tag().map(str::to_string).unwrap_or_else(|| mdigest.to_string());
        p.item(&label, &format!("Pulling from {}", r.path()));
        let cfg_digest = im.config.digest()?;
        let config = s
            .small_blob(&cfg_digest, im.config.size()?, wharf_image::config::MAX_CONFIG_BYTES)
            .await?;
        let parsed = ImageConfig::parse(&config).map_err(DistError::BadManifest)?;
        let diff_ids = parsed.rootfs.diff_ids.clone();
        if diff_ids.len() != im.layers.len() {
            return Err(DistError::BadManifest(format!(
                "the manifest of {} lists {} layers but its config has {} diff IDs",
                r.familiar(),
                im.layers.len(),
                diff_ids.len()
            )));
        }
        let chains = chain_ids(&diff_ids);
        let id = cfg_digest;
        let have_image = {
            let images = self.images.clone();
            tokio::task::spawn_blocking(move || images.has_image(&id))
                .await
                .map_err(blocking_err)??
        };
        if have_image {
            for l in &im.layers {
                p.item(&l.digest()?.hex()[..12], "Already exists");
            }
        } else {
            self.pull_layers(s, &im, &diff_ids, &chains, p).await?;
        }
        // Register: the tag (if pulled by tag) and the repository digest.
        let mut names = Vec::new();
        if r.tag().is_some() && r.digest().is_none() {
            names.push(r.clone());
        }
        names.push(r.with_digest(mdigest));
        let top = chains.last().copied();
        let images = self.images.clone();
        let (id, up_to_date) = tokio::task::spawn_blocking(move || images.register_image(&config, top, &names))
            .await
            .map_err(blocking_err)??;
        // The layers are extracted and registered: their downloads are no longer needed, and
        // where they came from is remembered for pushes.
        for (l, diff) in im.layers.iter().zip(&diff_ids) {
            let d = l.digest()?;
            self.add_v2meta(
                diff,
                V2Meta {
                    digest: d.to_string(),
                    source: r.name(),
                    media_type: l.media_type.clone(),
                    size: l.size()?,
                    urls: if l.is_foreign() { l.urls.clone() } else { Vec::new() },
                },
            );
            let _ = std::fs::remove_file(self.root.join("blobs").join(d.hex()));
        }
        p.status(format!("Digest: {mdigest}"));
        Ok((id, up_to_date && have_image))
    }

    async fn pull_layers(
        self: &Arc<Self>,
        s: &Session,
        im: &ImageManifest,
        diff_ids: &[Digest],
        chains: &[Digest],
        p: &Progress,
    ) -> Result<()> {
        let vfs = self.images.driver() == wharf_store::Driver::Vfs;
        let mut tasks = Vec::new();
        // Each layer: download (bounded), then extract once its parent may be (overlay2: at
        // once; vfs: after the parent's extraction).
        let mut prev_done: Option<tokio::sync::watch::Receiver<Option<bool>>> = None;
        for (i, l) in im.layers.iter().enumerate() {
            let d = l.digest()?;
            let size = l.size()?;
            let short = d.hex()[..12].to_string();
            let chain = chains[i];
            let parent = if i == 0 { None } else { Some(chains[i - 1]) };
            let diff = diff_ids[i];
            let (tx, rx) = tokio::sync::watch::channel(None);
            let wait_parent = if vfs { prev_done.take() } else { None };
            prev_done = Some(rx);
            if self.layer_registered(chain).await? {
                p.item(&short, "Already exists");
                let _ = tx.send(Some(true));
                continue;
            }
            p.item(&short, "Pulling fs layer");
            let this = self.clone();
            let p2 = p.clone();
            let urls: Vec<String> = if l.is_foreign() {
                l.urls
                    .iter()
                    .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            tasks.push(async move {
                let r = this
                    .pull_layer(s, (d, size, urls), &short, chain, parent, diff, wait_parent, &p2)
                    .await;
                let _ = tx.send(Some(r.is_ok()));
                r
            });
        }
        // All layers run concurrently within this task (the session is borrowed, so no spawn);
        // the semaphores bound downloads and extractions, and blocking work goes to the pool.
        let results = futures_util::future::join_all(tasks).await;
        for r in results {
            r?;
        }
        Ok(())
    }

    async fn layer_registered(&self, chain: Digest) -> Result<bool> {
        let images = self.images.clone();
        Ok(tokio::task::spawn_blocking(move || images.layer(&chain))
            .await
            .map_err(blocking_err)??
            .is_some())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pull_layer(
        &self,
        s: &Session,
        (d, size, urls): (Digest, u64, Vec<String>),
        short: &str,
        chain: Digest,
        parent: Option<Digest>,
        diff: Digest,
        wait_parent: Option<tokio::sync::watch::Receiver<Option<bool>>>,
        p: &Progress,
    ) -> Result<()> {
        // One pull at a time per layer: a concurrent pull of the same layer waits, then finds
        // it registered.
        let lock = self.lock_for(LockKind::Layer, &chain);
        let guard = lock.lock().await;
        let result = async {
            if self.layer_registered(chain).await? {
                p.item(short, "Already exists");
                return Ok(());
            }
            let blob = self.fetch_blob(s, d, size, &urls, short, p).await?;
            if let Some(mut w) = wait_parent {
                while w.borrow().is_none() {
                    if w.changed().await.is_err() {
                        break;
                    }
                }
                if *w.borrow() != Some(true) {
                    return Err(DistError::Internal(format!("layer {short}: its parent layer failed")));
                }
            }
            let _permit = self
                .extracts
                .acquire()
                .await
                .map_err(|e| DistError::Internal(e.to_string()))?;
            let images = self.images.clone();
            let p2 = p.clone();
            let id = short.to_string();
            tokio::task::spawn_blocking(move || -> Result<()> {
                let f = std::fs::File::open(&blob)?;
                let total = f.metadata()?.len();
                let reader = Counting {
                    inner: io::BufReader::with_capacity(1 << 20, f),
                    n: 0,
                    last: 0,
                    report: |n| p2.bar(&id, "Extracting", n, total),
                };
                images.add_layer(parent, reader, diff)?;
                Ok(())
            })
            .await
            .map_err(blocking_err)??;
            p.item(short, "Pull complete");
            Ok(())
        }
        .await;
        drop(guard);
        drop(lock);
        self.unlock_done(LockKind::Layer, &chain);
        result
    }

    /// A verified copy of blob `d` in `blobs/`: kept from an earlier attempt, or downloaded
    /// (a foreign layer from its URLs first, then from the registry, as Docker does).
    async fn fetch_blob(
        &self,
        s: &Session,
        d: Digest,
        size: u64,
        urls: &[String],
        short: &str,
        p: &Progress,
    ) -> Result<PathBuf> {
        let lock = self.lock_for(LockKind::Blob, &d);
        let guard = lock.lock().await;
        let r = self.fetch_blob_locked(s, d, size, urls, short, p).await;
        drop(guard);
        drop(lock);
        self.unlock_done(LockKind::Blob, &d);
        r
    }

    async fn fetch_blob_locked(
        &self,
        s: &Session,
        d: Digest,
        size: u64,
        urls: &[String],
        short: &str,
        p: &Progress,
    ) -> Result<PathBuf> {
        let done = self.root.join("blobs").join(d.hex());
        if tokio::fs::metadata(&done).await.is_ok_and(|m| m.len() == size) {
            p.item(short, "Download complete");
            return Ok(done);
        }
        let permit = match self.downloads.clone().try_acquire_owned() {
            Ok(pm) => pm,
            Err(_) => {
                p.item(short, "Waiting");
                self.downloads
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| DistError::Internal(e.to_string()))?
            }
        };
        let partial = self.root.join("partial").join(d.hex());
        let mut last = std::time::Instant::now();
        let mut report = |n: u64| {
            if last.elapsed().as_millis() >= 100 || n == size {
                last = std::time::Instant::now();
                p.bar(short, "Downloading", n, size);
            }
        };
        let mut fetched = false;
        for u in urls {
            match s.download(&d, size, &partial, Some(u), &mut report).await {
                Ok(()) => {
                    fetched = true;
                    break;
                }
                Err(e) => tracing::info!(url = %u, "foreign layer: {e}; trying the next source"),
            }
        }
        if !fetched {
            s.download(&d, size, &partial, None, &mut report).await?;
        }
        drop(permit);
        p.item(short, "Verifying Checksum");
        tokio::fs::rename(&partial, &done).await?;
        p.item(short, "Download complete");
        Ok(done)
    }

    // ---------------------------------------------------------------- push

    /// `push`: `name` (a repository, optionally with a tag; without one every local tag of
    /// the repository). Progress goes to `p`.
    pub async fn push(&self, name: &Reference, all_tags: bool, auth: Option<AuthConfig>, p: &Progress) -> Result<()> {
        let images = self.images.clone();
        let repo = name.familiar_name();
        let wanted: Vec<(Reference, Digest)> = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<(Reference, Digest)>> {
                if !all_tags {
                    let id = images.resolve(&name.familiar()).map_err(|_| {
                        DistError::NotFound(format!(
                            "An image does not exist locally with the tag: {}",
                            name.familiar()
                        ))
                    })?;
                    return Ok(vec![(name.clone(), id)]);
                }
                let mut out = Vec::new();
                for v in images.list(&ListFilter {
                    all: true,
                    ..Default::default()
                })? {
                    for t in &v.repo_tags {
                        if let Ok(r) = Reference::parse_normalized(t) {
                            if r.name() == name.name() {
                                out.push((r, v.id));
                            }
                        }
                    }
                }
                out.sort_by_key(|(r, _)| r.tag().unwrap_or("").to_string());
                Ok(out)
            })
            .await
            .map_err(blocking_err)??
        };
        if wanted.is_empty() {
            return Err(DistError::NotFound(format!(
                "An image does not exist locally with the tag: {repo}"
            )));
        }
        // Ask for pull access to the other repositories on this registry that have our layers,
        // so that they can be mounted instead of uploaded.
        let mut scopes = vec![format!("repository:{}:pull,push", name.path())];
        let mut sources: Vec<String> = Vec::new();
        for (_, id) in &wanted {
            if let Ok((cfg, _)) = self.images.rootfs_of(id) {
                for diff in &cfg.rootfs.diff_ids {
                    for m in self.v2meta(diff) {
                        if let Ok(src) = Reference::parse_normalized(&m.source) {
                            if src.domain() == name.domain()
                                && src.path() != name.path()
                                && !sources.contains(&m.source)
                            {
                                sources.push(m.source.clone());
                                scopes.push(format!("repository:{}:pull", src.path()));
                            }
                        }
                    }
                }
            }
        }
        scopes.truncate(16);
        p.status(format!("The push refers to repository [{}]", name.name()));
        let eps = endpoints(&self.cfg, name.domain(), true);
        let session = Session::open(&self.clients, &self.cfg, &eps, name.path(), scopes, auth).await?;
        for (r, id) in wanted {
            self.push_one(&session, &r, id, p).await?;
        }
        Ok(())
    }

    async fn push_one(&self, s: &Session, r: &Reference, id: Digest, p: &Progress) -> Result<()> {
        let images = self.images.clone();
        let (config, layers) = tokio::task::spawn_blocking(move || -> Result<_> {
            let config = images.config_bytes(&id)?;
            let (_, layers) = images.rootfs_of(&id)?;
            Ok((config, layers))
        })
        .await
        .map_err(blocking_err)??;
        for l in &layers {
            p.item(&l.diff_id.hex()[..12], "Preparing");
        }
        let futs = layers.iter().map(|l| self.push_layer(s, r, l.diff_id, p));
        let descs: Vec<Descriptor> = futures_util::future::try_join_all(futs).await?;
        let cfg_digest = Digest::of(&config);
        if !s.has_blob(&cfg_digest).await? {
            s.upload_bytes(&cfg_digest, &config).await?;
        }
        let m = ImageManifest {
            schema_version: 2,
            media_type: manifest::DOCKER_MANIFEST.into(),
            config: Descriptor {
                media_type: manifest::DOCKER_CONFIG.into(),
                digest: cfg_digest.to_string(),
                size: config.len() as i64,
                urls: vec![],
                platform: None,
            },
            layers: descs,
        };
        // Docker writes its manifests with three-space indentation.
        let mut body = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
        let mut ser = serde_json::Serializer::with_formatter(&mut body, fmt);
        m.serialize(&mut ser).map_err(|e| DistError::Internal(e.to_string()))?;
        let tag = r.tag().unwrap_or("latest").to_string();
        s.put_manifest(&tag, manifest::DOCKER_MANIFEST, &body).await?;
        let digest = Digest::of(&body);
        p.status(format!("{tag}: digest: {digest} size: {}", body.len()));
        p.aux(json!({"Tag": tag, "Digest": digest.to_string(), "Size": body.len()}));
        let images = self.images.clone();
        let named = r.with_digest(digest);
        tokio::task::spawn_blocking(move || images.add_name(&named, id))
            .await
            .map_err(blocking_err)??;
        Ok(())
    }

    async fn push_layer(&self, s: &Session, r: &Reference, diff: Digest, p: &Progress) -> Result<Descriptor> {
        let short = diff.hex()[..12].to_string();
        let _permit = self
            .uploads
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| DistError::Internal(e.to_string()))?;
        let registry = r.domain().to_string();
        let desc = |d: &str, size: u64, mt: &str| Descriptor {
            media_type: if mt.is_empty() {
                manifest::DOCKER_LAYER.into()
            } else {
                mt.to_string()
            },
            digest: d.to_string(),
            size: size as i64,
            urls: vec![],
            platform: None,
        };
        // A foreign layer is never uploaded: the manifest names it with its URLs, as Docker's.
        if let Some(m) = self.v2meta(&diff).into_iter().find(|m| !m.urls.is_empty()) {
            p.item(&short, "Skipped foreign layer");
            return Ok(Descriptor {
                media_type: manifest::DOCKER_FOREIGN_LAYER.into(),
                digest: m.digest,
                size: m.size as i64,
                urls: m.urls,
                platform: None,
            });
        }
        // What this registry is known to have.
        for m in self.v2meta(&diff) {
            let Ok(src) = Reference::parse_normalized(&m.source) else {
                continue;
            };
            let Ok(d) = m.digest.parse::<Digest>() else { continue };
            // A schema2 manifest names gzip layers only: other compressions are uploaded anew.
            let gzip = m.media_type.is_empty() || m.media_type.contains("gzip");
            if src.domain() != registry || !gzip {
                continue;
            }
            if src.path() == r.path() {
                if s.has_blob(&d).await? {
                    let size = self.remote_size(s, &d).await?;
                    p.item(&short, "Layer already exists");
                    return Ok(desc(&m.digest, size, manifest::DOCKER_LAYER));
                }
            } else if s.mount(&d, src.path()).await? {
                let size = self.remote_size(s, &d).await?;
                p.item(&short, &format!("Mounted from {}", src.path()));
                self.add_v2meta(
                    &diff,
                    V2Meta {
                        digest: m.digest.clone(),
                        source: r.name(),
                        media_type: m.media_type.clone(),
                        size,
                        urls: Vec::new(),
                    },
                );
                return Ok(desc(&m.digest, size, manifest::DOCKER_LAYER));
            }
        }
        // Compress the layer (gzip, deterministic for the same tar) and upload it.
        let images = self.images.clone();
        let tmp = self
            .root
            .join("upload")
            .join(format!("{}-{}", diff.hex(), wharf_store::random_name()));
        let tmp2 = tmp.clone();
        let (digest, size) = tokio::task::spawn_blocking(move || -> Result<(Digest, u64)> {
            let mut src = images.layer_tar(&diff)?;
            let out = std::fs::File::create(&tmp2)?;
            struct Tee<W: Write> {
                w: W,
                h: Sha256Writer,
            }
            impl<W: Write> Write for Tee<W> {
                fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                    let n = self.w.write(b)?;
                    self.h.update(&b[..n]);
                    Ok(n)
                }
                fn flush(&mut self) -> io::Result<()> {
                    self.w.flush()
                }
            }
            let tee = Tee {
                w: io::BufWriter::with_capacity(1 << 20, out),
                h: Sha256Writer::new(),
            };
            let mut gz = flate2::write::GzEncoder::new(tee, flate2::Compression::default());
            io::copy(&mut src, &mut gz)?;
            let mut tee = gz.finish()?;
            tee.flush()?;
            let n = tee.h.len();
            Ok((tee.h.finish(), n))
        })
        .await
        .map_err(blocking_err)??;
        let result = async {
            if s.has_blob(&digest).await? {
                p.item(&short, "Layer already exists");
            } else {
                let report = |n: u64| p.bar(&short, "Pushing", n, size);
                s.upload(&digest, size, &tmp, &report).await?;
                p.item(&short, "Pushed");
            }
            Ok::<_, DistError>(())
        }
        .await;
        let _ = tokio::fs::remove_file(&tmp).await;
        result?;
        self.add_v2meta(
            &diff,
            V2Meta {
                digest: digest.to_string(),
                source: r.name(),
                media_type: manifest::DOCKER_LAYER.into(),
                size,
                urls: Vec::new(),
            },
        );
        Ok(desc(&digest.to_string(), size, manifest::DOCKER_LAYER))
    }

    async fn remote_size(&self, s: &Session, d: &Digest) -> Result<u64> {
        let url = format!("{}/v2/{}/blobs/{d}", s.endpoint.base, s.repo);
        let r = s.send(|c| c.head(&url)).await?;
        r.headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| DistError::Unavailable(format!("the registry did not say how large {d} is")))
    }

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
fn host_port(u: &reqwest::Url) -> String {
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
