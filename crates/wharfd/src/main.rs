//! `wharfd`, the daemon: reads its flags and `daemon.json` (dockerd's names and keys), takes an
//! exclusive lock on the data root, opens the image store, listens where `-H` says, and serves
//! the Docker Engine API until SIGTERM or SIGINT.

mod config;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::net::{TcpListener, UnixListener};
use wharf_api::{Daemon, DaemonInfo, Listener};
use wharf_container::{ContainerService, ServiceConfig};
use wharf_image::ImageService;
use wharf_store::Driver;

use crate::config::{Flags, Settings};

fn main() -> Result<()> {
    let flags = Flags::parse();
    let settings = Settings::resolve(flags)?;
    init_logging(&settings.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(8),
        )
        .build()?;
    rt.block_on(run(settings))
}

fn init_logging(level: &str) {
    let level = match level {
        "fatal" => "error",
        l => l,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

/// Holds the data-root lock for the daemon's lifetime (released when the fd closes).
struct RootLock {
    _file: fs::File,
}

fn lock_root(data_root: &Path) -> Result<RootLock> {
    let path = data_root.join("wharfd.lock");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let holder = fs::read_to_string(&path).unwrap_or_default();
        bail!(
            "another wharfd (pid {}) is already using data root {}; stop it or choose another --data-root",
            holder.trim(),
            data_root.display()
        );
    }
    f.set_len(0)?;
    write!(f, "{}", std::process::id())?;
    Ok(RootLock { _file: f })
}

fn make_dir(p: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn engine_id(data_root: &Path) -> Result<String> {
    let p = data_root.join("engine-id");
    if let Ok(s) = fs::read_to_string(&p) {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_string());
        }
    }
    let id = wharf_store::content::random_name();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    );
    fs::write(&p, &id)?;
    Ok(id)
}

async fn bind(host: &str, s: &Settings) -> Result<Vec<(Listener, Option<PathBuf>)>> {
    if let Some(path) = host.strip_prefix("unix://") {
        let path = PathBuf::from(if path.is_empty() { "/run/wharf/wharf.sock" } else { path });
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        if path.exists() {
            // A live daemon would answer; a stale socket file from a crash does not.
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                bail!("socket {} is in use by another daemon", path.display());
            }
            fs::remove_file(&path)?;
        }
        let l = UnixListener::bind(&path).with_context(|| format!("listening on {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o660))?;
        return Ok(vec![(Listener::Unix(l), Some(path))]);
    }
    if let Some(addr) = host.strip_prefix("tcp://") {
        let tls = match &s.tls_files {
            Some(t) => {
                let acceptor = wharf_api::tls::acceptor(&t.cert, &t.key, t.client_ca.as_deref())
                    .with_context(|| format!("TLS for {host}"))?;
                if t.client_ca.is_none() {
                    tracing::warn!("listening on {host} with TLS but without --tlsverify: any client that reaches it controls this host as root");
                }
                Some(acceptor)
            }
            None if s.tls == Some(false) => {
                tracing::warn!("listening on {host} without TLS: anyone who can reach it controls this host as root");
                None
            }
            None => bail!(
                "refusing to listen on {host} without TLS: anyone who can reach it controls this host as root; \
                 use --tlsverify (or pass --tls=false to do it anyway)"
            ),
        };
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {host}"))?;
        return Ok(vec![(
            match tls {
                Some(a) => Listener::Tls(l, a),
                None => Listener::Tcp(l),
            },
            None,
        )]);
    }
    if host.starts_with("fd://") {
        return systemd_listeners();
    }
    bail!("invalid host {host:?}: use unix://PATH, tcp://HOST:PORT or fd://")
}

/// Sockets passed by systemd socket activation (`LISTEN_FDS`, starting at fd 3).
fn systemd_listeners() -> Result<Vec<(Listener, Option<PathBuf>)>> {
    let pid_ok = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if !pid_ok || n <= 0 {
        bail!("fd:// given but no sockets were passed (LISTEN_FDS/LISTEN_PID unset)");
    }
    let mut out = Vec::new();
    for fd in 3..3 + n {
        use std::os::fd::FromRawFd;
        // SAFETY: systemd's protocol hands these fds to this process, open, and nothing else in
        // the process owns them; each is wrapped exactly once.
        let std_l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        std_l.set_nonblocking(true)?;
        out.push((Listener::Unix(UnixListener::from_std(std_l)?), None));
    }
    Ok(out)
}

/// Are any containers still running (their shims' sockets answer)?
fn daemon_running(s: &Settings) -> bool {
    let dir = s.exec_root.join("s");
    fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| std::os::unix::net::UnixStream::connect(e.path()).is_ok())
        })
        .unwrap_or(false)
}

/// `wharf-shim` sits beside `wharfd` (or where `WHARF_SHIM` says).
fn shim_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("WHARF_SHIM") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating wharfd")?;
    let p = exe.with_file_name("wharf-shim");
    if !p.exists() {
        bail!("wharf-shim not found at {} (set WHARF_SHIM)", p.display());
    }
    Ok(p)
}

