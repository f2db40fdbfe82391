//! Routing: strips and checks the API version, dispatches to the handler for the path, and
//! renders results and errors as Docker does.

use std::collections::HashMap;
use std::sync::Arc;
use wharf_container::ContainerStatus;

use bollard_stubs::models as m;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, SERVER};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use wharf_image::{DeleteItem, ImageView, ListFilter};
use wharf_reference::ErrorKind;

use crate::body::{self, Body, ReqBody};
use crate::error::{status_of, ApiError};
use crate::query::{decode_path, Query};
use crate::server::Daemon;
use crate::{API_VERSION, MIN_API_VERSION};

pub(crate) type Res = Result<Response<Body>, ApiError>;

pub(crate) mod table;

/// Parse `1.NN` into a comparable pair.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Split `/v1.44/images/json` into `(Some("1.44"), "/images/json")`. Only `^/v\d+\.\d+/`
/// is a version prefix: `/version` is a route.
pub fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let v = &rest[..end];
        if let Some((a, b)) = v.split_once('.') {
            if !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
            {
                let tail = &rest[end..];
                return (Some(v), if tail.is_empty() { "/" } else { tail });
            }
        }
    }
    (None, path)
}

fn with_headers(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(SERVER, HeaderValue::from_static("Docker/28.2.2 (linux)"));
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    r
}

