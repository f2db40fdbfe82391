//! `download`: one file over HTTP(S) for a build's `ADD <url>`, with the engine's client (its
//! proxies, and the CA certificates `certs.d` gives the host), streamed to a file, never held
//! in memory. What the file must be (a checksum, a mode) is the builder's to check.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use super::*;
use crate::registry::{Endpoint, RegistryConfig};

impl Distribution {
    /// Fetches `url` into the file `to`; returns the server's `Last-Modified`, if it sent one.
    pub async fn download(&self, url: &str, to: &Path) -> Result<Option<SystemTime>, DistError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(DistError::Invalid(format!(
                "{url}: only http and https URLs are fetched"
            )));
        }
        let base = url.split('/').take(3).collect::<Vec<_>>().join("/");
        let ep = Endpoint {
            registry: crate::registry::host_of(&base),
            base,
            skip_verify: false,
            mirror: false,
        };
        let cfg: &RegistryConfig = &self.cfg;
        let client = self.clients.get(cfg, &ep)?;
        let fail = |e: &dyn std::fmt::Display| DistError::Unavailable(format!("failed to GET {url}: {e}"));
        let mut resp = client.get(url).send().await.map_err(|e| fail(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let msg = format!(
                "failed to GET {url} with status {}: {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
            return Err(if status.as_u16() == 404 {
                DistError::NotFound(msg)
            } else {
                DistError::Unavailable(msg)
            });
        }
        let modified = resp
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(http_date);
        let io = |e: std::io::Error| DistError::Unavailable(format!("saving {url}: {e}"));
        let mut f = std::fs::File::create(to).map_err(io)?;
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(&e))? {
            f.write_all(&chunk).map_err(io)?;
        }
        Ok(modified)
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, the only form servers send now).
pub(crate) fn http_date(s: &str) -> Option<SystemTime> {
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
    fn http_dates_as_servers_send_them() {
        let t = http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        let t = http_date("Thu, 29 Feb 2024 23:59:59 GMT").unwrap();
        assert_eq!(
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
            1_709_251_199
        );
        assert!(http_date("yesterday").is_none());
        assert!(http_date("Sun, 06 Nov 1994 08:49:37 PST").is_none());
    }
}
