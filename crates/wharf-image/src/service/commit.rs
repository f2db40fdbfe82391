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
}
