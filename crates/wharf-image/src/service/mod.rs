//! The image service: every local image operation (list, resolve, inspect, history, tag,
//! remove, prune, import, load, save, disk usage) over the content store, the layer store and
//! the metadata database.
//!
//! Images become visible in exactly one metadata transaction at the end of an operation; a
//! crash before it leaves only unregistered layer directories and blobs, which
//! [`ImageService::open`] collects on the next start.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;
use wharf_reference::{is_hex_prefix, Digest, ErrorKind, Reference, ReferenceError};
use wharf_store::{
    Batch, ContentError, ContentStore, Driver, ImageRecord, LayerError, LayerRecord, LayerStore, Meta, MetaError,
};

use crate::config::{ImageConfig, MAX_CONFIG_BYTES};

mod list;
mod remove;
mod tag;
pub use list::glob;
pub use tag::refuse_digest_named;
mod commit;
mod import;
mod load;
mod save;

/// Image operation failures.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image by that name or ID.
    #[error("No such image: {0}")]
    NotFound(String),
    /// A malformed reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The operation conflicts with current state (in use, referenced by several repos).
    #[error("{0}")]
    Conflict(String),
    /// Bad input: a broken archive, manifest or config.
    #[error("{0}")]
    Invalid(String),
    /// Layer store failure.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Content store failure.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// Metadata failure.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// Filesystem failure.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl ImageError {
    /// The kind, for the API edge.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::Reference(_) | ImageError::Invalid(_) => ErrorKind::InvalidArgument,
            ImageError::Conflict(_) => ErrorKind::Conflict,
            ImageError::Layer(LayerError::Apply(_) | LayerError::DiffMismatch { .. }) => ErrorKind::InvalidArgument,
            ImageError::Content(ContentError::DigestMismatch { .. } | ContentError::SizeMismatch { .. }) => {
                ErrorKind::InvalidArgument
            }
            _ => ErrorKind::Internal,
        }
    }
}

type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Answers whether a container uses an image (filled in by the container subsystem).
pub type UsageCheck = Arc<dyn Fn(&Digest) -> Vec<String> + Send + Sync>;

/// Everything known about one image, for list and inspect.
#[derive(Clone, Debug)]
pub struct ImageView {
    /// The image ID.
    pub id: Digest,
    /// `busybox:latest`-style names.
    pub repo_tags: Vec<String>,
    /// `busybox@sha256:...`-style names.
    pub repo_digests: Vec<String>,
    /// The parsed config.
    pub config: ImageConfig,
    /// The stored record.
    pub record: ImageRecord,
    /// Total content size of all layers.
    pub size: u64,
    /// The layers, bottom first.
    pub layers: Vec<LayerRecord>,
}

/// One line of `rmi` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteItem {
    /// A name was removed.
    Untagged(String),
    /// An image or layer was deleted.
    Deleted(Digest),
}

/// One history row, newest first.
#[derive(Clone, Debug)]
pub struct HistoryRow {
    /// Image ID, or `<missing>`.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// The instruction.
    pub created_by: String,
    /// Names pointing at that image.
    pub tags: Vec<String>,
    /// Layer size, 0 for empty layers.
    pub size: u64,
    /// Comment.
    pub comment: String,
}

/// What [`ImageService::commit`] makes of a container.
#[derive(Clone, Debug, Default)]
pub struct CommitSpec {
    /// The new image's `config` object (the container's, with the caller's overrides).
    pub config: Value,
    /// `--change` lines applied on top.
    pub changes: Vec<String>,
    /// The container ID (`container` in the config).
    pub container: String,
    /// The container's config as it ran (`container_config`).
    pub container_config: Value,
    /// `-a`.
    pub author: String,
    /// `-m`.
    pub comment: String,
    /// The history line: the container's command.
    pub created_by: String,
    /// `repo[:tag]` to name the image, if any.
    pub tag: Option<String>,
    /// The image's creation time (RFC 3339) instead of now (a reproducible build's epoch).
    pub created: Option<String>,
}

/// Filters for [`ImageService::list`].
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Include intermediate images (`-a`).
    pub all: bool,
    /// `dangling=true|false`.
    pub dangling: Option<bool>,
    /// `label=k` or `label=k=v` (all must match).
    pub labels: Vec<String>,
    /// `reference=pattern` (any may match).
    pub references: Vec<String>,
    /// `before=image`.
    pub before: Option<String>,
    /// `since=image`.
    pub since: Option<String>,
    /// `until=time`: created before this (unix seconds).
    pub until: Option<i64>,
}

