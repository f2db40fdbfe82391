//! Registry routes: `POST /images/create?fromImage=` (pull), `POST /images/{name}/push`,
//! `POST /auth` (login), `GET /images/search` and `GET /distribution/{name}/json`, with credentials from `X-Registry-Auth`.
//!
//! Pull and push stream Docker's JSON progress. As in dockerd, the status line is decided by
//! the first event: a failure before any progress (no such image, denied, unreachable) is an
//! HTTP error; after it, errors arrive in the stream as `errorDetail`.

use std::sync::Arc;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use wharf_distribution::{AuthConfig, DistError, Platform, Progress};
use wharf_reference::{Digest, ErrorKind, Reference};

use crate::body::{self, Body, ReqBody};
use crate::error::ApiError;
use crate::query::Query;
use crate::server::Daemon;

type Res = Result<Response<Body>, ApiError>;

impl From<DistError> for ApiError {
    fn from(e: DistError) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

fn registry_auth(req: &Request<ReqBody>) -> Result<Option<AuthConfig>, ApiError> {
    match req.headers().get("x-registry-auth").and_then(|v| v.to_str().ok()) {
        Some(v) => Ok(AuthConfig::from_header(v)?),
        None => Ok(None),
    }
}

/// Run `work` with a progress channel; answer an HTTP error if it fails before its first
/// message, else stream the messages (and a final `errorDetail` on failure).
async fn progress_response<F>(work: F) -> Res
where
    F: FnOnce(Progress) -> futures_util::future::BoxFuture<'static, Result<(), DistError>> + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<Result<(), DistError>>();
    let fut = work(Progress::new(tx));
    tokio::spawn(async move {
        let r = fut.await;
        let _ = done_tx.send(r);
    });
    // Wait for the first message or the end.
    let first = match rx.recv().await {
        Some(m) => Some(m),
        // The work ended (its sender dropped) before saying anything.
        None => match (&mut done_rx).await {
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(())) => {
                let mut r = Response::new(body::empty());
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                return Ok(r);
            }
            Err(_) => return Err(ApiError::new(ErrorKind::Internal, "the operation was cancelled")),
        },
    };
    let (btx, brx) = mpsc::channel::<std::io::Result<bytes::Bytes>>(64);
    tokio::spawn(async move {
        let line = |v: &Value| {
            let mut b = serde_json::to_vec(v).expect("serialise");
            b.extend_from_slice(b"\r\n");
            bytes::Bytes::from(b)
        };
        if let Some(m) = first {
            let _ = btx.send(Ok(line(&m))).await;
        }
        // `first` was a message, so the work had not ended and `done_rx` is still pending.
        while let Some(m) = rx.recv().await {
            let _ = btx.send(Ok(line(&m))).await;
        }
        if let Ok(Err(e)) = done_rx.await {
            // (A failure before the first message was answered as an HTTP error above.)
            let msg = e.to_string();
            let _ = btx
                .send(Ok(line(&json!({"errorDetail": {"message": msg}, "error": msg}))))
                .await;
        }
    });
    let mut r = Response::new(body::from_receiver(brx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `POST /images/create?fromImage=name&tag=t&platform=p`.
pub async fn pull(d: Arc<Daemon>, req: Request<ReqBody>, q: &Query) -> Res {
    let from = q.get("fromImage").unwrap_or("").to_string();
    let tag = q.get("tag").unwrap_or("").to_string();
    let mut r = Reference::parse_normalized(&from)?;
    if !tag.is_empty() {
        r = if let Some(hex) = tag.strip_prefix("sha256:") {
            let d: Digest = Digest::from_hex(hex).map_err(|e| ApiError::invalid(e.to_string()))?;
            r.with_digest(d)
        } else {
            r.with_tag(&tag)
                .map_err(|_| ApiError::invalid(format!("invalid tag format: {tag:?}")))?
        };
    }
    let platform = match q.get("platform").filter(|p| !p.is_empty()) {
        Some(p) => Some(Platform::parse(p)?),
        None => None,
    };
    let auth = registry_auth(&req)?;
    let dist = d.dist.clone();
    progress_response(move |p| {
        Box::pin(async move {
            dist.pull(&r, platform, auth, &p).await?;
            Ok(())
        })
    })
    .await
}

/// `GET /distribution/{name}/json`: the manifest descriptor and platforms of `name` in its
/// registry (a name without tag or digest means `latest`).
pub async fn inspect(d: Arc<Daemon>, req: Request<ReqBody>, name: &str) -> Res {
    let r = Reference::parse_normalized(name)?;
    let r = if r.tag().is_none() && r.digest().is_none() {
        r.with_tag("latest").map_err(|e| ApiError::invalid(e.to_string()))?
    } else {
        r
    };
    let v = d.dist.inspect(&r, registry_auth(&req)?).await?;
    let mut res = Response::new(body::full(serde_json::to_vec(&v).expect("json")));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}

/// `POST /images/{name}/push?tag=t`.
pub async fn push(d: Arc<Daemon>, req: Request<ReqBody>, name: &str, q: &Query) -> Res {
    let tag = q.get("tag").unwrap_or("").to_string();
    let mut r = Reference::parse_normalized(name)?;
    if r.digest().is_some() {
        return Err(ApiError::invalid("cannot push a digest reference"));
    }
    let all = tag.is_empty() && r.tag().is_none();
    if !tag.is_empty() {
        r = r
            .with_tag(&tag)
            .map_err(|_| ApiError::invalid(format!("invalid tag format: {tag:?}")))?;
    }
    let auth = registry_auth(&req)?;
    let dist = d.dist.clone();
    progress_response(move |p| {
        Box::pin(async move {
            dist.push(&r, all, auth, &p).await?;
            Ok(())
        })
    })
    .await
}

/// `POST /auth`: check credentials against their registry.
pub async fn auth(d: Arc<Daemon>, req: Request<ReqBody>) -> Res {
    let b = body::collect(req.into_body(), 64 << 10).await?;
    let a: AuthConfig =
        serde_json::from_slice(&b).map_err(|e| ApiError::invalid(format!("invalid auth config: {e}")))?;
    let status = d.dist.login(a).await?;
    crate::routes::json_response(StatusCode::OK, &json!({"Status": status, "IdentityToken": ""}))
}

/// `GET /images/search?term=&limit=&filters=`.
pub async fn search(d: Arc<Daemon>, req: Request<ReqBody>, q: &Query) -> Res {
    let term = q.get("term").unwrap_or("").to_string();
    let limit = match q.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::invalid(format!("invalid limit {l:?}")))?,
        None => 25,
    };
    let filters = q.filters()?;
    let mut min_stars = 0i64;
    let mut official: Option<bool> = None;
    let mut automated: Option<bool> = None;
    for (k, vals) in &filters {
        for v in vals {
            let flag = || match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(ApiError::invalid(format!("invalid filter '{k}={v}'"))),
            };
            match k.as_str() {
                "stars" => {
                    min_stars = v
                        .parse()
                        .map_err(|_| ApiError::invalid(format!("invalid filter 'stars={v}'")))?
                }
                "is-official" => official = Some(flag()?),
                "is-automated" => automated = Some(flag()?),
                _ => return Err(ApiError::invalid(format!("invalid filter '{k}'"))),
            }
        }
    }
    let auth = registry_auth(&req)?;
    let res = d.dist.search(&term, limit, auth).await?;
    let out: Vec<_> = res
        .into_iter()
        .filter(|r| r.star_count >= min_stars)
        .filter(|r| official.is_none_or(|o| r.is_official == o))
        .filter(|r| automated.is_none_or(|a| r.is_automated == a))
        .collect();
    crate::routes::json_response(StatusCode::OK, &out)
}