fn error_response(e: ApiError) -> Response<Body> {
    let body = serde_json::to_vec(&json!({ "message": e.message })).expect("serialise");
    let mut r = Response::new(body::full(body));
    *r.status_mut() = status_of(e.kind);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON answer with its content type (every route answers JSON through here).
pub(crate) fn json_response<T: Serialize>(status: StatusCode, v: &T) -> Res {
    let body = serde_json::to_vec(v).map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    let mut r = Response::new(body::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

fn ok_json<T: Serialize>(v: &T) -> Res {
    json_response(StatusCode::OK, v)
}

/// The API version a request asked for (its path prefix; the newest without one), kept in
/// the request's extensions for the few routes whose behaviour depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    /// The version of `req` (the newest when unversioned).
    pub fn of<B>(req: &Request<B>) -> ApiVersion {
        req.extensions()
            .get::<ApiVersion>()
            .copied()
            .unwrap_or_else(ApiVersion::newest)
    }
    fn newest() -> ApiVersion {
        let (a, b) = parse_version(API_VERSION).expect("const");
        ApiVersion(a, b)
    }
}

/// Handle one request.
pub async fn handle(d: Arc<Daemon>, mut req: Request<ReqBody>) -> Response<Body> {
    let (version, path) = split_version(req.uri().path());
    let asked = version
        .and_then(parse_version)
        .map(|(a, b)| ApiVersion(a, b))
        .unwrap_or_else(ApiVersion::newest);
    if let Some(v) = version {
        let max = parse_version(API_VERSION).expect("const");
        let min = parse_version(MIN_API_VERSION).expect("const");
        match parse_version(v) {
            Some(pv) if pv > max => {
                return with_headers(error_response(ApiError::invalid(format!(
                    "client version {v} is too new. Maximum supported API version is {API_VERSION}"
                ))))
            }
            Some(pv) if pv < min => {
                return with_headers(error_response(ApiError::invalid(format!(
                    "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                ))))
            }
            _ => {}
        }
    }
    let path = path.to_string();
    req.extensions_mut().insert(asked);
    let method = req.method().clone();
    tracing::debug!(%method, %path, "request");
    let r = match table::dispatch(d, req, &path).await {
        Ok(r) => r,
        Err(e) => error_response(e),
    };
    with_headers(r)
}

/// wharf is a single-host engine and never part of a swarm: the swarm endpoints answer as
/// dockerd does on a node outside one (503), and `init`/`join` say why they cannot.
fn swarm_error(method: &Method, p: &str) -> Option<ApiError> {
    const NOT_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" \
                               to connect this node to swarm and try again.";
    let first = p.trim_start_matches('/').split('/').next().unwrap_or("");
    if !matches!(first, "swarm" | "nodes" | "services" | "tasks" | "secrets" | "configs") {
        return None;
    }
    let unavailable = |m: &str| Some(ApiError::new(ErrorKind::Unavailable, m));
    match (method, p) {
        (&Method::POST, "/swarm/leave") => unavailable("This node is not part of a swarm"),
        (&Method::POST, "/swarm/init" | "/swarm/join") => {
            unavailable("swarm mode is not supported: wharf is a single-host engine")
        }
        _ => unavailable(NOT_MANAGER),
    }
}

/// `GET /events`: the kept events since `since`, then the new ones as they happen, until
/// `until` (or for as long as the client reads), each a JSON line, filtered.
fn events(d: Arc<Daemon>, q: &Query) -> Res {
    use wharf_container::logs::parse_time;
    let filters = q.filters()?;
    for k in filters.keys() {
        if ![
            "type",
            "event",
            "action",
            "container",
            "image",
            "label",
            "network",
            "volume",
            "scope",
        ]
        .contains(&k.as_str())
        {
            return Err(ApiError::invalid(format!("invalid filter '{k}'")));
        }
    }
    let time = |k: &str| -> Result<Option<i128>, ApiError> {
        q.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| parse_time(v).ok_or_else(|| ApiError::invalid(format!("invalid value for {k}: {v}"))))
            .transpose()
    };
    let (since, until) = (time("since")?, time("until")?);
    let (past, mut rx) = d.containers.events().subscribe(since);
    let (tx, body_rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(64);
    tokio::spawn(async move {
        let line = |e: &wharf_container::events::Event| {
            let mut b = serde_json::to_vec(&e.to_json()).expect("json");
            b.push(b'\n');
            bytes::Bytes::from(b)
        };
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i128)
                .unwrap_or(0)
        };
        for e in past.iter().filter(|e| until.is_none_or(|u| e.time_nano <= u)) {
            if e.matches(&filters) && tx.send(Ok(line(e))).await.is_err() {
                return;
            }
        }
        loop {
            let wait = match until {
                Some(u) if u <= now() => return,
                Some(u) => std::time::Duration::from_nanos((u - now()) as u64),
                None => std::time::Duration::from_secs(3600),
            };
            let e = match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Ok(e)) => e,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(_)) => return,
                Err(_) if until.is_some() => return,
                Err(_) => continue,
            };
            if until.is_some_and(|u| e.time_nano > u) {
                return;
            }
            if e.matches(&filters) && tx.send(Ok(line(&e))).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(body::from_receiver(body_rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

fn ping(method: &Method) -> Res {
    let mut r = Response::new(if method == Method::HEAD {
        body::empty()
    } else {
        body::full("OK")
    });
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    Ok(r)
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

fn version(d: &Daemon) -> Res {
    let _ = d;
    let v = m::SystemVersion {
        platform: Some(m::SystemVersionPlatform { name: "wharf".into() }),
        components: Some(vec![m::SystemVersionComponents {
            name: "Engine".into(),
            version: wharf_image::ENGINE_VERSION.into(),
            details: None,
        }]),
        version: Some(wharf_image::ENGINE_VERSION.into()),
        api_version: Some(API_VERSION.into()),
        min_api_version: Some(MIN_API_VERSION.into()),
        git_commit: Some(env!("CARGO_PKG_VERSION").into()),
        go_version: Some(format!("wharf {}", env!("CARGO_PKG_VERSION"))),
        os: Some("linux".into()),
        arch: Some(arch().into()),
        kernel_version: Some(kernel_version()),
        experimental: Some(false),
        build_time: None,
    };
    // Components[].Details carries the API range, as dockerd sets it.
    let mut j = serde_json::to_value(&v).map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    j["Components"][0]["Details"] = json!({
        "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch(),
        "KernelVersion": kernel_version(), "GitCommit": env!("CARGO_PKG_VERSION"),
        "GoVersion": format!("wharf {}", env!("CARGO_PKG_VERSION")), "Experimental": "false",
        "BuildTime": "",
    });
    // Which engine this is, as dockerd lists containerd and runc: the docker CLI prints it.
    if let Some(list) = j["Components"].as_array_mut() {
        list.push(json!({
            "Name": "wharf", "Version": env!("CARGO_PKG_VERSION"),
            "Details": {"Shim": "wharf-shim", "Runtime": "youki libcontainer 0.7"},
        }));
    }
    ok_json(&j)
}

fn read_os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        })
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            })
        })
        .map(|k| k * 1024)
        .unwrap_or(0)
}

fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?
}

