//! [`ContainerView`]: what inspect and ps show of a container, in the engine's terms: its
//! record and what the engine derives from it (where its hosts, hostname and resolv.conf files
//! are, where its log is, its root's storage driver data, its sizes when asked). The API edge
//! renders Docker's JSON from it and asks the engine nothing else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::record::Record;
use crate::service::ContainerService;

/// A container as inspect and ps show it.
#[derive(Debug, Clone)]
pub struct ContainerView {
    /// The record.
    pub record: Record,
    /// The directory of the hosts, hostname and resolv.conf files it sees (another
    /// container's with `--network container:`).
    pub files_dir: PathBuf,
    /// Its json-file log.
    pub log_path: PathBuf,
    /// The storage driver of its root and that driver's data (`GraphDriver`); inspect only.
    pub graph_driver: Option<(String, Option<BTreeMap<String, String>>)>,
    /// Bytes of its writable layer and of its whole root, when asked (`--size`).
    pub sizes: Option<(u64, u64)>,
}

impl ContainerService {
    /// The view inspect shows; `sizes` computes the two sizes (a walk of the root).
    pub fn view(&self, name: &str, sizes: bool) -> Result<ContainerView> {
        let record = self.get(name)?;
        let mut v = self.view_of(record, sizes)?;
        v.graph_driver = Some(self.graph_driver(&v.record));
        Ok(v)
    }

    /// The views ps lists, newest first, without sizes (ask [`ContainerService::sizes`] for
    /// the few that pass the filters) or storage data.
    pub fn views(&self) -> Vec<ContainerView> {
        let mut recs = self.records();
        recs.sort_by(|a, b| b.created.cmp(&a.created));
        recs.into_iter().filter_map(|r| self.view_of(r, false).ok()).collect()
    }

    fn view_of(&self, record: Record, sizes: bool) -> Result<ContainerView> {
        let joined = record
            .host_config
            .network
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("container:"))
            .and_then(|other| self.get(other).ok());
        let files_dir = self.files_dir(&joined.as_ref().unwrap_or(&record).id);
        let sizes = if sizes { Some(self.sizes(&record.id)?) } else { None };
        Ok(ContainerView {
            files_dir,
            log_path: self.log_path(&record.id),
            graph_driver: None,
            sizes,
            record,
        })
    }
}
