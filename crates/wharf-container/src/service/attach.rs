//! `attach`: streams of a running container (or one waiting to start), closing stdin, and
//! terminal resizes.

use super::*;
use crate::error::{ContainerError, Result};
use tokio::sync::oneshot;
use wharf_shim_proto::Request;

impl ContainerService {
    /// Attach to a container's stdio. The attach is registered before this returns; for a
    /// container not yet started the stream arrives when it starts, so no output is lost.
    pub fn attach(
        &self,
        name: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<impl std::future::Future<Output = Result<crate::task::Task>> + Send + 'static> {
        let e = self.lookup(name)?;
        let rec = e.snapshot();
        self.emit(&rec, "attach", &[]);
        let req = Request::Attach { stdin, stdout, stderr };
        let runtime = self.runtime.clone();
        let id = rec.id.clone();
        let rx = if rec.state.is_running() {
            None
        } else {
            let (tx, rx) = oneshot::channel();
            e.attaches
                .lock()
                .expect("attaches")
                .push(PendingAttach { req: req.clone(), tx });
            Some(rx)
        };
        Ok(async move {
            let stream = match rx {
                None => runtime.open(&id, req).await.map(|(_, s)| s)?,
                Some(rx) => rx
                    .await
                    .map_err(|_| ContainerError::Internal("attach abandoned".into()))??,
            };
            Ok(crate::task::Task::spawn(stream, crate::task::Unread::Close, |_| {}))
        })
    }

    /// The client's stdin ended: close the container's stdin if it is `StdinOnce`, or the
    /// exec's stdin.
    pub async fn close_stdin(&self, container: &str, exec: Option<&str>) -> Result<()> {
        let rec = self.get(container)?;
        if exec.is_none() && !rec.config.stdin_once.unwrap_or(false) {
            return Ok(());
        }
        self.runtime
            .call(
                &rec.id,
                Request::CloseStdin {
                    exec: exec.map(String::from),
                },
            )
            .await?;
        Ok(())
    }

    /// Resize the container's terminal.
    pub async fn resize(&self, name: &str, height: u16, width: u16) -> Result<()> {
        let rec = self.get(name)?;
        if !rec.state.is_running() {
            return Err(ContainerError::Conflict(format!("Container {} is not running", rec.id)));
        }
        self.runtime
            .call(
                &rec.id,
                Request::Resize {
                    exec: None,
                    height,
                    width,
                },
            )
            .await?;
        Ok(())
    }
}
