//! The server's configuration: a TOML file (every key optional) with command-line flags over
//! it. Defaults are distribution's: deletes off, a 4 MiB manifest limit, 1,000 catalog entries
//! a page, sessions purged after a week.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    /// The file is not valid TOML of the expected shape.
    #[error("{0}: {1}")]
    Parse(String, String),
    /// A setting that cannot be used.
    #[error("{0}")]
    Invalid(String),
}

/// Who may do what where.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// Account names: `*` is any authenticated account, `anonymous` is a client without one.
    pub accounts: Vec<String>,
    /// Repository patterns: a name, `prefix/*` (the prefix and all below it) or `*`.
    pub repositories: Vec<String>,
    /// `pull`, `push`, `delete`, or `*`.
    pub actions: Vec<String>,
}

/// A size limit on repositories matching a pattern.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Repository patterns, as in [`AccessRule`].
    pub repositories: Vec<String>,
    /// The most bytes of blobs and manifests each such repository may link.
    pub bytes: u64,
}

/// Authentication and authorization.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// An htpasswd file of bcrypt hashes (`htpasswd -B`).
    pub htpasswd: Option<PathBuf>,
    /// The realm of Basic challenges.
    pub realm: Option<String>,
    /// Bearer tokens from the built-in token endpoint (`/token`) instead of Basic auth.
    #[serde(default)]
    pub token: bool,
    /// The token realm's URL (default: `/token` on the host the client asked).
    pub token_realm: Option<String>,
    /// The service name in challenges and tokens.
    pub service: Option<String>,
    /// How long a token lives, in seconds (default 300).
    pub token_ttl: Option<u64>,
    /// Who may do what; without rules, any authenticated account may do anything.
    #[serde(default)]
    pub access: Vec<AccessRule>,
}

/// TLS.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM).
    pub certificate: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
}

/// A limit on each client address's requests: a token bucket.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests a second, sustained.
    pub requests_per_second: f64,
    /// Requests at once above the rate.
    pub burst: u32,
}

/// Pull-through cache mode.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The registry mirrored (`https://registry-1.docker.io`, `http://127.0.0.1:5000`).
    pub remoteurl: String,
    /// Its account, if it needs one.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// Seconds a cached tag is served before the remote is asked again (default a week).
    #[serde(default = "default_proxy_ttl")]
    pub ttl: u64,
    /// Skip verifying the remote's TLS certificate.
    #[serde(default)]
    pub insecure: bool,
}

fn default_proxy_ttl() -> u64 {
    7 * 24 * 3600
}

/// Garbage collection while serving.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GcConfig {
    /// Seconds between collections; 0 runs none while serving.
    #[serde(default)]
    pub interval: u64,
    /// A blob younger than this many seconds is never collected (default 3600): it may belong
    /// to a push whose manifest has not arrived yet.
    #[serde(default = "default_min_age")]
    pub min_age: u64,
}

