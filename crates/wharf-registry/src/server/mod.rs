//! The HTTP server: listeners (plain or TLS), one hyper connection task each, the request path
//! from route to handler, and graceful shutdown (no new connections; requests in flight, an
//! upload's included, finish within the drain timeout). Every answer carries
//! `Docker-Distribution-API-Version: registry/2.0`; every error is the spec's body, made in
//! `error.rs`. Handlers live one family a file: `blobs`, `uploads`, `manifests`, `lists`
//! (tags, catalog, referrers) and `ops` (token, health, metrics, audit).

mod blobs;
mod lists;
mod manifests;
mod ops;
pub mod proxy;
pub mod route;
mod uploads;
mod zerocopy;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::auth::{Auth, Identity, Need};
use crate::config::Config;
use crate::error::RegistryError;
use crate::names::valid_name;
use crate::storage::Storage;
use route::Route;
use wharf_reference::oci::Hasher;

pub use ops::Metrics;

/// The body of every answer.
pub type Body = BoxBody<Bytes, io::Error>;
/// An answer.
pub type Resp = Response<Body>;

/// A hash of an upload session's bytes, kept while this process has seen all of them.
#[derive(Debug)]
struct Running {
    hasher: Hasher,
    size: u64,
}

/// The registry: storage, configuration, auth and the state of sessions in this process.
#[derive(Debug)]
pub struct Registry {
    /// Where everything is kept.
    pub storage: Arc<dyn Storage>,
    /// The configuration.
    pub cfg: Config,
    /// Auth, if configured.
    pub auth: Option<Auth>,
    /// Requests, bytes and latency.
    pub metrics: Metrics,
    /// The remote registry, in pull-through cache mode.
    pub proxy: Option<proxy::Proxy>,
    running: Mutex<HashMap<String, Running>>,
    /// Sessions a request is writing now.
    busy: Mutex<std::collections::HashSet<String>>,
    /// Held (shared) by whatever checks and links blobs; GC holds it alone.
    gc_lock: Arc<tokio::sync::RwLock<()>>,
    audit: Option<Mutex<std::fs::File>>,
    tls: bool,
    /// Token buckets by client address: (tokens, last refill).
    buckets: Mutex<HashMap<std::net::IpAddr, (f64, Instant)>>,
}

/// What a handler knows of its request beyond the route.
#[derive(Debug)]
pub struct Ctx {
    /// Who sent it.
    pub identity: Identity,
    /// The `Host` it was sent to.
    pub host: String,
    /// The client's address.
    pub peer: SocketAddr,
    query: HashMap<String, Vec<String>>,
}

impl Ctx {
    /// The first value of a query parameter.
    pub fn param(&self, k: &str) -> Option<&str> {
        self.query.get(k).and_then(|v| v.first()).map(String::as_str)
    }

    /// Every value of a query parameter.
    pub fn params(&self, k: &str) -> &[String] {
        self.query.get(k).map(Vec::as_slice).unwrap_or_default()
    }
}

fn parse_query(q: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k)).or_default().push(percent_decode(v));
    }
    out
}

/// Decodes `%XX` and `+` of a query component.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a query component.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|e: Infallible| match e {}).boxed()
}

/// A body of bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e: Infallible| match e {}).boxed()
}

/// An answer with a status, headers and body.
pub fn answer(status: u16, headers: &[(&'static str, String)], body: Body) -> Resp {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().append(*k, v);
        }
    }
    r
}

/// The spec's error answer.
pub fn error_answer(e: &RegistryError) -> Resp {
    let (_, status) = e.code_status();
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let RegistryError::Unauthorized(c) = e {
        headers.push(("www-authenticate", c.0.clone()));
    }
    if let RegistryError::TooManyRequests = e {
        headers.push(("retry-after", "1".to_string()));
    }
    if let RegistryError::Storage(err) = e {
        tracing::error!(error = %err, "storage failure");
    }
    answer(status, &headers, full(e.body()))
}

