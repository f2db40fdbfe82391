//! The monitor: one task per running container waiting on its shim; the exit recorded, restart
//! policies and their backoff, the cleanup when a shim dies without answering, and the restore
//! of every container at daemon start.

use super::*;
use crate::error::{ContainerError, Result};
use crate::netsetup;
use crate::record::ContainerStatus;
use crate::record::Record;
use crate::shim::ShimStream;
use std::fs;
use std::sync::Arc;
use std::time::Duration;
use wharf_shim_proto::{ExitInfo, Request};

impl ContainerService {
    /// After daemon start: reconnect to live shims, settle the dead, restart `always` ones.
    pub async fn restore(self: &Arc<Self>) {
        for e in self.all() {
            let rec = e.snapshot();
            if rec.state.status == ContainerStatus::Removing {
                // A removal the last daemon did not finish: finish it, as dockerd does.
                e.rec.lock().expect("record lock").state.status = ContainerStatus::Dead;
                if let Err(err) = self.remove(&rec.id, true, true).await {
                    tracing::warn!(id = %rec.id, "finishing an interrupted removal: {err}");
                }
                continue;
            }
            if rec.state.is_running() {
                match self.runtime.send(&rec.id, Request::Wait).await {
                    Ok(stream) => {
                        tracing::info!(id = %rec.id, "reconnected to running container");
                        self.reconcile_freezer(&e).await;
                        for mp in rec.mount_points.iter().filter(|m| m.typ == "volume") {
                            let _ = self.volumes.mount(&mp.name, &rec.id);
                        }
                        netsetup::restore(&self.net, &rec, &rec.net).await;
                        self.spawn_monitor(e.clone(), Some(stream));
                        self.spawn_health(e.clone());
                        continue;
                    }
                    Err(_) => {
                        // Its shim is gone: whatever it left in the cgroup goes too.
                        let exit = self.after_shim_died(&rec, false).await;
                        tracing::info!(id = %rec.id, code = exit.exit_code, "container exited while the daemon was down");
                        self.on_exit(&e, exit, false).await;
                        continue;
                    }
                }
            }
            let policy = rec
                .host_config
                .lifecycle
                .restart_policy
                .as_ref()
                .and_then(|p| p.name)
                .map(|n| n.to_string())
                .unwrap_or_default();
            if (policy == "always" || (policy == "unless-stopped" && !rec.manually_stopped))
                && matches!(rec.state.status, ContainerStatus::Exited | ContainerStatus::Restarting)
            {
                let me = self.clone();
                tokio::spawn(async move {
                    if let Err(err) = me.start(&rec.id).await {
                        tracing::warn!(id = %rec.id, "restart on daemon start: {err}");
                    }
                });
            }
        }
    }

    /// After a daemon restart, make the freezer agree with the record: a container the last
    /// daemon froze for an operation it never finished (`commit` pauses it) is thawed; one
    /// recorded as paused whose cgroup is not frozen is running. Only a user's pause shows as
    /// `paused`.
    pub(crate) async fn reconcile_freezer(&self, e: &Arc<Entry>) {
        let rec = e.snapshot();
        let paused = rec.state.status == ContainerStatus::Paused;
        match (paused, crate::cgroup::frozen(&self.cgroup_path(&rec))) {
            (false, Some(true)) => {
                tracing::warn!(id = %rec.id, "thawing a container an interrupted operation left frozen");
                if let Err(err) = self.runtime.call(&rec.id, Request::Resume).await {
                    tracing::error!(id = %rec.id, "thawing: {err}");
                }
            }
            (true, Some(false)) => {
                e.rec.lock().expect("record lock").state.status = ContainerStatus::Running;
                let _ = self.save(e);
            }
            _ => {}
        }
    }

    pub(crate) fn spawn_monitor(self: &Arc<Self>, e: Arc<Entry>, stream: Option<ShimStream>) {
        let me = self.clone();
        tokio::spawn(async move {
            let exit = match stream {
                Some(mut s) => {
                    use tokio::io::AsyncBufReadExt;
                    let mut line = String::new();
                    match s.read_line(&mut line).await {
                        Ok(n) if n > 0 => serde_json::from_str::<wharf_shim_proto::Reply>(line.trim())
                            .ok()
                            .and_then(|r| r.exit),
                        _ => None,
                    }
                }
                None => None,
            };
            let (exit, shim_cleans) = match exit {
                Some(x) => (x, true),
                None => {
                    // The shim went away without answering (killed, or crashed): nothing
                    // supervises the container's processes any more.
                    (me.after_shim_died(&e.snapshot(), true).await, false)
                }
            };
            me.on_exit(&e, exit, shim_cleans).await;
        });
    }

