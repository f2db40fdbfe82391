//! Dockerfile builds on the engine's seams. A build parses the Dockerfile (`wharf-dockerfile`),
//! picks the stages the target needs, and runs each step as Docker's classic builder does: a
//! metadata step commits a new config with no layer (`ImageService::commit_image`), a RUN
//! step runs a container of the engine (`ContainerService`: create, attach, start, wait) and
//! commits its diff, a COPY or ADD step writes a tar of the sources into a container's root
//! and commits that. Every step's image is recorded in the [`cache::Cache`] under a key that
//! decides its result, and reused when the same key comes again.
//!
//! The builder reaches into no service's internals: it is a client of the engine, as the API
//! and the CRI are.

#![forbid(unsafe_code)]

pub mod blobs;
pub mod cache;
pub mod context;
pub mod copy;
pub mod gc;
mod graph;
mod mounts;
mod remote;
mod run;
mod stage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wharf_container::ContainerService;
use wharf_image::ImageService;
use wharf_reference::Digest;

/// What a build can get wrong.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse, or names what it may not.
    #[error("{0}")]
    Dockerfile(#[from] wharf_dockerfile::DockerfileError),
    /// The context cannot be read or escapes its root.
    #[error("{0}")]
    Context(String),
    /// A step failed (its message is Docker's).
    #[error("{0}")]
    Step(String),
    /// A RUN step's command exited non-zero.
    #[error("The command '{command}' returned a non-zero code: {code}")]
    Command {
        /// The command as Docker shows it.
        command: String,
        /// Its exit code.
        code: i64,
    },
    /// The engine refused something.
    #[error("{0}")]
    Engine(String),
    /// The client went away (or asked to stop).
    #[error("the build was cancelled")]
    Cancelled,
}

impl From<wharf_container::ContainerError> for BuildError {
    fn from(e: wharf_container::ContainerError) -> Self {
        BuildError::Engine(e.to_string())
    }
}

impl From<wharf_image::ImageError> for BuildError {
    fn from(e: wharf_image::ImageError) -> Self {
        BuildError::Engine(e.to_string())
    }
}

impl BuildError {
    /// The exit code a failed RUN step reports (`errorDetail.code`).
    pub fn code(&self) -> Option<i64> {
        match self {
            BuildError::Command { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// This crate's results.
pub type Result<T> = std::result::Result<T, BuildError>;

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The Dockerfile's path in the context (`Dockerfile` when empty).
    pub dockerfile: String,
    /// Names for the result (`-t`, repeated).
    pub tags: Vec<String>,
    /// `--build-arg`s (`None`: take the value from the daemon's environment; here: unset).
    pub build_args: BTreeMap<String, Option<String>>,
    /// `--target`: the stage to stop at (the last one when unset).
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--label`s for the result.
    pub labels: BTreeMap<String, String>,
    /// `--network` for RUN steps (`default`: the default bridge).
    pub network_mode: Option<String>,
    /// `--rm`: remove the step containers that succeeded (Docker's default).
    pub rm: bool,
    /// `--force-rm`: remove them even when they failed.
    pub force_rm: bool,
    /// `--cache-from`: when given, only these images (and their parents) are cache hits.
    pub cache_from: Vec<String>,
    /// `--pull`: fetch the base images even when the engine holds them.
    pub pull: bool,
    /// How RUN's containers run: `--add-host`, `--memory`, `--cpu-*`, `--shm-size`.
    pub run_host: wharf_container::config::HostSpec,
    /// `--platform` (`os/arch[/variant]`): what the bases must be, and `TARGETPLATFORM`.
    pub platform: Option<String>,
    /// The client's name for the build (`buildid`), by which `POST /build/cancel` stops it.
    pub build_id: Option<String>,
    /// `--secret`s, by id (`RUN --mount=type=secret`): never in an image, a key or a log.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// What the daemon knows of the context's files' contents (from [`blobs::Blobs`]), so
    /// a cached COPY reads none of them.
    pub context_digests: Arc<copy::ContextDigests>,
}

/// A future a [`Fetcher`] returns.
pub type Fetching<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<T, String>> + Send + 'a>>;

/// What a build fetches through the daemon's client (a build never reaches the network on
/// its own): base images the engine lacks, and `ADD <url>` sources.
pub trait Fetcher: Send + Sync + std::fmt::Debug {
    /// Pull `reference` into the engine; the error is the registry's message.
    fn fetch<'a>(&'a self, reference: &'a str) -> Fetching<'a, ()>;

    /// Fetch `url` into the file `to`; returns the server's `Last-Modified`, if any.
    fn download<'a>(&'a self, url: &'a str, to: &'a Path) -> Fetching<'a, Option<std::time::SystemTime>>;

    /// Check out the git source `source` (`url#ref:subdir`) as the directory `to` (which does
    /// not exist yet), its `.git` kept only with `keep_git_dir`; returns the commit.
    fn git<'a>(&'a self, source: &'a str, to: &'a Path, keep_git_dir: bool) -> Fetching<'a, String>;

    /// Whether `source` names a git repository (Docker's rule).
    fn is_git(&self, source: &str) -> bool;
}

/// What a build reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Text for the client's screen (`Step 1/3 : FROM busybox\n`).
    Stream(String),
    /// The result's image ID, before `Successfully built`.
    Aux(Digest),
}

/// The builder of a daemon.
#[derive(Debug, Clone)]
pub struct Builder {
    images: Arc<ImageService>,
    containers: Arc<ContainerService>,
    cache: cache::Cache,
    blobs: blobs::Blobs,
    tmp: PathBuf,
    fetcher: Option<Arc<dyn Fetcher>>,
    gc: gc::GcPolicy,
    /// The builds with a `buildid`, by it: what stops each.
    running: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Notify>>>>,
}

impl Builder {
    /// The builder keeping its cache and scratch space under `root`.
    pub fn open(
        root: &Path,
        images: Arc<ImageService>,
        containers: Arc<ContainerService>,
        fetcher: Option<Arc<dyn Fetcher>>,
    ) -> std::io::Result<Builder> {
        let tmp = root.join("tmp");
        // Contexts a crash left behind.
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        Ok(Builder {
            images,
            containers,
            cache: cache::Cache::open(root.join("cache"))?,
            blobs: blobs::Blobs::open(root.join("blobs"))?,
            tmp,
            fetcher,
            gc: gc::GcPolicy::default(),
            running: Arc::default(),
        })
    }

