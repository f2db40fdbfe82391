//! Container and exec routes: create, list, inspect, the lifecycle verbs, logs, top, wait,
//! and the hijacked attach and exec streams (`101 UPGRADED`, raw or multiplexed).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_container::logs::{parse_time, LogOptions};
use wharf_container::record::ZERO_TIME;
use wharf_container::{ContainerError, CreateBody, Record, WaitCondition};
use wharf_reference::ErrorKind;
use wharf_shim_proto::{parse_frame, STREAM_EXIT};

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

fn no_content() -> Res {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

fn not_modified() -> Res {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    Ok(r)
}

/// `(204 or 304)` for verbs where "already so" is not an error.
fn done(r: Result<(), ContainerError>) -> Res {
    match r {
        Ok(()) => no_content(),
        Err(ContainerError::NotModified) => not_modified(),
        Err(e) => Err(e.into()),
    }
}

/// Run a lifecycle operation on a task of its own: a client that hangs up does not cancel it
/// half-way (a stop that sent its signal still escalates to SIGKILL, and publishes its event).
async fn detached<F>(f: F) -> Result<(), ContainerError>
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

/// `POST /containers/prune` with `until`, `label` and `label!` filters.
async fn prune(d: &Arc<Daemon>, q: &Query) -> Res {
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

/// `GET /containers/{id}/export`: the filesystem as a tar, streamed.
async fn export(d: &Arc<Daemon>, name: &str) -> Res {
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

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `GET /containers/{id}/stats`: one sample (`stream=0`; with `one-shot`, no CPU baseline) or a
/// sample a second for as long as the client reads and the container runs.
async fn stats(d: Arc<Daemon>, name: &str, q: &Query) -> Res {
    use wharf_container::stats::{cpu_json, sample, system_cpu_usage};
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let stream = q.bool_or("stream", true);
    let one_shot = q.bool("one-shot");
    let (rec, raw) = d.containers.cgroup_reading(name).await?;
    let empty_pre = move || (cpu_json(None, 0, ncpu), ZERO_TIME.to_string());
    if !stream {
        let (mut rec, mut raw, mut pre) = (rec, raw, empty_pre());
        if !one_shot && raw.is_some() {
            pre = (cpu_json(raw.as_ref(), system_cpu_usage(), ncpu), now_rfc3339());
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            (rec, raw) = d.containers.cgroup_reading(name).await?;
        }
        let cpu = cpu_json(raw.as_ref(), system_cpu_usage(), ncpu);
        return json_res(StatusCode::OK, &sample(&rec, raw.as_ref(), &now_rfc3339(), cpu, pre));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let name = rec.id.clone();
    tokio::spawn(async move {
        let (mut rec, mut raw) = (rec, raw);
        let mut pre = empty_pre();
        loop {
            let read = now_rfc3339();
            let cpu = cpu_json(raw.as_ref(), system_cpu_usage(), ncpu);
            let mut line = serde_json::to_vec(&sample(&rec, raw.as_ref(), &read, cpu.clone(), pre)).expect("json");
            line.push(b'\n');
            if tx.send(Ok(line.into())).await.is_err() || raw.is_none() {
                return;
            }
            pre = (cpu, read);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            match d.containers.cgroup_reading(&name).await {
                Ok(r) => (rec, raw) = r,
                Err(_) => return,
            }
        }
    });
    let mut r = Response::new(body::from_receiver(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

fn archive_path(q: &Query) -> Result<String, ApiError> {
    q.get("path")
        .filter(|p| !p.is_empty())
        .map(String::from)
        .ok_or_else(|| ApiError::invalid("path is required"))
}

fn stat_header(st: &wharf_store::archive::PathStat) -> HeaderValue {
    use base64::Engine as _;
    let json = serde_json::to_vec(&st.to_json()).expect("json");
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(json)).expect("base64 is a valid header")
}

/// `HEAD /containers/{id}/archive`: the path's stat in `X-Docker-Container-Path-Stat`.
async fn archive_head(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
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

impl wharf_container::archive::ArchiveSink for body::ChannelWriter {
    fn abort(&mut self, e: std::io::Error) {
        self.fail(e);
    }
}

/// `GET /containers/{id}/archive`: the stat header, then the tar, streamed.
async fn archive_get(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
    let path = archive_path(q)?;
    let svc = d.containers.clone();
    let name = name.to_string();
    type Ready = Result<(wharf_store::archive::PathStat, Body), ApiError>;
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
async fn archive_put(d: &Arc<Daemon>, req: Request<ReqBody>, name: &str, q: &Query) -> Res {
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

fn timeout(q: &Query) -> Result<Option<i64>, ApiError> {
    q.get("t")
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| ApiError::invalid(format!("invalid value for t: {s}")))
        })
        .transpose()
}

/// `h` and `w` of a resize, judged before the container's state, with dockerd's (Go's) words.
fn size(q: &Query) -> Result<(u16, u16), ApiError> {
    let p = |k: &str| -> Result<u16, ApiError> {
        let s = q.get(k).unwrap_or("");
        let v: i64 = s
            .parse()
            .map_err(|_| ApiError::invalid(format!("strconv.Atoi: parsing {s:?}: invalid syntax")))?;
        u16::try_from(v).map_err(|_| ApiError::invalid(format!("invalid {k}: {v}")))
    };
    Ok((p("h")?, p("w")?))
}

async fn create(d: Arc<Daemon>, req: Request<ReqBody>, q: &Query) -> Res {
    let version = ApiVersion::of(&req);
    let bytes = body::collect_json(req, 4 << 20).await?;
    let mut v = crate::gojson::create_body(crate::gojson::parse(&bytes)?);
    let image_mounts = crate::mounts::take_image_mounts(&mut v)?;
    let mut body: CreateBody =
        serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?;
    body.image_mounts = image_mounts;
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
    let d2 = d.clone();
    let (id, warnings) = tokio::task::spawn_blocking(move || d2.containers.create(name.as_deref(), body))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))??;
    json_res(StatusCode::CREATED, &json!({"Id": id, "Warnings": warnings}))
}

fn unix(t: &str) -> i64 {
    parse_time(t).map(|n| (n / 1_000_000_000) as i64).unwrap_or(0)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn status_text(r: &Record) -> String {
    let now = now_unix();
    match r.state.status.as_str() {
        "running" => {
            let up = wharf_units::human_duration(now - unix(&r.state.started_at));
            match r.state.health.as_ref().map(|h| h.status.as_str()) {
                Some("starting") => format!("Up {up} (health: starting)"),
                Some(h) => format!("Up {up} ({h})"),
                None => format!("Up {up}"),
            }
        }
        "paused" => format!(
            "Up {} (Paused)",
            wharf_units::human_duration(now - unix(&r.state.started_at))
        ),
        "restarting" => format!(
            "Restarting ({}) {} ago",
            r.state.exit_code,
            wharf_units::human_duration(now - unix(&r.state.finished_at))
        ),
        "exited" if r.state.finished_at != ZERO_TIME => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            wharf_units::human_duration(now - unix(&r.state.finished_at))
        ),
        "removing" => "Removal In Progress".into(),
        "dead" => "Dead".into(),
        _ => "Created".into(),
    }
}

fn command_text(r: &Record) -> String {
    let mut parts = vec![r.path.clone()];
    parts.extend(r.args.iter().cloned());
    parts.join(" ")
}

/// For each container name, the `/child/alias` names of the legacy links others hold to it
/// (one pass over the records, so a long list stays linear).
fn link_names(recs: &[Record]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for c in recs {
        for l in c.host_config.links.iter().flatten() {
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
fn link_view(owner: &str, link: &str) -> String {
    let (target, alias) = link.split_once(':').unwrap_or((link, link));
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    format!("/{}:/{owner}/{alias}", target.trim_start_matches('/'))
}

/// A container as `GET /containers/json` lists it.
pub(crate) fn summary(r: &Record) -> Value {
    let mut host_config = json!({"NetworkMode": r.host_config.network_mode.clone().unwrap_or_default()});
    if let Some(a) = r.host_config.annotations.as_ref().filter(|a| !a.is_empty()) {
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

fn label_match(r: &Record, f: &str) -> bool {
    let labels = r.config.labels.clone().unwrap_or_default();
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(f),
    }
}

fn list(d: &Arc<Daemon>, q: &Query) -> Res {
    let filters: BTreeMap<String, Vec<String>> = q.filters()?;
    let all = q.bool("all");
    let mut recs = d.containers.records();
    recs.sort_by(|a, b| b.created.cmp(&a.created));
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
            && r.state.status != "restarting"
        {
            continue;
        }
        if !any("status", &|s| s == r.state.status) {
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
        if has("exited") && !(r.state.status == "exited" && any("exited", &|c| c == r.state.exit_code.to_string())) {
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

/// `Config` fields dockerd's inspect shows as null when unset.
const CONFIG_NULLS: &[&str] = &["Entrypoint", "OnBuild", "Volumes", "Cmd"];
/// `HostConfig` fields dockerd's inspect shows as null when unset.
const HOST_CONFIG_NULLS: &[&str] = &[
    "Binds",
    "CapAdd",
    "CapDrop",
    "DeviceCgroupRules",
    "DeviceRequests",
    "ExtraHosts",
    "GroupAdd",
    "Links",
    "SecurityOpt",
    "VolumesFrom",
    "MemorySwappiness",
    "PidsLimit",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "Devices",
    "Ulimits",
    "OomKillDisable",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "PortBindings",
    "Tmpfs",
];

/// The zero value Go writes for a field that is not a pointer.
enum Zero {
    Str,
    Int,
    Bool,
    /// `[2]uint`.
    Size,
}

/// `HostConfig` fields dockerd's inspect always shows, at their zero value when unset.
const HOST_CONFIG_ZEROS: &[(&str, Zero)] = &[
    ("ContainerIDFile", Zero::Str),
    ("AutoRemove", Zero::Bool),
    ("VolumeDriver", Zero::Str),
    ("ConsoleSize", Zero::Size),
    ("Cgroup", Zero::Str),
    ("IpcMode", Zero::Str),
    ("OomScoreAdj", Zero::Int),
    ("PidMode", Zero::Str),
    ("Privileged", Zero::Bool),
    ("PublishAllPorts", Zero::Bool),
    ("ReadonlyRootfs", Zero::Bool),
    ("UTSMode", Zero::Str),
    ("UsernsMode", Zero::Str),
    ("ShmSize", Zero::Int),
    ("Runtime", Zero::Str),
    ("Isolation", Zero::Str),
    ("CpuShares", Zero::Int),
    ("Memory", Zero::Int),
    ("NanoCpus", Zero::Int),
    ("CgroupParent", Zero::Str),
    ("BlkioWeight", Zero::Int),
    ("CpuPeriod", Zero::Int),
    ("CpuQuota", Zero::Int),
    ("CpuRealtimePeriod", Zero::Int),
    ("CpuRealtimeRuntime", Zero::Int),
    ("CpusetCpus", Zero::Str),
    ("CpusetMems", Zero::Str),
    ("MemoryReservation", Zero::Int),
    ("MemorySwap", Zero::Int),
    ("CpuCount", Zero::Int),
    ("CpuPercent", Zero::Int),
    ("IOMaximumIOps", Zero::Int),
    ("IOMaximumBandwidth", Zero::Int),
];

fn inspect(d: &Arc<Daemon>, name: &str, q: &Query, version: ApiVersion) -> Res {
    let r = d.containers.get(name)?;
    let dir = d.info.data_root.join("containers").join(&r.id);
    let running = r.state.is_running();
    let graph = if r.driver == "overlay2" {
        json!({"Name": "overlay2", "Data": {
            "MergedDir": dir.join("merged"), "UpperDir": dir.join("rw/diff"),
            "WorkDir": dir.join("rw/work"), "LowerDir": dir.join("init"),
        }})
    } else {
        json!({"Name": r.driver, "Data": null})
    };
    let mut v = json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.path,
        "Args": r.args,
        "State": {
            "Status": r.state.status,
            "Running": running,
            "Paused": r.state.status == "paused",
            "Restarting": r.state.status == "restarting",
            "OOMKilled": r.state.oom_killed,
            "Dead": r.state.status == "dead",
            "Pid": r.state.pid,
            "ExitCode": r.state.exit_code,
            "Error": r.state.error,
            "StartedAt": r.state.started_at,
            "FinishedAt": r.state.finished_at,
        },
        "Image": r.image,
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": d.containers.log_path(&r.id),
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "Driver": r.driver,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": if r.exec_ids.is_empty() { Value::Null } else { json!(r.exec_ids) },
        "HostConfig": r.host_config,
        "GraphDriver": graph,
        "Mounts": r.mount_points.iter().map(|m| m.to_json()).collect::<Vec<_>>(),
        "Config": r.config,
        "NetworkSettings": wharf_container::netsetup::settings_json(&r),
    });
    if let Some(h) = &r.state.health {
        v["State"]["Health"] = json!(h);
    }
    if let Some(links) = r.host_config.links.as_ref().filter(|l| !l.is_empty()) {
        v["HostConfig"]["Links"] = json!(links.iter().map(|l| link_view(&r.name, l)).collect::<Vec<_>>());
    }
    // `host` and `none` are networks too: their IDs, as dockerd shows them. Before API 1.45
    // a user network's aliases included the short ID once the endpoint was made (the first
    // start): Compose v1 reads it there to tell whether it still has to connect the container
    // itself (with the link-local addresses its create left out).
    let short = r.id[..12].to_string();
    let started = r.state.started_at != ZERO_TIME;
    if let Some(nets) = v["NetworkSettings"]["Networks"].as_object_mut() {
        for (name, ep) in nets.iter_mut() {
            let user = !matches!(name.as_str(), "bridge" | "host" | "none");
            if version < ApiVersion(1, 45) && user && started {
                let mut aliases: Vec<Value> = ep["Aliases"].as_array().cloned().unwrap_or_default();
                if !aliases.iter().any(|a| a.as_str() == Some(short.as_str())) {
                    aliases.push(json!(short));
                }
                ep["Aliases"] = Value::Array(aliases);
            }
            if ep["NetworkID"].as_str().is_some_and(str::is_empty) {
                if let Ok(n) = d.containers.networks().get(name) {
                    ep["NetworkID"] = json!(n.id);
                }
            }
        }
    }
    // Fields dockerd leaves out when empty (`omitempty`).
    if let Some(o) = v["HostConfig"].as_object_mut() {
        for k in ["Mounts", "StorageOpt", "Sysctls", "Annotations"] {
            if o.get(k)
                .is_some_and(|x| x.is_null() || x.as_array().is_some_and(Vec::is_empty))
            {
                o.remove(k);
            }
        }
    }
    // Fields dockerd always writes, null when unset (the models leave them out), and the
    // ones Go writes as their zero value (clients read `HostConfig.Privileged` and friends
    // whatever the create body said).
    for (section, keys) in [("Config", CONFIG_NULLS), ("HostConfig", HOST_CONFIG_NULLS)] {
        if let Some(o) = v[section].as_object_mut() {
            for k in keys {
                o.entry(k.to_string()).or_insert(Value::Null);
            }
        }
    }
    if let Some(o) = v["HostConfig"].as_object_mut() {
        for (k, zero) in HOST_CONFIG_ZEROS {
            let zero = match zero {
                Zero::Str => json!(""),
                Zero::Int => json!(0),
                Zero::Bool => json!(false),
                Zero::Size => json!([0, 0]),
            };
            match o.get(*k) {
                None | Some(Value::Null) => {
                    o.insert(k.to_string(), zero);
                }
                Some(_) => {}
            }
        }
    }
    if q.bool("size") {
        let (rw, root) = d.containers.sizes(&r.id)?;
        v["SizeRw"] = json!(rw);
        v["SizeRootFs"] = json!(root);
    }
    json_res(StatusCode::OK, &v)
}

fn wait(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
    let cond = match q.get("condition").unwrap_or("") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => return Err(ApiError::invalid(format!("invalid condition: {other:?}"))),
    };
    let fut = d.containers.wait(name, cond)?;
    // Headers go out now; the body when the container exits (the CLI starts it meanwhile).
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(1);
    tokio::spawn(async move {
        let (code, err) = fut.await;
        // A failed start is reported by the start call itself; wait carries only the code.
        let _ = err;
        let v = json!({"StatusCode": code, "Error": null});
        let mut b = serde_json::to_vec(&v).expect("json");
        b.push(b'\n');
        let _ = tx.send(Ok(bytes::Bytes::from(b))).await;
    });
    let mut r = Response::new(body::from_receiver(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

fn stream_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Whether the container's log driver keeps a log to read back (`none` does not).
fn log_readable(r: &Record) -> bool {
    r.host_config.log_config.as_ref().and_then(|l| l.typ.as_deref()) != Some("none")
}

fn logs(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
    let r = d.containers.get(name)?;
    if !log_readable(&r) {
        return Err(ApiError::invalid("configured logging driver does not support reading"));
    }
    let opts = LogOptions {
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        follow: q.bool("follow"),
        tail: q.get("tail").filter(|t| *t != "all").and_then(|t| t.parse().ok()),
        timestamps: q.bool("timestamps"),
        since: q.get("since").and_then(parse_time).filter(|n| *n > 0),
        until: q.get("until").and_then(parse_time).filter(|n| *n > 0),
    };
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::invalid("Bad parameters: you must choose at least one stream"));
    }
    let tty = r.config.tty.unwrap_or(false);
    // Opened before the answer: a container removed right after still has all it wrote sent.
    let log = wharf_container::logs::open_log(&d.containers.log_path(&r.id));
    let (mut w, body) = body::channel();
    let d2 = d.clone();
    let id = r.id.clone();
    tokio::task::spawn_blocking(move || {
        let running = || d2.containers.get(&id).map(|r| r.state.is_running()).unwrap_or(false);
        let _ = wharf_container::logs::write_logs(log, tty, &opts, &mut w, &running);
    });
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(stream_type(tty)));
    Ok(resp)
}

async fn top(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
    let r = d.containers.get(name)?;
    if !r.state.is_running() {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("container {} is not running", r.id),
        ));
    }
    let pids = d.containers.pids(&r);
    let args: Vec<String> = q
        .get("ps_args")
        .filter(|s| !s.is_empty())
        .unwrap_or("-ef")
        .split_whitespace()
        .map(String::from)
        .collect();
    let out = tokio::process::Command::new("ps")
        .args(&args)
        .output()
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("ps: {e}")))?;
    if !out.status.success() {
        return Err(ApiError::new(
            ErrorKind::Internal,
            format!("ps: {}", String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let titles: Vec<&str> = header.split_whitespace().collect();
    let pid_col = titles
        .iter()
        .position(|t| *t == "PID")
        .ok_or_else(|| ApiError::new(ErrorKind::Internal, "Couldn't find PID field in ps output"))?;
    let mut procs = Vec::new();
    for l in lines {
        let fields: Vec<&str> = l.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let Ok(pid) = fields[pid_col].parse::<i64>() else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        let mut row: Vec<String> = fields[..titles.len() - 1].iter().map(|s| s.to_string()).collect();
        row.push(fields[titles.len() - 1..].join(" "));
        procs.push(row);
    }
    json_res(StatusCode::OK, &json!({"Titles": titles, "Processes": procs}))
}

fn upgrade_response(tty: bool) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(stream_type(tty)));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    r
}

fn wants_upgrade(req: &Request<ReqBody>) -> bool {
    req.headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// The detach sequence: ctrl-p ctrl-q unless the client names other keys.
fn detach_keys(q: &Query) -> Vec<u8> {
    wharf_shim_proto::detach_keys(q.get("detachKeys").filter(|s| !s.is_empty()))
}

/// How [`pump`] treats the shim stream once the client is gone or has detached.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Stop reading (an attach: the container's output goes on to its log).
    Stop,
    /// Keep reading, discarding, until the shim sends the exit code (an exec: its end is
    /// only learnt from this stream).
    UntilExit,
}

/// Copy between the client's hijacked connection and a shim stream: the shim's frames go out
/// multiplexed, or as raw bytes when `raw`; the client's bytes go in until the `detach`
/// sequence. Returns the exit code when the shim sent one (exec).
async fn pump<C>(
    client: C,
    shim: wharf_container::shim::ShimStream,
    raw: bool,
    detach: Vec<u8>,
    drain: Drain,
    on_stdin_eof: impl std::future::Future<Output = ()> + Send,
    on_exit: impl FnOnce(Option<i32>) + Send,
) -> Option<i32>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let (mut cr, cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(shim);
    let (detached_tx, mut detached_rx) = tokio::sync::watch::channel(false);
    let input = async move {
        let mut buf = vec![0u8; 32 * 1024];
        let mut matched = 0usize;
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    on_stdin_eof.await;
                    // Stdin is over but output keeps flowing until the process ends.
                    return std::future::pending::<bool>().await;
                }
                Ok(n) => n,
            };
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if !detach.is_empty() && b == detach[matched] {
                    matched += 1;
                    if matched == detach.len() {
                        let _ = sw.write_all(&out).await;
                        let _ = detached_tx.send(true);
                        return true;
                    }
                    continue;
                }
                if matched > 0 {
                    out.extend_from_slice(&detach[..matched]);
                    matched = 0;
                }
                out.push(b);
            }
            if sw.write_all(&out).await.is_err() {
                return false;
            }
        }
    };
    let output = async move {
        let mut cw = Some(cw);
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut chunk = vec![0u8; 32 * 1024];
        let mut code = None;
        loop {
            while let Some((stream, payload, used)) = parse_frame(&buf) {
                if stream == STREAM_EXIT {
                    if payload.len() == 4 {
                        code = Some(i32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]));
                    }
                } else if let Some(w) = cw.as_mut() {
                    let bytes = if raw { payload } else { &buf[..used] };
                    if w.write_all(bytes).await.is_err() {
                        cw = None;
                        if drain == Drain::Stop {
                            return (code, None);
                        }
                    }
                }
                buf.drain(..used);
            }
            tokio::select! {
                r = sr.read(&mut chunk) => match r {
                    Ok(0) | Err(_) => return (code, cw),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                },
                _ = async { detached_rx.wait_for(|d| *d).await.is_ok() }, if cw.is_some() => {
                    // The client detached: its connection closes now.
                    if let Some(mut w) = cw.take() {
                        let _ = w.shutdown().await;
                    }
                    if drain == Drain::Stop {
                        return (code, None);
                    }
                }
            }
        }
    };
    tokio::pin!(input);
    tokio::pin!(output);
    let finish = |code: Option<i32>, cw: Option<tokio::io::WriteHalf<C>>| async move {
        if let Some(mut cw) = cw {
            let _ = cw.flush().await;
            let _ = cw.shutdown().await;
        }
        code
    };
    tokio::select! {
        (code, cw) = &mut output => {
            // Recorded before the client sees the end, so its inspect finds the exit code.
            on_exit(code);
            finish(code, cw).await
        }
        detached = &mut input => {
            if detached && drain == Drain::UntilExit {
                // The process runs on; its exit still has to be read and recorded.
                let (code, _) = output.await;
                on_exit(code);
                return code;
            }
            // A detach (attach) leaves the process running; a dead shim does not.
            if !detached {
                on_exit(None);
            }
            None
        }
    }
}

