//! Container and exec routes: create, list, inspect, the lifecycle verbs, logs, top, wait,
//! and the hijacked attach and exec streams (`101 UPGRADED`, raw or multiplexed).

use std::sync::Arc;

use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use wharf_container::ContainerError;
use wharf_reference::ErrorKind;

use crate::body::{self, Body};
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

/// `POST /exec/{id}/resize`.
pub(crate) async fn exec_resize(d: Arc<Daemon>, id: &str, q: &Query) -> Res {
    let (h, w) = size(q)?;
    d.containers.exec_resize(id, h, w).await?;
    json_res(StatusCode::OK, &json!({}))
}

/// `POST /containers/{id}/start`.
pub(crate) async fn start(d: Arc<Daemon>, name: &str) -> Res {
    done(d.containers.start(name).await)
}

/// `POST /containers/{id}/stop` and `.../restart`, on a task of their own.
pub(crate) async fn stop(d: Arc<Daemon>, name: &str, q: &Query, restart: bool) -> Res {
    let (c, name, t) = (d.containers.clone(), name.to_string(), timeout(q)?);
    let signal = q.get("signal").map(String::from);
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

/// `POST /containers/{id}/kill`.
pub(crate) async fn kill(d: Arc<Daemon>, name: &str, q: &Query) -> Res {
    done(d.containers.kill(name, q.get("signal").unwrap_or("KILL")).await)
}

/// `POST /containers/{id}/pause` and `.../unpause`.
pub(crate) async fn pause(d: Arc<Daemon>, name: &str, pause: bool) -> Res {
    done(d.containers.pause(name, pause).await)
}

/// `POST /containers/{id}/rename`.
pub(crate) async fn rename(d: Arc<Daemon>, name: &str, q: &Query) -> Res {
    done(d.containers.rename(name, q.get("name").unwrap_or("")).await)
}

/// `POST /containers/{id}/resize`.
pub(crate) async fn resize(d: Arc<Daemon>, name: &str, q: &Query) -> Res {
    let (h, w) = size(q)?;
    d.containers.resize(name, h, w).await?;
    json_res(StatusCode::OK, &json!({}))
}

/// `GET /containers/{id}/changes`.
pub(crate) fn changes(d: &Arc<Daemon>, name: &str) -> Res {
    let v: Vec<Value> = d
        .containers
        .changes(name)?
        .into_iter()
        .map(|(p, k)| json!({"Path": p, "Kind": k}))
        .collect();
    json_res(StatusCode::OK, &Value::Array(v))
}

/// `DELETE /containers/{id}`, and with `link=1` `DELETE /containers/{parent}/{alias}` (the
/// CLI names a link `/parent/alias`: `/containers//parent/alias`): `rest` is the path after
/// `/containers/`.
pub(crate) async fn delete(d: Arc<Daemon>, rest: &str, q: &Query) -> Res {
    let rest = rest.trim_start_matches('/');
    let (name, alias) = rest.split_once('/').unwrap_or((rest, ""));
    if q.bool("link") {
        // `parent/alias` names a legacy link, not a container.
        if alias.is_empty() {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                "Conflict, cannot remove the default link name of the container",
            ));
        }
        d.containers.remove_link(name, alias).await?;
        return no_content();
    }
    if !alias.is_empty() {
        return Err(ApiError::not_found("page not found"));
    }
    d.containers.remove(name, q.bool("force"), q.bool("v")).await?;
    no_content()
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