async fn run(s: Settings) -> Result<()> {
    make_dir(&s.data_root, 0o711)?;
    make_dir(&s.exec_root, 0o700)?;
    let _lock = lock_root(&s.data_root)?;
    // A host that cannot be used (plain TCP without --tls=false, an unknown scheme) fails the
    // start before anything is set up on the machine.
    for h in &s.hosts {
        let tcp = h.starts_with("tcp://");
        if tcp && s.tls != Some(false) && s.tls_files.is_none() {
            bail!(
                "refusing to listen on {h} without TLS: anyone who can reach it controls this host as root; \
                 use --tlsverify (or pass --tls=false to do it anyway)"
            );
        }
        if !tcp && !h.starts_with("unix://") && !h.starts_with("fd://") {
            bail!("invalid host {h:?}: use unix://PATH, tcp://HOST:PORT or fd://");
        }
    }

    let (driver, fell_back) = Driver::choose(s.storage_driver.as_deref(), &s.data_root).map_err(anyhow::Error::msg)?;
    if fell_back {
        tracing::warn!(
            "overlayfs is not usable on {}; falling back to vfs",
            s.data_root.display()
        );
    }
    let images = tokio::task::spawn_blocking({
        let root = s.data_root.clone();
        move || ImageService::open(&root, driver)
    })
    .await??;
    let images = Arc::new(images);
    let volumes = Arc::new(wharf_volume::VolumeStore::open(&s.data_root)?);
    let mut pools = Vec::new();
    for (base, size) in &s.net.pools {
        let b: wharf_network::ipam::Subnet = base
            .parse()
            .with_context(|| format!("default-address-pool base {base}"))?;
        pools.push((b, *size));
    }
    let net = wharf_network::NetworkService::open(wharf_network::NetConfig {
        data_root: s.data_root.clone(),
        exec_root: s.exec_root.clone(),
        bridge: s.net.bridge.clone(),
        bip: s.net.bip,
        pools,
        mtu: s.net.mtu,
        iptables: s.net.iptables,
        userland_proxy: s.net.userland_proxy,
    })
    .await
    .context("setting up networking")?;
    let opened = shim_path().and_then(|shim| {
        Ok(ContainerService::open(
            ServiceConfig {
                data_root: s.data_root.clone(),
                exec_root: s.exec_root.clone(),
                shim,
                cgroup_parent: s.cgroup_parent.clone(),
                init_path: s.init_path.clone(),
                default_init: s.init,
            },
            images.clone(),
            volumes,
            net.clone(),
        )?)
    });
    let containers = match opened {
        Ok(c) => c,
        Err(e) => {
            // Nothing may be left behind: the bridges and the table go with the failed start.
            net.shutdown(daemon_running(&s)).await;
            return Err(e);
        }
    };
    containers.restore().await;
    let dist = Arc::new(wharf_distribution::Distribution::open(
        s.registry.clone(),
        images.clone(),
        &s.data_root,
    )?);
    let fetcher: Arc<dyn wharf_builder::Fetcher> = Arc::new(Fetcher(dist.clone()));
    let builder = Arc::new(
        wharf_builder::Builder::open(
            &s.data_root.join("builder"),
            images.clone(),
            containers.clone(),
            Some(fetcher),
        )?
        .with_gc(s.builder_gc.clone()),
    );
    let daemon = Arc::new(Daemon {
        dist,
        builder,
        images,
        containers,
        info: DaemonInfo {
            data_root: s.data_root.clone(),
            exec_root: s.exec_root.clone(),
            id: engine_id(&s.data_root)?,
            started: 0,
        },
    });
    let mut listeners = Vec::new();
    let mut socket_files = Vec::new();
    for h in &s.hosts {
        let bound = match bind(h, &s).await {
            Ok(b) => b,
            Err(e) => {
                net.shutdown(daemon_running(&s)).await;
                return Err(e);
            }
        };
        for (l, path) in bound {
            listeners.push(l);
            socket_files.extend(path);
        }
    }
    if let Some(p) = &s.pidfile {
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(p, std::process::id().to_string()).with_context(|| format!("writing pidfile {}", p.display()))?;
    }
    tracing::info!(
        hosts = ?s.hosts, data_root = %s.data_root.display(), driver = driver.name(),
        "wharfd {} serving API {}", env!("CARGO_PKG_VERSION"), wharf_api::server_api_version()
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(wharf_api::serve(listeners, daemon, rx));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    let _ = tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    // With no container left running, the bridges and the nftables table go too.
    net.shutdown(daemon_running(&s)).await;
    for f in socket_files {
        let _ = fs::remove_file(f);
    }
    if let Some(p) = &s.pidfile {
        let _ = fs::remove_file(p);
    }
    Ok(())
}

/// The builder's way to a base image it lacks: the daemon's registry client, as `docker pull`
/// (the daemon's mirrors and registry settings apply).
#[derive(Debug)]
struct Fetcher(Arc<wharf_distribution::Distribution>);

impl wharf_builder::Fetcher for Fetcher {
    fn git<'a>(
        &'a self,
        source: &'a str,
        to: &'a std::path::Path,
        keep_git_dir: bool,
    ) -> wharf_builder::Fetching<'a, String> {
        Box::pin(async move {
            let src = wharf_distribution::git::GitSource::parse(source).map_err(|e| e.to_string())?;
            let to = to.to_path_buf();
            tokio::task::spawn_blocking(move || src.fetch_to(&to, keep_git_dir))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        })
    }

    fn is_git(&self, source: &str) -> bool {
        wharf_distribution::git::is_git_url(source)
    }

    fn download<'a>(
        &'a self,
        url: &'a str,
        to: &'a std::path::Path,
    ) -> wharf_builder::Fetching<'a, Option<std::time::SystemTime>> {
        Box::pin(async move { self.0.download(url, to).await.map_err(|e| e.to_string()) })
    }

    fn fetch<'a>(&'a self, reference: &'a str) -> wharf_builder::Fetching<'a, ()> {
        Box::pin(async move {
            let r = wharf_reference::Reference::parse_tagged_default(reference).map_err(|e| e.to_string())?;
            self.0
                .pull(&r, None, None, &wharf_distribution::Progress::none())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
