//! Execs (`docker exec`): create, start through the container's shim (with the process the
//! container's own spec describes, changed as the exec asks), resize, the exit recorded when
//! its stream ends, and the table of execs dockerd keeps inspectable for a while after.

use crate::record::ContainerStatus;
use std::fs;
use std::time::Duration;

use wharf_shim_proto::Request;

use crate::error::{ContainerError, Result};
use crate::record::Record;
use crate::service::ContainerService;
use crate::service::{random_bytes, read_in_root};
use crate::spec;

/// What an exec runs, in the engine's own terms (the API edge converts Docker's `ExecConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// The command and its arguments (never empty).
    pub cmd: Vec<String>,
    /// Variables added to the container's environment.
    pub env: Vec<String>,
    /// The working directory, when not the container's.
    pub working_dir: Option<String>,
    /// The user, when not the container's.
    pub user: Option<String>,
    /// Every capability, as `--privileged`.
    pub privileged: bool,
    /// A terminal.
    pub tty: bool,
    /// Attach stdin, stdout, stderr.
    pub stdin: bool,
    /// See `stdin`.
    pub stdout: bool,
    /// See `stdin`.
    pub stderr: bool,
    /// The keys that detach a client (`ctrl-p,ctrl-q` when `None`).
    pub detach_keys: Option<String>,
    /// The terminal's height and width.
    pub console_size: Option<(u16, u16)>,
}

/// An exec instance.
#[derive(Debug, Clone)]
pub struct ExecEntry {
    /// Exec ID.
    pub id: String,
    /// Its container.
    pub container: String,
    /// What it runs.
    pub config: ExecSpec,
    /// Running now.
    pub running: bool,
    /// Exit code once done.
    pub exit_code: Option<i64>,
    /// Host PID while running.
    pub pid: i64,
    /// When it ended: exited execs stay inspectable for [`EXEC_KEEP`], as in dockerd.
    pub exited_at: Option<std::time::Instant>,
}

/// How long an exited exec stays inspectable. dockerd forgets it at the second pass of a
/// five-minute sweep after it ended (five to ten minutes); this keeps it ten.
const EXEC_KEEP: Duration = Duration::from_secs(600);

/// How an exec's start error reads in dockerd (runc's words through containerd).
/// dockerd's answer to an exec in a paused container.
fn paused(id: &str) -> ContainerError {
    ContainerError::Conflict(format!("Container {id} is paused, unpause the container before exec"))
}

fn exec_start_error(e: &str) -> String {
    let detail = match e.split("executable '").nth(1).and_then(|r| r.split('\'').next()) {
        Some(name) => format!("exec: \"{name}\": executable file not found in $PATH"),
        None => e.to_string(),
    };
    format!("OCI runtime exec failed: exec failed: unable to start container process: {detail}: unknown")
}

