//! Running healthcheck probes: one task per container with a healthcheck, each probe an exec
//! through the container's shim, its result fed to `health`'s state machine.

use super::*;
use crate::error::ContainerError;
use crate::health;
use crate::record::Record;
use std::sync::Arc;
use std::time::Duration;

impl ContainerService {
    /// Probe a started container's health for as long as this run lasts (see [`health`]).
    pub(crate) fn spawn_health(self: &Arc<Self>, e: Arc<Entry>) {
        let rec = e.snapshot();
        let Some(p) = health::probe(&rec.config) else { return };
        let run = e.gen.borrow().exits;
        let started = crate::logs::parse_time(&rec.state.started_at).unwrap_or(0);
        let since_start = move || {
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
            Duration::from_nanos(u64::try_from(now - started).unwrap_or(0))
        };
        let me = self.clone();
        tokio::spawn(async move {
            let mut gen = e.gen.subscribe();
            loop {
                let status = e.snapshot().state.health.map(|h| h.status).unwrap_or_default();
                let wait = p.next_interval(since_start(), &status);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = async { gen.wait_for(|g| g.exits != run || g.removed).await.is_ok() } => return,
                }
                let rec = e.snapshot();
                if e.gen.borrow().exits != run || !rec.state.is_running() {
                    return;
                }
                let begun = since_start();
                let start = now_nanos();
                let (exit_code, output) = me.run_probe(&rec, &p).await;
                let result = health::ProbeResult {
                    start,
                    end: now_nanos(),
                    exit_code,
                    output,
                };
                let changed = {
                    let mut r = e.rec.lock().expect("record lock");
                    if e.gen.borrow().exits != run {
                        return;
                    }
                    let h = r.state.health.get_or_insert_with(health::Health::starting);
                    health::record(h, &p, result, begun)
                };
                if let Some(status) = changed {
                    if let Err(err) = me.save(&e) {
                        tracing::warn!(id = %rec.id, "saving health: {err}");
                    }
                    me.emit(&e.snapshot(), &format!("health_status: {status}"), &[]);
                }
            }
        });
    }

    /// One health probe: an exec of `p.argv` in the container, its output and exit code, or
    /// -1 and why when it could not run or outlived its timeout. The exec is forgotten after.
    pub(crate) async fn run_probe(self: &Arc<Self>, rec: &Record, p: &health::Probe) -> (i64, String) {
        let cfg = crate::exec::ExecSpec {
            cmd: p.argv.clone(),
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let xid = match self.exec_create(&rec.id, cfg) {
            Ok(x) => x,
            Err(err) => return (-1, err.to_string()),
        };
        let run = async {
            let mut task = self.exec_start(&xid).await?;
            let mut out = Vec::new();
            while let Some(o) = task.output.recv().await {
                let (crate::task::Output::Stdout(b) | crate::task::Output::Stderr(b)) = o;
                if out.len() < health::MAX_OUTPUT {
                    out.extend_from_slice(&b);
                }
            }
            let code = task.wait().await.map_or(-1, i64::from);
            Ok::<_, ContainerError>((code, out))
        };
        // The task records a probe's exit itself; one that failed to start or outlived its
        // timeout is recorded here.
        let (code, output) = match tokio::time::timeout(p.timeout, run).await {
            Ok(Ok((code, out))) => (code, health::clip_output(&out)),
            Ok(Err(err)) => {
                self.exec_exited(&xid, None);
                (-1, err.to_string())
            }
            Err(_) => {
                self.exec_exited(&xid, None);
                if let Some(pid) = self
                    .exec_get(&xid)
                    .ok()
                    .and_then(|x| rustix::process::Pid::from_raw(x.pid as i32))
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                (
                    -1,
                    format!(
                        "Health check exceeded timeout ({})",
                        wharf_units::go_duration(p.timeout)
                    ),
                )
            }
        };
        self.execs.lock().expect("execs").remove(&xid);
        if let Ok(e) = self.lookup(&rec.id) {
            e.rec.lock().expect("record lock").exec_ids.retain(|x| *x != xid);
        }
        (code, output)
    }
}
