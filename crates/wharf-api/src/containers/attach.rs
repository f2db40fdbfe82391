//! Streams of a container: the hijacked attach (`101 UPGRADED`, raw or multiplexed, logs
//! replayed first), `logs`, and `wait`.

use super::*;
use crate::body::{self, Body, ReqBody};
use crate::error::ApiError;
use crate::query::Query;
use crate::server::Daemon;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_container::logs::{parse_time, LogOptions};
use wharf_container::{Record, WaitCondition};
use wharf_units::stdcopy::{frame, STREAM_STDERR, STREAM_STDOUT};

pub(crate) fn wait(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
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

pub(crate) fn stream_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Whether the container's log driver keeps a log to read back (`none` does not).
pub(crate) fn log_readable(r: &Record) -> bool {
    r.host_config
        .lifecycle
        .log_config
        .as_ref()
        .and_then(|l| l.typ.as_deref())
        != Some("none")
}

pub(crate) fn logs(d: &Arc<Daemon>, name: &str, q: &Query) -> Res {
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

pub(crate) fn upgrade_response(tty: bool) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(stream_type(tty)));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    r
}

pub(crate) fn wants_upgrade(req: &Request<ReqBody>) -> bool {
    req.headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// The detach sequence: ctrl-p ctrl-q unless the client names other keys.
pub(crate) fn detach_keys(q: &Query) -> Vec<u8> {
    wharf_units::stdcopy::detach_keys(q.get("detachKeys").filter(|s| !s.is_empty()))
}

/// Copy between the client's hijacked connection and a task: its output goes out
/// multiplexed (Docker's stream frames), or as raw bytes when `raw`; the client's bytes go to
/// its stdin until the `detach` sequence (then the client's connection closes and the process
/// runs on). When the client's input ends, `on_stdin_eof` runs and output keeps flowing.
pub(crate) async fn pump<C>(
    client: C,
    task: wharf_container::Task,
    raw: bool,
    detach: Vec<u8>,
    on_stdin_eof: impl std::future::Future<Output = ()> + Send,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let wharf_container::Task {
        mut output, mut stdin, ..
    } = task;
    let input = async move {
        let mut buf = vec![0u8; 32 * 1024];
        let mut matched = 0usize;
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    on_stdin_eof.await;
                    // Stdin is over but output keeps flowing until the process ends.
                    return std::future::pending::<()>().await;
                }
                Ok(n) => n,
            };
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if !detach.is_empty() && b == detach[matched] {
                    matched += 1;
                    if matched == detach.len() {
                        let _ = stdin.write_all(&out).await;
                        return;
                    }
                    continue;
                }
                if matched > 0 {
                    out.extend_from_slice(&detach[..matched]);
                    matched = 0;
                }
                out.push(b);
            }
            if stdin.write_all(&out).await.is_err() {
                return std::future::pending::<()>().await;
            }
        }
    };
    let copy_out = async {
        while let Some(o) = output.recv().await {
            let (stream, data) = match &o {
                wharf_container::Output::Stdout(d) => (STREAM_STDOUT, d),
                wharf_container::Output::Stderr(d) => (STREAM_STDERR, d),
            };
            let written = if raw {
                cw.write_all(data).await
            } else {
                cw.write_all(&frame(stream, data)).await
            };
            if written.is_err() {
                return;
            }
        }
    };
    // The output's end (the process's, its exit already recorded) or a detach ends the
    // client's connection.
    tokio::select! {
        _ = copy_out => {}
        _ = input => {}
    }
    let _ = cw.flush().await;
    let _ = cw.shutdown().await;
}

/// Write a container's log so far (`attach` with `logs=1`) to the client. False when the
/// client is gone.
pub(crate) async fn replay_logs(
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

pub(crate) async fn attach(d: Arc<Daemon>, mut req: Request<ReqBody>, name: &str, q: &Query) -> Res {
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
        let task = match stream.await {
            Ok(t) => t,
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
        pump(TokioIo::new(upgraded), task, tty, detach, eof).await;
    });
    Ok(upgrade_response(tty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_key_specs() {
        let q = Query::parse(None);
        assert_eq!(detach_keys(&q), vec![16, 17]);
        let q = Query::parse(Some("detachKeys=ctrl-a,x"));
        assert_eq!(detach_keys(&q), vec![1, b'x']);
    }
}