async fn info(d: &Arc<Daemon>, version: ApiVersion) -> Res {
    let d2 = d.clone();
    let n_images = blocking(move || {
        Ok(d2
            .images
            .list(&ListFilter {
                all: true,
                ..Default::default()
            })?
            .len())
    })
    .await?;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let records = d.containers.records();
    let paused = records
        .iter()
        .filter(|r| r.state.status == ContainerStatus::Paused)
        .count() as i64;
    let running = records.iter().filter(|r| r.state.is_running()).count() as i64 - paused;
    let info = m::SystemInfo {
        id: Some(d.info.id.clone()),
        containers: Some(records.len() as i64),
        containers_running: Some(running),
        containers_paused: Some(paused),
        containers_stopped: Some(records.len() as i64 - running - paused),
        images: Some(n_images as i64),
        driver: Some(d.images.driver().name().into()),
        driver_status: Some(vec![
            vec!["Backing Filesystem".into(), "extfs".into()],
            vec!["Supports d_type".into(), "true".into()],
        ]),
        docker_root_dir: Some(d.info.data_root.display().to_string()),
        memory_limit: Some(true),
        swap_limit: Some(true),
        cpu_cfs_period: Some(true),
        cpu_cfs_quota: Some(true),
        cpu_shares: Some(true),
        cpu_set: Some(true),
        pids_limit: Some(true),
        ipv4_forwarding: Some(true),
        debug: Some(false),
        nfd: Some(
            std::fs::read_dir("/proc/self/fd")
                .map(|r| r.count() as i64)
                .unwrap_or(0),
        ),
        n_goroutines: Some(0),
        system_time: Some(wharf_image::config::now_rfc3339()),
        logging_driver: Some("json-file".into()),
        cgroup_driver: Some(m::SystemInfoCgroupDriverEnum::CGROUPFS),
        cgroup_version: Some(if cgroup_version() == "2" {
            m::SystemInfoCgroupVersionEnum::_2
        } else {
            m::SystemInfoCgroupVersionEnum::_1
        }),
        n_events_listener: Some(0),
        kernel_version: Some(kernel_version()),
        operating_system: Some(read_os_name()),
        os_version: Some(String::new()),
        os_type: Some("linux".into()),
        architecture: Some(std::env::consts::ARCH.into()),
        ncpu: Some(
            std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1),
        ),
        mem_total: Some(mem_total()),
        index_server_address: Some("https://index.docker.io/v1/".into()),
        name: Some(hostname),
        labels: Some(vec![]),
        experimental_build: Some(false),
        server_version: Some(wharf_image::ENGINE_VERSION.into()),
        default_runtime: Some("runc".into()),
        live_restore_enabled: Some(false),
        isolation: None,
        init_binary: Some("docker-init".into()),
        security_options: Some(vec!["name=seccomp,profile=builtin".into()]),
        warnings: Some(vec![]),
        ..Default::default()
    };
    let mut j = serde_json::to_value(&info).map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    // Fields the CLI's info template reads but the model leaves empty.
    j["Plugins"] = json!({"Volume": ["local"], "Network": ["bridge", "host", "none"], "Log": ["json-file"]});
    j["Swarm"] = json!({"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": null});
    j["Runtimes"] = json!({"runc": {"path": "wharf-shim"}});
    let reg = d.dist.config();
    let mut index = serde_json::Map::new();
    index.insert(
        "docker.io".into(),
        json!({"Name": "docker.io", "Mirrors": reg.mirrors, "Secure": true, "Official": true}),
    );
    for n in reg.insecure_names() {
        index.insert(
            n.clone(),
            json!({"Name": n, "Mirrors": [], "Secure": false, "Official": false}),
        );
    }
    j["RegistryConfig"] = json!({
        "AllowNondistributableArtifactsCIDRs": null,
        "AllowNondistributableArtifactsHostnames": null,
        "IndexConfigs": index,
        "InsecureRegistryCIDRs": reg.insecure_cidrs(),
        "Mirrors": reg.mirrors,
    });
    j["ExecRoot"] = json!(d.info.exec_root.display().to_string());
    // Removed in API 1.50; clients of older versions still read them.
    if version < ApiVersion(1, 50) {
        let on = |f: &str| std::fs::read_to_string(format!("/proc/sys/net/bridge/{f}")).is_ok_and(|v| v.trim() == "1");
        j["BridgeNfIptables"] = json!(on("bridge-nf-call-iptables"));
        j["BridgeNfIp6tables"] = json!(on("bridge-nf-call-ip6tables"));
    }
    ok_json(&j)
}

