//! `wait`: until the container is not running, its next exit, or its removal.

use super::*;
use crate::error::Result;
use crate::record::ContainerStatus;

impl ContainerService {
    /// `POST /containers/{id}/wait`: a future for the exit code, set up before it is awaited
    /// (so the caller can flush its headers first).
    pub fn wait(
        &self,
        name: &str,
        cond: WaitCondition,
    ) -> Result<impl std::future::Future<Output = (i64, Option<String>)>> {
        let e = self.lookup(name)?;
        let mut rx = e.gen.subscribe();
        let start = *rx.borrow();
        let running = e.snapshot().state.is_running() || e.snapshot().state.status == ContainerStatus::Restarting;
        Ok(async move {
            let code = |e: &Entry| {
                let r = e.rec.lock().expect("record lock");
                let err = (!r.state.error.is_empty()).then(|| r.state.error.clone());
                (r.state.exit_code, err)
            };
            match cond {
                WaitCondition::NotRunning if !running => code(&e),
                WaitCondition::NotRunning | WaitCondition::NextExit => {
                    let _ = rx.wait_for(|g| g.exits > start.exits || g.removed).await;
                    code(&e)
                }
                WaitCondition::Removed => {
                    let _ = rx.wait_for(|g| g.removed).await;
                    code(&e)
                }
            }
        })
    }
}