    /// Record a container's end. `shim_cleans`: its shim answered and removes the container's
    /// cgroups and runtime state itself after answering; otherwise the shim is gone (or going)
    /// and the daemon clears what it left once its lock is free.
    pub(crate) async fn on_exit(self: &Arc<Self>, e: &Arc<Entry>, exit: ExitInfo, shim_cleans: bool) {
        let (id, auto_remove, policy, decision, started_at) = {
            let mut r = e.rec.lock().expect("record lock");
            // A container its policy restarts shows `restarting` from its exit on, never a
            // moment of `exited` between the failure and the restart.
            let policy = crate::restart::Policy::of(&r.host_config);
            let decision = crate::restart::Exit {
                code: exit.exit_code,
                restarts: r.restart_count,
                manually_stopped: r.manually_stopped,
                auto_remove: r.host_config.lifecycle.auto_remove.unwrap_or(false),
            };
            r.state.status = if crate::restart::restarts(policy, decision) {
                ContainerStatus::Restarting
            } else {
                ContainerStatus::Exited
            };
            r.state.pid = 0;
            // Its execs ended with it.
            r.exec_ids.clear();
            r.state.exit_code = i64::from(exit.exit_code);
            r.state.oom_killed = exit.oom_killed;
            r.state.finished_at = if exit.finished_at.is_empty() {
                now_nanos()
            } else {
                exit.finished_at.clone()
            };
            (
                r.id.clone(),
                decision.auto_remove,
                policy,
                decision,
                r.state.started_at.clone(),
            )
        };
        self.unmount_root(&id);
        let net_state = std::mem::take(&mut e.rec.lock().expect("record lock").net);
        netsetup::stop(&self.net, &id, &net_state).await;
        if !shim_cleans {
            self.runtime.released(&id, &self.bundle_dir(&id)).await;
            let _ = fs::remove_dir_all(self.cfg.exec_root.join("runtime").join(&id));
        }
        // An auto-removed container's record goes next; after a crash in between, the record
        // still says running, which ends the same way (exit 255, then removal).
        if !auto_remove {
            if let Err(err) = self.save(e) {
                tracing::warn!(%id, "saving exit: {err}");
            }
        }
        Self::bump(e, true, false);
        // Whole seconds the process ran, as dockerd's `execDuration`.
        let ran = match (
            crate::logs::parse_time(&started_at),
            crate::logs::parse_time(&e.snapshot().state.finished_at),
        ) {
            (Some(a), Some(b)) if b > a => ((b - a) / 1_000_000_000).to_string(),
            _ => "0".into(),
        };
        let done = e.snapshot();
        self.emit(
            &done,
            "die",
            &[("exitCode", &exit.exit_code.to_string()), ("execDuration", &ran)],
        );
        self.emit_network(&done, "disconnect");
        if auto_remove {
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(err) = me.remove(&id, true, true).await {
                    tracing::debug!(%id, "auto-remove: {err}");
                }
            });
            return;
        }
        if !crate::restart::restarts(policy, decision) {
            return;
        }
        let ran = crate::logs::parse_time(&started_at)
            .map(|s| {
                let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
                Duration::from_millis(((now - s) / 1_000_000).max(0) as u64)
            })
            .unwrap_or_default();
        let delay = e.restart_delay.lock().expect("delay").delay(ran);
        {
            let mut r = e.rec.lock().expect("record lock");
            r.state.status = ContainerStatus::Restarting;
        }
        let me = self.clone();
        let e = e.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _op = e.op.lock().await;
            let (status, manually) = {
                let r = e.rec.lock().expect("record lock");
                (r.state.status, r.manually_stopped)
            };
            if status != ContainerStatus::Restarting || manually {
                return;
            }
            // Still `restarting` until the start says otherwise (`running`, or `exited` with
            // the start's error).
            e.rec.lock().expect("record lock").restart_count += 1;
            if let Err(err) = me.start_locked(&e).await {
                tracing::warn!(id = %e.snapshot().id, "restart: {err}");
            }
        });
    }

    /// Kill whatever the container's cgroups still hold (its shim is gone, or a removal must
    /// not leave anything behind) and wait until they are empty; see [`crate::cgroup`].
    pub(crate) async fn kill_leftovers(&self, rec: &Record) -> Result<usize> {
        let rel = self.cgroup_path(rec);
        let id = rec.id.clone();
        tokio::task::spawn_blocking(move || crate::cgroup::kill_all(&rel, Duration::from_secs(10)))
            .await
            .map_err(|e| ContainerError::Internal(e.to_string()))?
            .map_err(|e| ContainerError::Internal(format!("container {id}: {e}")))
    }

    /// Remove the container's cgroups once its shim's lock is free (a shim still finishing its
    /// own cleanup is never raced); what is already gone is no error.
    pub(crate) async fn clear_cgroups(&self, rec: &Record) {
        self.runtime.released(&rec.id, &self.bundle_dir(&rec.id)).await;
        let rel = self.cgroup_path(rec);
        let _ = tokio::task::spawn_blocking(move || crate::cgroup::remove(&rel)).await;
    }

    /// The end of a container whose shim went away without telling it: the exit the shim
    /// recorded, if it got that far. Otherwise, when the daemon saw the shim die (`watched`)
    /// or found processes to kill, they were killed (by the kernel as the shim died, or here),
    /// which Docker reports as 137; a container found with no shim and no process at daemon
    /// start ended unseen: 255.
    pub(crate) async fn after_shim_died(&self, rec: &Record, watched: bool) -> ExitInfo {
        let killed = match self.kill_leftovers(rec).await {
            Ok(0) => false,
            Ok(n) => {
                tracing::warn!(id = %rec.id, "its shim is gone: {n} processes were left in its cgroup, killed");
                true
            }
            Err(err) => {
                tracing::error!(id = %rec.id, "its shim is gone: {err}");
                true
            }
        };
        // What the shim would have removed after the exit: its cgroups.
        self.clear_cgroups(rec).await;
        self.exit_file(&rec.id).unwrap_or_else(|| ExitInfo {
            exit_code: if watched || killed { 137 } else { 255 },
            oom_killed: false,
            finished_at: now_nanos(),
        })
    }
}
