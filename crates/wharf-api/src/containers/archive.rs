//! `docker cp` and `export`: `HEAD`/`GET`/`PUT /containers/{id}/archive` and
//! `GET /containers/{id}/export`.

use super::*;
use crate::body::{self, Body, ReqBody};
use crate::error::ApiError;
use crate::query::Query;
use crate::server::Daemon;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response};
use std::sync::Arc;
use wharf_reference::ErrorKind;

impl wharf_container::archive::ArchiveSink for body::ChannelWriter {
    fn abort(&mut self, e: std::io::Error) {
        self.fail(e);
    }
}

/// `GET /containers/{id}/export`: the filesystem as a tar, streamed.
pub(crate) async fn export(d: &Arc<Daemon>, name: &str) -> Res {
    d.containers.get(name)?;
    let (mut w, b) = body::channel();
    let svc = d.containers.clone();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = svc.export(&name, &mut w) {
            w.fail(std::io::Error::other(e.to_string()));
        }
    });
    let mut r = Response::new(b);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

pub(crate) fn archive_path(q: &Query) -> Result<String, ApiError> {
    q.get("path")
        .filter(|p| !p.is_empty())
        .map(String::from)
        .ok_or_else(|| ApiError::invalid("path is required"))
}

pub(crate) fn stat_header(st: &wharf_container::archive::PathStat) -> HeaderValue {
    use base64::Engine as _;
    let json = serde_json::to_vec(&st.to_json()).expect("json");
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(json)).expect("base64 is a valid header")
}

/// `HEAD /containers/{id}/archive`: the path's stat in `X-Docker-Container-Path-Stat`.
pub(crate) async fn archive_head(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
    let path = archive_path(q)?;
    let svc = d.containers.clone();
    let name = name.to_string();
    let st = tokio::task::spawn_blocking(move || svc.archive_stat(&name, &path))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))??;
    let mut r = Response::new(body::empty());
    r.headers_mut().insert("X-Docker-Container-Path-Stat", stat_header(&st));
    Ok(r)
}

/// `GET /containers/{id}/archive`: the stat header, then the tar, streamed.
pub(crate) async fn archive_get(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
    let path = archive_path(q)?;
    let svc = d.containers.clone();
    let name = name.to_string();
    type Ready = Result<(wharf_container::archive::PathStat, Body), ApiError>;
    let (tx, rx) = tokio::sync::oneshot::channel::<Ready>();
    tokio::task::spawn_blocking(move || {
        let mut tx = Some(tx);
        let r = svc.archive_get(&name, &path, |st| {
            let (w, body) = body::channel();
            let _ = tx.take()?.send(Ok((st.clone(), body)));
            Some(Box::new(w))
        });
        match (r, tx) {
            (Err(e), Some(tx)) => {
                let _ = tx.send(Err(e.into()));
            }
            (Err(e), None) => tracing::warn!("archive stream ended early: {e}"),
            _ => {}
        }
    });
    let (st, b) = rx
        .await
        .map_err(|_| ApiError::new(ErrorKind::Internal, "archive task failed"))??;
    let mut r = Response::new(b);
    r.headers_mut().insert("X-Docker-Container-Path-Stat", stat_header(&st));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

/// `PUT /containers/{id}/archive`: extract the tar body into the directory `path`.
pub(crate) async fn archive_put(d: &Arc<Daemon>, req: Request<ReqBody>, name: &str, q: &Query) -> Res {
    let path = archive_path(q)?;
    let no_overwrite = q.bool("noOverwriteDirNonDir");
    let copy_uid_gid = q.bool("copyUIDGID");
    // Missing containers and paths are reported before any byte is read.
    d.containers.get(name)?;
    let mut reader = body::reader(req.into_body());
    let svc = d.containers.clone();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let r = svc.archive_put(&name, &path, &mut reader, no_overwrite, copy_uid_gid);
        // Read what follows the tar's end (padding, the last chunk) so the client finishes its
        // upload and reads the answer instead of failing with a broken pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        r
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))??;
    Ok(Response::new(body::empty()))
}
