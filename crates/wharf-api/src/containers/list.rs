//! `GET /containers/json` (`ps`) with Docker's filters and status texts, and `container prune`.

use super::*;
use crate::error::ApiError;
use crate::query::Query;
use crate::routes::json_response as json_res;
use crate::server::Daemon;
use hyper::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wharf_container::logs::parse_time;
use wharf_container::record::ZERO_TIME;
use wharf_container::ContainerStatus;
use wharf_container::Record;

/// `POST /containers/prune` with `until`, `label` and `label!` filters.
pub(crate) async fn prune(d: &Arc<Daemon>, q: &Query) -> Res {
    let filters = q.filters()?;
    for k in filters.keys() {
        if !["until", "label", "label!"].contains(&k.as_str()) {
            return Err(ApiError::invalid(format!("invalid filter '{k}'")));
        }
    }
    let until = match filters.get("until").and_then(|v| v.first()) {
        Some(u) => Some(
            parse_time(u)
                .map(|n| (n / 1_000_000_000) as i64)
                .ok_or_else(|| ApiError::invalid(format!("invalid filter 'until={u}'")))?,
        ),
        None => None,
    };
    let keep = |r: &Record| {
        until.is_some_and(|u| unix(&r.created) >= u)
            || !filters.get("label").is_none_or(|v| v.iter().all(|l| label_match(r, l)))
            || filters
                .get("label!")
                .is_some_and(|v| v.iter().any(|l| label_match(r, l)))
    };
    let (gone, bytes) = d.containers.prune(&keep).await;
    json_res(
        StatusCode::OK,
        &json!({"ContainersDeleted": gone, "SpaceReclaimed": bytes}),
    )
}

pub(crate) fn unix(t: &str) -> i64 {
    parse_time(t).map(|n| (n / 1_000_000_000) as i64).unwrap_or(0)
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn status_text(r: &Record) -> String {
    let now = now_unix();
    match r.state.status {
        ContainerStatus::Running => {
            let up = wharf_units::human_duration(now - unix(&r.state.started_at));
            match r.state.health.as_ref().map(|h| h.status.as_str()) {
                Some("starting") => format!("Up {up} (health: starting)"),
                Some(h) => format!("Up {up} ({h})"),
                None => format!("Up {up}"),
            }
        }
        ContainerStatus::Paused => format!(
            "Up {} (Paused)",
            wharf_units::human_duration(now - unix(&r.state.started_at))
        ),
        ContainerStatus::Restarting => format!(
            "Restarting ({}) {} ago",
            r.state.exit_code,
            wharf_units::human_duration(now - unix(&r.state.finished_at))
        ),
        ContainerStatus::Exited if r.state.finished_at != ZERO_TIME => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            wharf_units::human_duration(now - unix(&r.state.finished_at))
        ),
        ContainerStatus::Removing => "Removal In Progress".into(),
        ContainerStatus::Dead => "Dead".into(),
        _ => "Created".into(),
    }
}

pub(crate) fn command_text(r: &Record) -> String {
    let mut parts = vec![r.path.clone()];
    parts.extend(r.args.iter().cloned());
    parts.join(" ")
}

