//! `create`, `update` and `commit`: the bodies decoded as Go decodes them, handed to the
//! engine.

use super::*;
use crate::body::{self, ReqBody};
use crate::convert::CreateBody;
use crate::error::ApiError;
use crate::query::Query;
use crate::routes::json_response as json_res;
use crate::routes::ApiVersion;
use crate::server::Daemon;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use wharf_reference::ErrorKind;

pub(crate) async fn create(d: Arc<Daemon>, req: Request<ReqBody>, q: &Query) -> Res {
    let version = ApiVersion::of(&req);
    let bytes = body::collect_json(req, 4 << 20).await?;
    let mut v = crate::gojson::create_body(crate::gojson::parse(&bytes)?);
    let image_mounts = crate::mounts::take_image_mounts(&mut v)?;
    let mut body: CreateBody =
        serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?;
    // Clients older than API 1.40 expect the old default IPC mode, as dockerd gives them.
    if version < ApiVersion(1, 40) {
        let hc = body.host_config.get_or_insert_with(Default::default);
        if hc.ipc_mode.as_deref().unwrap_or("").is_empty() {
            hc.ipc_mode = Some("shareable".into());
        }
    }
    // Several networks at create came with API 1.44; before it dockerd refused them.
    let endpoints: Vec<String> = body
        .networking_config
        .as_ref()
        .and_then(|n| n.get("EndpointsConfig"))
        .and_then(|e| e.as_object())
        .map(|e| e.keys().cloned().collect())
        .unwrap_or_default();
    if endpoints.len() > 1 && version < ApiVersion(1, 44) {
        return Err(ApiError::invalid(format!(
            "Container cannot be connected to network endpoints: {}",
            endpoints.join(", ")
        )));
    }
    // As Docker 28: an image of another platform than the one asked for is not found.
    if let Some(want) = crate::platform::requested(q)? {
        let image = body.config.image.clone().unwrap_or_default();
        if let Ok(v) = d.images.inspect(&image) {
            crate::platform::check(&image, &v.config, Some(&want))?;
        }
    }
    let name = q.get("name").map(String::from);
    let spec = crate::convert::container_spec(body, image_mounts);
    let d2 = d.clone();
    let (id, warnings) = tokio::task::spawn_blocking(move || d2.containers.create(name.as_deref(), spec))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))??;
    json_res(StatusCode::CREATED, &json!({"Id": id, "Warnings": warnings}))
}

pub(crate) async fn update(d: &Arc<Daemon>, req: Request<ReqBody>, name: &str) -> Res {
    let version = ApiVersion::of(&req);
    let bytes = body::collect_json(req, 1 << 20).await?;
    let v: Value = crate::gojson::parse(&bytes)?;
    let mut body = crate::convert::update(crate::gojson::update_body(v)).map_err(ApiError::invalid)?;
    // PidsLimit became updatable in API 1.40; older clients' values are ignored, as dockerd.
    if version < ApiVersion(1, 40) {
        body.pids_limit = None;
    }
    d.containers.update(name, body).await?;
    json_res(StatusCode::OK, &json!({"Warnings": null}))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`: a new image from a
/// container's changes; the body may carry config fields for the image.
pub(crate) async fn commit(d: Arc<Daemon>, req: Request<ReqBody>, q: &Query) -> Res {
    let container = q
        .get("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::invalid("container is required"))?
        .to_string();
    let repo = q.get("repo").unwrap_or("");
    let tag = q.get("tag").unwrap_or("");
    let reference = match (repo.is_empty(), tag.is_empty()) {
        (true, true) => None,
        (true, false) => return Err(ApiError::invalid("tag without repository")),
        (false, true) => Some(repo.to_string()),
        (false, false) => Some(format!("{repo}:{tag}")),
    };
    if let Some(r) = &reference {
        wharf_image::service::refuse_digest_named(&wharf_reference::Reference::parse_tagged_default(r)?)?;
    }
    let body = body::collect_json(req, 1 << 20).await?;
    let config: Option<serde_json::Value> = if body.iter().all(|b| b.is_ascii_whitespace()) {
        None
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid config: {e}")))?
    };
    let opts = wharf_container::CommitOptions {
        reference,
        comment: q.get("comment").unwrap_or("").to_string(),
        author: q.get("author").unwrap_or("").to_string(),
        changes: q
            .all("changes")
            .into_iter()
            .flat_map(|c| c.lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|c| !c.trim().is_empty())
            .collect(),
        pause: q.bool_or("pause", true),
        config,
        replace_config: false,
        created_by: None,
        container_config: None,
        epoch: None,
        omit: Vec::new(),
    };
    let id = d.containers.commit(&container, opts).await?;
    crate::routes::json_response(StatusCode::CREATED, &serde_json::json!({"Id": id.to_string()}))
}
