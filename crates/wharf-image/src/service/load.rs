//! `load`: a docker-archive (as `docker save` and `skopeo` write it) or an OCI image layout,
//! plain or compressed, extracted as it streams in; nothing is visible before the one
//! transaction that registers each image.

use super::*;
use crate::config::ImageConfig;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::Path;
use wharf_reference::{Digest, Reference};
use wharf_store::saferoot::clean_relative;
use wharf_store::{Batch, LayerRecord};

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
        self.stage_entries(reader, staged, links)?;
        let found = self.find_images(staged, links)?;
        self.register_found(&found, staged, links)
    }

    /// Reads the archive once: layers extracted (overlay2) or stored (vfs) as they stream by,
    /// small files kept, links noted.
    fn stage_entries(
        &self,
        reader: impl Read,
        staged: &mut HashMap<String, Staged>,
        links: &mut HashMap<String, String>,
    ) -> Result<()> {
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
                    hasher: Some(wharf_reference::BackgroundSha256::new()),
                };
                // A layer that needs its parent first is kept as a blob until the chain is known.
                let (rec, blob) = match self.layers.driver().extracts_over_parent() {
                    false => (Some(self.layers.create(None, None, &mut hr, None)?), None),
                    true => (None, Some(self.content.write_from(&mut hr, None, None)?)),
                };
                io::copy(&mut hr, &mut io::sink()).map_err(bad)?;
                let raw = hr.hasher.take().expect("hashed once").finish().map_err(bad)?;
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
        Ok(())
    }

    /// The images the archive describes: its `manifest.json` (docker-archive) or `index.json`
    /// (OCI layout).
    fn find_images(&self, staged: &HashMap<String, Staged>, links: &HashMap<String, String>) -> Result<Vec<Found>> {
        let small = |k: &str| -> Result<Vec<u8>> {
            match staged.get(&resolve_key(links, k)) {
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
        Ok(found)
    }

    /// Builds every image's layer chain from what was staged and registers them all in one
    /// transaction: Docker's `Loaded image` lines.
    fn register_found(
        &self,
        found: &[Found],
        staged: &HashMap<String, Staged>,
        links: &HashMap<String, String>,
    ) -> Result<Vec<String>> {
        // Build every image's layer chain; nothing is registered until all are ready.
        let mut batch = Batch::default();
        let mut claimed: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        let mut known = self.meta.layers()?;
        for f in found {
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
                let staged_layer = match staged.get(&resolve_key(links, key)) {
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
}

/// One image found in an archive, before registration.
struct Found {
    config: Vec<u8>,
    layer_keys: Vec<String>,
    /// For OCI layouts: the digest each layer's bytes must have.
    layer_digests: Vec<Option<Digest>>,
    tags: Vec<Reference>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Option<wharf_reference::BackgroundSha256>,
}

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

/// Largest non-layer file accepted in an archive (manifests, configs, indexes).
const MAX_META_FILE: u64 = 8 << 20;

pub(crate) fn key_of(p: &Path) -> Option<String> {
    let comps = clean_relative(p).ok()?;
    let s: Vec<String> = comps.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    Some(s.join("/"))
}

pub(crate) fn looks_like_layer(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 262 && &head[257..262] == b"ustar")
        || (head.len() >= 512 && head.iter().all(|b| *b == 0))
}

/// A path in the archive with its links followed (at most 16 deep).
fn resolve_key(links: &HashMap<String, String>, k: &str) -> String {
    let mut k = k.to_string();
    for _ in 0..16 {
        match links.get(&k) {
            Some(t) => k = t.clone(),
            None => break,
        }
    }
    k
}