/// Write a container's log so far (`attach` with `logs=1`) to the client. False when the
/// client is gone.
async fn replay_logs(
    io: &mut TokioIo<hyper::upgrade::Upgraded>,
    past: Option<(std::path::PathBuf, LogOptions)>,
    tty: bool,
) -> bool {
    let Some((path, opts)) = past else { return true };
    let read = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let log = wharf_container::logs::open_log(&path);
        wharf_container::logs::write_logs(log, tty, &opts, &mut out, &|| false).map(|_| out)
    });
    match read.await {
        Ok(Ok(out)) => io.write_all(&out).await.is_ok(),
        Ok(Err(e)) => {
            tracing::debug!("attach: reading the log: {e}");
            true
        }
        Err(_) => true,
    }
}

async fn attach(d: Arc<Daemon>, mut req: Request<ReqBody>, name: &str, q: &Query) -> Res {
    let r = d.containers.get(name)?;
    let tty = r.config.tty.unwrap_or(false);
    if !wants_upgrade(&req) {
        return Err(ApiError::invalid("attach needs a connection upgrade (Upgrade: tcp)"));
    }
    if !q.bool("stream") && !q.bool("logs") {
        return Err(ApiError::invalid("Bad parameters: you must choose at least one stream"));
    }
    let (stdin, stdout, stderr) = (q.bool("stdin"), q.bool("stdout"), q.bool("stderr"));
    let detach = detach_keys(q);
    let id = r.id.clone();
    let on_upgrade = hyper::upgrade::on(&mut req);
    // `logs=1`: what the container wrote so far comes first, from its log, read once the
    // connection is the client's (as dockerd replays it after the hijack).
    let past = (q.bool("logs") && (stdout || stderr) && log_readable(&r)).then(|| {
        let opts = LogOptions {
            stdout,
            stderr,
            ..Default::default()
        };
        (d.containers.log_path(&id), opts)
    });
    if !q.bool("stream") {
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            // docker-py reads the 101's head through a buffered reader, then takes the socket
            // beneath it: bytes that arrive with the head are in that buffer and lost to it
            // (its `attach(stream=False, logs=True)` then returns b''; dockerd loses the same
            // race). A moment's pause lets the head be read alone; only this logs-only form.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            replay_logs(&mut io, past, tty).await;
            let _ = io.shutdown().await;
        });
        return Ok(upgrade_response(tty));
    }
    // Register before answering, so a start that follows at once finds this attach.
    let stream = d.containers.attach(&id, stdin, stdout, stderr)?;
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        if !replay_logs(&mut io, past, tty).await {
            return;
        }
        let upgraded = io.into_inner();
        let shim = match stream.await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%id, "attach: {e}");
                return;
            }
        };
        let d3 = d.clone();
        let id3 = id.clone();
        let eof = async move {
            if stdin {
                let _ = d3.containers.close_stdin(&id3, None).await;
            }
        };
        pump(TokioIo::new(upgraded), shim, tty, detach, Drain::Stop, eof, |_| {}).await;
    });
    Ok(upgrade_response(tty))
}

