//! `rmi` and `image prune`: untag, then delete what no name, child or container holds.

use super::*;
use std::collections::{BTreeSet, HashSet};
use wharf_reference::{Digest, Reference};
use wharf_store::{Batch, LayerRecord};

impl ImageService {
    /// `rmi`.
    pub fn remove(&self, name: &str, force: bool, prune: bool) -> Result<Vec<DeleteItem>> {
        let _g = self.write_lock.lock().expect("image lock");
        self.remove_locked(name, force, prune)
    }

    pub(crate) fn remove_locked(&self, name: &str, force: bool, prune: bool) -> Result<Vec<DeleteItem>> {
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
        let mut out = Vec::new();
        let mut reclaimed = 0;
        // Leaves first (an image with children is no leaf: a build's intermediate images go
        // with the last child, as their untagged parents); then again, for the parents that
        // became leaves.
        loop {
            let before = out.len();
            self.prune_leaves(all, labels, &mut out, &mut reclaimed)?;
            if out.len() == before {
                return Ok((out, reclaimed));
            }
        }
    }

    fn prune_leaves(&self, all: bool, labels: &[String], out: &mut Vec<DeleteItem>, reclaimed: &mut u64) -> Result<()> {
        let views = self.views()?;
        let parents: HashSet<Digest> = views.iter().filter_map(|v| v.record.parent).collect();
        for v in views {
            if !all && !v.repo_tags.is_empty() {
                continue;
            }
            if parents.contains(&v.id) {
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
                                *reclaimed += l.size;
                            }
                        }
                    }
                    out.extend(items);
                }
                Err(ImageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
