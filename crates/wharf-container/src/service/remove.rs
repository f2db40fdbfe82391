//! `rm` and `container prune`: stop what runs (with `-f`), release mounts, volumes and
//! networks, and delete the record last.

use super::*;
use crate::error::{ContainerError, Result};
use crate::record::ContainerStatus;
use crate::record::Record;
use std::fs;
use std::time::Duration;
use wharf_shim_proto::Request;

impl ContainerService {
    /// `DELETE /containers/{id}`.
    /// `DELETE /containers/{id}`; with `volumes` (`rm -v`, `--rm`) its anonymous volumes go too.
    pub async fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let rec = e.snapshot();
        if rec.state.is_running() || rec.state.status == ContainerStatus::Restarting {
            if !force {
                let what = if rec.state.status == ContainerStatus::Paused {
                    "paused"
                } else {
                    "running"
                };
                return Err(ContainerError::Conflict(format!(
                    "cannot remove container \"/{}\": container is {what}: stop the container before removing or force remove",
                    rec.name
                )));
            }
            e.rec.lock().expect("record lock").manually_stopped = true;
            if rec.state.is_running() {
                let seen = e.gen.borrow().exits;
                let _sock = self.shim_socket(&rec.id);
                if rec.state.status == ContainerStatus::Paused {
                    let _ = self.runtime.call(&rec.id, Request::Resume).await;
                }
                let _ = self.runtime.call(&rec.id, Request::Kill { signal: 9, all: true }).await;
                if !Self::wait_exit(&e, seen, Some(Duration::from_secs(30))).await {
                    return Err(ContainerError::Internal(format!(
                        "could not kill container {} for removal",
                        rec.id
                    )));
                }
                // The shim removes the cgroups after it answers; a removal returns once they
                // are gone (and removes what the shim could not, a process having held them).
                self.clear_cgroups(&rec).await;
            }
        }
        if e.snapshot().state.status == ContainerStatus::Removing {
            return Err(ContainerError::Conflict(format!(
                "removal of container {} is already in progress",
                rec.id
            )));
        }
        // Nothing of the container may outlive its record, whatever its shim did: the cgroup
        // says what is left.
        if crate::cgroup::any_process(&self.cgroup_path(&rec)) {
            if !force && !rec.state.is_running() {
                tracing::warn!(id = %rec.id, "an exited container's cgroup still holds processes: killing them");
            }
            self.kill_leftovers(&rec).await.map_err(|err| {
                ContainerError::Internal(format!("could not kill container {} for removal: {err}", rec.id))
            })?;
            // The shim could not remove cgroups that still held a process: they go here.
            self.clear_cgroups(&rec).await;
        }
        e.rec.lock().expect("record lock").state.status = ContainerStatus::Removing;
        self.unmount_root(&rec.id);
        let dir = self.container_dir(&rec.id);
        if is_mountpoint(&dir.join("merged")) {
            // Removing through a mounted root would delete the image's files in it.
            e.rec.lock().expect("record lock").state.status = rec.state.status;
            return Err(ContainerError::Internal(format!(
                "container {}: its root filesystem is still mounted; try again",
                rec.id
            )));
        }
        // The record goes first, so a crash mid-removal never resurrects half a container.
        let _ = fs::remove_file(dir.join("config.v2.json"));
        if let Err(err) = self.remove_root(&rec) {
            tracing::warn!(id = %rec.id, "removing its root: {err}");
        }
        // Its files go in the background, out of the caller's way (`run --rm` waits for this
        // removal): freeing blocks can be slow (ext4 discards them as it frees them). What a
        // crash leaves in the trash goes when the daemon next starts.
        let trash = self.trash_dir().join(&rec.id);
        let removed = match fs::rename(&dir, &trash) {
            Ok(()) => {
                tokio::task::spawn_blocking(move || {
                    if let Err(err) = fs::remove_dir_all(&trash) {
                        tracing::warn!("emptying {}: {err}", trash.display());
                    }
                });
                Ok(())
            }
            Err(_) => fs::remove_dir_all(&dir),
        };
        if let Err(err) = removed {
            // A file written as the removal ran (the shim's last log line): once more.
            tracing::debug!(id = %rec.id, "removing {}: {err}; retrying", dir.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Err(err) = fs::remove_dir_all(&dir) {
                // As dockerd: the container is dead, and another `rm` tries again.
                let msg = format!("removal of container {} failed: {err}", rec.id);
                {
                    let mut r = e.rec.lock().expect("record lock");
                    r.state.status = ContainerStatus::Dead;
                    r.state.error = msg.clone();
                }
                return Err(ContainerError::Internal(msg));
            }
        }
        let _ = fs::remove_dir_all(self.bundle_dir(&rec.id));
        self.map.write().expect("map").remove(&rec.id);
        self.names.lock().expect("names").remove(&rec.name);
        self.execs.lock().expect("execs").retain(|_, x| x.container != rec.id);
        for a in e.attaches.lock().expect("attaches").drain(..) {
            let _ = a.tx.send(Err(ContainerError::NotFound(rec.id.clone())));
        }
        Self::bump(&e, false, true);
        self.emit(&rec, "destroy", &[]);
        if volumes {
            for mp in rec.mount_points.iter().filter(|m| m.typ == "volume" && m.anonymous) {
                if let Err(err) = self.volumes.remove(&mp.name, true) {
                    tracing::info!(volume = %mp.name, "kept with its container gone: {err}");
                }
            }
        }
        Ok(())
    }

    /// `POST /containers/prune`: remove every stopped container that `keep` spares not; their
    /// IDs and the bytes their read-write layers held.
    pub async fn prune(&self, keep: &(dyn Fn(&Record) -> bool + Sync)) -> (Vec<String>, u64) {
        let mut gone = Vec::new();
        let mut bytes = 0;
        for r in self.records() {
            if r.state.is_running() || r.state.status == ContainerStatus::Restarting || keep(&r) {
                continue;
            }
            let size = self.sizes(&r.id).map(|s| s.0).unwrap_or(0);
            if self.remove(&r.id, false, false).await.is_ok() {
                bytes += size;
                gone.push(r.id);
            }
        }
        (gone, bytes)
    }
}