async fn update(d: &Arc<Daemon>, req: Request<ReqBody>, name: &str) -> Res {
    let version = ApiVersion::of(&req);
    let bytes = body::collect_json(req, 1 << 20).await?;
    let v: Value = crate::gojson::parse(&bytes)?;
    let mut body: wharf_container::UpdateBody = serde_json::from_value(crate::gojson::update_body(v))
        .map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?;
    // PidsLimit became updatable in API 1.40; older clients' values are ignored, as dockerd.
    if version < ApiVersion(1, 40) {
        body.resources.pids_limit = None;
    }
    d.containers.update(name, body).await?;
    json_res(StatusCode::OK, &json!({"Warnings": null}))
}

async fn exec_create(d: &Arc<Daemon>, req: Request<ReqBody>, name: &str) -> Res {
    let bytes = body::collect_json(req, 1 << 20).await?;
    let v: Value = crate::gojson::parse(&bytes)?;
    let cfg: bollard_stubs::models::ExecConfig =
        serde_json::from_value(crate::gojson::go_keys(v, crate::gojson::EXEC_CONFIG_FIELDS))
            .map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?;
    let id = d.containers.exec_create(name, cfg)?;
    json_res(StatusCode::CREATED, &json!({"Id": id}))
}

/// `POST /exec/{id}/start`. The body's `Tty` decides the framing (raw or multiplexed), as in
/// dockerd; the exec's own `Tty` decides whether the process gets a terminal. As in dockerd,
/// an attached exec starts once the response head is on its way (a client that reads the
/// socket past its HTTP reader must not miss the first output), and a failure to start is
/// written to the stream (the exec's exit code is 126).
async fn exec_start(d: Arc<Daemon>, mut req: Request<ReqBody>, id: &str) -> Res {
    let upgrade = wants_upgrade(&req);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let bytes = body::collect_json(req, 1 << 20).await?;
    let cfg: Value = if bytes.is_empty() {
        json!({})
    } else {
        crate::gojson::parse(&bytes)?
    };
    let detach = cfg["Detach"].as_bool().unwrap_or(false);
    let raw = cfg["Tty"].as_bool().unwrap_or(false);
    let id = id.to_string();
    d.containers.exec_startable(&id)?;
    let size = |i: usize| cfg["ConsoleSize"][i].as_u64().and_then(|v| u16::try_from(v).ok());
    if let (Some(h), Some(w)) = (size(0), size(1)) {
        if h > 0 && w > 0 {
            d.containers.exec_console_size(&id, h, w);
        }
    }
    let (x, _) = d.containers.exec_startable(&id)?;
    if detach {
        let shim = d.containers.exec_start(&id).await?;
        tokio::spawn(async move {
            // Nobody reads a detached exec's output; it is drained and dropped.
            let (client, mut sink) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move { tokio::io::copy(&mut sink, &mut tokio::io::sink()).await });
            pump(client, shim, raw, Vec::new(), Drain::UntilExit, async {}, |code| {
                d.containers.exec_exited(&id, code)
            })
            .await;
        });
        return Ok(Response::new(body::empty()));
    }
    let stdin = x.config.attach_stdin.unwrap_or(false);
    let keys = if stdin {
        wharf_shim_proto::detach_keys(x.config.detach_keys.as_deref().filter(|k| !k.is_empty()))
    } else {
        Vec::new()
    };
    // Start the exec and pump it through `client`, or write why it could not start.
    let run = move |client: Box<dyn ClientIo>, d: Arc<Daemon>, id: String| async move {
        let mut client = client;
        let shim = match d.containers.exec_start(&id).await {
            Ok(shim) => shim,
            Err(e) => {
                let text = format!("{e}\r\n").into_bytes();
                let out = if raw { text } else { wharf_shim_proto::frame(1, &text) };
                let _ = client.write_all(&out).await;
                let _ = client.shutdown().await;
                return;
            }
        };
        let d3 = d.clone();
        let id3 = id.clone();
        let eof = async move {
            if stdin {
                if let Ok(x) = d3.containers.exec_get(&id3) {
                    let _ = d3.containers.close_stdin(&x.container, Some(&id3)).await;
                }
            }
        };
        let d4 = d.clone();
        let done = move |code| d4.containers.exec_exited(&id, code);
        pump(client, shim, raw, keys, Drain::UntilExit, eof, done).await;
    };
    if upgrade {
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => run(Box::new(TokioIo::new(upgraded)), d, id).await,
                Err(_) => d.containers.exec_exited(&id, None),
            }
        });
        return Ok(upgrade_response(raw));
    }
    // No upgrade: the output is the response body.
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
    tokio::spawn(run(Box::new(client), d, id));
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match server.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Ok(bytes::Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut r = Response::new(body::from_receiver(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(stream_type(raw)));
    Ok(r)
}

/// A client connection a stream is pumped through (upgraded, or the body's pipe).
trait ClientIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ClientIo for T {}

fn exec_inspect(d: &Arc<Daemon>, id: &str) -> Res {
    let x = d.containers.exec_get(id)?;
    let c = &x.config;
    let cmd = c.cmd.clone().unwrap_or_default();
    json_res(
        StatusCode::OK,
        &json!({
            "ID": x.id,
            "Running": x.running,
            "ExitCode": x.exit_code,
            "ProcessConfig": {
                "tty": c.tty.unwrap_or(false),
                "entrypoint": cmd.first().cloned().unwrap_or_default(),
                "arguments": cmd.get(1..).map(|a| a.to_vec()).unwrap_or_default(),
                "privileged": c.privileged.unwrap_or(false),
                "user": c.user.clone().unwrap_or_default(),
            },
            "OpenStdin": c.attach_stdin.unwrap_or(false),
            "OpenStderr": c.attach_stderr.unwrap_or(false),
            "OpenStdout": c.attach_stdout.unwrap_or(false),
            "CanRemove": false,
            "ContainerID": x.container,
            "DetachKeys": c.detach_keys.clone().unwrap_or_default(),
            "Pid": x.pid,
        }),
    )
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
    };
    let id = d.containers.commit(&container, opts).await?;
    crate::routes::json_response(StatusCode::CREATED, &serde_json::json!({"Id": id.to_string()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_as_go_decodes_them() {
        let v = crate::gojson::go_keys(
            json!({"detachKeys": "ctrl-p", "cmd": ["x"], "Tty": true, "Other": 1}),
            crate::gojson::EXEC_CONFIG_FIELDS,
        );
        assert_eq!(
            v,
            json!({"DetachKeys": "ctrl-p", "Cmd": ["x"], "Tty": true, "Other": 1})
        );
    }

    #[test]
    fn detach_key_specs() {
        let q = Query::parse(None);
        assert_eq!(detach_keys(&q), vec![16, 17]);
        let q = Query::parse(Some("detachKeys=ctrl-a,x"));
        assert_eq!(detach_keys(&q), vec![1, b'x']);
    }
}
