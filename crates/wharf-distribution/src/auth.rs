//! Registry credentials and the `WWW-Authenticate` challenge flow: the `X-Registry-Auth`
//! header the docker CLI sends, Basic and Bearer challenges, and the rule for where
//! credentials may go.
//!
//! **Invariant:** credentials are sent only to the registry they were given for, and to a
//! token service on that same host (or, for Docker Hub, `auth.docker.io`). A realm on any
//! other host gets an anonymous token request.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::DistError;

/// Credentials for one registry, as the Engine API carries them.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct AuthConfig {
    /// User name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Password or access token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// `base64(user:password)`, as config files store it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    /// The registry the credentials are for.
    #[serde(default, rename = "serveraddress", skip_serializing_if = "String::is_empty")]
    pub server_address: String,
    /// An OAuth refresh token from an earlier login.
    #[serde(default, rename = "identitytoken", skip_serializing_if = "String::is_empty")]
    pub identity_token: String,
    /// A bearer token to send as is.
    #[serde(default, rename = "registrytoken", skip_serializing_if = "String::is_empty")]
    pub registry_token: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// Decode an `X-Registry-Auth` header (URL-safe or standard base64 of JSON; `{}` or empty
    /// for none).
    pub fn from_header(v: &str) -> Result<Option<AuthConfig>, DistError> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        let engines = [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ];
        let raw = engines
            .iter()
            .find_map(|e| e.decode(v).ok())
            .ok_or_else(|| DistError::Invalid("invalid X-Registry-Auth header: not base64".into()))?;
        let mut a: AuthConfig = serde_json::from_slice(&raw)
            .map_err(|e| DistError::Invalid(format!("invalid X-Registry-Auth header: {e}")))?;
        a.fill_from_auth();
        Ok(if a.is_empty() { None } else { Some(a) })
    }

    /// Split `auth` into user name and password when those are empty.
    pub fn fill_from_auth(&mut self) {
        if self.username.is_empty() && !self.auth.is_empty() {
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(self.auth.trim()) {
                if let Ok(s) = String::from_utf8(raw) {
                    if let Some((u, p)) = s.split_once(':') {
                        self.username = u.to_string();
                        self.password = p.to_string();
                    }
                }
            }
        }
    }

    /// True when there is nothing to authenticate with.
    pub fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }

    /// True when a user name and password are present.
    pub fn has_basic(&self) -> bool {
        !self.username.is_empty() || !self.password.is_empty()
    }

    /// The `Authorization: Basic` value.
    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer`, lowercase.
    pub scheme: String,
    /// The parameters (`realm`, `service`, `scope`, `error`).
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// A parameter's value.
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse every challenge of a `WWW-Authenticate` header
/// (`Bearer realm="https://a/token",service="reg",scope="repository:x:pull"`).
pub fn parse_challenges(h: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = h.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        // A token: either a scheme (followed by space) or a parameter name (followed by '=').
        let start = i;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'=' | b',') {
            i += 1;
        }
        let token = &h[start..i];
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let mut value = String::new();
            if i < b.len() && b[i] == b'"' {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch = h[i..].chars().next().unwrap_or(' ');
                    value.push(ch);
                    i += ch.len_utf8();
                }
                i += 1;
            } else {
                let vs = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                value = h[vs..i].trim().to_string();
            }
            if let Some(c) = out.last_mut() {
                c.params.push((token.to_ascii_lowercase(), value));
            }
        } else if !token.is_empty() {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: Vec::new(),
            });
        } else {
            i += 1;
        }
    }
    out
}

/// The host part of `host[:port]`, lowercase, without brackets.
fn host_only(hostport: &str) -> String {
    let h = hostport.trim().to_ascii_lowercase();
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_string();
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|c| c.is_ascii_digit()) => host.to_string(),
        _ => h,
    }
}

/// May credentials for `registry` (`host[:port]`) go to the token service at `realm_host`?
/// Yes for the same host on any port, and for Docker Hub's own token service.
pub fn may_send_credentials(registry: &str, realm_host: &str) -> bool {
    let r = host_only(registry);
    let t = host_only(realm_host);
    if r == t {
        return true;
    }
    matches!(r.as_str(), "docker.io" | "registry-1.docker.io" | "index.docker.io") && t == "auth.docker.io"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull,push"));
        let c = parse_challenges(r#"Basic realm="basic-realm""#);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("basic-realm"));
        let c = parse_challenges(r#"Basic realm="a", Bearer realm="b",service=s"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].param("service"), Some("s"));
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn credentials_stay_on_their_host() {
        assert!(may_send_credentials("127.0.0.1:5000", "127.0.0.1:5001"));
        assert!(!may_send_credentials("127.0.0.1:5000", "127.0.0.2:5000"));
        assert!(may_send_credentials("docker.io", "auth.docker.io"));
        assert!(!may_send_credentials("registry.example.com", "auth.docker.io"));
        assert!(!may_send_credentials("reg.example.com", "evil.example"));
    }

    #[test]
    fn registry_auth_header_decodes() {
        use base64::Engine;
        let enc = base64::engine::general_purpose::URL_SAFE
            .encode(br#"{"username":"u","password":"p?>","serveraddress":"localhost:5000"}"#);
        let a = AuthConfig::from_header(&enc).unwrap().unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p?>"));
        assert!(!format!("{a:?}").contains("p?>"), "Debug must not show the password");
        assert_eq!(AuthConfig::from_header("e30=").unwrap(), None);
        let via_auth = base64::engine::general_purpose::STANDARD.encode(r#"{"auth":"dTpw"}"#);
        let a = AuthConfig::from_header(&via_auth).unwrap().unwrap();
        assert_eq!(a.username, "u");
        assert!(AuthConfig::from_header("%%%").is_err());
    }
}
