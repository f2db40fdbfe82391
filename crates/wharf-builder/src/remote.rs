//! What a build fetches over HTTP: `ADD <url>` sources. The file is streamed to the build's
//! scratch space and hashed as it comes (never held in memory), checked against `--checksum`
//! when one is given, and kept with the mode and time Docker gives it (0600, the server's
//! `Last-Modified`). The daemon's own proxy settings apply; nothing is fetched but what the
//! Dockerfile names.

use std::io::Write;
use std::path::Path;

use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::{BuildError, Result};

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

/// Fetches `url` into `dir` as `name`; with `checksum`, the content must have that digest.
pub(crate) async fn download(url: &str, dir: &Path, name: &str, checksum: Option<&str>) -> Result<()> {
    let want = checksum.map(parse_checksum).transpose()?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(BuildError::Step(format!(
            "ADD {url}: only http and https URLs are fetched"
        )));
    }
    let fail = |e: &dyn std::fmt::Display| BuildError::Step(format!("failed to GET {url}: {e}"));
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| fail(&e))?;
    let mut resp = client.get(url).send().await.map_err(|e| fail(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(BuildError::Step(format!(
            "failed to GET {url} with status {}: {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )));
    }
    let modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(httpdate);
    let path = dir.join(name);
    let io = |e: std::io::Error| BuildError::Context(format!("saving {url}: {e}"));
    let mut f = std::fs::File::create(&path).map_err(io)?;
    let (mut s256, mut s384, mut s512) = (Sha256::new(), Sha384::new(), Sha512::new());
    let alg = want.as_ref().map_or("", |(a, _)| a.as_str());
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(&e))? {
        match alg {
            "sha384" => s384.update(&chunk),
            "sha512" => s512.update(&chunk),
            _ => s256.update(&chunk),
        }
        f.write_all(&chunk).map_err(io)?;
    }
    if let Some((alg, hex)) = &want {
        let got = match alg.as_str() {
            "sha384" => format!("sha384:{}", hex::encode(s384.finalize())),
            "sha512" => format!("sha512:{}", hex::encode(s512.finalize())),
            _ => format!("sha256:{}", hex::encode(s256.finalize())),
        };
        if got != format!("{alg}:{hex}") {
            return Err(BuildError::Step(format!("digest mismatch {got}: {alg}:{hex}")));
        }
    }
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    if let Some(t) = modified {
        f.set_modified(t).map_err(io)?;
    }
    Ok(())
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, the only form servers send now).
fn httpdate(s: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, hms, "GMT"] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| x == mon)? as i64 + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [hh, mm, ss] = t.as_slice() else { return None };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_checksums_and_dates_as_docker_reads_them() {
        assert_eq!(url_file_name("http://h:1/a/b.tar.gz?x=1").as_deref(), Some("b.tar.gz"));
        assert_eq!(url_file_name("https://h/dir/"), None);
        assert_eq!(url_file_name("https://h"), None);
        assert!(parse_checksum(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(parse_checksum("sha256:abc").is_err());
        assert!(parse_checksum(&format!("md5:{}", "a".repeat(32))).is_err());
        assert!(parse_checksum(&format!("sha256:{}", "A".repeat(64))).is_err());
        let t = httpdate("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        assert!(httpdate("yesterday").is_none());
    }
}
