//! `push`: layers compressed and uploaded (or mounted, or skipped when the registry has
//! them), then the config and the manifest.

use super::*;
use crate::auth::AuthConfig;
use crate::manifest::{self, Descriptor, ImageManifest};
use crate::progress::Progress;
use crate::registry::{endpoints, Session};
use crate::DistError;
use serde::Serialize;
use serde_json::json;
use std::io::{self, Write};
use wharf_image::ListFilter;
use wharf_reference::{Digest, Reference, Sha256Writer};

impl Distribution {
    /// `push`: `name` (a repository, optionally with a tag; without one every local tag of
    /// the repository). Progress goes to `p`.
    pub async fn push(&self, name: &Reference, all_tags: bool, auth: Option<AuthConfig>, p: &Progress) -> Result<()> {
        let images = self.images.clone();
        let repo = name.familiar_name();
        let wanted: Vec<(Reference, Digest)> = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<(Reference, Digest)>> {
                if !all_tags {
                    let id = images.resolve(&name.familiar()).map_err(|_| {
                        DistError::NotFound(format!(
                            "An image does not exist locally with the tag: {}",
                            name.familiar()
                        ))
                    })?;
                    return Ok(vec![(name.clone(), id)]);
                }
                let mut out = Vec::new();
                for v in images.list(&ListFilter {
                    all: true,
                    ..Default::default()
                })? {
                    for t in &v.repo_tags {
                        if let Ok(r) = Reference::parse_normalized(t) {
                            if r.name() == name.name() {
                                out.push((r, v.id));
                            }
                        }
                    }
                }
                out.sort_by_key(|(r, _)| r.tag().unwrap_or("").to_string());
                Ok(out)
            })
            .await
            .map_err(blocking_err)??
        };
        if wanted.is_empty() {
            return Err(DistError::NotFound(format!(
                "An image does not exist locally with the tag: {repo}"
            )));
        }
        // Ask for pull access to the other repositories on this registry that have our layers,
        // so that they can be mounted instead of uploaded.
        let mut scopes = vec![format!("repository:{}:pull,push", name.path())];
        let mut sources: Vec<String> = Vec::new();
        for (_, id) in &wanted {
            if let Ok((cfg, _)) = self.images.rootfs_of(id) {
                for diff in &cfg.rootfs.diff_ids {
                    for m in self.v2meta(diff) {
                        if let Ok(src) = Reference::parse_normalized(&m.source) {
                            if src.domain() == name.domain()
                                && src.path() != name.path()
                                && !sources.contains(&m.source)
                            {
                                sources.push(m.source.clone());
                                scopes.push(format!("repository:{}:pull", src.path()));
                            }
                        }
                    }
                }
            }
        }
        scopes.truncate(16);
        p.status(format!("The push refers to repository [{}]", name.name()));
        let eps = endpoints(&self.cfg, name.domain(), true);
        let session = Session::open(&self.clients, &self.cfg, &eps, name.path(), scopes, auth).await?;
        for (r, id) in wanted {
            self.push_one(&session, &r, id, p).await?;
        }
        Ok(())
    }

    pub(crate) async fn push_one(&self, s: &Session, r: &Reference, id: Digest, p: &Progress) -> Result<()> {
        let images = self.images.clone();
        let (config, layers) = tokio::task::spawn_blocking(move || -> Result<_> {
            let config = images.config_bytes(&id)?;
            let (_, layers) = images.rootfs_of(&id)?;
            Ok((config, layers))
        })
        .await
        .map_err(blocking_err)??;
        for l in &layers {
            p.item(&l.diff_id.hex()[..12], "Preparing");
        }
        let futs = layers.iter().map(|l| self.push_layer(s, r, l.diff_id, p));
        let descs: Vec<Descriptor> = futures_util::future::try_join_all(futs).await?;
        let cfg_digest = Digest::of(&config);
        if !s.has_blob(&cfg_digest).await? {
            s.upload_bytes(&cfg_digest, &config).await?;
        }
        let m = ImageManifest {
            schema_version: 2,
            media_type: manifest::DOCKER_MANIFEST.into(),
            config: Descriptor {
                media_type: manifest::DOCKER_CONFIG.into(),
                digest: cfg_digest.to_string(),
                size: config.len() as i64,
                urls: vec![],
                platform: None,
            },
            layers: descs,
        };
        // Docker writes its manifests with three-space indentation.
        let mut body = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
        let mut ser = serde_json::Serializer::with_formatter(&mut body, fmt);
        m.serialize(&mut ser).map_err(|e| DistError::Internal(e.to_string()))?;
        let tag = r.tag().unwrap_or("latest").to_string();
        s.put_manifest(&tag, manifest::DOCKER_MANIFEST, &body).await?;
        let digest = Digest::of(&body);
        p.status(format!("{tag}: digest: {digest} size: {}", body.len()));
        p.aux(json!({"Tag": tag, "Digest": digest.to_string(), "Size": body.len()}));
        let images = self.images.clone();
        let named = r.with_digest(digest);
        tokio::task::spawn_blocking(move || images.add_name(&named, id))
            .await
            .map_err(blocking_err)??;
        Ok(())
    }

    pub(crate) async fn push_layer(
        &self,
        s: &Session,
        r: &Reference,
        diff: Digest,
        p: &Progress,
    ) -> Result<Descriptor> {
        let short = diff.hex()[..12].to_string();
        let _permit = self
            .uploads
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| DistError::Internal(e.to_string()))?;
        let registry = r.domain().to_string();
        let desc = |d: &str, size: u64, mt: &str| Descriptor {
            media_type: if mt.is_empty() {
                manifest::DOCKER_LAYER.into()
            } else {
                mt.to_string()
            },
            digest: d.to_string(),
            size: size as i64,
            urls: vec![],
            platform: None,
        };
        // A foreign layer is never uploaded: the manifest names it with its URLs, as Docker's.
        if let Some(m) = self.v2meta(&diff).into_iter().find(|m| !m.urls.is_empty()) {
            p.item(&short, "Skipped foreign layer");
            return Ok(Descriptor {
                media_type: manifest::DOCKER_FOREIGN_LAYER.into(),
                digest: m.digest,
                size: m.size as i64,
                urls: m.urls,
                platform: None,
            });
        }
        // What this registry is known to have.
        for m in self.v2meta(&diff) {
            let Ok(src) = Reference::parse_normalized(&m.source) else {
                continue;
            };
            let Ok(d) = m.digest.parse::<Digest>() else { continue };
            // A schema2 manifest names gzip layers only: other compressions are uploaded anew.
            let gzip = m.media_type.is_empty() || m.media_type.contains("gzip");
            if src.domain() != registry || !gzip {
                continue;
            }
            if src.path() == r.path() {
                if s.has_blob(&d).await? {
                    let size = self.remote_size(s, &d).await?;
                    p.item(&short, "Layer already exists");
                    return Ok(desc(&m.digest, size, manifest::DOCKER_LAYER));
                }
            } else if s.mount(&d, src.path()).await? {
                let size = self.remote_size(s, &d).await?;
                p.item(&short, &format!("Mounted from {}", src.path()));
                self.add_v2meta(
                    &diff,
                    V2Meta {
                        digest: m.digest.clone(),
                        source: r.name(),
                        media_type: m.media_type.clone(),
                        size,
                        urls: Vec::new(),
                    },
                );
                return Ok(desc(&m.digest, size, manifest::DOCKER_LAYER));
            }
        }
        // A gzip blob of the layer kept from a pull or an earlier push is sent as it is.
        for m in self.v2meta(&diff) {
            let Ok(d) = m.digest.parse::<Digest>() else { continue };
            let kept = self.compressed_path(&d);
            let gzip = m.media_type.is_empty() || m.media_type.contains("gzip");
            let size = match tokio::fs::metadata(&kept).await {
                Ok(md) if gzip && (m.size == 0 || md.len() == m.size) => md.len(),
                _ => continue,
            };
            if s.has_blob(&d).await? {
                p.item(&short, "Layer already exists");
            } else {
                let report = |n: u64| p.bar(&short, "Pushing", n, size);
                s.upload(&d, size, &kept, &report).await?;
                p.item(&short, "Pushed");
            }
            self.add_v2meta(
                &diff,
                V2Meta {
                    digest: m.digest.clone(),
                    source: r.name(),
                    media_type: manifest::DOCKER_LAYER.into(),
                    size,
                    urls: Vec::new(),
                },
            );
            return Ok(desc(&m.digest, size, manifest::DOCKER_LAYER));
        }
        // Compress the layer (gzip, deterministic for the same tar) and upload it.
        let images = self.images.clone();
        let tmp = self
            .root
            .join("upload")
            .join(format!("{}-{}", diff.hex(), wharf_store::random_name()));
        let tmp2 = tmp.clone();
        let (digest, size) = tokio::task::spawn_blocking(move || -> Result<(Digest, u64)> {
            let mut src = images.layer_tar(&diff)?;
            let out = std::fs::File::create(&tmp2)?;
            compress_layer(&mut src, out)
        })
        .await
        .map_err(blocking_err)??;
        let result = async {
            if s.has_blob(&digest).await? {
                p.item(&short, "Layer already exists");
            } else {
                let report = |n: u64| p.bar(&short, "Pushing", n, size);
                s.upload(&digest, size, &tmp, &report).await?;
                p.item(&short, "Pushed");
            }
            Ok::<_, DistError>(())
        }
        .await;
        if result.is_ok() {
            self.keep_compressed(&tmp, &digest);
        } else {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result?;
        self.add_v2meta(
            &diff,
            V2Meta {
                digest: digest.to_string(),
                source: r.name(),
                media_type: manifest::DOCKER_LAYER.into(),
                size,
                urls: Vec::new(),
            },
        );
        Ok(desc(&digest.to_string(), size, manifest::DOCKER_LAYER))
    }

    pub(crate) async fn remote_size(&self, s: &Session, d: &Digest) -> Result<u64> {
        let url = format!("{}/v2/{}/blobs/{d}", s.endpoint.base, s.repo);
        let r = s.send(|c| c.head(&url)).await?;
        r.headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| DistError::Unavailable(format!("the registry did not say how large {d} is")))
    }
}

