//! Talking to one registry: which endpoints serve a registry name (mirrors for Docker Hub,
//! HTTPS, HTTP only for insecure registries), TLS from `certs.d`, the `/v2/` ping, the
//! challenge flow, and the blob and manifest requests with Docker's error messages.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use wharf_reference::DEFAULT_DOMAIN;

use crate::auth::{may_send_credentials, parse_challenges, AuthConfig, Challenge};
use crate::DistError;

mod blobs;
mod manifests;

/// Registry settings of the daemon (daemon.json's names).
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// `insecure-registries`: `host[:port]` names and CIDR ranges (127.0.0.0/8 always).
    pub insecure: Vec<String>,
    /// `registry-mirrors`: base URLs tried before Docker Hub.
    pub mirrors: Vec<String>,
    /// Directories of `<host[:port]>/{*.crt, *.cert, *.key}` (Docker's `certs.d` layout).
    pub cert_dirs: Vec<PathBuf>,
    /// `max-concurrent-downloads` (Docker's default 3).
    pub max_downloads: usize,
    /// `max-concurrent-uploads` (Docker's default 5).
    pub max_uploads: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            mirrors: Vec::new(),
            cert_dirs: vec!["/etc/docker/certs.d".into(), "/etc/wharf/certs.d".into()],
            max_downloads: 3,
            max_uploads: 5,
        }
    }
}

pub(crate) fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

pub(crate) fn in_cidr(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl RegistryConfig {
    /// Validate the `insecure-registries` entries (a CIDR or a `host[:port]`, no scheme).
    pub fn validate(&self) -> Result<(), DistError> {
        for e in &self.insecure {
            if e.contains("://") {
                return Err(DistError::Invalid(format!(
                    "insecure registry {e} should not contain '://'"
                )));
            }
            if e.contains('/') && parse_cidr(e).is_none() {
                return Err(DistError::Invalid(format!("insecure registry {e} is not a valid CIDR")));
            }
        }
        for m in &self.mirrors {
            if !(m.starts_with("http://") || m.starts_with("https://")) {
                return Err(DistError::Invalid(format!(
                    "invalid mirror: unsupported scheme in {m:?}: use http:// or https://"
                )));
            }
        }
        Ok(())
    }

    /// The CIDRs `/info` reports (`InsecureRegistryCIDRs`).
    pub fn insecure_cidrs(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .insecure
            .iter()
            .filter(|e| parse_cidr(e).is_some())
            .cloned()
            .collect();
        if !v.iter().any(|c| c == "127.0.0.0/8") {
            v.insert(0, "127.0.0.0/8".into());
        }
        v
    }

    /// The `host[:port]` names listed as insecure.
    pub fn insecure_names(&self) -> Vec<String> {
        self.insecure
            .iter()
            .filter(|e| parse_cidr(e).is_none())
            .cloned()
            .collect()
    }

    /// Docker's rule: a registry is insecure when named in the list, or when any address its
    /// host resolves to lies in an insecure CIDR (127.0.0.0/8 always is).
    pub fn is_insecure(&self, hostport: &str) -> bool {
        if hostport == DEFAULT_DOMAIN {
            return false;
        }
        let names = self.insecure_names();
        let host = hostport
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|c| c.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(hostport)
            .trim_start_matches('[')
            .trim_end_matches(']');
        if names.iter().any(|n| n == hostport || n == host) {
            return true;
        }
        let cidrs: Vec<(IpAddr, u8)> = self.insecure_cidrs().iter().filter_map(|c| parse_cidr(c)).collect();
        let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (host, 0)
                .to_socket_addrs()
                .map(|a| a.map(|s| s.ip()).collect())
                .unwrap_or_default(),
        };
        addrs.iter().any(|ip| cidrs.iter().any(|c| in_cidr(*ip, *c)))
    }
}

/// One place a registry is served from.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `https://host:port` (no trailing slash).
    pub base: String,
    /// The registry name as in references (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// TLS errors are ignored (insecure registries).
    pub skip_verify: bool,
    /// A Docker Hub mirror (pulls only).
    pub mirror: bool,
}