/// A header's value as a string.
pub fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

impl Registry {
    /// A registry over `storage`.
    pub fn new(storage: Arc<dyn Storage>, cfg: Config) -> Result<Registry, String> {
        let auth = Auth::new(&cfg.auth).map_err(|e| e.to_string())?;
        let audit = match &cfg.audit_log {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("{}: {e}", p.display()))?,
            )),
            None => None,
        };
        let proxy = cfg.proxy.as_ref().map(proxy::Proxy::new).transpose()?;
        Ok(Registry {
            proxy,
            storage,
            tls: cfg.tls.is_some(),
            cfg,
            auth,
            metrics: Metrics::default(),
            running: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            busy: Mutex::new(std::collections::HashSet::new()),
            gc_lock: Arc::new(tokio::sync::RwLock::new(())),
            audit,
        })
    }

    /// What the route needs of the caller.
    fn need(&self, route: &Route, method: &Method) -> Option<Need> {
        let repo = |actions: Vec<&'static str>| route.repo().map(|n| Need::Repo(n.to_string(), actions));
        match (route, method) {
            (Route::Base, _) => Some(Need::Login),
            (Route::Catalog, _) => Some(Need::Catalog),
            (Route::Token | Route::Health | Route::Metrics | Route::Unknown, _) => None,
            (Route::Manifest(..) | Route::Blob(..), &Method::DELETE) => repo(vec!["delete"]),
            (Route::Manifest(..), &Method::PUT) | (Route::UploadStart(_) | Route::Upload(..), _) => {
                repo(vec!["pull", "push"])
            }
            _ => repo(vec!["pull"]),
        }
    }

    /// Answers one request; never fails (errors become the spec's answers).
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
        let started = Instant::now();
        let route = route::route(req.uri().path());
        let method = req.method().clone();
        let bytes_in = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let mut resp = match self.clone().dispatch(req, &route, peer).await {
            Ok(r) => r,
            Err(e) => error_answer(&e),
        };
        resp.headers_mut().insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        let bytes_out = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let status = resp.status().as_u16();
        self.metrics.observe(
            route.label(),
            method.as_str(),
            status,
            started.elapsed(),
            bytes_in,
            bytes_out,
        );
        tracing::info!(method = %method, route = route.label(), status, peer = %peer, ms = started.elapsed().as_millis() as u64, "request");
        resp
    }

    /// Takes one token of `ip`'s bucket, if a rate limit is set; `false` when it is empty.
    fn admit(&self, ip: std::net::IpAddr) -> bool {
        let Some(rl) = &self.cfg.rate_limit else {
            return true;
        };
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() > 100_000 {
            b.retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(60));
        }
        let (tokens, last) = b.entry(ip).or_insert((rl.burst as f64, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rl.requests_per_second).min(rl.burst as f64);
        *last = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    async fn dispatch(
        self: Arc<Self>,
        req: Request<Incoming>,
        route: &Route,
        peer: SocketAddr,
    ) -> Result<Resp, RegistryError> {
        if !matches!(route, Route::Health | Route::Metrics) && !self.admit(peer.ip()) {
            return Err(RegistryError::TooManyRequests);
        }
        let query = parse_query(req.uri().query());
        let host = header(&req, "host").unwrap_or("localhost").to_string();
        let mut identity = Identity::Anonymous;
        if let Some(auth) = &self.auth {
            match auth.identify(header(&req, "authorization")) {
                Some(id) => identity = id,
                None => {
                    let need = self.need(route, req.method()).unwrap_or(Need::Login);
                    return Err(RegistryError::Unauthorized(auth.challenge(&need, &host, self.tls)));
                }
            }
            if let Some(need) = self.need(route, req.method()) {
                auth.check(&identity, &need, &host, self.tls)?;
            }
        }
        if let Some(name) = route.repo() {
            if !valid_name(name) {
                return Err(RegistryError::NameInvalid(name.chars().take(300).collect()));
            }
        }
        let write = matches!(
            *req.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        if write && self.cfg.read_only && !matches!(route, Route::Token) {
            return Err(RegistryError::Unsupported("the registry is read-only".into()));
        }
        if write && self.proxy.is_some() {
            return Err(RegistryError::Unsupported(
                "a pull-through cache takes no pushes or deletes".into(),
            ));
        }
        let ctx = Ctx {
            identity,
            host,
            peer,
            query,
        };
        let m = req.method().clone();
        match (route, &m) {
            (Route::Base, &Method::GET | &Method::HEAD) => {
                Ok(answer(200, &[("content-type", "application/json".into())], full("{}")))
            }
            (Route::Catalog, &Method::GET) => lists::catalog(&self, &ctx).await,
            (Route::Tags(n), &Method::GET) => lists::tags(&self, &ctx, n).await,
            (Route::Referrers(n, d), &Method::GET) => lists::referrers(&self, &ctx, n, d).await,
            (Route::Manifest(n, r), &Method::GET | &Method::HEAD) => manifests::get(&self, &ctx, &req, n, r).await,
            (Route::Manifest(n, r), &Method::PUT) => manifests::put(&self, &ctx, req, n, r).await,
            (Route::Manifest(n, r), &Method::DELETE) => manifests::delete(&self, &ctx, n, r).await,
            (Route::Blob(n, d), &Method::GET | &Method::HEAD) => blobs::get(&self, &ctx, &req, n, d).await,
            (Route::Blob(n, d), &Method::DELETE) => blobs::delete(&self, &ctx, n, d).await,
            (Route::UploadStart(n), &Method::POST) => uploads::start(self.clone(), &ctx, req, n).await,
            (Route::Upload(n, id), &Method::PATCH) => uploads::patch(self.clone(), &ctx, req, n, id).await,
            (Route::Upload(n, id), &Method::PUT) => uploads::put(self.clone(), &ctx, req, n, id).await,
            (Route::Upload(n, id), &Method::GET) => uploads::status(&self, n, id),
            (Route::Upload(n, id), &Method::DELETE) => uploads::cancel(&self, n, id),
            (Route::Token, &Method::GET) => ops::token(&self, &ctx, &req),
            (Route::Health, &Method::GET | &Method::HEAD) => ops::health(&self),
            (Route::Metrics, &Method::GET) => Ok(ops::metrics(&self)),
            (Route::Unknown, _) => Err(RegistryError::NotFound),
            _ => Err(RegistryError::Unsupported(format!("{m} is not allowed here"))),
        }
    }

    /// The options of the collections this registry runs.
    pub fn gc_options(&self) -> crate::gc::GcOptions {
        crate::gc::GcOptions {
            min_age: Duration::from_secs(self.cfg.gc.min_age),
            upload_max_age: Duration::from_secs(self.cfg.upload_max_age),
            dry_run: false,
        }
    }

    /// The sessions requests are writing now.
    pub fn live_sessions(&self) -> std::collections::HashSet<String> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One collection, excluding whatever checks and links blobs meanwhile.
    pub async fn collect(self: &Arc<Self>) -> io::Result<crate::gc::Report> {
        let guard = self.gc_lock.clone().write_owned().await;
        let r = self.clone();
        tokio::task::spawn_blocking(move || {
            let _g = guard;
            crate::gc::collect(&*r.storage, &r.gc_options(), &r.live_sessions())
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Appends one line to the audit log.
    pub fn audit(&self, ctx: &Ctx, action: &str, repo: &str, reference: &str, digest: &str) {
        let Some(f) = &self.audit else {
            return;
        };
        let line = serde_json::json!({
            "time": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "action": action, "account": ctx.identity.name(), "repository": repo,
            "reference": reference, "digest": digest, "remote": ctx.peer.to_string(),
        });
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        let _ = io::Write::write_all(&mut *f, format!("{line}\n").as_bytes());
    }

    /// Whether `ctx`'s caller may also do `actions` on `repo` (a mount's source).
    pub fn may(&self, ctx: &Ctx, repo: &str, actions: Vec<&'static str>) -> bool {
        match &self.auth {
            None => true,
            Some(a) => a
                .check(
                    &ctx.identity,
                    &Need::Repo(repo.to_string(), actions),
                    &ctx.host,
                    self.tls,
                )
                .is_ok(),
        }
    }

    /// The quota of `repo`, if one applies.
    pub fn quota(&self, repo: &str) -> Option<u64> {
        self.cfg
            .quotas
            .iter()
            .filter(|q| q.repositories.iter().any(|p| crate::config::pattern_matches(p, repo)))
            .map(|q| q.bytes)
            .min()
    }

    /// Refuses adding `extra` bytes to `repo` when that would pass its quota.
    pub fn check_quota(&self, repo: &str, extra: u64) -> Result<(), RegistryError> {
        let Some(limit) = self.quota(repo) else {
            return Ok(());
        };
        let s = &self.storage;
        let mut used = 0u64;
        for d in s.blob_links(repo)?.iter().chain(s.manifest_links(repo)?.iter()) {
            used += s.blob_size(d)?.unwrap_or(0);
        }
        if used + extra > limit {
            return Err(RegistryError::Denied(format!(
                "repository {repo} would hold {} bytes, over its quota of {limit}",
                used + extra
            )));
        }
        Ok(())
    }
}

/// Runs the server until SIGTERM or SIGINT, then drains.
pub async fn serve(reg: Arc<Registry>) -> io::Result<()> {
    let listener = TcpListener::bind(&reg.cfg.addr).await?;
    let acceptor = match &reg.cfg.tls {
        Some(t) => Some(crate::tls::acceptor(&t.certificate, &t.key).map_err(io::Error::other)?),
        None => None,
    };
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, tls = acceptor.is_some(), "serving");
    if let Some(p) = &reg.cfg.addr_file {
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, bound.to_string())?;
        std::fs::rename(&tmp, p)?;
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    if let Some(every) = (reg.cfg.upload_purge_interval > 0).then(|| Duration::from_secs(reg.cfg.upload_purge_interval))
    {
        let r = reg.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let r = r.clone();
                let age = Duration::from_secs(r.cfg.upload_max_age);
                let out = tokio::task::spawn_blocking(move || {
                    crate::gc::purge_uploads(&*r.storage, age, &r.live_sessions(), false)
                })
                .await;
                match out {
                    Ok(Ok(n)) => tracing::info!(purged = n, "upload sessions purged"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "purging upload sessions failed"),
                    Err(e) => tracing::warn!(error = %e, "purging upload sessions panicked"),
                }
            }
        });
    }
    if let Some(every) = (reg.cfg.gc.interval > 0).then(|| Duration::from_secs(reg.cfg.gc.interval)) {
        let r = reg.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match r.collect().await {
                    Ok(report) => tracing::info!(?report, "garbage collected"),
                    Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
                }
            }
        });
    }
    loop {
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let _ = stream.set_nodelay(true);
        let r = reg.clone();
        let svc = service_fn(move |req| {
            let r = r.clone();
            async move { Ok::<_, Infallible>(r.handle(req, peer).await) }
        });
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
        match &acceptor {
            None => {
                let conn = b
                    .writev(true)
                    .serve_connection(TokioIo::new(zerocopy::ZeroCopy(stream)), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(acc) => {
                let acc = acc.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acc.accept(stream)).await else {
                        return;
                    };
                    let conn = b.serve_connection(TokioIo::new(tls), svc);
                    let _ = watcher.watch(conn).await;
                });
            }
        }
    }
    tracing::info!("shutting down: finishing requests in flight");
    drop(listener);
    let drain = Duration::from_secs(reg.cfg.drain_timeout);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after the drain timeout");
    }
    Ok(())
}
