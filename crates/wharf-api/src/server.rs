//! Listening and connection handling: unix sockets (mode 0660), TCP (with TLS, see `tls`) and
//! inherited fds, one hyper HTTP/1.1 connection task each, stopped together on shutdown.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use wharf_image::ImageService;

use crate::body::Body;

/// What `/info` and `/version` report about the daemon.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    /// `--data-root`.
    pub data_root: PathBuf,
    /// `--exec-root`.
    pub exec_root: PathBuf,
    /// A stable ID for this data root.
    pub id: String,
    /// Unix time the daemon started.
    pub started: i64,
}

/// Everything the routes can reach.
#[derive(Debug)]
pub struct Daemon {
    /// The image service.
    pub images: Arc<ImageService>,
    /// The container service.
    pub containers: Arc<wharf_container::ContainerService>,
    /// The registry client.
    pub dist: Arc<wharf_distribution::Distribution>,
    /// The Dockerfile builder.
    pub builder: Arc<wharf_builder::Builder>,
    /// Static facts.
    pub info: DaemonInfo,
}

/// A bound listener.
pub enum Listener {
    /// `unix://PATH` or `fd://`.
    Unix(UnixListener),
    /// `tcp://HOST:PORT` (`--tls=false`).
    Tcp(TcpListener),
    /// `tcp://HOST:PORT` with TLS (`--tls`, `--tlsverify`).
    Tls(TcpListener, tokio_rustls::TlsAcceptor),
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listener::Unix(u) => f.debug_tuple("Unix").field(u).finish(),
            Listener::Tcp(t) => f.debug_tuple("Tcp").field(t).finish(),
            Listener::Tls(t, _) => f.debug_tuple("Tls").field(t).finish(),
        }
    }
}

/// How long a TLS client has to finish its handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve `listeners` until `shutdown` turns true, then wait for open connections briefly.
pub async fn serve(listeners: Vec<Listener>, daemon: Arc<Daemon>, mut shutdown: watch::Receiver<bool>) {
    let mut tasks = Vec::new();
    for l in listeners {
        let d = daemon.clone();
        let sd = shutdown.clone();
        tasks.push(tokio::spawn(async move { accept_loop(l, d, sd).await }));
    }
    let _ = shutdown.wait_for(|v| *v).await;
    for t in tasks {
        t.abort();
    }
}

async fn accept_loop(l: Listener, daemon: Arc<Daemon>, shutdown: watch::Receiver<bool>) {
    loop {
        let d = daemon.clone();
        match &l {
            Listener::Unix(u) => match u.accept().await {
                Ok((s, _)) => spawn_conn(TokioIo::new(s), d, shutdown.clone()),
                Err(e) => tracing::warn!("accept: {e}"),
            },
            Listener::Tcp(t) => match t.accept().await {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    spawn_conn(TokioIo::new(s), d, shutdown.clone())
                }
                Err(e) => tracing::warn!("accept: {e}"),
            },
            Listener::Tls(t, acceptor) => match t.accept().await {
                Ok((s, peer)) => {
                    let _ = s.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let sd = shutdown.clone();
                    // The handshake runs on the connection's own task, so a slow client holds
                    // up nobody else.
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(s)).await {
                            Ok(Ok(tls)) => spawn_conn(TokioIo::new(tls), d, sd),
                            Ok(Err(e)) => tracing::info!(%peer, "TLS handshake: {e}"),
                            Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
                Err(e) => tracing::warn!("accept: {e}"),
            },
        }
    }
}

fn spawn_conn<I>(io: I, daemon: Arc<Daemon>, mut shutdown: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let svc = service_fn(move |req: Request<Incoming>| {
            let d = daemon.clone();
            let req = req.map(crate::body::pump);
            async move { Ok::<Response<Body>, Infallible>(crate::routes::handle(d, req).await) }
        });
        // Half-closed connections are answered: a client may shut down its sending side once
        // the request is out (`nc -U`, some proxies) and still read the answer.
        let conn = http1::Builder::new()
            .half_close(true)
            .serve_connection(io, svc)
            .with_upgrades();
        tokio::pin!(conn);
        let stopped = tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("connection: {e}");
                }
                false
            }
            r = shutdown.wait_for(|v| *v) => r.is_ok(),
        };
        if stopped {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    });
}
