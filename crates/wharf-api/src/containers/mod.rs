//! Container and exec routes: create, list, inspect, the lifecycle verbs, logs, top, wait,
//! and the hijacked attach and exec streams (`101 UPGRADED`, raw or multiplexed).

use std::sync::Arc;

use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use wharf_container::ContainerError;
use wharf_reference::ErrorKind;

use crate::body::{self, Body, ReqBody};
use crate::error::ApiError;
use crate::query::Query;
use crate::server::Daemon;

type Res = Result<Response<Body>, ApiError>;

impl From<ContainerError> for ApiError {
    fn from(e: ContainerError) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

use crate::routes::json_response as json_res;
use crate::routes::ApiVersion;

mod inspect;
mod list;
pub(crate) use self::{archive::*, attach::*, create::*, exec::*, inspect::*, list::*, stats::*};

mod archive;
mod attach;
mod create;
mod exec;
mod stats;

pub(crate) fn no_content() -> Res {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

pub(crate) fn not_modified() -> Res {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    Ok(r)
}

/// `(204 or 304)` for verbs where "already so" is not an error.
pub(crate) fn done(r: Result<(), ContainerError>) -> Res {
    match r {
        Ok(()) => no_content(),
        Err(ContainerError::NotModified) => not_modified(),
        Err(e) => Err(e.into()),
    }
}

/// Run a lifecycle operation on a task of its own: a client that hangs up does not cancel it
/// half-way (a stop that sent its signal still escalates to SIGKILL, and publishes its event).
pub(crate) async fn detached<F>(f: F) -> Result<(), ContainerError>
where
    F: std::future::Future<Output = Result<(), ContainerError>> + Send + 'static,
{
    tokio::spawn(f)
        .await
        .unwrap_or_else(|e| Err(ContainerError::Internal(e.to_string())))
}

/// Route `/containers/...` and `/exec/...`.
pub async fn route(d: Arc<Daemon>, req: Request<ReqBody>, method: &Method, path: &str, q: &Query) -> Res {
    if let Some(rest) = path.strip_prefix("/exec/") {
        let (id, verb) = rest.split_once('/').unwrap_or((rest, ""));
        return match (method, verb) {
            (&Method::POST, "start") => exec_start(d, req, id).await,
            (&Method::POST, "resize") => {
                let (h, w) = size(q)?;
                d.containers.exec_resize(id, h, w).await?;
                json_res(StatusCode::OK, &json!({}))
            }
            (&Method::GET, "json") => exec_inspect(&d, id),
            _ => Err(ApiError::not_found("page not found")),
        };
    }
    // The CLI names a link `/parent/alias`: `/containers//parent/alias`.
    let rest = path.strip_prefix("/containers/").unwrap_or("").trim_start_matches('/');
    match (method, rest) {
        (&Method::POST, "create") => return create(d, req, q).await,
        (&Method::POST, "prune") => return prune(&d, q).await,
        (&Method::GET, "json") => return list(&d, q),
        _ => {}
    }
    let (name, verb) = rest.split_once('/').unwrap_or((rest, ""));
    let c = &d.containers;
    match (method, verb) {
        (&Method::GET, "json") => inspect(&d, name, q, ApiVersion::of(&req)),
        (&Method::POST, "start") => done(c.start(name).await),
        (&Method::POST, "stop") | (&Method::POST, "restart") => {
            let (c, name, t) = (c.clone(), name.to_string(), timeout(q)?);
            let signal = q.get("signal").map(String::from);
            let restart = verb == "restart";
            done(
                detached(async move {
                    match restart {
                        true => c.restart(&name, t, signal.as_deref()).await,
                        false => c.stop(&name, t, signal.as_deref()).await,
                    }
                })
                .await,
            )
        }
        (&Method::POST, "kill") => done(c.kill(name, q.get("signal").unwrap_or("KILL")).await),
        (&Method::POST, "pause") => done(c.pause(name, true).await),
        (&Method::POST, "unpause") => done(c.pause(name, false).await),
        (&Method::POST, "rename") => done(c.rename(name, q.get("name").unwrap_or("")).await),
        (&Method::POST, "resize") => {
            let (h, w) = size(q)?;
            c.resize(name, h, w).await?;
            json_res(StatusCode::OK, &json!({}))
        }
        (&Method::POST, "wait") => wait(&d, name, q),
        (&Method::POST, "attach") => attach(d, req, name, q).await,
        (&Method::POST, "exec") => exec_create(&d, req, name).await,
        (&Method::POST, "update") => update(&d, req, name).await,
        (&Method::GET, "logs") => logs(&d, name, q),
        (&Method::GET, "stats") => stats(d.clone(), name, q).await,
        (&Method::GET, "changes") => {
            let changes = d.containers.changes(name)?;
            let v: Vec<Value> = changes
                .into_iter()
                .map(|(p, k)| json!({"Path": p, "Kind": k}))
                .collect();
            json_res(StatusCode::OK, &Value::Array(v))
        }
        (&Method::GET, "export") => export(&d, name).await,
        (&Method::HEAD, "archive") => archive_head(&d, name, q).await,
        (&Method::GET, "archive") => archive_get(&d, name, q).await,
        (&Method::PUT, "archive") => archive_put(&d, req, name, q).await,
        (&Method::GET, "top") => top(&d, name, q).await,
        (&Method::DELETE, alias) if q.bool("link") => {
            // `parent/alias` names a legacy link, not a container.
            if alias.is_empty() {
                return Err(ApiError::new(
                    ErrorKind::Conflict,
                    "Conflict, cannot remove the default link name of the container",
                ));
            }
            c.remove_link(name, alias).await?;
            no_content()
        }
        (&Method::DELETE, "") => match c.remove(name, q.bool("force"), q.bool("v")).await {
            Ok(()) => no_content(),
            Err(e) => Err(e.into()),
        },
        _ => Err(ApiError::not_found("page not found")),
    }
}

pub(crate) fn timeout(q: &Query) -> Result<Option<i64>, ApiError> {
    q.get("t")
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| ApiError::invalid(format!("invalid value for t: {s}")))
        })
        .transpose()
}

/// `h` and `w` of a resize, judged before the container's state, with dockerd's (Go's) words.
pub(crate) fn size(q: &Query) -> Result<(u16, u16), ApiError> {
    let p = |k: &str| -> Result<u16, ApiError> {
        let s = q.get(k).unwrap_or("");
        let v: i64 = s
            .parse()
            .map_err(|_| ApiError::invalid(format!("strconv.Atoi: parsing {s:?}: invalid syntax")))?;
        u16::try_from(v).map_err(|_| ApiError::invalid(format!("invalid {k}: {v}")))
    };
    Ok((p("h")?, p("w")?))
}