/// The endpoints for `registry`, in the order Docker tries them.
pub fn endpoints(cfg: &RegistryConfig, registry: &str, for_push: bool) -> Vec<Endpoint> {
    let mut out = Vec::new();
    if registry == DEFAULT_DOMAIN {
        if !for_push {
            for m in &cfg.mirrors {
                let host = m.split("://").nth(1).unwrap_or("").trim_end_matches('/').to_string();
                out.push(Endpoint {
                    base: m.trim_end_matches('/').to_string(),
                    registry: registry.into(),
                    skip_verify: cfg.is_insecure(&host),
                    mirror: true,
                });
            }
        }
        out.push(Endpoint {
            base: "https://registry-1.docker.io".into(),
            registry: registry.into(),
            skip_verify: false,
            mirror: false,
        });
        return out;
    }
    let insecure = cfg.is_insecure(registry);
    out.push(Endpoint {
        base: format!("https://{registry}"),
        registry: registry.into(),
        skip_verify: insecure,
        mirror: false,
    });
    if insecure {
        out.push(Endpoint {
            base: format!("http://{registry}"),
            registry: registry.into(),
            skip_verify: false,
            mirror: false,
        });
    }
    out
}

/// Builds and caches one HTTP client per (host, verification) pair.
#[derive(Debug, Default)]
pub struct Clients {
    cache: Mutex<HashMap<(String, bool), Client>>,
}

pub(crate) fn host_of(base: &str) -> String {
    base.split("://")
        .nth(1)
        .unwrap_or(base)
        .split('/')
        .next()
        .unwrap_or("")
        .to_string()
}

impl Clients {
    /// The client for `ep`, with the CA certificates and client identity from `certs.d`.
    pub fn get(&self, cfg: &RegistryConfig, ep: &Endpoint) -> Result<Client, DistError> {
        let host = host_of(&ep.base);
        let key = (host.clone(), ep.skip_verify);
        if let Some(c) = self.cache.lock().expect("clients").get(&key) {
            return Ok(c.clone());
        }
        let mut b = Client::builder()
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::limited(10))
            .danger_accept_invalid_certs(ep.skip_verify);
        for dir in &cfg.cert_dirs {
            b = add_certs(b, &dir.join(&host))?;
        }
        let c = b
            .build()
            .map_err(|e| DistError::Unavailable(format!("TLS setup for {host}: {e}")))?;
        self.cache.lock().expect("clients").insert(key, c.clone());
        Ok(c)
    }
}

/// Docker's `certs.d/<host>` layout: `*.crt` are CAs; `name.cert` with `name.key` is a
/// client certificate.
pub(crate) fn add_certs(mut b: reqwest::ClientBuilder, dir: &Path) -> Result<reqwest::ClientBuilder, DistError> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(b);
    };
    let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    for p in names {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        let bad = |e: &dyn std::fmt::Display| DistError::Invalid(format!("{}: {e}", p.display()));
        match ext {
            "crt" => {
                let pem = std::fs::read(&p).map_err(|e| bad(&e))?;
                for c in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(&e))? {
                    b = b.add_root_certificate(c);
                }
            }
            "cert" => {
                let key = p.with_extension("key");
                let mut pem = std::fs::read(&p).map_err(|e| bad(&e))?;
                let k = std::fs::read(&key).map_err(|_| {
                    DistError::Invalid(format!(
                        "missing key {} for client certificate {}",
                        key.display(),
                        p.display()
                    ))
                })?;
                pem.extend_from_slice(b"\n");
                pem.extend_from_slice(&k);
                b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| bad(&e))?);
            }
            _ => {}
        }
    }
    Ok(b)
}

/// An authenticated conversation with one repository on one endpoint.
#[derive(Debug)]
pub struct Session {
    client: Client,
    /// Where requests go.
    pub endpoint: Endpoint,
    /// The repository path (`library/busybox`).
    pub repo: String,
    auth: Option<AuthConfig>,
    scopes: Vec<String>,
    authz: Mutex<Option<String>>,
}

/// The registry's error body, `{"errors":[{"code":..,"message":..}]}`, as one line.
pub(crate) async fn error_text(r: Response) -> (StatusCode, String, String) {
    let status = r.status();
    let body = r.bytes().await.unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    match serde_json::from_slice::<Errs>(&body) {
        Ok(e) if !e.errors.is_empty() => {
            let code = e.errors[0].code.clone();
            let msg = e
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code.to_lowercase().replace('_', " "), e.message))
                .collect::<Vec<_>>()
                .join(", ");
            (status, code, msg)
        }
        _ => {
            let s = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string();
            (status, String::new(), if s.is_empty() { status.to_string() } else { s })
        }
    }
}

pub(crate) fn transport(base: &str, e: reqwest::Error) -> DistError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    DistError::Unavailable(format!("Get \"{base}/v2/\": {msg}"))
}

