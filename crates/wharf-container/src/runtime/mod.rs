//! The runtime the engine drives containers through: create a container from its bundle,
//! call it, open its streams, wait for its exit, and know when it let go. [`ShimRuntime`]
//! speaks to each container's `wharf-shim` on its socket; [`RecordingRuntime`] is the fake
//! the lifecycle's unit tests run against without root: it records every request and plays
//! the processes (they start, take signals, exit when the test says).
//! The stop sequence (`stop_process`: the stop signal, the grace period, SIGKILL) is written
//! against the trait, so those tests drive the real sequence.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use wharf_shim_proto::{Reply, Request};

use crate::error::{ContainerError, Result};
use crate::shim::ShimStream;

/// A boxed future, so that the trait can be used as `dyn Runtime`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the engine asks of a container's runtime.
pub trait Runtime: Send + Sync + std::fmt::Debug {
    /// Creates container `id` from its runtime spec and the shim's settings, in `bundle`: the
    /// container exists, its process waits for [`Request::Start`]. Returns the init's PID.
    fn create<'a>(
        &'a self,
        id: &'a str,
        bundle: &'a Path,
        spec: &'a oci_spec::runtime::Spec,
        shim: &'a wharf_shim_proto::ShimConfig,
    ) -> BoxFuture<'a, Result<i32>>;

    /// Sends `req` to the runtime of container `id` and waits for its reply; a failure the
    /// runtime reports is an error of its kind.
    fn call<'a>(&'a self, id: &'a str, req: Request) -> BoxFuture<'a, Result<Reply>>;

    /// Sends `req` and reads its reply; the connection then carries the stream that follows
    /// (attach, exec).
    fn open<'a>(&'a self, id: &'a str, req: Request) -> BoxFuture<'a, Result<(Reply, ShimStream)>>;

    /// Sends `req` without waiting for a reply: [`Request::Wait`] is answered at the exit.
    fn send<'a>(&'a self, id: &'a str, req: Request) -> BoxFuture<'a, Result<ShimStream>>;

    /// Until the runtime that last ran `id` (from `bundle`) has let go of it: its cgroups and
    /// state are removed.
    fn released<'a>(&'a self, id: &'a str, bundle: &'a Path) -> BoxFuture<'a, ()>;
}

/// Each container's `wharf-shim`, on its socket under the exec root.
#[derive(Debug, Clone)]
pub struct ShimRuntime {
    exec_root: PathBuf,
    shim: PathBuf,
}

impl ShimRuntime {
    /// The shims whose sockets are under `exec_root`, started from the `shim` binary.
    pub fn new(exec_root: PathBuf, shim: PathBuf) -> Self {
        ShimRuntime { exec_root, shim }
    }

    /// Where container `id`'s shim listens.
    pub fn socket(&self, id: &str) -> PathBuf {
        shim_socket(&self.exec_root, id)
    }
}

impl Runtime for ShimRuntime {
    /// Writes the bundle (`config.json`, which the shim hands to libcontainer and exec reads
    /// back, and `shim.json`), then spawns the shim.
    fn create<'a>(
        &'a self,
        _id: &'a str,
        bundle: &'a Path,
        spec: &'a oci_spec::runtime::Spec,
        shim: &'a wharf_shim_proto::ShimConfig,
    ) -> BoxFuture<'a, Result<i32>> {
        Box::pin(async move {
            std::fs::write(
                bundle.join("config.json"),
                serde_json::to_vec_pretty(spec).expect("spec"),
            )?;
            let config = bundle.join("shim.json");
            std::fs::write(&config, serde_json::to_vec(shim).expect("shim config"))?;
            crate::shim::spawn(&self.shim, &config, &bundle.join("shim.log")).await
        })
    }

    fn call<'a>(&'a self, id: &'a str, req: Request) -> BoxFuture<'a, Result<Reply>> {
        Box::pin(async move { crate::shim::call(&self.socket(id), &req).await })
    }

    fn open<'a>(&'a self, id: &'a str, req: Request) -> BoxFuture<'a, Result<(Reply, ShimStream)>> {
        Box::pin(async move { crate::shim::open(&self.socket(id), &req).await })
    }

    fn send<'a>(&'a self, id: &'a str, req: Request) -> BoxFuture<'a, Result<ShimStream>> {
        Box::pin(async move { crate::shim::send(&self.socket(id), &req).await })
    }

    fn released<'a>(&'a self, _id: &'a str, bundle: &'a Path) -> BoxFuture<'a, ()> {
        Box::pin(crate::shim::wait_gone(bundle))
    }
}

