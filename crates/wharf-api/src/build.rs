//! `POST /build` (the classic builder's API, which the docker CLI without buildx speaks) and
//! `POST /build/prune`: the query as a [`BuildRequest`], the body unpacked as the context, and
//! the build's progress as Docker's JSON lines (`stream`, `aux`, and after a failure
//! `errorDetail`/`error`, all after the 200).

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use wharf_builder::{BuildRequest, Progress};
use wharf_reference::ErrorKind;

use crate::body::{self, ReqBody};
use crate::error::ApiError;
use crate::query::Query;
use crate::routes::Res;
use crate::server::Daemon;

/// A JSON object parameter (`buildargs`, `labels`): string values, `null` for "unset".
fn json_map(q: &Query, name: &str) -> Result<BTreeMap<String, Option<String>>, ApiError> {
    match q.get(name).filter(|s| !s.is_empty()) {
        None => Ok(BTreeMap::new()),
        Some(s) => serde_json::from_str(s).map_err(|e| ApiError::invalid(format!("invalid {name}: {e}"))),
    }
}

/// The build the query asks for.
pub(crate) fn request(q: &Query) -> Result<BuildRequest, ApiError> {
    let labels = json_map(q, "labels")?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    let tags: Vec<String> = q.all("t").into_iter().filter(|t| !t.is_empty()).collect();
    for t in &tags {
        wharf_reference::Reference::parse_tagged_default(t)
            .map_err(|e| ApiError::invalid(format!("invalid reference format: {t}: {e}")))?;
    }
    // As dockerd answers them without BuildKit and without experimental features.
    if q.bool("squash") {
        return Err(ApiError::invalid("squash is only supported with experimental mode"));
    }
    if q.get("outputs")
        .is_some_and(|o| !o.is_empty() && o != "[]" && o != "null")
    {
        return Err(ApiError::invalid(
            "outputs are not supported by the classic build API: use `wharf build --output`",
        ));
    }
    let cache_from: Vec<String> = match q.get("cachefrom").filter(|s| !s.is_empty()) {
        None => Vec::new(),
        Some(s) => serde_json::from_str(s).map_err(|e| ApiError::invalid(format!("invalid cachefrom: {e}")))?,
    };
    Ok(BuildRequest {
        cache_from,
        pull: q.bool("pull"),
        platform: q.get("platform").filter(|p| !p.is_empty()).map(String::from),
        run_host: run_host(q)?,
        dockerfile: q.get("dockerfile").unwrap_or("").to_string(),
        tags,
        build_args: json_map(q, "buildargs")?,
        target: q.get("target").filter(|t| !t.is_empty()).map(String::from),
        no_cache: q.bool("nocache"),
        labels,
        network_mode: q.get("networkmode").filter(|n| !n.is_empty()).map(String::from),
        rm: q.bool_or("rm", true),
        force_rm: q.bool("forcerm"),
        build_id: q.get("buildid").filter(|b| !b.is_empty()).map(String::from),
        secrets: BTreeMap::new(),
        context_digests: Default::default(),
    })
}

/// How the build's RUN steps run: `extrahosts` (repeated or comma-separated `host:ip`),
/// `memory`, `memswap`, `cpushares`, `cpusetcpus`, `cpuperiod`, `cpuquota`, `shmsize`.
fn run_host(q: &Query) -> Result<wharf_container::config::HostSpec, ApiError> {
    let mut h = wharf_container::config::HostSpec::default();
    let hosts: Vec<String> = q
        .all("extrahosts")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    h.network.extra_hosts = Some(hosts).filter(|h| !h.is_empty());
    let int = |name: &str| -> Result<Option<i64>, ApiError> {
        match q.get(name).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::invalid(format!("invalid {name}: {v:?}"))),
        }
    };
    let r = &mut h.resources;
    r.memory = int("memory")?.filter(|v| *v != 0);
    r.memory_swap = int("memswap")?.filter(|v| *v != 0);
    r.cpu_shares = int("cpushares")?.filter(|v| *v != 0);
    r.cpu_period = int("cpuperiod")?.filter(|v| *v != 0);
    r.cpu_quota = int("cpuquota")?.filter(|v| *v != 0);
    r.cpuset_cpus = q.get("cpusetcpus").filter(|s| !s.is_empty()).map(String::from);
    h.namespaces.shm_size = int("shmsize")?.filter(|v| *v != 0);
    Ok(h)
}

