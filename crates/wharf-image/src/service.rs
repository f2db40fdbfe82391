//! The image service: every local image operation (list, resolve, inspect, history, tag,
//! remove, prune, import, load, save, disk usage) over the content store, the layer store and
//! the metadata database.
//!
//! Images become visible in exactly one metadata transaction at the end of an operation; a
//! crash before it leaves only unregistered layer directories and blobs, which
//! [`ImageService::open`] collects on the next start.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{json, Map, Value};
use wharf_reference::{is_hex_prefix, Digest, ErrorKind, Reference, ReferenceError};
use wharf_store::saferoot::clean_relative;
use wharf_store::{
    Batch, ContentError, ContentStore, Driver, ImageRecord, LayerError, LayerRecord, LayerStore, Meta, MetaError,
};

use crate::changes::apply_change;
use crate::config::{now_rfc3339, ImageConfig, MAX_CONFIG_BYTES};

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

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn now_nanos() -> i128 {
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

    fn users_of(&self, id: &Digest) -> Vec<String> {
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
    fn drop_unreached_layers(&self) -> Result<()> {
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
    fn gc(&self) -> Result<()> {
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

    fn config_of(&self, id: &Digest) -> Result<ImageConfig> {
        let bytes = self.content.read(id, MAX_CONFIG_BYTES)?;
        ImageConfig::parse(&bytes).map_err(ImageError::Invalid)
    }

    /// The raw config bytes of an image.
    pub fn config_bytes(&self, id: &Digest) -> Result<Vec<u8>> {
        Ok(self.content.read(id, MAX_CONFIG_BYTES)?)
    }

    fn chain(&self, layers: &BTreeMap<Digest, LayerRecord>, top: Option<Digest>) -> Result<Vec<LayerRecord>> {
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

    fn resolve_in_checked(
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

    fn resolve_in(
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

    fn names_by_image(refs: &BTreeMap<String, Digest>) -> HashMap<Digest, (Vec<String>, Vec<String>)> {
        let mut out: HashMap<Digest, (Vec<String>, Vec<String>)> = HashMap::new();
        for (name, id) in refs {
            if let Ok(r) = Reference::parse_normalized(name) {
                let e = out.entry(*id).or_default();
                if r.digest().is_some() {
                    e.1.push(r.familiar());
                } else {
                    e.0.push(r.familiar());
                }
            }
        }
        out
    }

    fn views(&self) -> Result<Vec<ImageView>> {
        let images = self.meta.images()?;
        let layers = self.meta.layers()?;
        let refs = self.meta.refs()?;
        let names = Self::names_by_image(&refs);
        let mut out = Vec::with_capacity(images.len());
        for (id, rec) in images {
            let chain = self.chain(&layers, rec.top_layer)?;
            let config = self.config_of(&id)?;
            let (repo_tags, repo_digests) = names.get(&id).cloned().unwrap_or_default();
            out.push(ImageView {
                id,
                repo_tags,
                repo_digests,
                size: chain.iter().map(|l| l.size).sum(),
                config,
                record: rec,
                layers: chain,
            });
        }
        Ok(out)
    }

    /// One image by name or ID.
    pub fn inspect(&self, name: &str) -> Result<ImageView> {
        let id = self.resolve(name)?;
        self.views()?
            .into_iter()
            .find(|v| v.id == id)
            .ok_or_else(|| ImageError::NotFound(name.to_string()))
    }

    /// `images`: newest first.
    pub fn list(&self, f: &ListFilter) -> Result<Vec<ImageView>> {
        let views = self.views()?;
        let created = |name: &str| -> Result<i64> {
            let id = self.resolve(name)?;
            Ok(views
                .iter()
                .find(|v| v.id == id)
                .map(|v| v.config.created_unix())
                .unwrap_or(0))
        };
        let before = f.before.as_deref().map(created).transpose()?;
        let since = f.since.as_deref().map(created).transpose()?;
        let parents: HashSet<Digest> = views.iter().filter_map(|v| v.record.parent).collect();
        let mut out: Vec<ImageView> = views
            .iter()
            .filter(|v| {
                let dangling = v.repo_tags.is_empty() && v.repo_digests.is_empty();
                if !f.all && dangling && parents.contains(&v.id) {
                    return false; // an intermediate image
                }
                if let Some(d) = f.dangling {
                    if d != v.repo_tags.is_empty() {
                        return false;
                    }
                }
                let labels = v.config.labels();
                for l in &f.labels {
                    let ok = match l.split_once('=') {
                        Some((k, val)) => labels.get(k).and_then(|x| x.as_str()) == Some(val),
                        None => labels.contains_key(l.as_str()),
                    };
                    if !ok {
                        return false;
                    }
                }
                if !f.references.is_empty()
                    && !f
                        .references
                        .iter()
                        .any(|p| v.repo_tags.iter().chain(&v.repo_digests).any(|t| reference_match(p, t)))
                {
                    return false;
                }
                let c = v.config.created_unix();
                if before.is_some_and(|b| c >= b) || since.is_some_and(|s| c <= s) || f.until.is_some_and(|u| c >= u) {
                    return false;
                }
                true
            })
            .cloned()
            .map(|mut v| {
                // As dockerd does: a reference filter also narrows the names shown.
                if !f.references.is_empty() {
                    v.repo_tags
                        .retain(|t| f.references.iter().any(|p| reference_match(p, t)));
                    v.repo_digests
                        .retain(|t| f.references.iter().any(|p| reference_match(p, t)));
                }
                v
            })
            .collect();
        out.sort_by(|a, b| {
            b.config
                .created_unix()
                .cmp(&a.config.created_unix())
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// `history`.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryRow>> {
        let v = self.inspect(name)?;
        let mut sizes = v.layers.iter().map(|l| l.size);
        let mut rows: Vec<HistoryRow> = Vec::new();
        if v.config.history.is_empty() {
            for l in &v.layers {
                rows.push(HistoryRow {
                    id: "<missing>".into(),
                    created: v.config.created_unix(),
                    created_by: String::new(),
                    tags: vec![],
                    size: l.size,
                    comment: String::new(),
                });
            }
        }
        for h in &v.config.history {
            let size = if h.empty_layer { 0 } else { sizes.next().unwrap_or(0) };
            rows.push(HistoryRow {
                id: "<missing>".into(),
                created: h.created.as_deref().map(crate::config::parse_rfc3339).unwrap_or(0),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: vec![],
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        // As Docker: the rows where a local parent image (commit, build) ends carry its ID.
        let mut cur = v.record.parent;
        let mut seen = 0;
        while let Some(pid) = cur {
            let Ok(pv) = self.inspect(&pid.to_string()) else { break };
            let n = if pv.config.history.is_empty() {
                pv.layers.len()
            } else {
                pv.config.history.len()
            };
            if n > 0 && n <= rows.len() {
                rows[n - 1].id = pid.to_string();
                rows[n - 1].tags = pv.repo_tags.clone();
            }
            cur = pv.record.parent;
            seen += 1;
            if seen > 1000 {
                break;
            }
        }
        rows.reverse();
        if let Some(top) = rows.first_mut() {
            top.id = v.id.to_string();
            top.tags = v.repo_tags.clone();
        }
        Ok(rows)
    }

    /// `tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &str) -> Result<Reference> {
        let _g = self.write_lock.lock().expect("image lock");
        let id = self.resolve(source)?;
        let r = Reference::parse_tagged_default(target)?;
        if r.digest().is_some() {
            return Err(ImageError::Invalid(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        if r.path().starts_with("sha256") && r.path().len() > 64 {
            return Err(ImageError::Invalid(format!("invalid reference format: {target}")));
        }
        refuse_digest_named(&r)?;
        self.put_tag(&id, &r)?;
        Ok(r)
    }

    fn put_tag(&self, id: &Digest, r: &Reference) -> Result<()> {
        let mut rec = self
            .meta
            .images()?
            .remove(id)
            .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
        rec.last_tag_time = Some(now_nanos());
        self.meta.commit(Batch {
            put_refs: vec![(r.to_string(), *id)],
            put_images: vec![rec],
            ..Batch::default()
        })?;
        Ok(())
    }

    /// `rmi`.
    pub fn remove(&self, name: &str, force: bool, prune: bool) -> Result<Vec<DeleteItem>> {
        let _g = self.write_lock.lock().expect("image lock");
        self.remove_locked(name, force, prune)
    }

    fn remove_locked(&self, name: &str, force: bool, prune: bool) -> Result<Vec<DeleteItem>> {
        let images = self.meta.images()?;
        let refs = self.meta.refs()?;
        let id = self.resolve_in(name, &images, &refs)?;
        let my_refs: Vec<String> = refs.iter().filter(|(_, v)| **v == id).map(|(k, _)| k.clone()).collect();
        let mut out = Vec::new();
        let mut batch = Batch::default();

        // Removing by name only untags, unless it was the last name.
        let by_ref = Reference::parse_tagged_default(name)
            .ok()
            .map(|r| r.to_string())
            .filter(|r| my_refs.contains(r));
        let to_untag: Vec<String> = match &by_ref {
            Some(r) => {
                // As in Docker: untagging the repository's last tag also removes the
                // repository's digest names (`repo@sha256:...`) for this image.
                let parsed = Reference::parse_normalized(r).ok();
                let repo = parsed.as_ref().map(|x| x.name()).unwrap_or_default();
                let is_digest = parsed.as_ref().is_some_and(|x| x.digest().is_some());
                let same_repo = |x: &String, digest: bool| {
                    Reference::parse_normalized(x)
                        .map(|rr| rr.name() == repo && rr.digest().is_some() == digest)
                        .unwrap_or(false)
                };
                let other_tag = my_refs.iter().any(|x| x != r && same_repo(x, false));
                let mut v = vec![r.clone()];
                if !is_digest && !other_tag {
                    v.extend(my_refs.iter().filter(|x| *x != r && same_repo(x, true)).cloned());
                }
                v
            }
            None => {
                let repos: BTreeSet<String> = my_refs
                    .iter()
                    .filter_map(|r| Reference::parse_normalized(r).ok().map(|x| x.name()))
                    .collect();
                if repos.len() > 1 && !force {
                    return Err(ImageError::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        id.short()
                    )));
                }
                my_refs.clone()
            }
        };
        for r in &to_untag {
            batch.del_refs.push(r.clone());
            if let Ok(rr) = Reference::parse_normalized(r) {
                out.push(DeleteItem::Untagged(rr.familiar()));
            }
        }
        let remaining = my_refs.len() - to_untag.len();
        if remaining == 0 {
            let users = self.users_of(&id);
            // A forced untag by name may leave a container's image nameless; nothing else may.
            let forced_untag = force && by_ref.is_some();
            if !users.is_empty() && !forced_untag {
                let msg = if by_ref.is_some() {
                    format!(
                        "conflict: unable to remove repository reference {name:?} (must force) - container {} is using its referenced image {}",
                        users[0],
                        id.short()
                    )
                } else {
                    format!(
                        "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                        id.short(),
                        users[0]
                    )
                };
                return Err(ImageError::Conflict(msg));
            }
            let children: Vec<&Digest> = images
                .values()
                .filter(|r| r.parent == Some(id))
                .map(|r| &r.id)
                .collect();
            if !children.is_empty() {
                if by_ref.is_none() {
                    return Err(ImageError::Conflict(format!(
                        "conflict: unable to delete {} (cannot be forced) - image has dependent child images",
                        id.short()
                    )));
                }
            } else if users.is_empty() {
                batch.del_images.push(id);
                out.push(DeleteItem::Deleted(id));
                // Layers no other image needs go with it.
                let layers = self.meta.layers()?;
                let mut needed: HashSet<Digest> = HashSet::new();
                for (oid, rec) in &images {
                    if *oid == id {
                        continue;
                    }
                    for l in self.chain(&layers, rec.top_layer)? {
                        needed.insert(l.chain_id);
                    }
                }
                let mine = self.chain(&layers, images[&id].top_layer)?;
                let mut dead: Vec<LayerRecord> = mine.into_iter().filter(|l| !needed.contains(&l.chain_id)).collect();
                dead.reverse();
                for l in &dead {
                    batch.del_layers.push(l.chain_id);
                    out.push(DeleteItem::Deleted(l.chain_id));
                }
                let live_diffs: HashSet<Digest> = layers
                    .values()
                    .filter(|l| !batch.del_layers.contains(&l.chain_id))
                    .map(|l| l.diff_id)
                    .collect();
                let parent = images[&id].parent;
                self.meta.commit(std::mem::take(&mut batch))?;
                // Storage goes only after the records: a crash in between leaves garbage
                // that gc() collects, never a record without its files.
                for l in &dead {
                    self.layers.discard(l)?;
                    if !live_diffs.contains(&l.diff_id) {
                        self.content.delete(&l.diff_id)?;
                    }
                }
                self.content.delete(&id)?;
                if prune {
                    if let Some(p) = parent {
                        let still = self.meta.refs()?.values().any(|v| *v == p);
                        if !still && self.meta.images()?.contains_key(&p) {
                            if let Ok(more) = self.remove_locked(&p.to_string(), false, true) {
                                out.extend(more);
                            }
                        }
                    }
                }
                return Ok(out);
            }
        }
        self.meta.commit(batch)?;
        Ok(out)
    }

    /// `image prune`: dangling images, or with `all` every image no container uses.
    /// Returns what was deleted and the bytes reclaimed.
    pub fn prune(&self, all: bool, labels: &[String]) -> Result<(Vec<DeleteItem>, u64)> {
        let views = self.views()?;
        let mut out = Vec::new();
        let mut reclaimed = 0;
        for v in views {
            if !all && !v.repo_tags.is_empty() {
                continue;
            }
            if !self.users_of(&v.id).is_empty() {
                continue;
            }
            let lab = v.config.labels();
            let label_ok = labels.iter().all(|l| match l.split_once('=') {
                Some((k, val)) => lab.get(k).and_then(|x| x.as_str()) == Some(val),
                None => lab.contains_key(l.as_str()),
            });
            if !label_ok {
                continue;
            }
            match self.remove(&v.id.to_string(), true, true) {
                Ok(items) => {
                    for i in &items {
                        if let DeleteItem::Deleted(d) = i {
                            if let Some(l) = v.layers.iter().find(|l| l.chain_id == *d) {
                                reclaimed += l.size;
                            }
                        }
                    }
                    out.extend(items);
                }
                Err(ImageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((out, reclaimed))
    }

    /// Per-image figures for `system df`: (view, shared size, containers using it).
    pub fn disk_usage(&self) -> Result<Vec<(ImageView, u64, usize)>> {
        let views = self.views()?;
        let mut count: HashMap<Digest, usize> = HashMap::new();
        for v in &views {
            for l in &v.layers {
                *count.entry(l.chain_id).or_default() += 1;
            }
        }
        Ok(views
            .into_iter()
            .map(|v| {
                let shared = v.layers.iter().filter(|l| count[&l.chain_id] > 1).map(|l| l.size).sum();
                let users = self.users_of(&v.id).len();
                (v, shared, users)
            })
            .collect())
    }

    /// Register an image whose layers are already records (new ones in `new_layers`).
    fn register(
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
    fn tar_of(&self, layer: &LayerRecord) -> Result<Box<dyn Read + Send>> {
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
        let base = match (self.layers.driver(), parent) {
            (Driver::Vfs, Some(p)) => Some(
                self.meta
                    .layer(&p)?
                    .ok_or_else(|| ImageError::Invalid(format!("parent layer {p} is not registered")))?,
            ),
            _ => None,
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

    /// `commit`: a new image of `base` plus one layer read from `layer` (a tar in the image
    /// format), with `spec`'s config, history line and names. The new image's `Parent` is
    /// `base`. Returns its ID.
    ///
    /// `write_layer` writes the layer tar; it goes to scratch space of the content store first
    /// (emptied at start, so a `kill -9` mid-commit leaves nothing).
    pub fn commit(
        &self,
        base: &Digest,
        write_layer: impl FnOnce(&mut dyn Write) -> io::Result<()>,
        spec: CommitSpec,
    ) -> Result<Digest> {
        let scratch = self.content.scratch_path();
        let r = (|| {
            {
                let f = std::fs::File::create(&scratch)?;
                let mut w = io::BufWriter::with_capacity(1 << 20, f);
                write_layer(&mut w)?;
                w.flush()?;
            }
            let f = std::fs::File::open(&scratch)?;
            self.commit_layer(base, io::BufReader::with_capacity(1 << 20, f), spec)
        })();
        let _ = std::fs::remove_file(&scratch);
        r
    }

    fn commit_layer(&self, base: &Digest, layer: impl Read, spec: CommitSpec) -> Result<Digest> {
        let tags = spec
            .tag
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(Reference::parse_tagged_default)
            .transpose()?;
        let parent_raw = self.content.read(base, MAX_CONFIG_BYTES)?;
        let parent: Value = serde_json::from_slice(&parent_raw)
            .map_err(|e| ImageError::Invalid(format!("the image's config is not JSON: {e}")))?;
        let mut cfg = match spec.config {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        for c in &spec.changes {
            apply_change(&mut cfg, c).map_err(ImageError::Invalid)?;
        }
        let _g = self.write_lock.lock().expect("image lock");
        let images = self.meta.images()?;
        let rec = images.get(base).ok_or_else(|| ImageError::NotFound(base.to_string()))?;
        let top = match rec.top_layer {
            Some(t) => self.meta.layer(&t)?,
            None => None,
        };
        let new = self
            .layers
            .create(top.as_ref().map(|t| t.chain_id), top.as_ref(), layer, None)?;
        let (layer, new_layers) = match self.meta.layer(&new.chain_id)? {
            Some(existing) => {
                self.layers.discard(&new)?;
                (existing, vec![])
            }
            None => (new.clone(), vec![new]),
        };
        let created = now_rfc3339();
        let mut diff_ids: Vec<Value> = parent["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default();
        diff_ids.push(json!(layer.diff_id.to_string()));
        let mut history: Vec<Value> = parent["history"].as_array().cloned().unwrap_or_default();
        let mut h = Map::new();
        h.insert("created".into(), json!(created));
        h.insert("created_by".into(), json!(spec.created_by));
        if !spec.author.is_empty() {
            h.insert("author".into(), json!(spec.author));
        }
        if !spec.comment.is_empty() {
            h.insert("comment".into(), json!(spec.comment));
        }
        history.push(Value::Object(h));
        let mut out = Map::new();
        for k in ["architecture", "os", "os.version", "variant"] {
            if let Some(v) = parent.get(k).filter(|v| !v.is_null()) {
                out.insert(k.into(), v.clone());
            }
        }
        if !spec.author.is_empty() {
            out.insert("author".into(), json!(spec.author));
        }
        if !spec.comment.is_empty() {
            out.insert("comment".into(), json!(spec.comment));
        }
        out.insert("config".into(), Value::Object(cfg));
        out.insert("container".into(), json!(spec.container));
        out.insert("container_config".into(), spec.container_config);
        out.insert("created".into(), json!(created));
        out.insert("docker_version".into(), json!(crate::ENGINE_VERSION));
        out.insert("history".into(), Value::Array(history));
        out.insert("rootfs".into(), json!({"type": "layers", "diff_ids": diff_ids}));
        let bytes = serde_json::to_vec(&Value::Object(out)).expect("serialise");
        let mut batch = Batch::default();
        let id = self.register(
            &bytes,
            Some(layer.chain_id),
            new_layers,
            &tags.into_iter().collect::<Vec<_>>(),
            Some(*base),
            &mut batch,
        )?;
        self.meta.commit(batch)?;
        Ok(id)
    }

    /// `import`: one layer from a (possibly compressed) filesystem tar; `platform` (os,
    /// architecture, variant) is the image's, the host's when `None`.
    pub fn import(
        &self,
        reader: impl Read,
        reference: Option<&str>,
        changes: &[String],
        message: Option<&str>,
        platform: Option<(&str, &str, &str)>,
    ) -> Result<Digest> {
        let tag = reference
            .filter(|r| !r.is_empty())
            .map(Reference::parse_tagged_default)
            .transpose()?;
        let mut cfg = Map::new();
        for c in changes {
            apply_change(&mut cfg, c).map_err(ImageError::Invalid)?;
        }
        let _g = self.write_lock.lock().expect("image lock");
        let rec = self.layers.create(None, None, reader, None)?;
        let existing = self.meta.layer(&rec.chain_id)?;
        let (layer, new) = match existing {
            Some(e) => {
                self.layers.discard(&rec)?;
                (e, vec![])
            }
            None => (rec.clone(), vec![rec]),
        };
        let created = now_rfc3339();
        let comment = message.filter(|m| !m.is_empty()).unwrap_or("Imported from -");
        let host_arch = std::env::consts::ARCH
            .replace("x86_64", "amd64")
            .replace("aarch64", "arm64");
        let (os, arch, variant) = platform.unwrap_or(("linux", &host_arch, ""));
        let mut config = json!({
            "architecture": arch,
            "comment": comment,
            "config": Value::Object(cfg),
            "created": created,
            "docker_version": crate::ENGINE_VERSION,
            "history": [{"created": created, "comment": comment}],
            "os": os,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        });
        if !variant.is_empty() {
            config["variant"] = json!(variant);
        }
        let bytes = serde_json::to_vec(&config).expect("serialise config");
        let mut batch = Batch::default();
        let tags: Vec<Reference> = tag.into_iter().collect();
        let res = self.register(&bytes, Some(layer.chain_id), new.clone(), &tags, None, &mut batch);
        match res.and_then(|id| Ok((id, self.meta.commit(batch)?))) {
            Ok((id, ())) => Ok(id),
            Err(e) => {
                for l in &new {
                    let _ = self.layers.discard(l);
                }
                Err(e)
            }
        }
    }
}

/// Docker's `reference=` filter: a glob on the familiar name, with or without tag.
fn reference_match(pattern: &str, name: &str) -> bool {
    let (repo, _) = name
        .rsplit_once(':')
        .filter(|(r, _)| !r.contains('/') || !r.ends_with(']'))
        .unwrap_or((name, ""));
    glob(pattern, name) || glob(pattern, repo)
}

/// Shell-style glob with `*` and `?` (`*` does not cross `/`, as Go's path.Match).
pub fn glob(p: &str, s: &str) -> bool {
    let (p, s) = (p.as_bytes(), s.as_bytes());
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') => (0..=s.len())
                .take_while(|i| *i == 0 || s[i - 1] != b'/')
                .any(|i| go(&p[1..], &s[i..])),
            Some(b'?') => !s.is_empty() && s[0] != b'/' && go(&p[1..], &s[1..]),
            Some(c) => !s.is_empty() && s[0] == *c && go(&p[1..], &s[1..]),
        }
    }
    go(p, s)
}

// ---------------------------------------------------------------------------------------------
// load and save

/// Largest non-layer file accepted in an archive (manifests, configs, indexes).
const MAX_META_FILE: u64 = 8 << 20;

enum Staged {
    /// Extracted as a layer (overlay2) or stored as a blob (vfs); `raw` is the digest of the
    /// bytes as they were in the archive.
    Layer {
        raw: Digest,
        rec: Option<LayerRecord>,
        blob: Option<Digest>,
    },
    /// A small file kept in memory.
    Small(Vec<u8>),
}

struct HashingReader<R> {
    inner: R,
    hasher: wharf_reference::Sha256Writer,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn key_of(p: &Path) -> Option<String> {
    let comps = clean_relative(p).ok()?;
    let s: Vec<String> = comps.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    Some(s.join("/"))
}

fn looks_like_layer(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 262 && &head[257..262] == b"ustar")
        || (head.len() >= 512 && head.iter().all(|b| *b == 0))
}

/// One image found in an archive, before registration.
struct Found {
    config: Vec<u8>,
    layer_keys: Vec<String>,
    /// For OCI layouts: the digest each layer's bytes must have.
    layer_digests: Vec<Option<Digest>>,
    tags: Vec<Reference>,
}

impl ImageService {
    /// `load`: a docker-archive (as `docker save` and `skopeo` write it) or an OCI image
    /// layout, plain or compressed. Returns Docker's `Loaded image: ...` lines.
    pub fn load(&self, reader: impl Read) -> Result<Vec<String>> {
        let _g = self.write_lock.lock().expect("image lock");
        let mut staged: HashMap<String, Staged> = HashMap::new();
        let mut links: HashMap<String, String> = HashMap::new();
        let result = self.load_inner(reader, &mut staged, &mut links);
        // Whatever was extracted and not registered goes now.
        let registered: HashSet<String> = self.meta.layers()?.values().map(|l| l.cache_id.clone()).collect();
        for s in staged.values() {
            if let Staged::Layer { rec: Some(r), .. } = s {
                if !registered.contains(&r.cache_id) {
                    let _ = self.layers.discard(r);
                }
            }
        }
        if result.is_err() {
            let _ = self.gc();
        }
        result
    }

    fn load_inner(
        &self,
        reader: impl Read,
        staged: &mut HashMap<String, Staged>,
        links: &mut HashMap<String, String>,
    ) -> Result<Vec<String>> {
        let outer = wharf_store::decompress(reader)?;
        let mut ar = tar::Archive::new(outer);
        let bad = |e: io::Error| ImageError::Invalid(format!("invalid archive: {e}"));
        for entry in ar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let path = entry.path().map_err(bad)?.into_owned();
            let Some(key) = key_of(&path) else {
                return Err(ImageError::Invalid(format!("invalid archive entry {}", path.display())));
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry.link_name().map_err(bad)?.unwrap_or_default().into_owned();
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        Path::new(&key).parent().unwrap_or(Path::new("")).join(target)
                    } else {
                        target
                    };
                    if let Some(t) = key_of(&base) {
                        links.insert(key, t);
                    }
                    continue;
                }
                _ => continue,
            }
            let size = entry.size();
            let mut br = io::BufReader::with_capacity(1 << 20, &mut entry);
            let head = {
                use std::io::BufRead;
                br.fill_buf().map_err(bad)?.to_vec()
            };
            if looks_like_layer(&head[..head.len().min(512)]) && size > 0 {
                let mut hr = HashingReader {
                    inner: br,
                    hasher: wharf_reference::Sha256Writer::new(),
                };
                let (rec, blob) = match self.layers.driver() {
                    Driver::Overlay2 => (Some(self.layers.create(None, None, &mut hr, None)?), None),
                    Driver::Vfs => (None, Some(self.content.write_from(&mut hr, None, None)?)),
                };
                io::copy(&mut hr, &mut io::sink()).map_err(bad)?;
                let raw = std::mem::take(&mut hr.hasher).finish();
                if let Some(Staged::Layer { rec: Some(old), .. }) = staged.insert(key, Staged::Layer { raw, rec, blob })
                {
                    let _ = self.layers.discard(&old);
                }
            } else {
                if size > MAX_META_FILE {
                    return Err(ImageError::Invalid(format!(
                        "archive file {key} is {size} bytes and not a layer"
                    )));
                }
                let mut v = Vec::with_capacity(size as usize);
                br.take(MAX_META_FILE + 1).read_to_end(&mut v).map_err(bad)?;
                staged.insert(key, Staged::Small(v));
            }
        }

        let resolve_key = |k: &str| -> String {
            let mut k = k.to_string();
            for _ in 0..16 {
                match links.get(&k) {
                    Some(t) => k = t.clone(),
                    None => break,
                }
            }
            k
        };
        let small = |k: &str| -> Result<Vec<u8>> {
            match staged.get(&resolve_key(k)) {
                Some(Staged::Small(v)) => Ok(v.clone()),
                Some(Staged::Layer { .. }) => Err(ImageError::Invalid(format!("{k} is a layer, not JSON"))),
                None => Err(ImageError::Invalid(format!("archive has no file {k}"))),
            }
        };

        let mut found: Vec<Found> = Vec::new();
        if let Ok(m) = small("manifest.json") {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Entry {
                config: String,
                #[serde(default)]
                repo_tags: Option<Vec<String>>,
                layers: Vec<String>,
            }
            let entries: Vec<Entry> =
                serde_json::from_slice(&m).map_err(|e| ImageError::Invalid(format!("invalid manifest.json: {e}")))?;
            for e in entries {
                let config = small(&e.config)?;
                let mut tags = Vec::new();
                for t in e.repo_tags.unwrap_or_default() {
                    tags.push(Reference::parse_tagged_default(&t)?);
                }
                found.push(Found {
                    config,
                    layer_digests: vec![None; e.layers.len()],
                    layer_keys: e
                        .layers
                        .iter()
                        .map(|l| key_of(Path::new(l)).unwrap_or_default())
                        .collect(),
                    tags,
                });
            }
        } else if let Ok(idx) = small("index.json") {
            self.walk_oci_index(&idx, &small, &mut found, 0, None)?;
        } else if staged.contains_key("repositories") {
            return Err(ImageError::Invalid(
                "legacy (pre-1.10) image archives without manifest.json are not supported".into(),
            ));
        } else {
            return Err(ImageError::Invalid(
                "invalid archive: neither manifest.json (docker-archive) nor index.json (OCI layout) found".into(),
            ));
        }
        if found.is_empty() {
            return Err(ImageError::Invalid("archive holds no images".into()));
        }

        // Build every image's layer chain; nothing is registered until all are ready.
        let mut batch = Batch::default();
        let mut claimed: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        let mut known = self.meta.layers()?;
        for f in &found {
            let cfg = ImageConfig::parse(&f.config).map_err(ImageError::Invalid)?;
            if cfg.rootfs.diff_ids.len() != f.layer_keys.len() {
                return Err(ImageError::Invalid(format!(
                    "invalid manifest: {} layers listed but the config has {} diff IDs",
                    f.layer_keys.len(),
                    cfg.rootfs.diff_ids.len()
                )));
            }
            let chains = wharf_reference::chain_ids(&cfg.rootfs.diff_ids);
            let mut parent: Option<LayerRecord> = None;
            for (i, key) in f.layer_keys.iter().enumerate() {
                let diff = cfg.rootfs.diff_ids[i];
                let chain = chains[i];
                let staged_layer = match staged.get(&resolve_key(key)) {
                    Some(Staged::Layer { raw, rec, blob }) => (raw, rec, blob),
                    _ => return Err(ImageError::Invalid(format!("archive has no layer {key}"))),
                };
                if let Some(want) = f.layer_digests[i] {
                    if *staged_layer.0 != want {
                        return Err(ImageError::Invalid(format!(
                            "layer {key}: digest mismatch: expected {want}, got {}",
                            staged_layer.0
                        )));
                    }
                }
                if let Some(existing) = known.get(&chain) {
                    parent = Some(existing.clone());
                    continue;
                }
                let rec = match staged_layer {
                    (_, Some(rec), _) if !claimed.contains(&rec.cache_id) => {
                        if rec.diff_id != diff {
                            return Err(ImageError::Invalid(format!(
                                "layer {key}: diff ID mismatch: config says {diff}, tar is {}",
                                rec.diff_id
                            )));
                        }
                        claimed.insert(rec.cache_id.clone());
                        LayerRecord {
                            chain_id: chain,
                            parent: parent.as_ref().map(|p| p.chain_id),
                            ..rec.clone()
                        }
                    }
                    (_, Some(rec), _) => {
                        // The same tar at a second position: extract it again from its copy.
                        let f = self.tar_of(rec)?;
                        self.layers
                            .create(parent.as_ref().map(|p| p.chain_id), None, f, Some(diff))?
                    }
                    (_, None, Some(blob)) => {
                        let f = self.content.open_blob(blob)?;
                        let r = self
                            .layers
                            .create(parent.as_ref().map(|p| p.chain_id), parent.as_ref(), f, Some(diff));
                        if *blob != diff {
                            let _ = self.content.delete(blob);
                        }
                        r?
                    }
                    _ => return Err(ImageError::Invalid(format!("archive has no layer {key}"))),
                };
                known.insert(chain, rec.clone());
                batch.put_layers.push(rec.clone());
                parent = Some(rec);
            }
            let id = self.register(&f.config, parent.map(|p| p.chain_id), vec![], &f.tags, None, &mut batch)?;
            // A name moving to this image leaves its old image (if any) dangling, as in Docker.
            if f.tags.is_empty() {
                out.push(format!("Loaded image ID: {id}"));
            }
            for t in &f.tags {
                out.push(format!("Loaded image: {}", t.familiar()));
            }
        }
        self.meta.commit(batch)?;
        // vfs staged each layer tar as a blob; one a split record now covers is not kept twice.
        for s in staged.values() {
            if let Staged::Layer { blob: Some(b), .. } = s {
                if self.content.open_split(b).is_ok() {
                    let _ = self.content.delete_blob(b);
                }
            }
        }
        Ok(out)
    }

    fn walk_oci_index(
        &self,
        bytes: &[u8],
        small: &dyn Fn(&str) -> Result<Vec<u8>>,
        found: &mut Vec<Found>,
        depth: usize,
        inherited_name: Option<Reference>,
    ) -> Result<()> {
        if depth > 4 {
            return Err(ImageError::Invalid("invalid OCI layout: index nesting too deep".into()));
        }
        let idx: Value =
            serde_json::from_slice(bytes).map_err(|e| ImageError::Invalid(format!("invalid OCI index: {e}")))?;
        let manifests = idx["manifests"].as_array().cloned().unwrap_or_default();
        for m in manifests {
            let digest: Digest = m["digest"]
                .as_str()
                .unwrap_or("")
                .parse()
                .map_err(|e| ImageError::Invalid(format!("invalid OCI descriptor: {e}")))?;
            let media = m["mediaType"].as_str().unwrap_or("");
            let ann = &m["annotations"];
            let name = ann["io.containerd.image.name"]
                .as_str()
                .and_then(|n| Reference::parse_tagged_default(n).ok())
                .or_else(|| {
                    ann["org.opencontainers.image.ref.name"]
                        .as_str()
                        .filter(|n| n.contains('/') || n.contains(':'))
                        .and_then(|n| Reference::parse_tagged_default(n).ok())
                })
                .or_else(|| inherited_name.clone());
            let blob = small(&format!("blobs/sha256/{}", digest.hex()))?;
            if Digest::of(&blob) != digest {
                return Err(ImageError::Invalid(format!("blob {digest}: digest mismatch")));
            }
            let body: Value = serde_json::from_slice(&blob)
                .map_err(|e| ImageError::Invalid(format!("invalid manifest {digest}: {e}")))?;
            let body_media = body["mediaType"].as_str().unwrap_or(media);
            if !media.is_empty() && body_media != media {
                return Err(ImageError::Invalid(format!(
                    "manifest {digest}: media type {body_media} disagrees with its descriptor's {media}"
                )));
            }
            if body_media.contains("index") || body_media.contains("manifest.list") || body["manifests"].is_array() {
                if digest == Digest::of(bytes) {
                    return Err(ImageError::Invalid("invalid OCI layout: index refers to itself".into()));
                }
                // Choose the platform this host runs.
                let arch = std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64");
                let mut pick = body.clone();
                if let Some(list) = body["manifests"].as_array() {
                    let chosen: Vec<Value> = list
                        .iter()
                        .filter(|d| {
                            d["platform"].is_null()
                                || (d["platform"]["architecture"] == arch && d["platform"]["os"] == "linux")
                        })
                        .take(1)
                        .cloned()
                        .collect();
                    pick["manifests"] = Value::Array(chosen);
                }
                let pick_bytes = serde_json::to_vec(&pick).expect("serialise");
                self.walk_oci_index(&pick_bytes, small, found, depth + 1, name)?;
                continue;
            }
            let cfg_desc = &body["config"];
            let cfg_digest: Digest = cfg_desc["digest"]
                .as_str()
                .unwrap_or("")
                .parse()
                .map_err(|e| ImageError::Invalid(format!("invalid config descriptor: {e}")))?;
            let config = small(&format!("blobs/sha256/{}", cfg_digest.hex()))?;
            if Digest::of(&config) != cfg_digest {
                return Err(ImageError::Invalid(format!("config {cfg_digest}: digest mismatch")));
            }
            let mut keys = Vec::new();
            let mut digests = Vec::new();
            for l in body["layers"].as_array().cloned().unwrap_or_default() {
                let d: Digest = l["digest"]
                    .as_str()
                    .unwrap_or("")
                    .parse()
                    .map_err(|e| ImageError::Invalid(format!("invalid layer descriptor: {e}")))?;
                if l["size"].as_i64().is_some_and(|s| s < 0) {
                    return Err(ImageError::Invalid(format!("layer {d}: negative size")));
                }
                keys.push(format!("blobs/sha256/{}", d.hex()));
                digests.push(Some(d));
            }
            found.push(Found {
                config,
                layer_keys: keys,
                layer_digests: digests,
                tags: name.into_iter().collect(),
            });
        }
        Ok(())
    }

    /// `save`: write a docker-archive (with an OCI layout beside it, as Docker 25+ writes)
    /// holding `names` to `w`.
    pub fn save(&self, names: &[String], w: impl Write) -> Result<()> {
        let images = self.meta.images()?;
        let refs = self.meta.refs()?;
        let layers = self.meta.layers()?;
        // Which images, under which tags.
        let mut order: Vec<Digest> = Vec::new();
        let mut tags: HashMap<Digest, Vec<Reference>> = HashMap::new();
        for n in names {
            let by_repo = Reference::parse_normalized(n)
                .ok()
                .filter(|r| r.tag().is_none() && r.digest().is_none())
                .map(|r| r.name());
            let mut matched = false;
            if let Some(repo) = &by_repo {
                for (k, id) in &refs {
                    if let Ok(r) = Reference::parse_normalized(k) {
                        if r.name() == *repo && r.tag().is_some() {
                            matched = true;
                            if !order.contains(id) {
                                order.push(*id);
                            }
                            tags.entry(*id).or_default().push(r);
                        }
                    }
                }
            }
            if matched {
                continue;
            }
            let id = self.resolve_in(n, &images, &refs)?;
            if !order.contains(&id) {
                order.push(id);
            }
            if let Ok(r) = Reference::parse_tagged_default(n) {
                if refs.get(&r.to_string()) == Some(&id) && r.digest().is_none() {
                    tags.entry(id).or_default().push(r);
                }
            }
        }
        let mut b = tar::Builder::new(w);
        let mut written: HashSet<Digest> = HashSet::new();
        let mut manifest = Vec::new();
        let mut index = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        add_dir(&mut b, "blobs/")?;
        add_dir(&mut b, "blobs/sha256/")?;
        for id in &order {
            let config = self.config_bytes(id)?;
            // As dockerd: an image's layers and config carry its creation time.
            let created = serde_json::from_slice::<Value>(&config)
                .ok()
                .and_then(|c| {
                    c.get("created")
                        .and_then(Value::as_str)
                        .map(crate::config::parse_rfc3339)
                })
                .unwrap_or(0)
                .max(0) as u64;
            let chain = self.chain(&layers, images[id].top_layer)?;
            let mut layer_paths = Vec::new();
            let mut layer_descs = Vec::new();
            for l in &chain {
                let path = format!("blobs/sha256/{}", l.diff_id.hex());
                if written.insert(l.diff_id) {
                    let f = self.tar_of(l)?;
                    add_file(&mut b, &path, l.tar_size, f, created)?;
                }
                layer_descs.push(json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": l.diff_id, "size": l.tar_size,
                }));
                layer_paths.push(path);
            }
            if written.insert(*id) {
                add_file(
                    &mut b,
                    &format!("blobs/sha256/{}", id.hex()),
                    config.len() as u64,
                    &config[..],
                    created,
                )?;
            }
            let oci = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": id, "size": config.len()},
                "layers": layer_descs,
            });
            let oci_bytes = serde_json::to_vec(&oci).expect("serialise");
            let oci_digest = Digest::of(&oci_bytes);
            if written.insert(oci_digest) {
                add_file(
                    &mut b,
                    &format!("blobs/sha256/{}", oci_digest.hex()),
                    oci_bytes.len() as u64,
                    &oci_bytes[..],
                    0,
                )?;
            }
            let my_tags = tags.get(id).cloned().unwrap_or_default();
            let desc = |ann: Option<Value>| {
                let mut d = json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": oci_digest, "size": oci_bytes.len(),
                });
                if let Some(a) = ann {
                    d["annotations"] = a;
                }
                d
            };
            if my_tags.is_empty() {
                index.push(desc(None));
            }
            for t in &my_tags {
                index.push(desc(Some(json!({
                    "io.containerd.image.name": t.to_string(),
                    "org.opencontainers.image.ref.name": t.tag().unwrap_or("latest"),
                }))));
                if let Some(top) = chain.last() {
                    repositories
                        .entry(t.familiar_name())
                        .or_default()
                        .insert(t.tag().unwrap_or("latest").to_string(), top.diff_id.hex());
                }
            }
            manifest.push(json!({
                "Config": format!("blobs/sha256/{}", id.hex()),
                "RepoTags": if my_tags.is_empty() { Value::Null } else { json!(my_tags.iter().map(|t| t.familiar()).collect::<Vec<_>>()) },
                "Layers": layer_paths,
            }));
        }
        let files: Vec<(&str, Vec<u8>)> = vec![
            (
                "index.json",
                serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": index,
                }))
                .expect("serialise"),
            ),
            ("manifest.json", serde_json::to_vec(&manifest).expect("serialise")),
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("repositories", serde_json::to_vec(&repositories).expect("serialise")),
        ];
        for (name, data) in files {
            add_file(&mut b, name, data.len() as u64, &data[..], 0)?;
        }
        b.into_inner()?.flush()?;
        Ok(())
    }
}

fn add_dir<W: Write>(b: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(0);
    h.set_path(name)?;
    h.set_cksum();
    b.append(&h, io::empty())
}

fn add_file<W: Write>(b: &mut tar::Builder<W>, name: &str, size: u64, data: impl Read, mtime: u64) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_path(name)?;
    h.set_cksum();
    b.append(&h, data)
}

/// A name that reads as a digest algorithm (`sha256:<tag>`) would be mistaken for an image
/// ID: dockerd refuses to make one.
pub fn refuse_digest_named(r: &Reference) -> Result<()> {
    if r.familiar_name() == "sha256" {
        return Err(ImageError::Invalid(
            "refusing to create an ambiguous tag using digest algorithm as name".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("busybox", "busybox"));
        assert!(!glob("busy*", "foo/busybox"));
        assert!(glob("*/busybox", "foo/busybox"));
        assert!(reference_match("busybox", "busybox:latest"));
        assert!(reference_match("busybox:lat*", "busybox:latest"));
        assert!(!reference_match("busy", "busybox:latest"));
    }
}
