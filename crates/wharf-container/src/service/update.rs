//! `update`: new limits and restart policy, applied to a running container through its shim.

use super::*;
use crate::error::{ContainerError, Result};
use crate::record::ContainerStatus;
use crate::record::Record;
use crate::spec;
use serde_json::Value;
use std::sync::Arc;
use wharf_shim_proto::Request;

impl ContainerService {
    /// One reading of a container's cgroup through its shim (`None`: it is not running).
    pub async fn cgroup_reading(&self, name: &str) -> Result<(Record, Option<Value>)> {
        let rec = self.lookup(name)?.snapshot();
        if !rec.state.is_running() {
            return Ok((rec, None));
        }
        match self.runtime.call(&rec.id, Request::Stats).await {
            Ok(r) => Ok((rec, r.stats)),
            Err(_) => Ok((rec, None)),
        }
    }

    /// `POST /containers/{id}/update`: merge the new limits into the container's config as
    /// Docker does (only the values given), check them, and apply them to a running container's
    /// cgroup. Nothing changes when any step fails.
    pub async fn update(&self, name: &str, body: UpdateBody) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let id = e.snapshot().id;
        let wrap = |m: String| format!("Cannot update container {id}: {m}");
        self.update_locked(&e, body).await.map_err(|err| match err {
            ContainerError::Invalid(m) => ContainerError::Invalid(wrap(m)),
            ContainerError::Internal(m) => ContainerError::Internal(wrap(m)),
            other => other,
        })
    }

    pub(crate) async fn update_locked(&self, e: &Arc<Entry>, body: UpdateBody) -> Result<()> {
        let old = e.snapshot();
        let mut hc = old.host_config.clone();
        let r = &body;
        let conflict = |m: &str| Err(ContainerError::Invalid(format!("Conflicting options: {m}")));
        let set = |v: Option<i64>| v.filter(|v| *v != 0);
        if set(r.nano_cpus).is_some() && set(hc.resources.cpu_period).is_some() {
            return conflict("Nano CPUs cannot be updated as CPU Period has already been set");
        }
        if set(r.nano_cpus).is_some() && set(hc.resources.cpu_quota).is_some() {
            return conflict("Nano CPUs cannot be updated as CPU Quota has already been set");
        }
        if set(r.cpu_period).is_some() && set(hc.resources.nano_cpus).is_some() {
            return conflict("CPU Period cannot be updated as NanoCPUs has already been set");
        }
        if set(r.cpu_quota).is_some() && set(hc.resources.nano_cpus).is_some() {
            return conflict("CPU Quota cannot be updated as NanoCPUs has already been set");
        }
        if let Some(w) = r.blkio_weight.filter(|w| *w != 0) {
            hc.resources.blkio_weight = Some(w);
        }
        for (new, cur) in [
            (r.cpu_shares, &mut hc.resources.cpu_shares),
            (r.nano_cpus, &mut hc.resources.nano_cpus),
            (r.cpu_period, &mut hc.resources.cpu_period),
            (r.cpu_quota, &mut hc.resources.cpu_quota),
            (r.memory_reservation, &mut hc.resources.memory_reservation),
        ] {
            if let Some(v) = set(new) {
                *cur = Some(v);
            }
        }
        if let Some(v) = r.cpuset_cpus.clone().filter(|v| !v.is_empty()) {
            hc.resources.cpuset_cpus = Some(v);
        }
        if let Some(v) = r.cpuset_mems.clone().filter(|v| !v.is_empty()) {
            hc.resources.cpuset_mems = Some(v);
        }
        if let Some(m) = set(r.memory) {
            if m > hc.resources.memory_swap.unwrap_or(0) && set(r.memory_swap).is_none() {
                return Err(ContainerError::Invalid(
                    "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into(),
                ));
            }
            hc.resources.memory = Some(m);
        }
        if let Some(v) = set(r.memory_swap) {
            hc.resources.memory_swap = Some(v);
        }
        // Not above zero: unlimited, shown as 0 (as dockerd); the cgroup gets "max".
        if let Some(p) = r.pids_limit {
            hc.resources.pids_limit = Some(p.max(0));
        }
        if let Some((name, max)) = &body.restart_policy {
            let none = matches!(name.as_str(), "" | "no");
            if hc.lifecycle.auto_remove.unwrap_or(false) && !none {
                return Err(ContainerError::Conflict(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container".into(),
                ));
            }
            let name = name
                .parse::<crate::config::RestartPolicyName>()
                .map_err(|_| ContainerError::Invalid(format!("invalid restart policy {name}")))?;
            hc.lifecycle.restart_policy = Some(crate::config::RestartPolicy {
                name: Some(name),
                maximum_retry_count: Some(*max),
            });
        }
        let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        spec::validate_resources(&hc, ncpu)?;
        let mut resources = spec::resources(&hc)?;
        if r.pids_limit.is_some_and(|p| p <= 0) {
            resources.set_pids(Some(
                oci_spec::runtime::LinuxPidsBuilder::default()
                    .limit(-1)
                    .build()
                    .map_err(crate::resources::oci)?,
            ));
        }
        e.rec.lock().expect("record lock").host_config = hc;
        let applied = async {
            if matches!(old.state.status, ContainerStatus::Running | ContainerStatus::Paused) {
                self.runtime
                    .call(
                        &old.id,
                        Request::Update {
                            resources: Box::new(resources),
                        },
                    )
                    .await
                    .map_err(|err| ContainerError::Internal(err.to_string()))?;
            }
            self.save(e)
        };
        if let Err(err) = applied.await {
            e.rec.lock().expect("record lock").host_config = old.host_config;
            return Err(err);
        }
        Ok(())
    }
}
