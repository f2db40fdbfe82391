//! The Engine API client: one HTTP/1.1 connection per request over the daemon's unix socket
//! (or TCP), JSON in and out, streamed bodies for images and logs, and hijacked connections
//! (`101 UPGRADED`) for attach and exec. The host comes from `-H`, `WHARF_HOST` or
//! `DOCKER_HOST`, in that order, as the docker CLI reads `DOCKER_HOST`.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::AsyncRead;

use crate::error::{CliError, Result};

/// The default socket, as wharfd listens by default.
pub const DEFAULT_HOST: &str = "unix:///run/wharf/wharf.sock";

/// Where the daemon is.
#[derive(Debug, Clone)]
enum Addr {
    Unix(PathBuf),
    Tcp(String),
}

/// A request body: nothing, bytes, or a reader streamed in chunks (image tars).
pub enum Body {
    /// Bytes known up front.
    Full(Full<Bytes>),
    /// A file or stdin, read as the daemon takes it.
    Reader(Pin<Box<dyn AsyncRead + Send>>),
}

impl Body {
    /// An empty body.
    pub fn empty() -> Body {
        Body::Full(Full::new(Bytes::new()))
    }

    /// A JSON body.
    pub fn json(v: &Value) -> Body {
        Body::Full(Full::new(Bytes::from(serde_json::to_vec(v).expect("JSON"))))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Body::Full(f) => f.size_hint(),
            Body::Reader(_) => http_body::SizeHint::default(),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(f) if f.is_end_stream())
    }

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Frame<Bytes>>>> {
        match &mut *self {
            Body::Full(f) => Pin::new(f).poll_frame(cx).map_err(|never| match never {}),
            Body::Reader(r) => {
                let mut buf = vec![0u8; 256 * 1024];
                let mut rb = tokio::io::ReadBuf::new(&mut buf);
                match r.as_mut().poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(None),
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        buf.truncate(n);
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
                    }
                }
            }
        }
    }
}

/// The client.
#[derive(Debug, Clone)]
pub struct Client {
    addr: Addr,
    host_header: String,
}

impl Client {
    /// From `-H`, else `WHARF_HOST`, else `DOCKER_HOST`, else the default socket.
    pub fn new(host: Option<String>) -> Result<Client> {
        let host = host
            .or_else(|| std::env::var("WHARF_HOST").ok().filter(|s| !s.is_empty()))
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        let addr = if let Some(p) = host.strip_prefix("unix://") {
            Addr::Unix(PathBuf::from(p))
        } else if let Some(a) = host.strip_prefix("tcp://") {
            Addr::Tcp(a.trim_end_matches('/').to_string())
        } else if host.starts_with('/') {
            Addr::Unix(PathBuf::from(&host))
        } else {
            return Err(CliError::Usage(format!(
                "unable to parse docker host `{host}`: use unix:///path or tcp://host:port"
            )));
        };
        let host_header = match &addr {
            Addr::Unix(_) => "api.moby.localhost".to_string(),
            Addr::Tcp(a) => a.clone(),
        };
        Ok(Client { addr, host_header })
    }

    fn describe(&self) -> String {
        match &self.addr {
            Addr::Unix(p) => format!("unix://{}", p.display()),
            Addr::Tcp(a) => format!("tcp://{a}"),
        }
    }

    async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>> {
        let unreachable = |e: std::io::Error| {
            CliError::Connect(format!(
                "Cannot connect to the wharf daemon at {}. Is the daemon running? ({e})",
                self.describe()
            ))
        };
        macro_rules! over {
            ($stream:expr) => {{
                let io = TokioIo::new($stream);
                let (mut tx, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(async move {
                    let _ = conn.with_upgrades().await;
                });
                Ok(tx.send_request(req).await?)
            }};
        }
        match &self.addr {
            Addr::Unix(p) => over!(tokio::net::UnixStream::connect(p).await.map_err(unreachable)?),
            Addr::Tcp(a) => over!(tokio::net::TcpStream::connect(a).await.map_err(unreachable)?),
        }
    }

    fn build(&self, method: Method, path: &str, body: Body, json: bool) -> Request<Body> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", &self.host_header)
            .header("User-Agent", concat!("wharf-cli/", env!("CARGO_PKG_VERSION")));
        if json {
            b = b.header("Content-Type", "application/json");
        }
        b.body(body).expect("request")
    }