fn labels_map(v: &ImageView) -> HashMap<String, String> {
    v.config
        .labels()
        .into_iter()
        .map(|(k, val)| (k, val.as_str().unwrap_or_default().to_string()))
        .collect()
}

fn summary(v: &ImageView, shared: i64, containers: i64) -> m::ImageSummary {
    m::ImageSummary {
        id: v.id.to_string(),
        parent_id: v.record.parent.map(|p| p.to_string()).unwrap_or_default(),
        repo_tags: v.repo_tags.clone(),
        repo_digests: v.repo_digests.clone(),
        created: v.config.created_unix(),
        size: v.size as i64,
        shared_size: shared,
        virtual_size: None,
        labels: labels_map(v),
        containers,
        manifests: None,
    }
}

async fn images_list(d: &Arc<Daemon>, q: &Query) -> Res {
    let filters = q.filters()?;
    for k in filters.keys() {
        if !matches!(
            k.as_str(),
            "dangling" | "label" | "reference" | "before" | "since" | "until"
        ) {
            return Err(ApiError::invalid(format!("invalid filter '{k}'")));
        }
    }
    let one = |k: &str| filters.get(k).and_then(|v| v.first().cloned());
    let dangling = match one("dangling").as_deref() {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(other) => return Err(ApiError::invalid(format!("invalid filter 'dangling={other}'"))),
    };
    let f = ListFilter {
        all: q.bool("all"),
        dangling,
        labels: filters.get("label").cloned().unwrap_or_default(),
        references: filters.get("reference").cloned().unwrap_or_default(),
        before: one("before"),
        since: one("since"),
        until: match one("until") {
            Some(u) => Some(
                wharf_container::logs::parse_time(&u)
                    .map(|n| (n / 1_000_000_000) as i64)
                    .ok_or_else(|| ApiError::invalid(format!("invalid filter 'until={u}'")))?,
            ),
            None => None,
        },
    };
    let with_digests = q.bool("digests");
    let d2 = d.clone();
    let views = blocking(move || Ok(d2.images.list(&f)?)).await?;
    let mut out: Vec<m::ImageSummary> = views.iter().map(|v| summary(v, -1, -1)).collect();
    if !with_digests {
        // Docker always sends RepoDigests; `digests` only changes what the CLI shows.
        let _ = &mut out;
    }
    ok_json(&out)
}

fn inspect_json(d: &Daemon, v: &ImageView) -> Result<serde_json::Value, ApiError> {
    let cfg: Option<m::ImageConfig> = v.config.config.clone().and_then(|c| serde_json::from_value(c).ok());
    let graph = {
        let ls = d.images.layer_store();
        let mut data = HashMap::new();
        if let Some(top) = v.layers.last() {
            let diffs: Vec<String> = v
                .layers
                .iter()
                .rev()
                .skip(1)
                .map(|l| ls.diff_dir(l).display().to_string())
                .collect();
            if !diffs.is_empty() {
                data.insert("LowerDir".into(), diffs.join(":"));
            }
            let top_dir = ls.diff_dir(top);
            data.insert("UpperDir".into(), top_dir.display().to_string());
            if let Some(parent) = top_dir.parent() {
                data.insert("MergedDir".into(), parent.join("merged").display().to_string());
                data.insert("WorkDir".into(), parent.join("work").display().to_string());
            }
        }
        m::DriverData {
            name: d.images.driver().name().into(),
            data,
        }
    };
    let ii = m::ImageInspect {
        id: Some(v.id.to_string()),
        repo_tags: Some(v.repo_tags.clone()),
        repo_digests: Some(v.repo_digests.clone()),
        parent: Some(v.record.parent.map(|p| p.to_string()).unwrap_or_default()),
        comment: Some(v.config.comment.clone().unwrap_or_default()),
        created: v.config.created.clone(),
        docker_version: Some(v.config.docker_version.clone().unwrap_or_default()),
        author: Some(v.config.author.clone().unwrap_or_default()),
        config: cfg,
        architecture: Some(v.config.architecture.clone()),
        variant: v.config.variant.clone(),
        os: Some(v.config.os.clone()),
        os_version: None,
        size: Some(v.size as i64),
        virtual_size: None,
        graph_driver: Some(graph),
        root_fs: Some(m::ImageInspectRootFs {
            typ: "layers".into(),
            layers: Some(v.config.rootfs.diff_ids.iter().map(|d| d.to_string()).collect()),
        }),
        metadata: Some(m::ImageInspectMetadata {
            last_tag_time: v.record.last_tag_time.map(|n| {
                time::OffsetDateTime::from_unix_timestamp_nanos(n)
                    .ok()
                    .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                    .unwrap_or_default()
            }),
        }),
    };
    let mut j = serde_json::to_value(&ii).map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    if j["Metadata"]["LastTagTime"].is_null() {
        j["Metadata"]["LastTagTime"] = json!("0001-01-01T00:00:00Z");
    }
    Ok(j)
}

