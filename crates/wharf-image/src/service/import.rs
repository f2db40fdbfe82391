//! `import`: a filesystem tar (plain or compressed) as a one-layer image, with `--change`s.

use super::*;
use crate::changes::apply_change;
use crate::config::now_rfc3339;
use serde_json::{json, Map, Value};
use std::io::Read;
use wharf_reference::{Digest, Reference};
use wharf_store::Batch;

impl ImageService {
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
        let host_arch = super::commit::host_arch();
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