/// Hashes what goes through to the file (shared, since the parallel compressor keeps its
/// writer to the end).
struct Tee {
    w: io::BufWriter<std::fs::File>,
    h: std::sync::Arc<std::sync::Mutex<Sha256Writer>>,
}

impl Write for Tee {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.w.write(b)?;
        self.h.lock().expect("hash").update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Compresses a layer's tar into `out` as one gzip member on every core, pigz-style: 1 MiB
/// blocks deflated independently and joined in order (gzp), so the same tar always gives the
/// same bytes, whatever the number of cores. Returns the gzip's digest and size.
pub(crate) fn compress_layer(src: &mut dyn io::Read, out: std::fs::File) -> Result<(Digest, u64)> {
    use gzp::deflate::Gzip;
    use gzp::par::compress::ParCompressBuilder;
    use gzp::ZWriter;
    let h = std::sync::Arc::new(std::sync::Mutex::new(Sha256Writer::new()));
    let tee = Tee {
        w: io::BufWriter::with_capacity(1 << 20, out),
        h: h.clone(),
    };
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let gz_err = |e: gzp::GzpError| DistError::Internal(format!("compressing a layer: {e}"));
    let mut gz = ParCompressBuilder::<Gzip>::new()
        .buffer_size(1 << 20)
        .map_err(gz_err)?
        .num_threads(ncpu)
        .map_err(gz_err)?
        .compression_level(flate2::Compression::default())
        .from_writer(tee);
    io::copy(src, &mut gz)?;
    gz.finish().map_err(gz_err)?;
    let h = std::mem::take(&mut *h.lock().expect("hash"));
    let n = h.len();
    Ok((h.finish(), n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn parallel_gzip_round_trips_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        // 5 MiB of text and noise: several blocks, some compressible.
        let mut data = Vec::new();
        let mut x = 7u64;
        for i in 0..(5 << 20) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.push(if i % 3 == 0 { x as u8 } else { b'a' + (i % 26) as u8 });
        }
        let mut digests = Vec::new();
        for k in 0..2 {
            let p = dir.path().join(format!("out{k}.gz"));
            let (d, n) = compress_layer(&mut &data[..], std::fs::File::create(&p).unwrap()).unwrap();
            let gz = std::fs::read(&p).unwrap();
            assert_eq!(n, gz.len() as u64, "the size counted is the file's");
            assert_eq!(d, Digest::of(&gz), "the digest is the file's");
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "decompresses to the input");
            let mut single = Vec::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut single).unwrap();
            assert!(single == data, "one gzip member, as a plain gzip reader expects");
            digests.push(d);
        }
        assert_eq!(digests[0], digests[1], "the same tar gives the same blob");
    }
}