async fn image_inspect(d: &Arc<Daemon>, name: &str, version: ApiVersion, q: &Query) -> Res {
    let want = crate::platform::requested(q)?;
    let d2 = d.clone();
    let n = name.to_string();
    let v = blocking(move || Ok(d2.images.inspect(&n)?)).await?;
    crate::platform::check(name, &v.config, want.as_ref())?;
    let mut j = inspect_json(d, &v)?;
    // Before API 1.50 the config showed the container-config fields OCI images lack, at their
    // zero values when unset (moby's `legacyConfigFields`).
    if version < ApiVersion(1, 50) {
        if let Some(c) = j["Config"].as_object_mut() {
            for (k, zero) in [
                ("AttachStderr", json!(false)),
                ("AttachStdin", json!(false)),
                ("AttachStdout", json!(false)),
                ("Cmd", Value::Null),
                ("Domainname", json!("")),
                ("Entrypoint", Value::Null),
                ("Env", Value::Null),
                ("Hostname", json!("")),
                ("Image", json!("")),
                ("Labels", Value::Null),
                ("OnBuild", Value::Null),
                ("OpenStdin", json!(false)),
                ("StdinOnce", json!(false)),
                ("Tty", json!(false)),
                ("User", json!("")),
                ("Volumes", Value::Null),
                ("WorkingDir", json!("")),
            ] {
                c.entry(k).or_insert(zero);
            }
        }
    }
    // Before API 1.45 the image's container and its config were part of the answer.
    if version < ApiVersion(1, 45) {
        j["Container"] = json!(v.config.rest.get("container").and_then(|c| c.as_str()).unwrap_or(""));
        j["ContainerConfig"] = v.config.container_config.clone().unwrap_or_else(|| json!({}));
    }
    ok_json(&j)
}

async fn image_history(d: &Arc<Daemon>, name: &str) -> Res {
    let d2 = d.clone();
    let n = name.to_string();
    let rows = blocking(move || Ok(d2.images.history(&n)?)).await?;
    let out: Vec<m::HistoryResponseItem> = rows
        .into_iter()
        .map(|r| m::HistoryResponseItem {
            id: r.id,
            created: r.created,
            created_by: r.created_by,
            tags: r.tags,
            size: r.size as i64,
            comment: r.comment,
        })
        .collect();
    ok_json(&out)
}

async fn image_tag(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
    let repo = q.get("repo").unwrap_or("").to_string();
    if repo.is_empty() {
        return Err(ApiError::invalid("repository name must have at least one component"));
    }
    let target = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo,
    };
    let d2 = d.clone();
    let n = name.to_string();
    blocking(move || Ok(d2.images.tag(&n, &target)?)).await?;
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

fn delete_items(items: Vec<DeleteItem>) -> Vec<m::ImageDeleteResponseItem> {
    items
        .into_iter()
        .map(|i| match i {
            DeleteItem::Untagged(n) => m::ImageDeleteResponseItem {
                untagged: Some(n),
                deleted: None,
            },
            DeleteItem::Deleted(d) => m::ImageDeleteResponseItem {
                untagged: None,
                deleted: Some(d.to_string()),
            },
        })
        .collect()
}

