//! `stats` (one sample or a stream) and `top`.

use super::*;
use crate::body::{self};
use crate::error::ApiError;
use crate::query::Query;
use crate::routes::json_response as json_res;
use crate::server::Daemon;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;
use std::sync::Arc;
use wharf_container::record::ZERO_TIME;
use wharf_reference::ErrorKind;

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `GET /containers/{id}/stats`: one sample (`stream=0`; with `one-shot`, no CPU baseline) or a
/// sample a second for as long as the client reads and the container runs.
pub(crate) async fn stats(d: Arc<Daemon>, name: &str, q: &Query) -> Res {
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

pub(crate) async fn top(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
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
