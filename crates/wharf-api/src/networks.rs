//! `/networks`: list, inspect, create, remove, connect, disconnect and prune, over the network
//! service, with the containers attached to each from the container service.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use wharf_network::{CreateRequest, Network, NetworkError};

use crate::body::{self, Body, ReqBody};
use crate::error::ApiError;
use crate::query::{decode_path, Query};
use crate::server::Daemon;

type Res = Result<Response<Body>, ApiError>;

impl From<NetworkError> for ApiError {
    fn from(e: NetworkError) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

use crate::routes::json_response as json_res;

/// The `Containers` map of a network: every running container with an endpoint on it.
fn containers_of(d: &Daemon, n: &Network) -> Value {
    let mut out = serde_json::Map::new();
    for r in d.containers.records() {
        for ep in r.net.endpoints.iter().filter(|e| e.network_id == n.id) {
            out.insert(
                r.id.clone(),
                json!({
                    "Name": r.name,
                    "EndpointID": ep.endpoint_id,
                    "MacAddress": ep.mac,
                    "IPv4Address": format!("{}/{}", ep.ip, ep.prefix),
                    "IPv6Address": "",
                }),
            );
        }
    }
    Value::Object(out)
}

fn matches(n: &Network, filters: &BTreeMap<String, Vec<String>>, used: bool) -> Result<bool, ApiError> {
    for (k, vals) in filters {
        let ok = match k.as_str() {
            "name" => vals.iter().any(|v| n.name.contains(v.as_str())),
            "id" => vals.iter().any(|v| n.id.starts_with(v.as_str())),
            "driver" => vals.iter().any(|v| &n.driver == v),
            "type" => vals.iter().any(|v| match v.as_str() {
                "builtin" => n.predefined(),
                "custom" => !n.predefined(),
                _ => false,
            }),
            "scope" => vals.iter().any(|v| v == "local"),
            "label" => vals.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => n.labels.get(k).is_some_and(|x| x == v),
                None => n.labels.contains_key(l),
            }),
            "dangling" => vals
                .iter()
                .any(|v| (v == "true" || v == "1") == (!used && !n.predefined())),
            other => return Err(ApiError::invalid(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `GET /networks`.
pub(crate) async fn list(d: Arc<Daemon>, q: &Query) -> Res {
    let net = d.containers.networks().clone();
    let filters = q.filters()?;
    let mut out = Vec::new();
    for n in net.list() {
        let used = d
            .containers
            .records()
            .iter()
            .any(|r| r.networks.values().any(|e| e.network_id == n.id));
        if matches(&n, &filters, used)? {
            out.push(net.to_json(&n, containers_of(&d, &n)));
        }
    }
    json_res(StatusCode::OK, &Value::Array(out))
}

/// `POST /networks/create`.
pub(crate) async fn create(d: Arc<Daemon>, req: Request<ReqBody>) -> Res {
    let net = d.containers.networks().clone();
    let bytes = body::collect_json(req, 1 << 20).await?;
    let v: Value = crate::gojson::parse(&bytes)?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let map = |k: &str| string_map(&v, k);
    // IPAM entries: at most one IPv4 and one IPv6 (told apart by their subnet).
    let configs = v
        .pointer("/IPAM/Config")
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    let is_v6 = |c: &Value| {
        c.get("Subnet")
            .and_then(|x| x.as_str())
            .is_some_and(|x| x.contains(':'))
    };
    let (v6s, v4s): (Vec<Value>, Vec<Value>) = configs.into_iter().partition(is_v6);
    if v4s.len() > 1 || v6s.len() > 1 {
        return Err(ApiError::invalid(
            "wharf networks take one IPv4 and one IPv6 subnet at most",
        ));
    }
    let ipam = v4s.into_iter().next().unwrap_or(Value::Null);
    let ipam6 = v6s.into_iter().next().unwrap_or(Value::Null);
    let field = |c: &Value, k: &str| {
        c.get(k)
            .and_then(|x| x.as_str())
            .filter(|x| !x.is_empty())
            .map(String::from)
    };
    let opt = |k: &str| field(&ipam, k);
    let n = net
        .create(CreateRequest {
            name: s("Name"),
            driver: s("Driver"),
            subnet: opt("Subnet"),
            gateway: opt("Gateway"),
            ip_range: opt("IPRange"),
            internal: v.get("Internal").and_then(|x| x.as_bool()).unwrap_or(false),
            attachable: v.get("Attachable").and_then(|x| x.as_bool()).unwrap_or(false),
            labels: map("Labels"),
            options: map("Options"),
            ipam_options: v
                .pointer("/IPAM/Options")
                .and_then(|o| o.as_object())
                .map(|o| {
                    o.iter()
                        .map(|(k, x)| (k.clone(), x.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            aux: aux_of(&ipam),
            enable_ipv6: v.get("EnableIPv6").and_then(|x| x.as_bool()).unwrap_or(false),
            subnet6: field(&ipam6, "Subnet"),
            gateway6: field(&ipam6, "Gateway"),
            ip_range6: field(&ipam6, "IPRange"),
            aux6: aux_of(&ipam6),
        })
        .await?;
    json_res(StatusCode::CREATED, &json!({"Id": n.id, "Warning": ""}))
}

/// `POST /networks/prune`.
pub(crate) async fn prune(d: Arc<Daemon>, q: &Query) -> Res {
    let net = d.containers.networks().clone();
    let filters = q.filters()?;
    let label_filters: BTreeMap<String, Vec<String>> = filters.into_iter().filter(|(k, _)| k == "label").collect();
    let gone = net
        .prune(&|n| !matches(n, &label_filters, false).unwrap_or(false))
        .await;
    json_res(StatusCode::OK, &json!({"NetworksDeleted": gone}))
}

/// `GET /networks/{id}`.
pub(crate) async fn inspect(d: Arc<Daemon>, key: &str) -> Res {
    let net = d.containers.networks().clone();
    let n = net.get(&decode_path(key))?;
    json_res(StatusCode::OK, &net.to_json(&n, containers_of(&d, &n)))
}

/// `DELETE /networks/{id}`.
pub(crate) async fn remove(d: Arc<Daemon>, key: &str) -> Res {
    d.containers.networks().remove(&decode_path(key)).await?;
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

/// `POST /networks/{id}/connect` and `.../disconnect`.
pub(crate) async fn connect(d: Arc<Daemon>, req: Request<ReqBody>, key: &str, connect: bool) -> Res {
    let key = decode_path(key);
    let bytes = body::collect_json(req, 1 << 20).await?;
    let v: Value = crate::gojson::parse(&bytes)?;
    let ctr = v.get("Container").and_then(|x| x.as_str()).unwrap_or("").to_string();
    if connect {
        d.containers
            .network_connect(&ctr, &key, v.get("EndpointConfig"))
            .await?;
    } else {
        let force = v.get("Force").and_then(|x| x.as_bool()).unwrap_or(false);
        d.containers.network_disconnect(&ctr, &key, force).await?;
    }
    Ok(Response::new(body::empty()))
}

/// An IPAM pool's `AuxiliaryAddresses`.
fn aux_of(pool: &Value) -> BTreeMap<String, String> {
    string_map(pool, "AuxiliaryAddresses")
}

/// The string values of the object `v[k]` (labels, options, addresses).
fn string_map(v: &Value, k: &str) -> BTreeMap<String, String> {
    v.get(k)
        .and_then(|x| x.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}