async fn image_delete(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
    let force = q.bool("force");
    let prune = !q.bool("noprune");
    let d2 = d.clone();
    let n = name.to_string();
    let items = blocking(move || {
        let items = d2.images.remove(&n, force, prune)?;
        d2.dist.prune_compressed()?;
        Ok(items)
    })
    .await?;
    ok_json(&delete_items(items))
}

async fn images_prune(d: Arc<Daemon>, q: &Query) -> Res {
    let filters = q.filters()?;
    let all = filters
        .get("dangling")
        .and_then(|v| v.first())
        .map(|v| matches!(v.as_str(), "false" | "0"))
        .unwrap_or(false);
    let labels = filters.get("label").cloned().unwrap_or_default();
    let (items, reclaimed) = blocking(move || {
        let (items, reclaimed) = d.images.prune(all, &labels)?;
        Ok((items, reclaimed + d.dist.prune_compressed()?))
    })
    .await?;
    ok_json(&m::ImagePruneResponse {
        images_deleted: Some(delete_items(items)),
        space_reclaimed: Some(reclaimed as i64),
    })
}

async fn system_df(d: Arc<Daemon>) -> Res {
    let d2 = d.clone();
    let rows = blocking(move || Ok(d2.images.disk_usage()?)).await?;
    let mut layers_size = 0i64;
    let mut seen = std::collections::HashSet::new();
    let mut images = Vec::new();
    for (v, shared, users) in &rows {
        for l in &v.layers {
            if seen.insert(l.chain_id) {
                layers_size += l.size as i64;
            }
        }
        images.push(summary(v, *shared as i64, *users as i64));
    }
    let mut v = serde_json::to_value(m::SystemDataUsageResponse {
        layers_size: Some(layers_size),
        images: Some(images),
        containers: Some(vec![]),
        volumes: Some(vec![]),
        build_cache: Some(vec![]),
    })
    .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    let d3 = d.clone();
    v["BuildCache"] = blocking(move || crate::build::usage_json(&d3)).await?;
    // Containers with their sizes, volumes with their sizes and users (the blocking pool walks
    // the directories).
    let (containers, volumes) = blocking(move || {
        let containers: Vec<serde_json::Value> = d
            .containers
            .records()
            .iter()
            .map(|r| {
                let mut s = crate::containers::summary(r);
                let (rw, root) = d.containers.sizes(&r.id).unwrap_or((0, 0));
                s["SizeRw"] = json!(rw);
                s["SizeRootFs"] = json!(root);
                s
            })
            .collect();
        let store = d.containers.volumes();
        let volumes: Vec<serde_json::Value> = store
            .list()
            .iter()
            .map(|vol| {
                let mut j = store.to_json(vol);
                let size = wharf_volume::dir_size(&store.path(&vol.name));
                j["UsageData"] = json!({"Size": size, "RefCount": store.users(&vol.name).len()});
                j
            })
            .collect();
        Ok((containers, volumes))
    })
    .await?;
    v["Containers"] = json!(containers);
    v["Volumes"] = json!(volumes);
    ok_json(&v)
}

/// A chunked JSON-lines progress response fed from blocking code.
fn progress_stream<F>(f: F) -> Res
where
    F: FnOnce(&mut dyn FnMut(serde_json::Value)) -> Result<(), ApiError> + Send + 'static,
{
    let (mut w, body) = body::channel();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut emit = |v: serde_json::Value| {
            let mut line = serde_json::to_vec(&v).expect("serialise");
            line.push(b'\n');
            let _ = w.write_all(&line);
            let _ = w.flush();
        };
        if let Err(e) = f(&mut emit) {
            emit(json!({"errorDetail": {"message": e.message}, "error": e.message}));
        }
    });
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// After a failed upload, read (and drop) the rest of the body, so the client finishes sending
/// and reads the error instead of failing with a broken pipe.
fn drain_on_error<T>(r: Result<T, wharf_image::ImageError>, reader: &mut body::BodyReader) -> Result<T, ApiError> {
    if r.is_err() {
        let _ = std::io::copy(reader, &mut std::io::sink());
    }
    Ok(r?)
}