/// Where container `id`'s shim listens under `exec_root` (short: unix socket paths are
/// limited).
pub fn shim_socket(exec_root: &std::path::Path, id: &str) -> PathBuf {
    exec_root.join("s").join(&id[..id.len().min(16)])
}

mod fake;

pub use fake::RecordingRuntime;

/// Stops container `id`'s process: `signal`, then up to `grace` for it to exit (forever when
/// `None`), then SIGKILL to everything in the container and up to 30 s more. `exited(limit)`
/// waits for the exit, at most `limit`, and says whether it came.
pub async fn stop_process<'a, F, Fut>(
    rt: &dyn Runtime,
    id: &str,
    signal: i32,
    grace: Option<Duration>,
    exited: F,
) -> Result<()>
where
    F: Fn(Option<Duration>) -> Fut,
    Fut: Future<Output = bool> + Send + 'a,
{
    // A failed signal (the process is already gone) is no reason not to wait for the exit.
    let _ = rt.call(id, Request::Kill { signal, all: false }).await;
    if exited(grace).await {
        return Ok(());
    }
    let _ = rt.call(id, Request::Kill { signal: 9, all: true }).await;
    if exited(Some(Duration::from_secs(30))).await {
        return Ok(());
    }
    Err(ContainerError::Internal(format!(
        "container {id} did not exit after SIGKILL"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    fn kills(rt: &RecordingRuntime) -> Vec<(i32, bool)> {
        rt.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| match r {
                Request::Kill { signal, all } => (*signal, *all),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_process_that_stops_gets_only_its_signal() {
        let rt = RecordingRuntime::default();
        let waits = AtomicUsize::new(0);
        stop_process(&rt, "c1", 15, Some(Duration::from_secs(10)), |limit| {
            waits.fetch_add(1, Ordering::SeqCst);
            assert_eq!(limit, Some(Duration::from_secs(10)));
            async { true }
        })
        .await
        .unwrap();
        assert_eq!(kills(&rt), [(15, false)]);
        assert_eq!(waits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn one_that_ignores_it_is_killed_after_the_grace_period() {
        let rt = RecordingRuntime::default();
        let calls = Mutex::new(Vec::new());
        stop_process(&rt, "c1", 2, Some(Duration::from_secs(1)), |limit| {
            let mut c = calls.lock().unwrap();
            c.push(limit);
            let n = c.len();
            async move { n > 1 }
        })
        .await
        .unwrap();
        assert_eq!(kills(&rt), [(2, false), (9, true)]);
        assert_eq!(
            *calls.lock().unwrap(),
            [Some(Duration::from_secs(1)), Some(Duration::from_secs(30))]
        );
    }

    #[tokio::test]
    async fn a_failed_signal_still_waits_and_a_process_that_survives_sigkill_is_an_error() {
        let rt = RecordingRuntime::default();
        rt.replies.lock().unwrap().push_back(Err(ContainerError::Runtime {
            kind: wharf_shim_proto::FailureKind::NotRunning,
            message: "container is not running".into(),
        }));
        let err = stop_process(&rt, "c9", 15, None, |_| async { false })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "container c9 did not exit after SIGKILL");
        assert_eq!(kills(&rt), [(15, false), (9, true)]);
        assert!(rt.requests.lock().unwrap().iter().all(|(id, _)| id == "c9"));
    }
}
