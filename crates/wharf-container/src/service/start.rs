//! `start`: mount the root, join or build the namespaces, write the OCI spec and the shim's
//! config, spawn the shim, hand it the attaches that were waiting, open the monitor's wait
//! connection, then let the process run.

use super::*;
use crate::error::{ContainerError, Result};
use crate::health;
use crate::record::ContainerStatus;
use crate::record::Record;
use crate::shim::ShimStream;
use crate::{netsetup, spec};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use wharf_shim_proto::{Request, ShimConfig};

impl ContainerService {
    /// The running container another one joins a namespace of (`--pid`/`--ipc`/`--network
    /// container:`): its host PID and full ID. Not running is a conflict, in Docker 28's words
    /// (which name the container as the mode does).
    pub(crate) fn join_target(&self, name: &str, what: &str) -> Result<(i64, String)> {
        let e = self.lookup(name)?;
        let r = e.snapshot();
        if !matches!(r.state.status, ContainerStatus::Running | ContainerStatus::Paused) || r.state.pid <= 0 {
            return Err(ContainerError::Conflict(if what == "network" {
                format!("cannot join network of a non running container: {name}")
            } else {
                format!("container {name} is not running")
            }));
        }
        Ok((r.state.pid, r.id))
    }

    /// `POST /containers/{id}/start`.
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        self.start_locked(&e).await
    }

    pub(crate) async fn start_locked(self: &Arc<Self>, e: &Arc<Entry>) -> Result<()> {
        let rec = e.snapshot();
        match rec.state.status {
            ContainerStatus::Running => return Err(ContainerError::NotModified),
            ContainerStatus::Paused => {
                return Err(ContainerError::Conflict(
                    "cannot start a paused container, try unpause instead".into(),
                ))
            }
            ContainerStatus::Removing | ContainerStatus::Dead => {
                return Err(ContainerError::Conflict(format!(
                    "container {} is marked for removal and cannot be started",
                    rec.id
                )))
            }
            _ => {}
        }
        match self.launch(&rec).await {
            Ok((pid, stream, net)) => {
                {
                    let mut r = e.rec.lock().expect("record lock");
                    r.net = net;
                    r.state.status = ContainerStatus::Running;
                    r.state.pid = i64::from(pid);
                    r.state.started_at = now_nanos();
                    r.state.error.clear();
                    r.state.oom_killed = false;
                    r.state.health = health::probe(&r.config).map(|_| health::Health::starting());
                    r.manually_stopped = false;
                }
                self.save(e)?;
                Self::bump(e, false, false);
                let now = e.snapshot();
                self.emit_network(&now, "connect");
                self.emit(&now, "start", &[]);
                self.spawn_monitor(e.clone(), stream);
                self.spawn_health(e.clone());
                Ok(())
            }
            Err(err) => {
                self.unmount_root(&rec.id);
                let (msg, code) = match &err {
                    ContainerError::Runtime { kind, message } => (start_error(message), kind.exit_code()),
                    other => (other.to_string(), None),
                };
                {
                    let mut r = e.rec.lock().expect("record lock");
                    r.state.error = msg.clone();
                    r.state.exit_code = i64::from(code.unwrap_or(128));
                    if r.state.status == ContainerStatus::Running {
                        r.state.status = ContainerStatus::Exited;
                    }
                }
                let _ = self.save(e);
                // Fail pending attaches so their clients do not hang.
                for a in e.attaches.lock().expect("attaches").drain(..) {
                    let _ = a.tx.send(Err(ContainerError::Conflict(msg.clone())));
                }
                Self::bump(e, true, false);
                // `run --rm` waits for the removal after a failed start, as with Docker.
                if rec.host_config.lifecycle.auto_remove.unwrap_or(false) {
                    let me = self.clone();
                    let id = rec.id.clone();
                    tokio::spawn(async move {
                        let _ = me.remove(&id, true, true).await;
                    });
                }
                Err(match err {
                    ContainerError::Runtime { kind, .. } => ContainerError::Runtime { kind, message: msg },
                    other => other,
                })
            }
        }
    }

    /// Mount, write the bundle, start the shim, connect waiting attaches, let the process run.
    /// Join the container's networks, then launch it; a failed launch leaves no network behind.
    pub(crate) async fn launch(&self, rec: &Record) -> Result<(i32, Option<ShimStream>, netsetup::NetState)> {
        let mode = rec.host_config.network.network_mode.clone().unwrap_or_default();
        let (st, net_ns) = if netsetup::uses_networks(&mode) {
            let st = netsetup::start(&self.net, rec).await?;
            let key = st.sandbox_key.clone();
            (st, Some(key))
        } else if let Some(other) = mode.strip_prefix("container:") {
            let (pid, _) = self.join_target(other, "network")?;
            (netsetup::NetState::default(), Some(format!("/proc/{pid}/ns/net")))
        } else {
            (netsetup::NetState::default(), None)
        };
        // The resolver opens while the shim creates the container; the process starts after.
        let mut resolver = st.resolver.then(|| {
            let (net, rec, mut st) = (self.net.clone(), rec.clone(), st.clone());
            tokio::spawn(async move { netsetup::start_resolver(&net, &rec, &mut st).await })
        });
        let r = match self.write_net_files(rec, &st) {
            Ok(link_env) => self.launch_with(rec, net_ns, &link_env, &mut resolver).await,
            Err(e) => Err(e),
        };
        match r {
            Ok((pid, stream)) => Ok((pid, stream, st)),
            Err(e) => {
                // A resolver still opening would come back after the cleanup.
                if let Some(r) = resolver {
                    let _ = r.await;
                }
                netsetup::stop(&self.net, &rec.id, &st).await;
                Err(e)
            }
        }
    }

    pub(crate) async fn launch_with(
        &self,
        rec: &Record,
        net_ns: Option<String>,
        link_env: &[String],
        resolver: &mut Option<tokio::task::JoinHandle<Result<()>>>,
    ) -> Result<(i32, Option<ShimStream>)> {
        let rootfs = self.mount_root(rec)?;
        let bundle = self.bundle_dir(&rec.id);
        // The last run's shim may still be removing the cgroups this run is about to create.
        self.runtime.released(&rec.id, &bundle).await;
        let _ = fs::remove_dir_all(&bundle);
        fs::create_dir_all(&bundle)?;
        let root = wharf_store::saferoot::SafeRoot::open(&rootfs)?;
        let read_in = |p: &str| read_in_root(&root, p);
        let user = spec::resolve_user(
            rec.config.user.as_deref().unwrap_or(""),
            &read_in("/etc/passwd"),
            &read_in("/etc/group"),
            rec.host_config.security.group_add.as_deref().unwrap_or(&[]),
        )?;
        // The working directory is created inside the root, never through a symlink out of it.
        if let Some(w) = rec.config.working_dir.as_deref().filter(|w| !w.is_empty() && *w != "/") {
            let rel = Path::new(w.trim_start_matches('/'));
            let comps = wharf_store::saferoot::clean_relative(rel)
                .map_err(|m| ContainerError::Invalid(format!("working directory {w}: {m}")))?;
            root.mkdir_all(&comps)
                .map_err(|e| ContainerError::Invalid(format!("working directory {w}: {e}")))?;
        }
        let mut base_env = vec![
            spec::DEFAULT_PATH.to_string(),
            format!("HOSTNAME={}", rec.config.hostname.clone().unwrap_or_default()),
        ];
        if rec.config.tty.unwrap_or(false) {
            base_env.push("TERM=xterm".into());
        }
        base_env.push(format!("HOME={}", user.home));
        // Docker's order: the daemon's variables, the links', then the container's own.
        let env = spec::merge_env(&[&base_env, link_env, rec.config.env.as_deref().unwrap_or(&[])]);
        let mut argv = vec![rec.path.clone()];
        argv.extend(rec.args.iter().cloned());
        let cgroup_path = self.cgroup_path(rec);
        let _ = fs::remove_file(bundle.join(crate::bpf::FILTER_FILE));
        let (filter, seccomp) = crate::bpf::hand_off(crate::seccomp::for_container(&rec.host_config)?, &bundle)?;
        let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let init = if rec.host_config.lifecycle.init.unwrap_or(self.cfg.default_init) {
            Some(self.cfg.init_path.clone().ok_or_else(|| {
                ContainerError::Invalid("--init: no init binary found (install tini, or set wharfd --init-path)".into())
            })?)
        } else {
            None
        };
        let (pid_ns, ipc_ns, shm) = self.namespaces_to_join(rec)?;
        let user_mounts = self.prepare_mounts(rec, &rootfs)?;
        // `--network container:X` shares X's name resolution as well as its namespace: its
        // hosts, hostname and resolv.conf files, as in Docker.
        let files = match rec
            .host_config
            .network
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("container:"))
        {
            Some(other) => self.container_dir(&self.join_target(other, "network")?.1),
            None => self.container_dir(&rec.id),
        };
        let mut spec = spec::build(
            &rec.config,
            &rec.host_config,
            spec::SpecInput {
                rootfs: &rootfs,
                files: &files,
                cgroup_path: cgroup_path.clone(),
                user,
                argv,
                env,
                seccomp,
                ncpu,
                init,
                pid_ns,
                ipc_ns,
                shm,
                user_mounts,
                net_ns,
            },
        )?;
        if filter.is_some() {
            crate::bpf::keep_for_load(&mut spec);
        }
        crate::bpf::keep_for_cgroup_seal(&mut spec);
        let sc = self.shim_config(rec, &bundle, cgroup_path, filter)?;
        // A stale libcontainer state dir from a crash would make create fail.
        let _ = fs::remove_dir_all(self.cfg.exec_root.join("runtime").join(&rec.id));
        let pid = self.runtime.create(&rec.id, &bundle, &spec, &sc).await?;
        // Attaches that were waiting for this start see the output from the first byte.
        let pending: Vec<PendingAttach> =
            std::mem::take(&mut *self.lookup(&rec.id)?.attaches.lock().expect("attaches"));
        for a in pending {
            let r = self.runtime.open(&rec.id, a.req.clone()).await.map(|(_, s)| s);
            let _ = a.tx.send(r);
        }
        // The monitor's wait connection, opened before the process runs, so no exit is missed.
        let waiter = self.runtime.send(&rec.id, Request::Wait).await.ok();
        if let Some(r) = resolver.take() {
            let opened = r
                .await
                .map_err(|e| ContainerError::Internal(format!("the resolver's task: {e}")))
                .and_then(|r| r);
            if let Err(e) = opened {
                let _ = self.runtime.call(&rec.id, Request::Kill { signal: 9, all: true }).await;
                return Err(e);
            }
        }
        if let Err(e) = self.runtime.call(&rec.id, Request::Start).await {
            let _ = self.runtime.call(&rec.id, Request::Kill { signal: 9, all: true }).await;
            // Whatever the runtime said, it is the start's failure, in Docker's words.
            return Err(match e {
                e @ ContainerError::Runtime { .. } => e,
                e => ContainerError::Runtime {
                    kind: wharf_shim_proto::FailureKind::Internal,
                    message: e.to_string(),
                },
            });
        }
        Ok((pid, waiter))
    }

    /// The PID and IPC namespaces a container joins (`--pid`/`--ipc container:`), and where its
    /// `/dev/shm` comes from.
    fn namespaces_to_join(&self, rec: &Record) -> Result<(Option<String>, Option<String>, spec::Shm)> {
        let hc = &rec.host_config;
        let pid_ns = match hc
            .namespaces
            .pid_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("container:"))
        {
            Some(other) => Some(format!("/proc/{}/ns/pid", self.join_target(other, "PID")?.0)),
            None => None,
        };
        let (ipc_ns, shm) = match hc.namespaces.ipc_mode.as_deref().unwrap_or("private") {
            "host" => (None, spec::Shm::Bind("/dev/shm".into())),
            "none" => (None, spec::Shm::None),
            "shareable" => (None, spec::Shm::Bind(self.shareable_shm(rec)?)),
            m => match m.strip_prefix("container:") {
                Some(other) => {
                    let (pid, donor) = self.join_target(other, "IPC")?;
                    let dshm = self.container_dir(&donor).join("mounts/shm");
                    if !is_mountpoint(&dshm) {
                        return Err(ContainerError::Invalid(format!(
                            "can't join IPC of container {donor}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
                        )));
                    }
                    (Some(format!("/proc/{pid}/ns/ipc")), spec::Shm::Bind(dshm))
                }
                None => (None, spec::Shm::Private),
            },
        };
        Ok((pid_ns, ipc_ns, shm))
    }

    /// What the shim is told: where the bundle, socket, exit file and log are, and the log's
    /// rotation.
    fn shim_config(
        &self,
        rec: &Record,
        bundle: &Path,
        cgroup_path: String,
        seccomp: Option<wharf_shim_proto::SeccompFilter>,
    ) -> Result<ShimConfig> {
        let log_opts = rec
            .host_config
            .lifecycle
            .log_config
            .as_ref()
            .and_then(|l| l.config.clone())
            .unwrap_or_default();
        let log_driver = rec
            .host_config
            .lifecycle
            .log_config
            .as_ref()
            .and_then(|l| l.typ.clone())
            .unwrap_or_else(|| "json-file".into());
        let max_size = log_opts
            .get("max-size")
            .map(|s| {
                wharf_units::ram_in_bytes(s)
                    .map(|v| v.max(0) as u64)
                    .ok_or_else(|| ContainerError::Invalid(format!("invalid max-size: {s}")))
            })
            .transpose()?
            .unwrap_or(0);
        let max_file = log_opts
            .get("max-file")
            .map(|s| {
                s.parse::<u32>()
                    .map_err(|_| ContainerError::Invalid(format!("invalid max-file: {s}")))
            })
            .transpose()?
            .unwrap_or(1);
        Ok(ShimConfig {
            id: rec.id.clone(),
            bundle: bundle.display().to_string(),
            state_root: self.cfg.exec_root.join("runtime").display().to_string(),
            socket: self.shim_socket(&rec.id).display().to_string(),
            exit_file: bundle.join("exit.json").display().to_string(),
            log_path: if log_driver == "none" {
                String::new()
            } else {
                self.log_path(&rec.id).display().to_string()
            },
            log_max_size: max_size,
            log_max_file: max_file,
            tty: rec.config.tty.unwrap_or(false),
            open_stdin: rec.config.open_stdin.unwrap_or(false),
            cgroup_path,
            seccomp,
        })
    }
}

/// How a start error reads, in the words Docker's CLI matches for its exit codes.
pub(crate) fn start_error(e: &str) -> String {
    if let Some(rest) = e.split("executable '").nth(1) {
        if let Some(name) = rest.split('\'').next() {
            return format!(
                "failed to create task for container: OCI runtime create failed: exec: \"{name}\": executable file not found in $PATH: unknown"
            );
        }
    }
    format!("failed to create task for container: OCI runtime create failed: {e}: unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_read_like_docker() {
        let m = start_error("executor validation failed: executable 'nosuch' not found in $PATH");
        assert!(
            m.contains("exec: \"nosuch\": executable file not found in $PATH"),
            "{m}"
        );
    }
}