async fn images_create(d: Arc<Daemon>, req: Request<ReqBody>, q: &Query) -> Res {
    if q.get("fromImage").is_some_and(|s| !s.is_empty()) {
        return crate::distribution::pull(d, req, q).await;
    }
    let Some(src) = q.get("fromSrc") else {
        return Err(ApiError::invalid("fromImage or fromSrc is required"));
    };
    let url = (src != "-").then(|| src.to_string());
    let repo = q.get("repo").unwrap_or("").to_string();
    let tag = q.get("tag").unwrap_or("").to_string();
    let reference = if repo.is_empty() {
        None
    } else if tag.is_empty() {
        Some(repo)
    } else {
        Some(format!("{repo}:{tag}"))
    };
    // Validate the name and the platform before reading a byte of the body.
    if let Some(r) = &reference {
        wharf_reference::Reference::parse_tagged_default(r)?;
    }
    let platform = crate::platform::requested(q)?;
    let changes = q.all("changes");
    let message = q.get("message").map(str::to_string);
    let mut reader = match &url {
        // The tarball comes from a URL, as Docker's `import URL` (an error before any byte
        // is an HTTP error).
        Some(u) => body::reader_from(d.dist.open_url(u).await?),
        None => body::reader(req.into_body()),
    };
    let message = match (&url, message) {
        (Some(u), None) => Some(format!("Imported from {u}")),
        (_, m) => m,
    };
    progress_stream(move |emit| {
        if let Some(u) = &url {
            emit(json!({"status": format!("Downloading from {u}")}));
        }
        let p = platform
            .as_ref()
            .map(|p| (p.os.as_str(), p.architecture.as_str(), p.variant.as_str()));
        let r = d
            .images
            .import(&mut reader, reference.as_deref(), &changes, message.as_deref(), p);
        let id = drain_on_error(r, &mut reader)?;
        emit(json!({"status": id.to_string()}));
        Ok(())
    })
}

async fn images_load(d: Arc<Daemon>, req: Request<ReqBody>, q: &Query) -> Res {
    crate::platform::requested(q)?;
    let quiet = q.bool("quiet");
    let mut reader = body::reader(req.into_body());
    let _ = quiet;
    progress_stream(move |emit| {
        let r = d.images.load(&mut reader);
        let lines = drain_on_error(r, &mut reader)?;
        for l in lines {
            emit(json!({"stream": format!("{l}\n")}));
        }
        Ok(())
    })
}

async fn images_save(d: Arc<Daemon>, names: Vec<String>, platform: Option<wharf_distribution::Platform>) -> Res {
    let names: Vec<String> = names
        .iter()
        .flat_map(|n| n.split(','))
        .map(str::to_string)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err(ApiError::invalid("no image names given"));
    }
    // Resolve first so a missing image is a clean 404 rather than a truncated tar.
    {
        let d2 = d.clone();
        let n2 = names.clone();
        blocking(move || {
            for n in &n2 {
                if let Ok(v) = d2.images.inspect(n) {
                    crate::platform::check(n, &v.config, platform.as_ref())?;
                    continue;
                }
                // A bare repository name saves all its tags; fail only when nothing matches.
                let prefix = match wharf_reference::Reference::parse_normalized(n) {
                    Ok(r) if r.tag().is_none() && r.digest().is_none() => format!("{}:", r.familiar_name()),
                    _ => return Err(ApiError::not_found(format!("No such image: {n}"))),
                };
                let all = d2.images.list(&ListFilter {
                    all: true,
                    ..Default::default()
                })?;
                if !all.iter().any(|v| v.repo_tags.iter().any(|t| t.starts_with(&prefix))) {
                    return Err(ApiError::not_found(format!("No such image: {n}")));
                }
            }
            Ok(())
        })
        .await?;
    }
    let (mut w, body) = body::channel();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = d.images.save(&names, &mut w) {
            tracing::warn!("save: {e}");
            w.fail(std::io::Error::other(e.to_string()));
        }
    });
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix() {
        assert_eq!(split_version("/v1.44/images/json"), (Some("1.44"), "/images/json"));
        assert_eq!(split_version("/version"), (None, "/version"));
        assert_eq!(split_version("/v1.50/version"), (Some("1.50"), "/version"));
        assert_eq!(split_version("/volumes"), (None, "/volumes"));
        assert_eq!(split_version("/vx.1/a"), (None, "/vx.1/a"));
    }
}
