//! Listing and reading images: `images` with its filters (`reference=`, `dangling=`,
//! `label=`, `before=`/`since=`, `until=`), `inspect`, `history`, and `system df`'s figures.

use super::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use wharf_reference::{Digest, Reference};

impl ImageService {
    pub(crate) fn names_by_image(refs: &BTreeMap<String, Digest>) -> HashMap<Digest, (Vec<String>, Vec<String>)> {
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

    pub(crate) fn views(&self) -> Result<Vec<ImageView>> {
        self.views_of(None)
    }

    /// The views of every image, or of `only`: each reads its config, so one image's view
    /// must not cost the whole store's.
    fn views_of(&self, only: Option<&Digest>) -> Result<Vec<ImageView>> {
        let images = self.meta.images()?;
        let layers = self.meta.layers()?;
        let refs = self.meta.refs()?;
        let names = Self::names_by_image(&refs);
        let mut out = Vec::with_capacity(if only.is_some() { 1 } else { images.len() });
        for (id, rec) in images {
            if only.is_some_and(|o| *o != id) {
                continue;
            }
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
        self.views_of(Some(&id))?
            .into_iter()
            .next()
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
}

/// Docker's `reference=` filter: a glob on the familiar name, with or without tag.
pub(crate) fn reference_match(pattern: &str, name: &str) -> bool {
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
