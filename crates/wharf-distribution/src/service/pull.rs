//! `pull`: resolve the manifest for the platform, then fetch and register layers in
//! parallel, each blob fetched once however many pulls want it.

use super::*;
use crate::auth::AuthConfig;
use crate::manifest::{self, ImageManifest, Manifest, Platform};
use crate::progress::Progress;
use crate::registry::{endpoints, Session};
use crate::DistError;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use wharf_image::ImageConfig;
use wharf_reference::{chain_ids, Digest, Reference};

impl Distribution {
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
    pub(crate) async fn resolve(&self, s: &Session, r: &Reference, want: &Platform) -> Result<(Digest, ImageManifest)> {
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

    pub(crate) async fn pull_one(
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
            // A gzip blob is kept, so a push of the layer sends it without compressing again.
            let blob = self.root.join("blobs").join(d.hex());
            if l.media_type.contains("gzip") {
                self.keep_compressed(&blob, &d);
            } else {
                let _ = std::fs::remove_file(blob);
            }
        }
        p.status(format!("Digest: {mdigest}"));
        Ok((id, up_to_date && have_image))
    }

    pub(crate) async fn pull_layers(
        self: &Arc<Self>,
        s: &Session,
        im: &ImageManifest,
        diff_ids: &[Digest],
        chains: &[Digest],
        p: &Progress,
    ) -> Result<()> {
        let vfs = self.images.driver().extracts_over_parent();
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

    pub(crate) async fn layer_registered(&self, chain: Digest) -> Result<bool> {
        let images = self.images.clone();
        Ok(tokio::task::spawn_blocking(move || images.layer(&chain))
            .await
            .map_err(blocking_err)??
            .is_some())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn pull_layer(
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
    pub(crate) async fn fetch_blob(
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

    pub(crate) async fn fetch_blob_locked(
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
}
