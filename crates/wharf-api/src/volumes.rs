//! `/volumes`: list, create, inspect, remove and prune, over the container service's volume
//! store (which knows which containers use each volume).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bollard_stubs::models as m;
use hyper::{Method, Request, Response, StatusCode};
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

/// Dispatch `/volumes...` (the path without the version prefix).
pub async fn route(d: Arc<Daemon>, req: Request<ReqBody>, method: &Method, path: &str, q: &Query) -> Res {
    let store = d.containers.volumes().clone();
    match (method, path) {
        (&Method::GET, "/volumes") => {
            let filters: HashMap<String, Vec<String>> = q.filters()?.into_iter().collect();
            let mut out = Vec::new();
            for v in store.list() {
                if store.matches(&v, &filters)? {
                    out.push(store.to_json(&v));
                }
            }
            json_res(StatusCode::OK, &json!({"Volumes": out, "Warnings": []}))
        }
        (&Method::POST, "/volumes/create") => {
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
        (&Method::POST, "/volumes/prune") => {
            let filters = q.filters()?;
            for k in filters.keys() {
                if !["label", "label!", "all"].contains(&k.as_str()) {
                    return Err(ApiError::invalid(format!("invalid filter '{k}'")));
                }
            }
            // Before API 1.42 a prune took named volumes too; since, only with `all`.
            let all = match filters.get("all") {
                Some(v) => v.iter().any(|x| x == "true" || x == "1"),
                None => crate::routes::ApiVersion::of(&req) < crate::routes::ApiVersion(1, 42),
            };
            let label_filters: HashMap<String, Vec<String>> = filters.into_iter().filter(|(k, _)| k != "all").collect();
            let (gone, bytes) = store.prune(all, &|v| !store.matches(v, &label_filters).unwrap_or(false));
            json_res(
                StatusCode::OK,
                &json!({"VolumesDeleted": gone, "SpaceReclaimed": bytes}),
            )
        }
        _ => {
            let Some(name) = path.strip_prefix("/volumes/").map(decode_path) else {
                return Err(ApiError::not_found("page not found"));
            };
            match *method {
                Method::GET => json_res(StatusCode::OK, &store.to_json(&store.get(&name)?)),
                Method::DELETE => {
                    store.remove(&name, q.bool("force"))?;
                    let mut r = Response::new(body::empty());
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    Ok(r)
                }
                _ => Err(ApiError::not_found("page not found")),
            }
        }
    }
}