impl ContainerService {
    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, name: &str, config: ExecSpec) -> Result<String> {
        let e = self.lookup(name)?;
        let rec = e.snapshot();
        if !rec.state.is_running() {
            return Err(ContainerError::Conflict(format!("container {} is not running", rec.id)));
        }
        if rec.state.status == ContainerStatus::Paused {
            return Err(paused(&rec.id));
        }
        if config.cmd.is_empty() {
            return Err(ContainerError::Invalid("No exec command specified".into()));
        }
        let id = hex::encode(random_bytes(32));
        let cmd = config.cmd.join(" ");
        self.execs.lock().expect("execs").insert(
            id.clone(),
            ExecEntry {
                id: id.clone(),
                container: rec.id.clone(),
                config,
                running: false,
                exit_code: None,
                pid: 0,
                exited_at: None,
            },
        );
        e.rec.lock().expect("record lock").exec_ids.push(id.clone());
        self.emit(&rec, &format!("exec_create: {cmd}"), &[("execID", &id)]);
        Ok(id)
    }

    /// An exec by ID.
    pub fn exec_get(&self, id: &str) -> Result<ExecEntry> {
        self.execs
            .lock()
            .expect("execs")
            .get(id)
            .cloned()
            .ok_or_else(|| ContainerError::NoSuchExec(id.to_string()))
    }

    /// The exec and its container, when the exec may start: it has not run and its
    /// container runs.
    pub fn exec_startable(&self, id: &str) -> Result<(ExecEntry, Record)> {
        let x = self.exec_get(id)?;
        if x.running || x.exit_code.is_some() {
            return Err(ContainerError::Conflict(format!(
                "Error: Exec command {id} has already run"
            )));
        }
        let rec = self.get(&x.container)?;
        if !rec.state.is_running() {
            return Err(ContainerError::Conflict(format!("container {} is not running", rec.id)));
        }
        if rec.state.status == ContainerStatus::Paused {
            return Err(paused(&rec.id));
        }
        Ok((x, rec))
    }

    /// The terminal size an exec's start asks for (`ConsoleSize` in the start body, API
    /// 1.42) replaces the one of its create.
    pub fn exec_console_size(&self, id: &str, height: u16, width: u16) {
        if let Some(x) = self.execs.lock().expect("execs").get_mut(id) {
            x.config.console_size = Some((height, width));
        }
    }

    /// Start an exec: the stream carries its output and ends with its exit frame.
    pub async fn exec_start(self: &std::sync::Arc<Self>, id: &str) -> Result<crate::task::Task> {
        let (x, rec) = self.exec_startable(id)?;
        let spec: oci_spec::runtime::Spec =
            serde_json::from_slice(&fs::read(self.bundle_dir(&rec.id).join("config.json"))?)
                .map_err(|e| ContainerError::Internal(e.to_string()))?;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| ContainerError::Internal("the container's spec has no process".into()))?;
        process.set_terminal(Some(x.config.tty));
        process.set_args(Some(x.config.cmd.clone()));
        if !x.config.env.is_empty() {
            let base = process.env().clone().unwrap_or_default();
            process.set_env(Some(spec::merge_env(&[&base, &x.config.env])));
        }
        if let Some(w) = x.config.working_dir.as_deref().filter(|w| !w.is_empty()) {
            process.set_cwd(w.into());
        }
        if let Some(u) = x.config.user.as_deref().filter(|u| !u.is_empty()) {
            let rootfs = self.container_dir(&rec.id).join("merged");
            let root = wharf_store::saferoot::SafeRoot::open(&rootfs)?;
            let read_in = |p: &str| read_in_root(&root, p);
            let user = spec::resolve_user(u, &read_in("/etc/passwd"), &read_in("/etc/group"), &[])?;
            process.set_user(spec::oci_user(&user)?);
        }
        if x.config.privileged {
            process.set_capabilities(Some(spec::capability_sets(&spec::bounding_caps())?));
        }
        process.set_console_size(None);
        if let Some((h, w)) = x.config.console_size.filter(|(h, _)| *h > 0) {
            process.set_console_size(Some(
                oci_spec::runtime::BoxBuilder::default()
                    .height(u64::from(h))
                    .width(u64::from(w))
                    .build()
                    .map_err(crate::resources::oci)?,
            ));
        }
        let req = Request::Exec {
            id: id.to_string(),
            process: Box::new(process),
            stdin: x.config.stdin,
        };
        let (reply, stream) = self.runtime.open(&rec.id, req).await?;
        if let Some((wharf_shim_proto::FailureKind::Paused, _)) = reply.failure() {
            // Frozen since the check above (a pause, a commit's freeze): it never started.
            return Err(paused(&rec.id));
        }
        if let Some((kind, err)) = reply.failure() {
            // As Docker 25 and later: 127 for a command that is not there, 126 for one that
            // could not start (dockerd 20.10 recorded 126 for both).
            let code = kind.exit_code().unwrap_or(126);
            if let Some(x) = self.execs.lock().expect("execs").get_mut(id) {
                x.exit_code = Some(i64::from(code));
            }
            return Err(ContainerError::Runtime {
                kind,
                message: exec_start_error(err),
            });
        }
        if let Some(x) = self.execs.lock().expect("execs").get_mut(id) {
            x.running = true;
            x.pid = i64::from(reply.pid.unwrap_or(0));
        }
        let cmd = x.config.cmd.join(" ");
        self.emit(&rec, &format!("exec_start: {cmd}"), &[("execID", id)]);
        let me = self.clone();
        let xid = id.to_string();
        Ok(crate::task::Task::spawn(
            stream,
            crate::task::Unread::Drain,
            move |code| me.exec_exited(&xid, code),
        ))
    }

    /// Record an exec's end.
    pub fn exec_exited(&self, id: &str, code: Option<i32>) {
        let container = {
            let mut execs = self.execs.lock().expect("execs");
            // Those that ended long ago are forgotten (dockerd's exec GC).
            execs.retain(|_, x| x.exited_at.is_none_or(|t| t.elapsed() < EXEC_KEEP));
            let Some(x) = execs.get_mut(id) else { return };
            x.running = false;
            x.exit_code = Some(i64::from(code.unwrap_or(-1)));
            x.pid = 0;
            x.exited_at = Some(std::time::Instant::now());
            x.container.clone()
        };
        if let Ok(e) = self.lookup(&container) {
            // The container's `ExecIDs` lists the execs that have not ended, as dockerd's.
            e.rec.lock().expect("record lock").exec_ids.retain(|x| x != id);
            let code = code.unwrap_or(-1).to_string();
            self.emit(&e.snapshot(), "exec_die", &[("execID", id), ("exitCode", &code)]);
        }
    }

    /// Resize an exec's terminal.
    pub async fn exec_resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        let x = self.exec_get(id)?;
        let rec = self.get(&x.container)?;
        if !rec.state.is_running() {
            return Err(ContainerError::Conflict(format!("container {} is not running", rec.id)));
        }
        self.runtime
            .call(
                &x.container,
                Request::Resize {
                    exec: Some(id.to_string()),
                    height,
                    width,
                },
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_read_like_docker() {
        let m = exec_start_error("executor validation failed: executable 'nosuch' not found in $PATH");
        assert_eq!(
            m,
            "OCI runtime exec failed: exec failed: unable to start container process: \
             exec: \"nosuch\": executable file not found in $PATH: unknown"
        );
    }
}