impl Session {
    /// Open a session for `repo` on the first endpoint of `endpoints` that answers `/v2/`,
    /// authenticated for `scopes` (`repository:library/busybox:pull`).
    pub async fn open(
        clients: &Clients,
        cfg: &RegistryConfig,
        endpoints: &[Endpoint],
        repo: &str,
        scopes: Vec<String>,
        auth: Option<AuthConfig>,
    ) -> Result<Session, DistError> {
        let mut last = DistError::Unavailable("no endpoint".into());
        for ep in endpoints {
            let client = clients.get(cfg, ep)?;
            let ping = client.get(format!("{}/v2/", ep.base)).send().await;
            let resp = match ping {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(endpoint = %ep.base, "ping failed: {e}");
                    last = transport(&ep.base, e);
                    continue;
                }
            };
            let s = Session {
                client,
                endpoint: ep.clone(),
                repo: repo.to_string(),
                auth: auth.clone(),
                scopes: scopes.clone(),
                authz: Mutex::new(None),
            };
            match resp.status() {
                StatusCode::OK => {
                    // Anonymous access; credentials still go along for Basic registries that
                    // allow anonymous pings.
                    return Ok(s);
                }
                StatusCode::UNAUTHORIZED => {
                    let ch = challenges(&resp);
                    s.authenticate(&ch).await?;
                    return Ok(s);
                }
                st if ep.mirror => {
                    last = DistError::Unavailable(format!("mirror {} answered {st}", ep.base));
                }
                st => {
                    let (_, _, msg) = error_text(resp).await;
                    last = DistError::Unavailable(format!("{}/v2/ answered {st}: {msg}", ep.base));
                }
            }
        }
        Err(last)
    }

    pub(crate) fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.endpoint.base, self.repo)
    }

    /// Obtain an `Authorization` value for the challenges of a 401.
    pub(crate) async fn authenticate(&self, ch: &[Challenge]) -> Result<(), DistError> {
        let auth = self.auth.clone().unwrap_or_default();
        if let Some(b) = ch.iter().find(|c| c.scheme == "bearer") {
            if !auth.registry_token.is_empty() {
                *self.authz.lock().expect("authz") = Some(format!("Bearer {}", auth.registry_token));
                return Ok(());
            }
            let realm = b
                .param("realm")
                .ok_or_else(|| DistError::Unauthorized("the registry's Bearer challenge has no realm".into()))?;
            let url = reqwest::Url::parse(realm)
                .map_err(|e| DistError::Unauthorized(format!("invalid token realm {realm:?}: {e}")))?;
            let realm_host = match url.port() {
                Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
                None => url.host_str().unwrap_or("").to_string(),
            };
            let creds_ok = may_send_credentials(&self.endpoint.registry, &realm_host)
                || (self.endpoint.mirror && may_send_credentials(&host_of(&self.endpoint.base), &realm_host));
            let mut scopes = self.scopes.clone();
            if let Some(s) = b.param("scope") {
                if !scopes.iter().any(|x| x == s) {
                    scopes.push(s.to_string());
                }
            }
            let service = b.param("service").unwrap_or("");
            let withheld = !creds_ok && !auth.is_empty();
            if withheld {
                tracing::warn!(
                    registry = %self.endpoint.registry, realm = %realm_host,
                    "token service is on another host: asking it anonymously"
                );
            }
            let resp = if creds_ok && !auth.identity_token.is_empty() {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", auth.identity_token.clone()),
                    ("service", service.to_string()),
                    ("client_id", "wharf".to_string()),
                ];
                form.push(("scope", scopes.join(" ")));
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                self.client
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
            } else {
                let mut u = url.clone();
                {
                    let mut q = u.query_pairs_mut();
                    if !service.is_empty() {
                        q.append_pair("service", service);
                    }
                    for s in &scopes {
                        q.append_pair("scope", s);
                    }
                }
                let mut rb = self.client.get(u);
                if creds_ok && auth.has_basic() {
                    rb = rb.header(AUTHORIZATION, auth.basic());
                }
                rb.send().await
            }
            .map_err(|e| DistError::Unavailable(format!("token service {realm}: {e}")))?;
            if !resp.status().is_success() {
                let (st, _, msg) = error_text(resp).await;
                if withheld {
                    return Err(DistError::Unauthorized(format!(
                        "the token service at {realm_host} is not on {}; wharf does not send the registry's credentials there ({st}: {msg})",
                        self.endpoint.registry
                    )));
                }
                return Err(DistError::Unauthorized(format!("unauthorized: {msg}")));
            }
            #[derive(serde::Deserialize)]
            struct Tok {
                #[serde(default)]
                token: String,
                #[serde(default)]
                access_token: String,
            }
            let t: Tok = resp
                .json()
                .await
                .map_err(|e| DistError::Unauthorized(format!("invalid token response from {realm}: {e}")))?;
            let tok = if t.access_token.is_empty() {
                t.token
            } else {
                t.access_token
            };
            if tok.is_empty() {
                return Err(DistError::Unauthorized(format!(
                    "the token service {realm} returned no token"
                )));
            }
            *self.authz.lock().expect("authz") = Some(format!("Bearer {tok}"));
            return Ok(());
        }
        if ch.iter().any(|c| c.scheme == "basic") {
            if !auth.has_basic() {
                return Err(DistError::Unauthorized("no basic auth credentials".into()));
            }
            *self.authz.lock().expect("authz") = Some(auth.basic());
            return Ok(());
        }
        Err(DistError::Unauthorized(
            "the registry asks for authentication wharf does not support".into(),
        ))
    }

    /// Send a request built by `build`, authenticating and retrying once on a 401.
    pub async fn send(&self, build: impl Fn(&Client) -> RequestBuilder) -> Result<Response, DistError> {
        for attempt in 0..2 {
            let mut rb = build(&self.client);
            if let Some(a) = self.authz.lock().expect("authz").clone() {
                rb = rb.header(AUTHORIZATION, a);
            }
            let r = rb.send().await.map_err(|e| transport(&self.endpoint.base, e))?;
            if r.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let ch = challenges(&r);
                let had = self.authz.lock().expect("authz").clone();
                self.authenticate(&ch).await?;
                if *self.authz.lock().expect("authz") == had && had.is_some() {
                    return Ok(r);
                }
                continue;
            }
            return Ok(r);
        }
        unreachable!("the loop returns")
    }

    /// Check credentials (`login`): the ping's challenge was already answered; a Basic
    /// registry is asked `/v2/` once more with them.
    pub async fn check_login(&self) -> Result<(), DistError> {
        let url = format!("{}/v2/", self.endpoint.base);
        let r = self.send(|c| c.get(&url)).await?;
        if r.status().is_success() {
            return Ok(());
        }
        let (st, _, msg) = error_text(r).await;
        if st == StatusCode::UNAUTHORIZED {
            return Err(DistError::Unauthorized(format!(
                "login attempt to {url} failed with status: {} {}",
                st.as_u16(),
                st.canonical_reason().unwrap_or("")
            )));
        }
        Err(DistError::Unavailable(format!("login: {url} answered {st}: {msg}")))
    }
}

