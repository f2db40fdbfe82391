//! `rename`.

use super::*;
use crate::error::{ContainerError, Result};

impl ContainerService {
    /// `POST /containers/{id}/rename`.
    pub async fn rename(&self, name: &str, new: &str) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        if new.is_empty() {
            return Err(ContainerError::Invalid("Neither old nor new names may be empty".into()));
        }
        let id = e.snapshot().id;
        let old = e.snapshot().name;
        let new = self.reserve_name(Some(new), &id)?;
        self.names.lock().expect("names").remove(&old);
        e.rec.lock().expect("record lock").name = new.clone();
        if let Err(err) = self.save(&e) {
            self.names.lock().expect("names").remove(&new);
            self.names.lock().expect("names").insert(old.clone(), id);
            e.rec.lock().expect("record lock").name = old;
            return Err(err);
        }
        self.emit(&e.snapshot(), "rename", &[("oldName", &format!("/{old}"))]);
        Ok(())
    }
}