/// The media type of a context sent by content (`wharf build`): the body is a
/// [`wharf_builder::blobs::Manifest`], whose files' contents the daemon already holds.
const MANIFEST_TYPE: &str = "application/vnd.wharf.build-context+json";

/// `POST /build/context/missing`: `{"digests": [...]}` answered with the ones the daemon lacks.
pub(crate) async fn missing(d: Arc<Daemon>, req: Request<ReqBody>) -> Res {
    let body = body::collect_json(req, 64 << 20).await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid body: {e}")))?;
    let digests: Vec<String> =
        serde_json::from_value(v["digests"].clone()).map_err(|e| ApiError::invalid(format!("invalid digests: {e}")))?;
    let missing = d
        .builder
        .blobs()
        .missing(&digests)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    crate::routes::json_response(hyper::StatusCode::OK, &json!({ "missing": missing }))
}

/// `POST /build/context/upload`: a tar of context files, each named by its digest.
pub(crate) async fn upload(d: Arc<Daemon>, req: Request<ReqBody>) -> Res {
    let mut reader = body::reader(req.into_body());
    let b = d.builder.clone();
    let n = tokio::task::spawn_blocking(move || {
        let r = b.blobs().receive(&mut reader);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        r
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    crate::routes::json_response(hyper::StatusCode::OK, &json!({ "received": n }))
}

/// A context sent as a manifest: made of the daemon's blobs; its secrets for the request.
async fn manifest_context(
    d: &Daemon,
    req: Request<ReqBody>,
    dir: &std::path::Path,
    breq: &mut BuildRequest,
) -> Result<(), ApiError> {
    let body = body::collect(req.into_body(), 256 << 20).await?;
    let m: wharf_builder::blobs::Manifest =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid context manifest: {e}")))?;
    use base64::Engine as _;
    for (id, v) in &m.secrets {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|e| ApiError::invalid(format!("secret {id}: {e}")))?;
        breq.secrets.insert(id.clone(), bytes);
    }
    let (b, dir) = (d.builder.clone(), dir.to_path_buf());
    let known = tokio::task::spawn_blocking(move || b.blobs().materialize(&m, &dir))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    breq.context_digests = Arc::new(known);
    Ok(())
}

/// `POST /build`.
pub(crate) async fn build(d: Arc<Daemon>, req: Request<ReqBody>, q: &Query) -> Res {
    let mut breq = request(q)?;
    let quiet = q.bool("q");
    let ctx = d
        .builder
        .context_dir()
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    let by_content = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.split(';').next().unwrap_or("").trim() == MANIFEST_TYPE);
    if by_content {
        manifest_context(&d, req, ctx.path(), &mut breq).await?;
        return stream_build(d, breq, ctx, quiet);
    }
    let mut reader = body::reader(req.into_body());
    let dir = ctx.path().to_path_buf();
    let remote = q.get("remote").filter(|r| !r.is_empty()).map(String::from);
    let from_body = remote.is_none();
    let b = d.builder.clone();
    let unpacked = tokio::task::spawn_blocking(move || {
        let r = if from_body {
            // Into links to the daemon's context files: a context built again costs its hashing.
            b.blobs().unpack_context(&mut reader, &dir)
        } else {
            Ok(Default::default())
        };
        // Read what is left, so the client finishes sending and reads the answer.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        r
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    breq.context_digests = Arc::new(unpacked.map_err(|e| ApiError::invalid(e.to_string()))?);
    if let Some(remote) = remote {
        // A git repository, or a tar or a Dockerfile at a URL, fetched by the daemon.
        let known = d
            .builder
            .remote_context(&remote, ctx.path(), &breq.dockerfile)
            .await
            .map_err(|e| {
                ApiError::new(
                    ErrorKind::Internal,
                    format!("error downloading remote context {remote}: {e}"),
                )
            })?;
        breq.context_digests = Arc::new(known);
    }
    stream_build(d, breq, ctx, quiet)
}

/// Runs the build in the background; its progress is the response, as JSON lines.
fn stream_build(d: Arc<Daemon>, breq: BuildRequest, ctx: wharf_builder::ContextDir, quiet: bool) -> Res {
    let (tx, rx) = mpsc::channel::<std::io::Result<bytes::Bytes>>(64);
    let builder = d.builder.clone();
    // The client going away (its connection, and so the body's receiver, dropped) cancels.
    let gone = tx.clone();
    tokio::spawn(async move {
        let (ltx, mut lrx) = mpsc::unbounded_channel::<Value>();
        let forward = tokio::spawn(async move {
            loop {
                // A step that prints nothing for a while gets a newline (JSON-lines readers skip
                // whitespace between values): only a write finds out that a client went away,
                // since connections stay open for reading after the client's half-close.
                let b = match tokio::time::timeout(std::time::Duration::from_secs(1), lrx.recv()).await {
                    Ok(Some(v)) => {
                        let mut b = serde_json::to_vec(&v).expect("serialise");
                        b.extend_from_slice(b"\r\n");
                        b
                    }
                    Ok(None) => break,
                    Err(_) => b"\n".to_vec(),
                };
                if tx.send(Ok(b.into())).await.is_err() {
                    break;
                }
            }
        });
        let mut out = |p: Progress| {
            match p {
                Progress::Stream(_) if quiet => {}
                Progress::Stream(s) => {
                    let _ = ltx.send(json!({ "stream": s }));
                }
                Progress::Aux(id) => {
                    let _ = ltx.send(json!({"aux": {"ID": id.to_string()}}));
                    // Quiet: the ID is all the client prints, as a line of the stream.
                    if quiet {
                        let _ = ltx.send(json!({"stream": format!("{id}\n")}));
                    }
                }
            }
        };
        if let Err(e) = builder.build(&breq, ctx.path(), &mut out, gone.closed()).await {
            let msg = e.to_string();
            let detail = match e.code() {
                Some(c) => json!({"code": c, "message": msg}),
                None => json!({ "message": msg }),
            };
            let _ = ltx.send(json!({"errorDetail": detail, "error": msg}));
        }
        drop(ltx);
        let _ = forward.await;
        // The answer ends here; the context goes after (a large one takes a while).
        drop(gone);
        let _ = tokio::task::spawn_blocking(move || drop(ctx)).await;
    });
    let mut r = Response::new(body::from_receiver(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `POST /build/cancel?id=`: stops the build started with that `buildid`.
pub(crate) fn cancel(d: Arc<Daemon>, q: &Query) -> Res {
    let id = q.get("id").unwrap_or("");
    if !d.builder.cancel(id) {
        return Err(ApiError::new(ErrorKind::NotFound, format!("no such build: {id}")));
    }
    crate::routes::json_response(hyper::StatusCode::OK, &json!({}))
}

/// `POST /build/prune`: `all`, `keep-storage` (or its newer names `reserved-space` and
/// `max-used-space`), and the `until`/`unused-for` filters.
pub(crate) async fn prune(d: Arc<Daemon>, q: &Query) -> Res {
    let opts = prune_options(q)?;
    let b = d.builder.clone();
    let (deleted, freed) = tokio::task::spawn_blocking(move || b.prune(&opts))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    crate::routes::json_response(
        hyper::StatusCode::OK,
        &json!({"CachesDeleted": deleted, "SpaceReclaimed": freed}),
    )
}

fn prune_options(q: &Query) -> Result<wharf_builder::gc::PruneOptions, ApiError> {
    let mut opts = wharf_builder::gc::PruneOptions {
        all: q.bool("all"),
        ..Default::default()
    };
    for name in ["keep-storage", "reserved-space", "max-used-space"] {
        if let Some(v) = q.get(name).filter(|v| !v.is_empty()) {
            let n: u64 = v
                .parse()
                .map_err(|_| ApiError::invalid(format!("invalid {name}: {v:?}")))?;
            if n > 0 && (opts.keep_storage == 0 || n < opts.keep_storage) {
                opts.keep_storage = n;
            }
        }
    }
    let filters = q.filters()?;
    for (k, values) in &filters {
        match k.as_str() {
            "until" | "unused-for" => {
                for v in values {
                    let d = wharf_units::parse_go_duration(v)
                        .ok_or_else(|| ApiError::invalid(format!("invalid {k} filter: {v:?}")))?;
                    opts.unused_for = Some(d);
                }
            }
            other => return Err(ApiError::invalid(format!("invalid filter '{other}'"))),
        }
    }
    Ok(opts)
}

/// `system df`'s `BuildCache`: the cache's records as BuildKit's are shown.
pub(crate) fn usage_json(d: &Daemon) -> Result<Value, ApiError> {
    let recs = d
        .builder
        .usage()
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    let t = |s: i64| wharf_image::config::rfc3339_at(s);
    // The context files clients sent, as BuildKit shows its local sources.
    let (size, used) = d.builder.blobs().usage();
    let sources = (size > 0).then(|| {
        json!({
            "ID": "context-files",
            "Parent": "",
            "Parents": [],
            "Type": "source.local",
            "Description": "build contexts' files, by content",
            "InUse": false,
            "Shared": false,
            "Size": size,
            "CreatedAt": t(used),
            "LastUsedAt": t(used),
            "UsageCount": 0,
        })
    });
    Ok(Value::Array(
        recs.into_iter()
            .map(|r| {
                json!({
                    "ID": r.id,
                    "Parent": "",
                    "Parents": [],
                    "Type": "regular",
                    "Description": r.description,
                    "InUse": r.in_use,
                    "Shared": false,
                    "Size": r.size,
                    "CreatedAt": t(r.created),
                    "LastUsedAt": t(r.last_used),
                    "UsageCount": r.uses,
                })
            })
            .chain(sources)
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(Some(s))
    }

    #[test]
    fn queries_as_the_docker_cli_sends_them() {
        let r = request(&q("t=a%3A1&t=b&dockerfile=sub%2FDf&buildargs=%7B%22A%22%3A%221%22%2C%22B%22%3Anull%7D&labels=%7B%22l%22%3A%22v%22%7D&nocache=1&rm=0&forcerm=1&target=build&networkmode=none")).unwrap();
        assert_eq!(r.tags, ["a:1", "b"]);
        assert_eq!(r.dockerfile, "sub/Df");
        assert_eq!(r.build_args.get("A"), Some(&Some("1".into())));
        assert_eq!(r.build_args.get("B"), Some(&None));
        assert_eq!(r.labels.get("l").map(String::as_str), Some("v"));
        assert!(r.no_cache && !r.rm && r.force_rm);
        assert_eq!(r.target.as_deref(), Some("build"));
        assert_eq!(r.network_mode.as_deref(), Some("none"));
        let d = request(&q("")).unwrap();
        assert!(d.rm && !d.force_rm && !d.no_cache && d.tags.is_empty());
        assert!(request(&q("t=Bad%20Name")).is_err());
        assert!(request(&q("buildargs=%5B1%5D")).is_err());
        assert!(request(&q("remote=https%3A%2F%2Fexample.com%2Fctx.tar")).is_ok());
        assert!(request(&q("squash=1")).is_err());
        assert!(request(&q("outputs=%5B%7B%22Type%22%3A%22local%22%7D%5D")).is_err());
        assert!(request(&q("outputs=%5B%5D")).is_ok());
    }

    #[test]
    fn prune_queries_as_the_docker_cli_sends_them() {
        let o = prune_options(&q(
            "all=1&keep-storage=1000&filters=%7B%22until%22%3A%7B%2224h%22%3Atrue%7D%7D",
        ))
        .unwrap();
        assert!(o.all);
        assert_eq!(o.keep_storage, 1000);
        assert_eq!(o.unused_for, Some(std::time::Duration::from_secs(86_400)));
        let o = prune_options(&q("reserved-space=500&max-used-space=700")).unwrap();
        assert_eq!((o.all, o.keep_storage), (false, 500));
        assert!(prune_options(&q("filters=%7B%22type%22%3A%7B%22x%22%3Atrue%7D%7D")).is_err());
        assert!(prune_options(&q("keep-storage=lots")).is_err());
    }
}