pub(crate) fn challenges(r: &Response) -> Vec<Challenge> {
    r.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect()
}

/// Percent-encode a form value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_rules() {
        let cfg = RegistryConfig {
            insecure: vec!["myreg:5000".into(), "10.1.0.0/16".into()],
            ..Default::default()
        };
        assert!(cfg.is_insecure("127.0.0.1:5000"));
        assert!(cfg.is_insecure("myreg:5000"));
        assert!(cfg.is_insecure("10.1.2.3:443"));
        assert!(!cfg.is_insecure("10.2.0.1"));
        assert!(!cfg.is_insecure("docker.io"));
        assert_eq!(
            cfg.insecure_cidrs(),
            vec!["127.0.0.0/8".to_string(), "10.1.0.0/16".into()]
        );
        let eps = endpoints(&cfg, "127.0.0.1:5000", false);
        assert_eq!(eps.len(), 2);
        assert!(eps[0].base.starts_with("https://") && eps[0].skip_verify);
        assert!(eps[1].base.starts_with("http://"));
        assert_eq!(endpoints(&cfg, "registry.example.com", false).len(), 1);
        let bad = RegistryConfig {
            insecure: vec!["http://x".into()],
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn mirrors_come_first_for_docker_hub_pulls_only() {
        let cfg = RegistryConfig {
            mirrors: vec!["http://127.0.0.1:5001/".into()],
            ..Default::default()
        };
        let eps = endpoints(&cfg, "docker.io", false);
        assert_eq!(eps[0].base, "http://127.0.0.1:5001");
        assert!(eps[0].mirror);
        assert_eq!(eps[1].base, "https://registry-1.docker.io");
        assert_eq!(endpoints(&cfg, "docker.io", true).len(), 1);
    }
}