    /// A fresh directory for a build's context, removed when the guard goes.
    pub fn context_dir(&self) -> std::io::Result<ContextDir> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.tmp.join(format!("ctx-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(ContextDir(dir))
    }

    /// The store of context files that clients send by content.
    pub fn blobs(&self) -> &blobs::Blobs {
        &self.blobs
    }

    /// `POST /build/cancel`: stops the build named `id`; false when there is none.
    pub fn cancel(&self, id: &str) -> bool {
        match self.running.lock().expect("builds").get(id) {
            Some(stop) => {
                stop.notify_one();
                true
            }
            None => false,
        }
    }

    /// The daemon's `builder.gc` rules.
    pub fn with_gc(mut self, gc: gc::GcPolicy) -> Builder {
        self.gc = gc;
        self
    }

    /// Build `req` from the unpacked context in `ctx`, reporting to `out`; returns the image.
    ///
    /// When `cancelled` resolves first (the client went away), the build stops where it is
    /// and removes the step containers it had made: nothing of it is left but the images of
    /// the steps it finished (and their cache entries).
    pub async fn build(
        &self,
        req: &BuildRequest,
        ctx: &Path,
        out: &mut (dyn FnMut(Progress) + Send),
        cancelled: impl std::future::Future<Output = ()>,
    ) -> Result<Digest> {
        let live = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(tokio::sync::Notify::new());
        if let Some(id) = &req.build_id {
            self.running.lock().expect("builds").insert(id.clone(), stop.clone());
        }
        let r = tokio::select! {
            r = self.build_in(req, ctx, out, live.clone()) => r,
            () = cancelled => Err(BuildError::Cancelled),
            () = stop.notified() => Err(BuildError::Cancelled),
        };
        if let Some(id) = &req.build_id {
            self.running.lock().expect("builds").remove(id);
        }
        // A cancelled build, or a failed one whose other stages were still running: their
        // step containers go (a failed step's own is kept, as Docker keeps it, unless
        // --force-rm removed it already).
        if r.is_err() {
            let left: Vec<String> = std::mem::take(&mut *live.lock().expect("live"));
            for id in left {
                if let Err(e) = self.containers.remove(&id, true, true).await {
                    tracing::warn!(container = %id, "removing a cancelled build's container: {e}");
                }
            }
        }
        if !self.gc.rules.is_empty() {
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.collect_garbage()).await;
        }
        r
    }

    async fn build_in(
        &self,
        req: &BuildRequest,
        ctx: &Path,
        out: &mut (dyn FnMut(Progress) + Send),
        live: Arc<std::sync::Mutex<Vec<String>>>,
    ) -> Result<Digest> {
        let name = if req.dockerfile.is_empty() {
            "Dockerfile"
        } else {
            req.dockerfile.as_str()
        };
        let text = read_in_context(ctx, name)?;
        // Read first: a `.dockerignore` that names the Dockerfile (or itself) hides it from
        // the steps, not from the builder.
        // BuildKit's rule: `<Dockerfile>.dockerignore` beside it, if there is one, instead.
        // Read inside the context only (a link out of it finds nothing).
        let ignore = read_in_context(ctx, &format!("{name}.dockerignore"))
            .or_else(|_| read_in_context(ctx, ".dockerignore"))
            .unwrap_or_default();
        context::apply_ignore(ctx, &context::Ignore::parse(&ignore), &[])?;
        let df = wharf_dockerfile::parse(&text)?;
        stage::Build::new(self, req, ctx, &df, live)?.run(out).await
    }
}

/// A build's context directory; removed on drop.
#[derive(Debug)]
pub struct ContextDir(PathBuf);

impl ContextDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ContextDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file of the context, never through a link out of it.
fn read_in_context(ctx: &Path, name: &str) -> Result<String> {
    let missing = || BuildError::Context(format!("Cannot locate specified Dockerfile: {name}"));
    let sources = copy::resolve_sources(ctx, name, "COPY").map_err(|_| missing())?;
    let path = ctx.join(sources.first().ok_or_else(missing)?);
    if !path.is_file() {
        return Err(missing());
    }
    std::fs::read_to_string(path).map_err(|e| BuildError::Context(format!("reading {name}: {e}")))
}
