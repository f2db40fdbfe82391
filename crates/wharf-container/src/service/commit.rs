//! `diff`, `commit` and `export`: the read-write layer's changes, a new image from them, and
//! the whole root as a tar.

use super::*;
use crate::error::{ContainerError, Result};
use crate::record::ContainerStatus;
use serde_json::Value;
use std::time::Duration;
use wharf_reference::Digest;
use wharf_shim_proto::Request;

impl ContainerService {
    /// `GET /containers/{id}/changes`: what the read-write layer adds (`A`, kind 1), changes
    /// (`C`, 0) and deletes (`D`, 2) against the image, sorted by path.
    pub fn changes(&self, name: &str) -> Result<Vec<(String, u8)>> {
        let rec = self.lookup(name)?.snapshot();
        Ok(self.snapshots.changes(&rec.id)?)
    }

    /// `POST /commit`: the container's read-write layer as a new image over its image, with
    /// the container's config (`config` fields the caller set win) and `changes` applied.
    /// A running container is frozen for the copy when `pause` is set, as Docker does.
    pub async fn commit(&self, name: &str, opts: CommitOptions) -> Result<Digest> {
        let e = self.lookup(name)?;
        let rec = e.snapshot();
        if let Some(k) = &rec.snapshot {
            return Err(ContainerError::Invalid(format!(
                "container {} runs on snapshot {k}, not on its image's root: commit its root as a snapshot",
                rec.id
            )));
        }

        let image: Digest = rec
            .image
            .parse()
            .map_err(|_| ContainerError::Internal(format!("bad image id {}", rec.image)))?;
        let container_config =
            serde_json::to_value(&rec.config).map_err(|e| ContainerError::Internal(e.to_string()))?;
        let mut config = container_config.clone();
        if opts.replace_config {
            config = opts.config.clone().unwrap_or(Value::Null);
        } else if let (Some(Value::Object(user)), Some(cfg)) = (opts.config, config.as_object_mut()) {
            for (k, v) in user {
                let unset = match &v {
                    Value::Null => true,
                    Value::String(s) => s.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    Value::Bool(b) => !b,
                    _ => false,
                };
                if !unset {
                    cfg.insert(k, v);
                }
            }
        }
        let spec = wharf_image::CommitSpec {
            config,
            changes: opts.changes,
            container: if opts.epoch.is_some() {
                String::new()
            } else {
                rec.id.clone()
            },
            container_config: opts.container_config.clone().unwrap_or(container_config),
            author: opts.author,
            comment: opts.comment.clone(),
            created_by: opts.created_by.clone().unwrap_or_else(|| {
                std::iter::once(rec.path.clone())
                    .chain(rec.args.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            tag: opts.reference.clone(),
            created: opts.epoch.map(wharf_image::config::rfc3339_at),
        };
        let mut freeze = opts.pause && rec.state.is_running() && rec.state.status != ContainerStatus::Paused;
        if freeze {
            let seen = e.gen.borrow().exits;
            if let Err(err) = self.runtime.call(&rec.id, Request::Pause).await {
                // A container that was exiting as the commit began has nothing left to
                // freeze: commit it as it stands. Any other failure is the caller's.
                Self::wait_exit(&e, seen, Some(Duration::from_secs(1))).await;
                if e.snapshot().state.is_running() {
                    return Err(err);
                }
                freeze = false;
            }
        }
        let images = self.images.clone();
        let snapshots = self.snapshots.clone();
        let key = rec.id.clone();
        let r = tokio::task::spawn_blocking(move || -> Result<Digest> {
            let epoch = opts.epoch.map(|e| e.max(0) as u64);
            let omit = opts.omit;
            // The diff, without the paths to leave out (through a socket pair: the diff
            // writes in a thread of its own while the copy reads).
            let diff = |w: &mut dyn std::io::Write| -> std::io::Result<()> {
                if omit.is_empty() {
                    return snapshots.diff(&key, w).map_err(std::io::Error::other);
                }
                let (mut a, b) = std::os::unix::net::UnixStream::pair()?;
                std::thread::scope(|s| {
                    let t = s.spawn(|| {
                        let r = snapshots.diff(&key, &mut a).map_err(std::io::Error::other);
                        drop(a);
                        r
                    });
                    let r = wharf_store::omit::copy_omitting(std::io::BufReader::new(b), &mut *w, &omit);
                    t.join()
                        .map_err(|_| std::io::Error::other("the diff's thread panicked"))??;
                    r
                })
            };
            let layer = |w: &mut dyn std::io::Write| match epoch {
                Some(e) => {
                    let mut c = wharf_store::clamp::ClampTimes::new(w, e);
                    diff(&mut c)?;
                    c.finish().map(drop)
                }
                None => diff(w),
            };
            Ok(images.commit(&image, layer, spec)?)
        })
        .await
        .map_err(|e| ContainerError::Internal(e.to_string()));
        if freeze {
            if let Err(e) = self.runtime.call(&rec.id, Request::Resume).await {
                tracing::warn!(container = %rec.id, "resuming after commit: {e}");
            }
        }
        let id = r??;
        self.emit(
            &rec,
            "commit",
            &[
                ("comment", &opts.comment),
                ("imageID", &id.to_string()),
                ("imageRef", opts.reference.as_deref().unwrap_or("")),
            ],
        );
        Ok(id)
    }

    /// The container's root committed as snapshot `name` (a builder's step, a client of the
    /// snapshotter): the container must not run; it goes on over the committed snapshot, so
    /// its next start sees what it left and writes above it.
    pub async fn commit_root(&self, container: &str, name: &str) -> Result<()> {
        let e = self.lookup(container)?;
        let _op = e.op.lock().await;
        let rec = e.snapshot();
        if rec.state.is_running() {
            return Err(ContainerError::Conflict(format!(
                "container {} is running: stop it before committing its root",
                rec.id
            )));
        }
        self.unmount_root_only(&rec.id);
        self.snapshots.commit(name, &rec.id)?;
        self.snapshots.prepare(&rec.id, Some(name))?;
        e.rec.lock().expect("record lock").snapshot = Some(name.to_string());
        self.save(&e)
    }

    /// Removes a committed snapshot no container or snapshot stands on, and the image's init
    /// snapshot it stood on once nothing else does.
    pub fn remove_snapshot(&self, name: &str) -> Result<()> {
        let parent = self.snapshots.stat(name)?.parent;
        self.snapshots.remove(name)?;
        if let Some(p) = parent.filter(|p| p.starts_with("init-")) {
            let _held = self.init_lock.lock().expect("init lock");
            let _ = self.snapshots.remove(&p);
        }
        Ok(())
    }

    /// `GET /containers/{id}/export`: the container's filesystem (image and read-write layer,
    /// no volumes) as a tar, written to `w` (blocking: call from a blocking thread).
    pub fn export(&self, name: &str, w: &mut dyn std::io::Write) -> Result<()> {
        let rec = self.lookup(name)?.snapshot();
        let was_mounted = is_mountpoint(&self.container_dir(&rec.id).join("merged"));
        let merged = self.mount_root(&rec)?;
        let root = wharf_store::saferoot::SafeRoot::open(&merged)?;
        let r = wharf_store::archive::stat(&root, "/.")
            .map_err(ContainerError::from)
            .and_then(|s| {
                let (r, _) = s.ok_or_else(|| ContainerError::Internal("the root vanished".into()))?;
                wharf_store::archive::write_tar(&r, ".", w).map_err(ContainerError::from)
            });
        let running = self.get(&rec.id).map(|r| r.state.is_running()).unwrap_or(false);
        if !was_mounted && !running {
            self.unmount_root_only(&rec.id);
        }
        r
    }
}