fn default_min_age() -> u64 {
    3600
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval: 0,
            min_age: default_min_age(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port` to listen on.
    #[serde(default = "default_addr")]
    pub addr: String,
    /// The storage root.
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// Refuse every write.
    #[serde(default)]
    pub read_only: bool,
    /// Allow deleting manifests, tags and blobs.
    #[serde(default)]
    pub delete: bool,
    /// The largest blob an upload may reach (0: no limit).
    #[serde(default)]
    pub max_upload_bytes: u64,
    /// The largest manifest accepted.
    #[serde(default = "default_max_manifest")]
    pub max_manifest_bytes: usize,
    /// Sessions older than this many seconds are purged.
    #[serde(default = "default_upload_age")]
    pub upload_max_age: u64,
    /// Seconds between purges of old sessions while serving (0: none; default a day, as
    /// distribution's upload purging).
    #[serde(default = "default_purge_interval")]
    pub upload_purge_interval: u64,
    /// Requests per client address, answered TOOMANYREQUESTS beyond it.
    pub rate_limit: Option<RateLimit>,
    /// The most entries of a catalog or tags page.
    #[serde(default = "default_catalog")]
    pub max_list_entries: usize,
    /// JSON lines of pushes, pulls and deletes.
    pub audit_log: Option<PathBuf>,
    /// Where to write the address actually bound (for `addr` with port 0), once listening.
    pub addr_file: Option<PathBuf>,
    /// Seconds a graceful shutdown waits for requests in flight.
    #[serde(default = "default_drain")]
    pub drain_timeout: u64,
    /// TLS, if served.
    pub tls: Option<TlsConfig>,
    /// Auth, if any.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Per-repository quotas.
    #[serde(default)]
    pub quotas: Vec<Quota>,
    /// Garbage collection.
    #[serde(default)]
    pub gc: GcConfig,
    /// Pull-through cache mode, if set.
    pub proxy: Option<ProxyConfig>,
}

fn default_addr() -> String {
    "0.0.0.0:5000".into()
}
fn default_root() -> PathBuf {
    "/var/lib/wharf-registry".into()
}
fn default_max_manifest() -> usize {
    crate::manifest::MAX_MANIFEST
}
fn default_upload_age() -> u64 {
    7 * 24 * 3600
}
fn default_purge_interval() -> u64 {
    24 * 3600
}
fn default_catalog() -> usize {
    1000
}
fn default_drain() -> u64 {
    30
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|_| unreachable!("every key has a default"))
    }
}

impl Config {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
        let c: Config =
            toml::from_str(&text).map_err(|e| ConfigError::Parse(path.display().to_string(), e.to_string()))?;
        c.check()?;
        Ok(c)
    }

    /// Checks settings that parse but cannot work.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.auth.token && self.auth.htpasswd.is_none() {
            return Err(ConfigError::Invalid(
                "auth.token needs auth.htpasswd (the accounts tokens are issued to)".into(),
            ));
        }
        if let Some(r) = &self.rate_limit {
            if r.requests_per_second <= 0.0 || r.burst == 0 {
                return Err(ConfigError::Invalid(
                    "rate_limit needs a positive rate and burst".into(),
                ));
            }
        }
        if self.max_manifest_bytes == 0 || self.max_list_entries == 0 {
            return Err(ConfigError::Invalid(
                "max_manifest_bytes and max_list_entries must be above 0".into(),
            ));
        }
        for r in &self.auth.access {
            for a in &r.actions {
                if !["pull", "push", "delete", "*"].contains(&a.as_str()) {
                    return Err(ConfigError::Invalid(format!("unknown action {a:?} in auth.access")));
                }
            }
        }
        Ok(())
    }
}

/// Whether `repo` matches a pattern: a name, `prefix/*`, or `*`.
pub fn pattern_matches(pattern: &str, repo: &str) -> bool {
    match pattern.strip_suffix("/*") {
        _ if pattern == "*" => true,
        Some(prefix) => repo == prefix || repo.strip_prefix(prefix).is_some_and(|r| r.starts_with('/')),
        None => pattern == repo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_full_file() {
        let d = Config::default();
        assert_eq!(
            (d.delete, d.max_manifest_bytes, d.max_list_entries),
            (false, 4 << 20, 1000)
        );
        let c: Config = toml::from_str(
            r#"addr = "127.0.0.1:5001"
root = "/tmp/r"
delete = true
[tls]
certificate = "c.pem"
key = "k.pem"
[auth]
htpasswd = "h"
token = true
[[auth.access]]
accounts = ["alice"]
repositories = ["team/*"]
actions = ["pull", "push"]
[[quotas]]
repositories = ["*"]
bytes = 100
[gc]
interval = 60
"#,
        )
        .unwrap();
        c.check().unwrap();
        assert_eq!(c.auth.access[0].accounts, vec!["alice"]);
        assert_eq!((c.gc.interval, c.gc.min_age), (60, 3600));
        assert!(
            toml::from_str::<Config>("bogus = 1").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "a/b"));
        assert!(pattern_matches("team/*", "team/x/y"));
        assert!(pattern_matches("team/*", "team"));
        assert!(!pattern_matches("team/*", "teamx/y"));
        assert!(pattern_matches("a/b", "a/b") && !pattern_matches("a/b", "a/b/c"));
    }
}
