//! `commit`: a new image from a base, a layer and a config with its history entry.

use super::*;
use crate::changes::apply_change;
use crate::config::{now_rfc3339, MAX_CONFIG_BYTES};
use serde_json::{json, Map, Value};
use std::io::{self, Read, Write};
use wharf_reference::{Digest, Reference};
use wharf_store::Batch;

impl ImageService {
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

    pub(crate) fn commit_layer(&self, base: &Digest, layer: impl Read, spec: CommitSpec) -> Result<Digest> {
        let mut layer = layer;
        self.commit_image(Some(base), Some(&mut layer), spec)
    }

    /// A new image: `base`'s layers (none for `FROM scratch`) plus `layer` if there is one
    /// (a step that only changes the config adds none, and its history entry says
    /// `empty_layer`, as Docker's `ENV` and `LABEL` do), with `spec`'s config, history entry
    /// and name. The image's `Parent` is `base`. Returns its ID.
    pub fn commit_image(
        &self,
        base: Option<&Digest>,
        layer: Option<&mut dyn Read>,
        spec: CommitSpec,
    ) -> Result<Digest> {
        let tags = spec
            .tag
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(Reference::parse_tagged_default)
            .transpose()?;
        let parent: Value = match base {
            Some(b) => serde_json::from_slice(&self.content.read(b, MAX_CONFIG_BYTES)?)
                .map_err(|e| ImageError::Invalid(format!("the image's config is not JSON: {e}")))?,
            None => json!({"architecture": host_arch(), "os": "linux"}),
        };
        let mut cfg = match spec.config {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        for c in &spec.changes {
            apply_change(&mut cfg, c).map_err(ImageError::Invalid)?;
        }
        let _g = self.write_lock.lock().expect("image lock");
        let top = match base {
            Some(b) => {
                let images = self.meta.images()?;
                let rec = images.get(b).ok_or_else(|| ImageError::NotFound(b.to_string()))?;
                match rec.top_layer {
                    Some(t) => self.meta.layer(&t)?,
                    None => None,
                }
            }
            None => None,
        };
        let mut diff_ids: Vec<Value> = parent["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default();
        let adds_layer = layer.is_some();
        let (top, new_layers) = match layer {
            Some(reader) => {
                let new = self
                    .layers
                    .create(top.as_ref().map(|t| t.chain_id), top.as_ref(), reader, None)?;
                let (layer, new_layers) = match self.meta.layer(&new.chain_id)? {
                    Some(existing) => {
                        self.layers.discard(&new)?;
                        (existing, vec![])
                    }
                    None => (new.clone(), vec![new]),
                };
                diff_ids.push(json!(layer.diff_id.to_string()));
                (Some(layer), new_layers)
            }
            None => (top, vec![]),
        };
        let created = spec.created.clone().unwrap_or_else(now_rfc3339);
        let mut history: Vec<Value> = parent["history"].as_array().cloned().unwrap_or_default();
        history.push(history_entry(
            &created,
            &spec.created_by,
            &spec.author,
            &spec.comment,
            !adds_layer,
        ));
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
        if !spec.container.is_empty() {
            out.insert("container".into(), json!(spec.container));
        }
        // A builder's metadata step has no container but records its step all the same.
        if !spec.container.is_empty() || !spec.container_config.is_null() {
            out.insert("container_config".into(), spec.container_config);
        }
        out.insert("created".into(), json!(created));
        out.insert("docker_version".into(), json!(crate::ENGINE_VERSION));
        out.insert("history".into(), Value::Array(history));
        out.insert("rootfs".into(), json!({"type": "layers", "diff_ids": diff_ids}));
        let bytes = serde_json::to_vec(&Value::Object(out)).expect("serialise");
        let mut batch = Batch::default();
        let id = self.register(
            &bytes,
            top.map(|l| l.chain_id),
            new_layers,
            &tags.into_iter().collect::<Vec<_>>(),
            base.copied(),
            &mut batch,
        )?;
        self.meta.commit(batch)?;
        Ok(id)
    }
}

/// The machine's architecture as images name it.
pub(crate) fn host_arch() -> String {
    std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64")
}

/// One history entry; `empty_layer` for a step that added no layer.
fn history_entry(created: &str, created_by: &str, author: &str, comment: &str, empty_layer: bool) -> Value {
    let mut h = Map::new();
    h.insert("created".into(), json!(created));
    h.insert("created_by".into(), json!(created_by));
    if !author.is_empty() {
        h.insert("author".into(), json!(author));
    }
    if !comment.is_empty() {
        h.insert("comment".into(), json!(comment));
    }
    if empty_layer {
        h.insert("empty_layer".into(), json!(true));
    }
    Value::Object(h)
}