/// The image service.
pub struct ImageService {
    content: ContentStore,
    layers: LayerStore,
    meta: Meta,
    write_lock: Mutex<()>,
    usage: RwLock<Option<UsageCheck>>,
}

impl std::fmt::Debug for ImageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageService")
            .field("driver", &self.layers.driver())
            .finish()
    }
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl ImageService {
    /// Open the image store under `data_root` with `driver`, collecting what a crash left.
    pub fn open(data_root: &Path, driver: Driver) -> Result<Self> {
        let content = ContentStore::open(&data_root.join("content"))?;
        let layers = LayerStore::open(data_root, driver, content.clone())?;
        let meta = Meta::open(&data_root.join("metadata.redb"))?;
        let svc = ImageService {
            content,
            layers,
            meta,
            write_lock: Mutex::new(()),
            usage: RwLock::new(None),
        };
        svc.drop_unreached_layers()?;
        svc.gc()?;
        Ok(svc)
    }

    /// Install the check that tells which containers use an image.
    pub fn set_usage_check(&self, f: UsageCheck) {
        *self.usage.write().expect("usage lock") = Some(f);
    }

    pub(crate) fn users_of(&self, id: &Digest) -> Vec<String> {
        match &*self.usage.read().expect("usage lock") {
            Some(f) => f(id),
            None => Vec::new(),
        }
    }

    /// The storage driver.
    pub fn driver(&self) -> Driver {
        self.layers.driver()
    }

    /// The layer store (for mounting container roots).
    pub fn layer_store(&self) -> &LayerStore {
        &self.layers
    }

    /// At start only (a pull in progress registers layers before its image): remove the layers
    /// no image reaches, which a pull that did not finish left.
    pub(crate) fn drop_unreached_layers(&self) -> Result<()> {
        let layers = self.meta.layers()?;
        let images = self.meta.images()?;
        let mut reached: HashSet<Digest> = HashSet::new();
        for rec in images.values() {
            let mut cur = rec.top_layer;
            while let Some(c) = cur {
                if !reached.insert(c) {
                    break;
                }
                cur = layers.get(&c).and_then(|l| l.parent);
            }
        }
        let orphans: Vec<Digest> = layers.keys().filter(|c| !reached.contains(c)).copied().collect();
        if !orphans.is_empty() {
            tracing::info!(layers = orphans.len(), "removing layers of an unfinished pull");
            self.meta.commit(Batch {
                del_layers: orphans.clone(),
                ..Default::default()
            })?;
        }
        Ok(())
    }

    /// Remove layer directories and blobs that no committed record references.
    pub(crate) fn gc(&self) -> Result<()> {
        let layers = self.meta.layers()?;
        let images = self.meta.images()?;
        let known: HashSet<String> = layers.values().map(|l| l.cache_id.clone()).collect();
        let removed = self.layers.gc(&known)?;
        let mut keep: HashSet<Digest> = layers.values().map(|l| l.diff_id).collect();
        keep.extend(images.keys().copied());
        let mut blobs = 0;
        for d in self.content.list()? {
            if !keep.contains(&d) {
                self.content.delete(&d)?;
                blobs += 1;
            }
        }
        if removed + blobs > 0 {
            tracing::info!(
                layers = removed,
                blobs,
                "removed unreferenced storage left by an interrupted operation"
            );
        }
        Ok(())
    }

    pub(crate) fn config_of(&self, id: &Digest) -> Result<ImageConfig> {
        let bytes = self.content.read(id, MAX_CONFIG_BYTES)?;
        ImageConfig::parse(&bytes).map_err(ImageError::Invalid)
    }

    /// The raw config bytes of an image.
    pub fn config_bytes(&self, id: &Digest) -> Result<Vec<u8>> {
        Ok(self.content.read(id, MAX_CONFIG_BYTES)?)
    }

    pub(crate) fn chain(
        &self,
        layers: &BTreeMap<Digest, LayerRecord>,
        top: Option<Digest>,
    ) -> Result<Vec<LayerRecord>> {
        let mut out = Vec::new();
        let mut cur = top;
        while let Some(c) = cur {
            let rec = layers
                .get(&c)
                .ok_or_else(|| ImageError::Invalid(format!("layer {c} missing from the store")))?;
            out.push(rec.clone());
            cur = rec.parent;
        }
        out.reverse();
        Ok(out)
    }

    /// What a container needs from an image: its parsed config and its layers, bottom first.
    pub fn rootfs_of(&self, id: &Digest) -> Result<(ImageConfig, Vec<LayerRecord>)> {
        let images = self.meta.images()?;
        let rec = images.get(id).ok_or_else(|| ImageError::NotFound(id.to_string()))?;
        let layers = self.chain(&self.meta.layers()?, rec.top_layer)?;
        Ok((self.config_of(id)?, layers))
    }

    /// Resolve a name, full ID, `sha256:` ID or unique ID prefix, as Docker does.
    pub fn resolve(&self, name: &str) -> Result<Digest> {
        let images = self.meta.images()?;
        self.resolve_in_checked(name, &images, &self.meta.refs()?)
    }

    pub(crate) fn resolve_in_checked(
        &self,
        name: &str,
        images: &BTreeMap<Digest, ImageRecord>,
        refs: &BTreeMap<String, Digest>,
    ) -> Result<Digest> {
        // `name:sha256:<hex>` is no reference at all (dockerd: 400, not "no such image").
        if let Some((_, rest)) = name.split_once(':') {
            if rest.starts_with("sha256:") {
                return Err(ImageError::Invalid("invalid reference format".into()));
            }
        }
        self.resolve_in(name, images, refs)
    }

    pub(crate) fn resolve_in(
        &self,
        name: &str,
        images: &BTreeMap<Digest, ImageRecord>,
        refs: &BTreeMap<String, Digest>,
    ) -> Result<Digest> {
        let not_found = || ImageError::NotFound(name.to_string());
        let hexpart = name.strip_prefix("sha256:");
        if let Some(h) = hexpart {
            if !is_hex_prefix(h) {
                return Err(not_found());
            }
        }
        let h = hexpart.unwrap_or(name);
        if h.len() == 64 && is_hex_prefix(h) {
            let d = Digest::from_hex(h).map_err(|_| not_found())?;
            return images.contains_key(&d).then_some(d).ok_or_else(not_found);
        }
        if hexpart.is_none() {
            if let Ok(r) = Reference::parse_tagged_default(name) {
                if let Some(id) = refs.get(&r.to_string()) {
                    return Ok(*id);
                }
            }
        }
        if is_hex_prefix(h) {
            let mut found = images.keys().filter(|d| d.hex().starts_with(h));
            if let Some(first) = found.next() {
                if found.next().is_none() {
                    return Ok(*first);
                }
            }
        }
        Err(not_found())
    }

    /// Register an image whose layers are already records (new ones in `new_layers`).
    pub(crate) fn register(
        &self,
        config_bytes: &[u8],
        top: Option<Digest>,
        new_layers: Vec<LayerRecord>,
        tags: &[Reference],
        parent: Option<Digest>,
        batch: &mut Batch,
    ) -> Result<Digest> {
        let id = self.content.write_bytes(config_bytes)?;
        let existing = self.meta.images()?.remove(&id);
        batch.put_layers.extend(new_layers);
        batch.put_images.push(ImageRecord {
            id,
            top_layer: top,
            parent: existing.as_ref().and_then(|e| e.parent).or(parent),
            last_tag_time: if tags.is_empty() {
                existing.as_ref().and_then(|e| e.last_tag_time)
            } else {
                Some(now_nanos())
            },
            loaded_at: existing.map(|e| e.loaded_at).unwrap_or_else(now_unix),
        });
        for t in tags {
            refuse_digest_named(t)?;
            batch.put_refs.push((t.to_string(), id));
        }
        Ok(id)
    }

    /// The registered layer with this chain ID, if any.
    pub fn layer(&self, chain: &Digest) -> Result<Option<LayerRecord>> {
        Ok(self.meta.layer(chain)?)
    }

    /// True when an image with this ID is registered.
    pub fn has_image(&self, id: &Digest) -> Result<bool> {
        Ok(self.meta.images()?.contains_key(id))
    }

    /// The diff IDs of every registered layer.
    pub fn diff_ids(&self) -> Result<std::collections::HashSet<Digest>> {
        Ok(self.meta.layers()?.into_values().map(|l| l.diff_id).collect())
    }

    /// The uncompressed tar of a registered layer (what `save` and `push` send): the kept blob,
    /// or the tar rebuilt from its split record and a layer directory with that diff ID (the
    /// stream fails at its end unless it hashes to `diff_id`).
    pub fn layer_tar(&self, diff_id: &Digest) -> Result<Box<dyn Read + Send>> {
        if let Ok(f) = self.content.open_blob(diff_id) {
            return Ok(Box::new(f));
        }
        let layer = self
            .meta
            .layers()?
            .into_values()
            .find(|l| l.diff_id == *diff_id)
            .ok_or_else(|| ImageError::Invalid(format!("no layer with diff ID {diff_id}")))?;
        self.tar_of(&layer)
    }

    /// [`layer_tar`](Self::layer_tar) of a layer at hand (registered or not yet).
    pub(crate) fn tar_of(&self, layer: &LayerRecord) -> Result<Box<dyn Read + Send>> {
        if let Ok(f) = self.content.open_blob(&layer.diff_id) {
            return Ok(Box::new(f));
        }
        let record = self.content.open_split(&layer.diff_id)?;
        let dir = self.layers.diff_dir(layer);
        Ok(Box::new(wharf_store::split::Rebuilt::open(
            record,
            &dir,
            layer.diff_id,
        )?))
    }

    /// Extract one pulled layer (a possibly compressed tar) over the layer `parent` and register
    /// it at once, verified against `diff_id`. A layer that no image references is invisible,
    /// and the next start collects those an interrupted pull left. When the chain is already
    /// registered (another pull won the race) the registered record is returned and the new
    /// extraction discarded. overlay2 needs only the parent's chain ID, so the layers of one
    /// image may be extracted in any order; vfs copies the parent, which must be registered.
    pub fn add_layer(&self, parent: Option<Digest>, reader: impl Read, diff_id: Digest) -> Result<LayerRecord> {
        let chain = match parent {
            None => diff_id,
            Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
        };
        if let Some(existing) = self.meta.layer(&chain)? {
            return Ok(existing);
        }
        let base = match parent.filter(|_| self.layers.driver().extracts_over_parent()) {
            Some(p) => Some(
                self.meta
                    .layer(&p)?
                    .ok_or_else(|| ImageError::Invalid(format!("parent layer {p} is not registered")))?,
            ),
            None => None,
        };
        let rec = self.layers.create(parent, base.as_ref(), reader, Some(diff_id))?;
        let _g = self.write_lock.lock().expect("image lock");
        if let Some(existing) = self.meta.layer(&chain)? {
            drop(_g);
            self.layers.discard(&rec)?;
            return Ok(existing);
        }
        self.meta.commit(Batch {
            put_layers: vec![rec.clone()],
            ..Default::default()
        })?;
        Ok(rec)
    }

    /// Register a pulled image: `config` over the registered layer `top`, with `names` (tags
    /// and `repo@digest` names) pointing at it. Returns the image ID and whether every tag in
    /// `names` already pointed at it (Docker's "Image is up to date").
    pub fn register_image(&self, config: &[u8], top: Option<Digest>, names: &[Reference]) -> Result<(Digest, bool)> {
        let cfg = ImageConfig::parse(config).map_err(ImageError::Invalid)?;
        let want_top = wharf_reference::chain_ids(&cfg.rootfs.diff_ids).last().copied();
        if want_top != top {
            return Err(ImageError::Invalid(
                "the image's layers do not match the diff IDs in its config".into(),
            ));
        }
        let _g = self.write_lock.lock().expect("image lock");
        let layers = self.meta.layers()?;
        self.chain(&layers, top)?;
        let refs = self.meta.refs()?;
        let id = Digest::of(config);
        let up_to_date = self.meta.images()?.contains_key(&id)
            && names
                .iter()
                .filter(|n| n.digest().is_none())
                .all(|n| refs.get(&n.to_string()) == Some(&id));
        let mut batch = Batch::default();
        let tags: Vec<Reference> = names.iter().filter(|n| n.digest().is_none()).cloned().collect();
        self.register(config, top, vec![], &tags, None, &mut batch)?;
        for n in names.iter().filter(|n| n.digest().is_some()) {
            batch.put_refs.push((n.to_string(), id));
        }
        self.meta.commit(batch)?;
        Ok((id, up_to_date))
    }

    /// Point `name` (a `repo@digest` name, as push records) at the image `id`.
    pub fn add_name(&self, name: &Reference, id: Digest) -> Result<()> {
        let _g = self.write_lock.lock().expect("image lock");
        if !self.meta.images()?.contains_key(&id) {
            return Err(ImageError::NotFound(id.to_string()));
        }
        self.meta.commit(Batch {
            put_refs: vec![(name.to_string(), id)],
            ..Default::default()
        })?;
        Ok(())
    }
}

/// The image layers as snapshot parents: a chain ID's directories, top first, so that a
/// container's root (a snapshot) stacks on its image.
#[derive(Debug)]
pub struct ImageLayers(pub Arc<ImageService>);

impl wharf_store::snapshot::ParentLayers for ImageLayers {
    fn layer_dirs(&self, key: &str) -> Option<Vec<PathBuf>> {
        let mut chain: Option<Digest> = key.parse().ok();
        let mut layers = Vec::new();
        while let Some(c) = chain {
            let rec = self.0.layer(&c).ok()??;
            chain = rec.parent;
            layers.push(rec);
        }
        layers.reverse();
        Some(self.0.layer_store().snapshot_dirs(&layers))
    }
}
