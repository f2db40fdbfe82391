//! `save`: images as Docker 25's combined archive (docker-archive and OCI layout in one),
//! layers rebuilt byte for byte from their split records.

use super::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};
use wharf_reference::{Digest, Reference};

impl ImageService {
    /// `save`: write a docker-archive (with an OCI layout beside it, as Docker 25+ writes)
    /// holding `names` to `w`.
    pub fn save(&self, names: &[String], w: impl Write) -> Result<()> {
        let images = self.meta.images()?;
        let refs = self.meta.refs()?;
        let layers = self.meta.layers()?;
        let (order, tags) = self.save_selection(names, &images, &refs)?;
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

    /// The images `save` writes, in the order named, and the tags each is saved under: a
    /// repository name alone means all its tags.
    #[allow(clippy::type_complexity)]
    fn save_selection(
        &self,
        names: &[String],
        images: &BTreeMap<Digest, ImageRecord>,
        refs: &BTreeMap<String, Digest>,
    ) -> Result<(Vec<Digest>, HashMap<Digest, Vec<Reference>>)> {
        let mut order: Vec<Digest> = Vec::new();
        let mut tags: HashMap<Digest, Vec<Reference>> = HashMap::new();
        for n in names {
            let by_repo = Reference::parse_normalized(n)
                .ok()
                .filter(|r| r.tag().is_none() && r.digest().is_none())
                .map(|r| r.name());
            let mut matched = false;
            if let Some(repo) = &by_repo {
                for (k, id) in refs {
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
            let id = self.resolve_in(n, images, refs)?;
            if !order.contains(&id) {
                order.push(id);
            }
            if let Ok(r) = Reference::parse_tagged_default(n) {
                if refs.get(&r.to_string()) == Some(&id) && r.digest().is_none() {
                    tags.entry(id).or_default().push(r);
                }
            }
        }
        Ok((order, tags))
    }
}

pub(crate) fn add_dir<W: Write>(b: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(0);
    h.set_path(name)?;
    h.set_cksum();
    b.append(&h, io::empty())
}

pub(crate) fn add_file<W: Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
    mtime: u64,
) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_path(name)?;
    h.set_cksum();
    b.append(&h, data)
}