    /// A request whose error statuses become [`CliError::Daemon`] with the daemon's message.
    pub async fn call(&self, method: Method, path: &str, body: Body) -> Result<Response<Incoming>> {
        // dockerd reads a JSON content type as a body, which some endpoints refuse (start).
        let json = matches!(body, Body::Full(_)) && body.size_hint().exact() != Some(0);
        let res = self.send(self.build(method, path, body, json)).await?;
        if res.status().is_client_error() || res.status().is_server_error() {
            let status = res.status();
            let bytes = res.into_body().collect().await?.to_bytes();
            return Err(daemon_error(status, &bytes));
        }
        Ok(res)
    }

    /// Like [`Client::call`] with one extra header (`X-Registry-Auth`, a content type).
    pub async fn call_with_header(
        &self,
        method: Method,
        path: &str,
        body: Body,
        name: &'static str,
        value: &str,
    ) -> Result<Response<Incoming>> {
        let mut req = self.build(method, path, body, false);
        req.headers_mut().insert(
            name,
            value
                .parse()
                .map_err(|_| CliError::Usage(format!("invalid {name} header value")))?,
        );
        let res = self.send(req).await?;
        if res.status().is_client_error() || res.status().is_server_error() {
            let status = res.status();
            let bytes = res.into_body().collect().await?.to_bytes();
            return Err(daemon_error(status, &bytes));
        }
        Ok(res)
    }

    /// Like [`Client::call`] with a tar (or other raw) body.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Body,
        content_type: &str,
    ) -> Result<Response<Incoming>> {
        self.call_with_header(method, path, body, "Content-Type", content_type)
            .await
    }

    /// A request answered with JSON (or nothing: `Value::Null`).
    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let body = body.map(Body::json).unwrap_or_else(Body::empty);
        let res = self.call(method, path, body).await?;
        let bytes = res.into_body().collect().await?.to_bytes();
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| CliError::Protocol(format!("invalid JSON from the daemon: {e}")))
    }

    /// `GET` JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json(Method::GET, path, None).await
    }

    /// `POST` with no body, answer ignored.
    pub async fn post(&self, path: &str) -> Result<()> {
        self.json(Method::POST, path, None).await.map(|_| ())
    }

    /// A hijacked connection (`Upgrade: tcp`): the raw stream after `101`, or the body of a
    /// plain `200` answer from a daemon that did not upgrade.
    pub async fn hijack(&self, path: &str, body: Option<&Value>) -> Result<Hijacked> {
        let json = body.is_some();
        let body = body.map(Body::json).unwrap_or_else(Body::empty);
        let mut req = self.build(Method::POST, path, body, json);
        req.headers_mut()
            .insert("Connection", "Upgrade".parse().expect("header"));
        req.headers_mut().insert("Upgrade", "tcp".parse().expect("header"));
        let res = self.send(req).await?;
        let status = res.status();
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let up = hyper::upgrade::on(res).await?;
            return Ok(Hijacked::Upgraded(TokioIo::new(up)));
        }
        if status.is_client_error() || status.is_server_error() {
            let bytes = res.into_body().collect().await?.to_bytes();
            return Err(daemon_error(status, &bytes));
        }
        Ok(Hijacked::Body(res.into_body()))
    }
}

/// An attach or exec stream.
pub enum Hijacked {
    /// Both ways.
    Upgraded(TokioIo<hyper::upgrade::Upgraded>),
    /// Output only.
    Body(Incoming),
}

fn daemon_error(status: StatusCode, body: &[u8]) -> CliError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    CliError::Daemon {
        status: status.as_u16(),
        message,
    }
}

/// Percent-encode a query value.
pub fn q(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
