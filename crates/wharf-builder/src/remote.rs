//! `ADD <url>` sources: fetched through the daemon's client ([`crate::Fetcher`]) into the
//! build's scratch space, checked against `--checksum` when one is given, and kept with the
//! mode and time Docker gives them (0600, the server's `Last-Modified`).

use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::{BuildError, Builder, Result};

/// The name a URL's file takes: the last segment of its path (`None`: the path ends in `/`).
pub(crate) fn url_file_name(url: &str) -> Option<String> {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = after_scheme.split(['?', '#']).next().unwrap_or("");
    let path = path.split_once('/').map_or("", |(_, p)| p);
    let last = path.rsplit('/').next().unwrap_or("");
    (!last.is_empty() && last != "." && last != "..").then(|| last.to_string())
}

/// `--checksum=sha256:<hex>` (or sha384/sha512): the algorithm and the hex, checked as a digest.
fn parse_checksum(c: &str) -> Result<(String, String)> {
    let bad = || BuildError::Step(format!("invalid checksum digest format: {c:?}"));
    let (alg, hex) = c.split_once(':').ok_or_else(bad)?;
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(BuildError::Step(format!(
                "unsupported digest algorithm {alg:?} in --checksum"
            )))
        }
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad());
    }
    Ok((alg.to_string(), hex.to_string()))
}

/// `alg:<hex>` of the file at `path`.
fn digest_file(path: &Path, alg: &str) -> std::io::Result<String> {
    fn run<H: sha2::Digest>(mut h: H, f: &mut std::fs::File) -> std::io::Result<String> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(hex::encode(h.finalize()));
            }
            h.update(&buf[..n]);
        }
    }
    let mut f = std::fs::File::open(path)?;
    let hex = match alg {
        "sha384" => run(Sha384::new(), &mut f)?,
        "sha512" => run(Sha512::new(), &mut f)?,
        _ => run(Sha256::new(), &mut f)?,
    };
    Ok(format!("{alg}:{hex}"))
}

impl Builder {
    /// A remote context (`remote=`) into `dir` (made, empty): a git repository (`url#ref:dir`),
    /// a tar (plain or compressed) at a URL, or a Dockerfile at a URL (then the context holds
    /// it alone, as `dockerfile`).
    pub async fn remote_context(
        &self,
        remote: &str,
        dir: &Path,
        dockerfile: &str,
    ) -> Result<crate::copy::ContextDigests> {
        let Some(f) = &self.fetcher else {
            return Err(BuildError::Context(format!("{remote}: this builder fetches nothing")));
        };
        let io = |e: std::io::Error| BuildError::Context(format!("the remote context {remote}: {e}"));
        if f.is_git(remote) {
            let tmp = dir.with_extension("git");
            let r = f.git(remote, &tmp, false).await.map_err(BuildError::Context);
            let r = r.and_then(|_| {
                std::fs::remove_dir(dir).map_err(io)?;
                std::fs::rename(&tmp, dir).map_err(io)
            });
            let _ = std::fs::remove_dir_all(&tmp);
            return r.map(|_| Default::default());
        }
        if !(remote.starts_with("http://") || remote.starts_with("https://")) {
            return Err(BuildError::Context(format!(
                "unable to prepare context: {remote} is neither a git repository nor an http(s) URL"
            )));
        }
        let file = dir.with_extension("remote");
        let r = async {
            f.download(remote, &file).await.map_err(BuildError::Context)?;
            if crate::copy::is_archive(&file) {
                let (file, dir, me) = (file.clone(), dir.to_path_buf(), self.clone());
                tokio::task::spawn_blocking(move || {
                    let r = std::fs::File::open(&file).map_err(|e| BuildError::Context(e.to_string()))?;
                    me.blobs.unpack_context(std::io::BufReader::new(r), &dir)
                })
                .await
                .map_err(|e| BuildError::Engine(e.to_string()))?
            } else {
                let name = if dockerfile.is_empty() {
                    "Dockerfile"
                } else {
                    dockerfile
                };
                let to = dir.join(crate::context::clean(name));
                if let Some(p) = to.parent() {
                    std::fs::create_dir_all(p).map_err(io)?;
                }
                std::fs::copy(&file, to).map(|_| Default::default()).map_err(io)
            }
        }
        .await;
        let _ = std::fs::remove_file(&file);
        r
    }

    /// Fetches `url` into `dir` as `name`; with `checksum`, the content must have that digest.
    pub(crate) async fn download(&self, url: &str, dir: &Path, name: &str, checksum: Option<&str>) -> Result<()> {
        let want = checksum.map(parse_checksum).transpose()?;
        let Some(f) = &self.fetcher else {
            return Err(BuildError::Step(format!("ADD {url}: this builder fetches nothing")));
        };
        let path = dir.join(name);
        let modified = f.download(url, &path).await.map_err(BuildError::Step)?;
        let io = |e: std::io::Error| BuildError::Context(format!("saving {url}: {e}"));
        if let Some((alg, hex)) = &want {
            let p = path.clone();
            let alg2 = alg.clone();
            let got = tokio::task::spawn_blocking(move || digest_file(&p, &alg2))
                .await
                .map_err(|e| BuildError::Engine(e.to_string()))?
                .map_err(io)?;
            if got != format!("{alg}:{hex}") {
                return Err(BuildError::Step(format!("digest mismatch {got}: {alg}:{hex}")));
            }
        }
        use std::os::unix::fs::PermissionsExt;
        let file = std::fs::File::open(&path).map_err(io)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        if let Some(t) = modified {
            file.set_modified(t).map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_checksums_as_docker_reads_them() {
        assert_eq!(url_file_name("http://h:1/a/b.tar.gz?x=1").as_deref(), Some("b.tar.gz"));
        assert_eq!(url_file_name("https://h/dir/"), None);
        assert_eq!(url_file_name("https://h"), None);
        assert!(parse_checksum(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(parse_checksum("sha256:abc").is_err());
        assert!(parse_checksum(&format!("md5:{}", "a".repeat(32))).is_err());
        assert!(parse_checksum(&format!("sha256:{}", "A".repeat(64))).is_err());
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"fetched\n").unwrap();
        let got = digest_file(&d.path().join("f"), "sha512").unwrap();
        assert_eq!(got, format!("sha512:{}", hex::encode(Sha512::digest(b"fetched\n"))));
    }
}
