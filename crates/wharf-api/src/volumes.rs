//! `/volumes`: list, create, inspect, remove and prune, over the container service's volume
//! store (which knows which containers use each volume).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bollard_stubs::models as m;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use wharf_volume::{CreateOptions, VolumeError};

use crate::body::{self, Body, ReqBody};
use crate::error::ApiError;
use crate::query::{decode_path, Query};
use crate::server::Daemon;

type Res = Result<Response<Body>, ApiError>;

impl From<VolumeError> for ApiError {
    fn from(e: VolumeError) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

use crate::routes::json_response as json_res;

/// `GET /volumes`.
pub(crate) fn list(d: &Arc<Daemon>, q: &Query) -> Res {
    let store = d.containers.volumes().clone();
    let filters: HashMap<String, Vec<String>> = q.filters()?.into_iter().collect();
    let mut out = Vec::new();
    for v in store.list() {
        if store.matches(&v, &filters)? {
            out.push(store.to_json(&v));
        }
    }
    json_res(StatusCode::OK, &json!({"Volumes": out, "Warnings": []}))
}

/// `POST /volumes/create`.
pub(crate) async fn create(d: Arc<Daemon>, req: Request<ReqBody>) -> Res {
    let store = d.containers.volumes().clone();
    let bytes = body::collect_json(req, 1 << 20).await?;
    let o: m::VolumeCreateOptions = if bytes.is_empty() {
        m::VolumeCreateOptions::default()
    } else {
        crate::gojson::parse(&bytes)?
    };
    let sorted = |h: Option<HashMap<String, String>>| h.map(|h| h.into_iter().collect::<BTreeMap<_, _>>());
    // As dockerd: a volume created without a name is anonymous (`volume prune` takes it).
    let anonymous = o.name.as_deref().unwrap_or("").is_empty();
    let v = store.create(
        CreateOptions {
            name: o.name,
            driver: o.driver,
            driver_opts: sorted(o.driver_opts),
            labels: sorted(o.labels),
        },
        anonymous,
    )?;
    json_res(StatusCode::CREATED, &store.to_json(&v))
}

/// `POST /volumes/prune`.
pub(crate) fn prune(d: &Arc<Daemon>, req: &Request<ReqBody>, q: &Query) -> Res {
    let store = d.containers.volumes().clone();
    let filters = q.filters()?;
    for k in filters.keys() {
        if !["label", "label!", "all"].contains(&k.as_str()) {
            return Err(ApiError::invalid(format!("invalid filter '{k}'")));
        }
    }
    // Before API 1.42 a prune took named volumes too; since, only with `all`.
    let all = match filters.get("all") {
        Some(v) => v.iter().any(|x| x == "true" || x == "1"),
        None => crate::routes::ApiVersion::of(req) < crate::routes::ApiVersion(1, 42),
    };
    let label_filters: HashMap<String, Vec<String>> = filters.into_iter().filter(|(k, _)| k != "all").collect();
    let (gone, bytes) = store.prune(all, &|v| !store.matches(v, &label_filters).unwrap_or(false));
    json_res(
        StatusCode::OK,
        &json!({"VolumesDeleted": gone, "SpaceReclaimed": bytes}),
    )
}

/// `GET /volumes/{name}`.
pub(crate) fn inspect(d: &Arc<Daemon>, name: &str) -> Res {
    let store = d.containers.volumes();
    json_res(StatusCode::OK, &store.to_json(&store.get(&decode_path(name))?))
}

/// `DELETE /volumes/{name}`.
pub(crate) fn remove(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
    d.containers.volumes().remove(&decode_path(name), q.bool("force"))?;
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}