/// For each container name, the `/child/alias` names of the legacy links others hold to it
/// (one pass over the records, so a long list stays linear).
pub(crate) fn link_names(recs: &[Record]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for c in recs {
        for l in c.host_config.network.links.iter().flatten() {
            let (target, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            out.entry(target.trim_start_matches('/').to_string())
                .or_default()
                .push(format!("/{}/{alias}", c.name));
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// A link as dockerd's inspect shows it: `target:alias` of container `owner` becomes
/// `/target:/owner/alias`.
pub(crate) fn link_view(owner: &str, link: &str) -> String {
    let (target, alias) = link.split_once(':').unwrap_or((link, link));
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    format!("/{}:/{owner}/{alias}", target.trim_start_matches('/'))
}

/// A container as `GET /containers/json` lists it.
pub(crate) fn summary(r: &Record) -> Value {
    let mut host_config = json!({"NetworkMode": r.host_config.network.network_mode.clone().unwrap_or_default()});
    if let Some(a) = r.host_config.lifecycle.annotations.as_ref().filter(|a| !a.is_empty()) {
        host_config["Annotations"] = json!(a);
    }
    json!({
        "Id": r.id,
        "Names": [format!("/{}", r.name)],
        "Image": r.config.image.clone().unwrap_or_default(),
        "ImageID": r.image,
        "Command": command_text(r),
        "Created": unix(&r.created),
        "Ports": wharf_container::netsetup::ports_summary(r),
        "Labels": r.config.labels.clone().unwrap_or_default(),
        "State": r.state.status,
        "Status": status_text(r),
        "HostConfig": host_config,
        "NetworkSettings": {"Networks": wharf_container::netsetup::settings_json(r)["Networks"].clone()},
        "Mounts": r.mount_points.iter().map(|m| m.to_json()).collect::<Vec<_>>(),
    })
}

pub(crate) fn label_match(r: &Record, f: &str) -> bool {
    let labels = r.config.labels.clone().unwrap_or_default();
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(f),
    }
}

pub(crate) fn list(d: &Arc<Daemon>, q: &Query) -> Res {
    let filters: BTreeMap<String, Vec<String>> = q.filters()?;
    let all = q.bool("all");
    let recs: Vec<Record> = d.containers.views().into_iter().map(|v| v.record).collect();
    let created_of = |name: &str| -> Result<String, ApiError> { Ok(d.containers.get(name)?.created) };
    let before = filters
        .get("before")
        .and_then(|v| v.first())
        .map(|n| created_of(n))
        .transpose()?;
    let since = filters
        .get("since")
        .and_then(|v| v.first())
        .map(|n| created_of(n))
        .transpose()?;
    for k in filters.keys() {
        if ![
            "status", "name", "id", "label", "ancestor", "exited", "before", "since", "volume", "health",
        ]
        .contains(&k.as_str())
        {
            return Err(ApiError::invalid(format!("invalid filter '{k}'")));
        }
    }
    // As dockerd: a status that is none of a container's is the client's mistake.
    for v in filters.get("status").into_iter().flatten() {
        if !ContainerStatus::ALL.iter().any(|s| s.as_str() == v) {
            return Err(ApiError::invalid(format!("invalid filter 'status={v}'")));
        }
    }
    let ancestors: Vec<String> = filters
        .get("ancestor")
        .into_iter()
        .flatten()
        .filter_map(|a| d.images.resolve(a).ok().map(|i| i.to_string()))
        .collect();
    let limit: i64 = q.get("limit").and_then(|s| s.parse().ok()).unwrap_or(-1);
    let mut out = Vec::new();
    let linked = link_names(&recs);
    for r in recs {
        let has = |k: &str| filters.get(k).is_some_and(|v| !v.is_empty());
        let any =
            |k: &str, f: &dyn Fn(&str) -> bool| filters.get(k).is_none_or(|v| v.is_empty() || v.iter().any(|x| f(x)));
        let status_filter = has("status");
        if !all
            && !status_filter
            && limit <= 0
            && !has("exited")
            && !r.state.is_running()
            && r.state.status != ContainerStatus::Restarting
        {
            continue;
        }
        if !any("status", &|s| s == r.state.status.as_str()) {
            continue;
        }
        if !any("name", &|n| r.name.contains(n.trim_start_matches('/'))) {
            continue;
        }
        if !any("id", &|i| r.id.starts_with(i)) {
            continue;
        }
        if !filters
            .get("label")
            .is_none_or(|v| v.iter().all(|l| label_match(&r, l)))
        {
            continue;
        }
        if has("exited")
            && !(r.state.status == ContainerStatus::Exited && any("exited", &|c| c == r.state.exit_code.to_string()))
        {
            continue;
        }
        if !any("volume", &|v| {
            r.mount_points
                .iter()
                .any(|m| m.name == v || m.source == v || m.destination == v)
        }) {
            continue;
        }
        let health = r.state.health.as_ref().map(|h| h.status.as_str()).unwrap_or("none");
        if !any("health", &|h| h == health) {
            continue;
        }
        if has("ancestor") && !ancestors.contains(&r.image) {
            continue;
        }
        if before.as_ref().is_some_and(|b| r.created >= *b) || since.as_ref().is_some_and(|s| r.created <= *s) {
            continue;
        }
        let mut v = summary(&r);
        // As dockerd: a container is also named by every legacy link to it (`/child/alias`).
        if let (Some(names), Some(more)) = (v["Names"].as_array_mut(), linked.get(&r.name)) {
            names.extend(more.iter().map(|n| Value::from(n.as_str())));
        }
        if q.bool("size") {
            let (rw, root) = d.containers.sizes(&r.id).unwrap_or((0, 0));
            v["SizeRw"] = json!(rw);
            v["SizeRootFs"] = json!(root);
        }
        out.push(v);
        if limit > 0 && out.len() as i64 >= limit {
            break;
        }
    }
    json_res(StatusCode::OK, &Value::Array(out))
}
