//! `pause` and `unpause`: the freezer, through the shim.

use super::*;
use crate::error::{ContainerError, Result};
use crate::record::ContainerStatus;
use wharf_shim_proto::Request;

impl ContainerService {
    /// `POST /containers/{id}/pause` and `unpause`.
    pub async fn pause(&self, name: &str, pause: bool) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let rec = e.snapshot();
        if !rec.state.is_running() {
            return Err(ContainerError::Conflict(format!("Container {} is not running", rec.id)));
        }
        if pause && rec.state.status == ContainerStatus::Paused {
            return Err(ContainerError::Conflict(format!(
                "Container {} is already paused",
                rec.id
            )));
        }
        if !pause && rec.state.status != ContainerStatus::Paused {
            return Err(ContainerError::Conflict(format!("Container {} is not paused", rec.id)));
        }
        let req = if pause { Request::Pause } else { Request::Resume };
        self.runtime.call(&rec.id, req).await?;
        e.rec.lock().expect("record lock").state.status = if pause {
            ContainerStatus::Paused
        } else {
            ContainerStatus::Running
        };
        self.save(&e)?;
        self.emit(&rec, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }
}
