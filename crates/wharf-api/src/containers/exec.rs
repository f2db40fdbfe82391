//! Exec routes: create, the hijacked start stream, inspect.

use super::*;
use crate::body::{self, ReqBody};
use crate::error::ApiError;
use crate::routes::json_response as json_res;
use crate::server::Daemon;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_units::stdcopy::{frame, STREAM_STDOUT};

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ClientIo for T {}

/// A client connection a stream is pumped through (upgraded, or the body's pipe).
pub(crate) trait ClientIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

pub(crate) async fn exec_create(d: &Arc<Daemon>, req: Request<ReqBody>, name: &str) -> Res {
    let bytes = body::collect_json(req, 1 << 20).await?;
    let v: Value = crate::gojson::parse(&bytes)?;
    let cfg: bollard_stubs::models::ExecConfig =
        serde_json::from_value(crate::gojson::go_keys(v, crate::gojson::EXEC_CONFIG_FIELDS))
            .map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?;
    let id = d.containers.exec_create(name, crate::convert::exec_spec(cfg))?;
    json_res(StatusCode::CREATED, &json!({"Id": id}))
}

/// `POST /exec/{id}/start`. The body's `Tty` decides the framing (raw or multiplexed), as in
/// dockerd; the exec's own `Tty` decides whether the process gets a terminal. As in dockerd,
/// an attached exec starts once the response head is on its way (a client that reads the
/// socket past its HTTP reader must not miss the first output), and a failure to start is
/// written to the stream (the exec's exit code is 126).
pub(crate) async fn exec_start(d: Arc<Daemon>, mut req: Request<ReqBody>, id: &str) -> Res {
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
        // Nobody reads a detached exec's output: dropped, the task drains it and records the
        // exit.
        drop(d.containers.exec_start(&id).await?);
        return Ok(Response::new(body::empty()));
    }
    let stdin = x.config.stdin;
    let keys = if stdin {
        wharf_units::stdcopy::detach_keys(x.config.detach_keys.as_deref())
    } else {
        Vec::new()
    };
    // Start the exec and pump it through `client`, or write why it could not start.
    let run = move |client: Box<dyn ClientIo>, d: Arc<Daemon>, id: String| async move {
        let mut client = client;
        let task = match d.containers.exec_start(&id).await {
            Ok(task) => task,
            Err(e) => {
                let text = format!("{e}\r\n").into_bytes();
                let out = if raw { text } else { frame(STREAM_STDOUT, &text) };
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
        pump(client, task, raw, keys, eof).await;
    };
    if upgrade {
        tokio::spawn(async move {
            // A client gone before the exec started: it never runs.
            if let Ok(upgraded) = on_upgrade.await {
                run(Box::new(TokioIo::new(upgraded)), d, id).await
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

pub(crate) fn exec_inspect(d: &Arc<Daemon>, id: &str) -> Res {
    let x = d.containers.exec_get(id)?;
    json_res(StatusCode::OK, &crate::convert::exec_inspect(&x))
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
}
