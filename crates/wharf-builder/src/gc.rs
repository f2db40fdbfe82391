//! The build cache as users manage it: its records with their sizes (`system df`), and
//! `builder prune` and the daemon's size limit (`builder.gc` in `daemon.json`), which forget
//! entries and delete the images only they held.
//!
//! An entry is in use when its image is held by something else: a name (tagged, or the
//! parent of something tagged) or a container. Pruning one in use forgets it (the next build
//! runs that step again) and frees nothing; pruning one that is not deletes its image too,
//! leaves first, so a dangling build's chain goes whole.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use wharf_reference::Digest;

use crate::{BuildError, Builder, Result};

/// One record of the cache, as `system df` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRecord {
    /// The entry's ID (its key).
    pub id: String,
    /// The step's image.
    pub image: Digest,
    /// The step (`RUN make`).
    pub description: String,
    /// The bytes of the layer the step added (0 for a step that changed only the config).
    pub size: u64,
    /// Something besides the cache holds its image.
    pub in_use: bool,
    /// Made, last used (seconds since 1970), and how often a build took it.
    pub created: i64,
    pub last_used: i64,
    pub uses: u64,
}

/// What `builder prune` (or a GC rule) removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Entries in use too (`--all`); otherwise only those whose image nothing else holds.
    pub all: bool,
    /// Stop once the cache holds at most this many bytes (0: no limit, prune every match).
    pub keep_storage: u64,
    /// Only entries not used for this long (`until=`, `unused-for=`).
    pub unused_for: Option<Duration>,
}

/// `builder.gc` in `daemon.json`: the rules applied, in order, after each build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPolicy {
    /// The rules (each a prune); none: no collection.
    pub rules: Vec<PruneOptions>,
}

impl Builder {
    /// The cache's records, oldest use first.
    pub fn usage(&self) -> Result<Vec<CacheRecord>> {
        let io = |e: std::io::Error| BuildError::Engine(format!("reading the build cache: {e}"));
        let entries = self.cache.list().map_err(io)?;
        let views: HashMap<Digest, (wharf_image::ImageView, usize)> = self
            .images
            .disk_usage()?
            .into_iter()
            .map(|(v, _, users)| (v.id, (v, users)))
            .collect();
        // Held: named or used images, and every parent of one.
        let mut held = HashSet::new();
        for (id, (v, users)) in &views {
            if v.repo_tags.is_empty() && *users == 0 {
                continue;
            }
            let mut next = Some(*id);
            while let Some(i) = next.filter(|i| held.insert(*i)) {
                next = views.get(&i).and_then(|(v, _)| v.record.parent);
            }
        }
        let mut out: Vec<CacheRecord> = entries
            .into_iter()
            .map(|(id, e)| {
                let size = views.get(&e.image).map_or(0, |(v, _)| {
                    let below = v
                        .record
                        .parent
                        .and_then(|p| views.get(&p))
                        .map_or(0, |(p, _)| p.layers.len());
                    if v.layers.len() > below {
                        v.layers.last().map_or(0, |l| l.size)
                    } else {
                        0
                    }
                });
                CacheRecord {
                    id,
                    image: e.image,
                    description: e.description,
                    size,
                    in_use: held.contains(&e.image),
                    created: e.created,
                    last_used: e.last_used,
                    uses: e.uses,
                }
            })
            .collect();
        out.sort_by_key(|r| (r.last_used, r.created));
        Ok(out)
    }

    /// `builder prune`: forgets the entries `opts` picks, oldest use first, and deletes the
    /// images only they held. Returns the entries removed and the bytes freed.
    pub fn prune(&self, opts: &PruneOptions) -> Result<(Vec<String>, u64)> {
        let records = self.usage()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut total: u64 = records.iter().map(|r| r.size).sum();
        // The context files clients sent go first (only a re-upload brings them back, where
        // an entry costs its step again): with --all, when the cache is over the size kept,
        // or when no build used them for `until`.
        let (blob_size, blob_used) = self.blobs.usage();
        let over = opts.keep_storage > 0 && total + blob_size > opts.keep_storage;
        let stale = opts.unused_for.is_some_and(|d| now - blob_used >= d.as_secs() as i64);
        let mut freed = 0;
        if blob_size > 0 && (opts.all || over || stale) {
            freed += self
                .blobs
                .clear()
                .map_err(|e| BuildError::Engine(format!("pruning context files: {e}")))?;
        }
        let mut chosen = Vec::new();
        for r in records {
            if opts.keep_storage > 0 && total <= opts.keep_storage {
                break;
            }
            if r.in_use && !opts.all {
                continue;
            }
            if opts.unused_for.is_some_and(|d| now - r.last_used < d.as_secs() as i64) {
                continue;
            }
            total = total.saturating_sub(r.size);
            chosen.push(r);
        }
        let mut removed = Vec::new();
        for r in &chosen {
            self.cache
                .remove(&r.id)
                .map_err(|e| BuildError::Engine(format!("pruning the build cache: {e}")))?;
            removed.push(r.id.clone());
        }
        // Their images, leaves first: a chain's parents go once their children have.
        let mut left: Vec<&crate::gc::CacheRecord> = chosen.iter().filter(|r| !r.in_use).collect();
        loop {
            let before = left.len();
            let mut keep = Vec::new();
            for r in left {
                match self.images.remove(&r.image.to_string(), false, false) {
                    Ok(_) => freed += r.size,
                    Err(wharf_image::ImageError::NotFound(_)) => {}
                    // A child (another step's image, or a dangling build's final one) holds it.
                    Err(_) => keep.push(r),
                }
            }
            left = keep;
            if left.len() == before || left.is_empty() {
                break;
            }
        }
        Ok((removed, freed))
    }

    /// Applies the daemon's `builder.gc` rules (after a build).
    pub fn collect_garbage(&self) {
        for rule in &self.gc.rules {
            if let Err(e) = self.prune(rule) {
                tracing::warn!("build cache collection: {e}");
                return;
            }
        }
    }
}
