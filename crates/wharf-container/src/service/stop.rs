//! `stop` and `restart`: the stop signal, the grace period, then SIGKILL.

use super::*;
use crate::error::{ContainerError, Result};
use crate::record::ContainerStatus;
use std::sync::Arc;
use std::time::Duration;
use wharf_shim_proto::Request;

impl ContainerService {
    /// Wait until the number of exits passes `seen`, or `timeout` passes.
    pub(crate) async fn wait_exit(e: &Entry, seen: u64, timeout: Option<Duration>) -> bool {
        let mut rx = e.gen.subscribe();
        let fut = rx.wait_for(|g| g.exits > seen || g.removed);
        match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.is_ok(),
            None => fut.await.is_ok(),
        }
    }

    /// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after the timeout.
    pub async fn stop(&self, name: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        self.stop_locked(&e, timeout, signal).await?;
        self.emit(&e.snapshot(), "stop", &[]);
        Ok(())
    }

    pub(crate) async fn stop_locked(&self, e: &Arc<Entry>, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let rec = e.snapshot();
        if rec.state.status == ContainerStatus::Restarting {
            e.rec.lock().expect("record lock").manually_stopped = true;
            e.rec.lock().expect("record lock").state.status = ContainerStatus::Exited;
            self.save(e)?;
            return Ok(());
        }
        if !rec.state.is_running() {
            return Err(ContainerError::NotModified);
        }
        e.rec.lock().expect("record lock").manually_stopped = true;
        let _ = self.save(e);
        if rec.state.status == ContainerStatus::Paused {
            let _ = self.runtime.call(&rec.id, Request::Resume).await;
        }
        let seen = e.gen.borrow().exits;
        let sig = Self::parse_signal(
            signal
                .filter(|s| !s.is_empty())
                .or(rec.config.stop_signal.as_deref())
                .unwrap_or("TERM"),
        )?;
        // A negative timeout waits for ever, as dockerd's.
        let t = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let grace = u64::try_from(t).ok().map(Duration::from_secs);
        crate::runtime::stop_process(&*self.runtime, &rec.id, sig, grace, |limit| {
            Self::wait_exit(e, seen, limit)
        })
        .await?;
        Ok(())
    }

    /// `POST /containers/{id}/restart`.
    pub async fn restart(self: &Arc<Self>, name: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        match self.stop_locked(&e, timeout, signal).await {
            Ok(()) | Err(ContainerError::NotModified) => {}
            Err(err) => return Err(err),
        }
        self.start_locked(&e).await?;
        // As dockerd: the restart is an event of its own, after the start's.
        self.emit(&e.snapshot(), "restart", &[]);
        Ok(())
    }
}
