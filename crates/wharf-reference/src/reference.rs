//! Image references as Docker's `distribution/reference` package parses and normalises them:
//! `[domain[:port]/]path[:tag][@digest]`, where an unqualified name lives on `docker.io` and an
//! official image's path gains `library/`.

use std::fmt;

use crate::digest::{Digest, DigestError};

/// The registry implied when a name has none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The path prefix of official images on the default registry.
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag implied when a name has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

const NAME_TOTAL_MAX: usize = 255;

/// Why a string is not an image reference. Messages follow Docker's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Empty input.
    #[error("repository name must have at least one component")]
    Empty,
    /// Uppercase letters in the repository path.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    /// A 64-hex string, which Docker reserves for IDs.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    LooksLikeId(String),
    /// Anything else the grammar refuses.
    #[error("invalid reference format")]
    Format,
    /// The name part is longer than 255 characters.
    #[error("repository name must not be more than 255 characters")]
    TooLong,
    /// The digest part is malformed.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A normalised image reference: domain and path are always present, tag and digest optional.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn path_component_ok(c: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        // a separator run
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn domain_ok(d: &str) -> bool {
    if d.starts_with('[') {
        // IPv6 literal, optionally with a port.
        let Some(end) = d.find(']') else { return false };
        let inner = &d[1..end];
        let rest = &d[end + 1..];
        return inner.parse::<std::net::Ipv6Addr>().is_ok()
            && (rest.is_empty() || port_ok(rest.strip_prefix(':').unwrap_or("x")));
    }
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if !port_ok(p) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

fn port_ok(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit())
}

fn tag_ok(t: &str) -> bool {
    // [\w][\w.-]{0,127}
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Reference {
    /// Parse and normalise a user-typed reference (`busybox`, `localhost:5000/a/b:t`,
    /// `x@sha256:...`).
    pub fn parse_normalized(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() == 64 && crate::is_hex_prefix(s) {
            return Err(ReferenceError::LooksLikeId(s.to_string()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !tag_ok(t) {
                return Err(ReferenceError::Format);
            }
        }
        if name.is_empty() {
            return Err(ReferenceError::Format);
        }
        let (domain, path) = split_domain(name);
        if !domain_ok(&domain) {
            return Err(ReferenceError::Format);
        }
        if path.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(path));
        }
        if !path.split('/').all(path_component_ok) {
            return Err(ReferenceError::Format);
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_MAX {
            return Err(ReferenceError::TooLong);
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// Parse, and give a bare name the `latest` tag (what `pull`, `tag` and `import` do).
    pub fn parse_tagged_default(s: &str) -> Result<Self, ReferenceError> {
        let mut r = Self::parse_normalized(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// The registry host (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }
    /// The repository path on the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    /// The digest, if any.
    pub fn digest(&self) -> Option<Digest> {
        self.digest
    }

    /// The fully qualified repository name: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker shows it: `busybox`, `foo/bar`, `localhost:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_REPO_PREFIX)
                .filter(|p| !p.contains('/'))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.name()
        }
    }

    /// `busybox:latest`, `foo/bar@sha256:...`: the form Docker prints in `RepoTags`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !tag_ok(tag) {
            return Err(ReferenceError::Format);
        }
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same repository with a digest and no tag (`repo@sha256:...`).
    pub fn with_digest(&self, d: Digest) -> Self {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(d),
        }
    }
}

/// Split off the registry host. As in Docker, the first component is a domain only when it
/// contains `.` or `:`, or is `localhost`, and it is not all lowercase otherwise ambiguous.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        path = format!("{OFFICIAL_REPO_PREFIX}{path}");
    }
    (domain, path)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Option<&str>) {
        let got = Reference::parse_normalized(input).map(|r| r.to_string()).ok();
        assert_eq!(got.as_deref(), expect, "input {input:?}");
    }

    #[test]
    fn normalisation() {
        check("busybox", Some("docker.io/library/busybox"));
        check("busybox:1.36", Some("docker.io/library/busybox:1.36"));
        check("foo/bar", Some("docker.io/foo/bar"));
        check("index.docker.io/foo", Some("docker.io/library/foo"));
        check("localhost/foo", Some("localhost/foo"));
        check("localhost:5000/a/b:t", Some("localhost:5000/a/b:t"));
        check("127.0.0.1:5000/x", Some("127.0.0.1:5000/x"));
        check("[::1]:5000/x:y", Some("[::1]:5000/x:y"));
        check("a.b/c__d/e-f.g", Some("a.b/c__d/e-f.g"));
        check(
            &format!("x@sha256:{}", "b".repeat(64)),
            Some(&format!("docker.io/library/x@sha256:{}", "b".repeat(64))),
        );
        check("Busybox", None);
        check("", None);
        check(":tag", None);
        check("a:", None);
        check("a/../b", None);
        check("../x", None);
        check("a//b", None);
        check("a:b:c", None);
        check("-a", None);
        check("a-", None);
        check("x@sha256:../../x", None);
        check(&"a".repeat(64), None);
        check(&"a".repeat(300), None);
        check(&format!("a:{}", "t".repeat(129)), None);
    }

    #[test]
    fn familiar() {
        let f = |s: &str| Reference::parse_tagged_default(s).unwrap().familiar();
        assert_eq!(f("busybox"), "busybox:latest");
        assert_eq!(f("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(f("docker.io/foo/bar"), "foo/bar:latest");
        assert_eq!(f("localhost:5000/foo"), "localhost:5000/foo:latest");
        assert_eq!(f("docker.io/library/a/b"), "library/a/b:latest");
    }
}
