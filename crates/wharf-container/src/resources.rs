//! A container's resource limits as the OCI spec's `linux.resources`: memory and swap, CPU
//! shares, quota, sets and realtime, pids, block IO weights and throttles, and the default
//! device rules; each value checked as dockerd checks it, before anything is created.

use serde_json::{json, Value};

use crate::error::{ContainerError, Result};
use crate::spec::cgroup_v2;

/// Validate resource values as Docker does, before anything is created.
pub fn validate_resources(hc: &crate::config::HostSpec, ncpu: usize) -> Result<()> {
    let mem = hc.resources.memory.unwrap_or(0);
    if mem > 0 && mem < 6 * 1024 * 1024 {
        return Err(ContainerError::Invalid("Minimum memory limit allowed is 6MB".into()));
    }
    if let Some(swap) = hc.resources.memory_swap {
        if swap > 0 && mem > 0 && swap < mem {
            return Err(ContainerError::Invalid(
                "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
            ));
        }
        if swap > 0 && mem == 0 {
            return Err(ContainerError::Invalid(
                "You should always set the Memory limit when using Memoryswap limit, see usage".into(),
            ));
        }
    }
    if let Some(r) = hc.resources.memory_reservation {
        if mem > 0 && r > mem {
            return Err(ContainerError::Invalid(
                "Minimum memory limit can not be less than memory reservation limit, see usage".into(),
            ));
        }
    }
    if let Some(s) = hc.resources.memory_swappiness {
        if s != -1 && !(0..=100).contains(&s) {
            return Err(ContainerError::Invalid(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            )));
        }
    }
    if let Some(n) = hc.resources.nano_cpus.filter(|n| *n != 0) {
        if hc.resources.cpu_quota.unwrap_or(0) > 0 || hc.resources.cpu_period.unwrap_or(0) > 0 {
            return Err(ContainerError::Invalid(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set".into(),
            ));
        }
        if n < 0 || n > ncpu as i64 * 1_000_000_000 || n < 10_000_000 {
            return Err(ContainerError::Invalid(format!(
                "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            )));
        }
    }
    if let Some(p) = hc.resources.cpu_period.filter(|p| *p != 0) {
        if !(1000..=1_000_000).contains(&p) {
            return Err(ContainerError::Invalid(
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)".into(),
            ));
        }
    }
    if let Some(q) = hc.resources.cpu_quota.filter(|q| *q > 0) {
        if q < 1000 {
            return Err(ContainerError::Invalid(
                "CPU cfs quota can not be less than 1ms (i.e. 1000)".into(),
            ));
        }
    }
    if let Some(w) = hc.resources.blkio_weight.filter(|w| *w != 0) {
        if !(10..=1000).contains(&w) {
            return Err(ContainerError::Invalid(
                "Range of blkio weight is from 10 to 1000".into(),
            ));
        }
    }
    if let Some(cs) = hc.resources.cpuset_cpus.as_deref().filter(|s| !s.is_empty()) {
        for part in cs.split(',') {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                (Ok(a), Ok(b)) if a <= b => {
                    if b >= ncpu {
                        return Err(ContainerError::Invalid(format!(
                            "Requested CPUs are not available - requested {cs}, available: 0-{}",
                            ncpu - 1
                        )));
                    }
                }
                _ => return Err(ContainerError::Invalid(format!("Invalid value {cs} for cpuset cpus"))),
            }
        }
    }
    Ok(())
}

fn device_rate(list: &Option<Vec<crate::config::ThrottleDevice>>) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for d in list.iter().flatten() {
        let path = d.path.clone().unwrap_or_default();
        let (major, minor) = device_numbers(&path)?;
        out.push(json!({"major": major, "minor": minor, "rate": d.rate.unwrap_or(0)}));
    }
    Ok(out)
}

pub(crate) fn device_numbers(path: &str) -> Result<(u64, u64)> {
    let st = rustix::fs::stat(path).map_err(|e| ContainerError::Invalid(format!("{path}: {e}")))?;
    let rdev = st.st_rdev;
    Ok((rustix::fs::major(rdev) as u64, rustix::fs::minor(rdev) as u64))
}

/// The `linux.resources` object.
pub fn resources(hc: &crate::config::HostSpec) -> Result<Value> {
    let mut devices = vec![json!({"allow": false, "access": "rwm"})];
    for (t, maj, min) in [
        ("c", 1, 3),
        ("c", 1, 5),
        ("c", 1, 7),
        ("c", 1, 8),
        ("c", 1, 9),
        ("c", 5, 0),
        ("c", 5, 1),
        ("c", 5, 2),
        ("c", 136, -1),
        ("c", 10, 200),
    ] {
        let mut d = json!({"allow": true, "type": t, "major": maj, "access": "rwm"});
        if min >= 0 {
            d["minor"] = json!(min);
        }
        devices.push(d);
    }
    if hc.security.privileged.unwrap_or(false) {
        devices = vec![json!({"allow": true, "access": "rwm"})];
    }
    let mut r = json!({ "devices": devices });
    let mut mem = serde_json::Map::new();
    if let Some(v) = hc.resources.memory.filter(|v| *v > 0) {
        mem.insert("limit".into(), json!(v));
        match hc.resources.memory_swap {
            Some(s) if s != 0 => {
                mem.insert("swap".into(), json!(s));
            }
            // Docker: unset swap means twice the memory limit.
            _ => {
                mem.insert("swap".into(), json!(v * 2));
            }
        }
    }
    if let Some(v) = hc.resources.memory_reservation.filter(|v| *v > 0) {
        mem.insert("reservation".into(), json!(v));
    }
    if let Some(v) = hc.resources.memory_swappiness.filter(|v| *v >= 0) {
        mem.insert("swappiness".into(), json!(v));
    }
    if hc.resources.oom_kill_disable.unwrap_or(false) {
        mem.insert("disableOOMKiller".into(), json!(true));
    }
    if !mem.is_empty() {
        r["memory"] = Value::Object(mem);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(v) = hc.resources.cpu_shares.filter(|v| *v > 0) {
        cpu.insert("shares".into(), json!(v));
    }
    if let Some(n) = hc.resources.nano_cpus.filter(|v| *v > 0) {
        let period = 100_000i64;
        cpu.insert("period".into(), json!(period));
        cpu.insert("quota".into(), json!(n * period / 1_000_000_000));
    }
    if let Some(v) = hc.resources.cpu_period.filter(|v| *v > 0) {
        cpu.insert("period".into(), json!(v));
    }
    if let Some(v) = hc.resources.cpu_quota.filter(|v| *v != 0) {
        cpu.insert("quota".into(), json!(v));
    }
    if let Some(v) = hc.resources.cpuset_cpus.as_deref().filter(|v| !v.is_empty()) {
        cpu.insert("cpus".into(), json!(v));
    }
    if let Some(v) = hc.resources.cpuset_mems.as_deref().filter(|v| !v.is_empty()) {
        cpu.insert("mems".into(), json!(v));
    }
    // The real-time budget, as given: a parent without one refuses it at start, as with Docker.
    if let Some(v) = hc.resources.cpu_realtime_period.filter(|v| *v > 0) {
        cpu.insert("realtimePeriod".into(), json!(v));
    }
    if let Some(v) = hc.resources.cpu_realtime_runtime.filter(|v| *v != 0) {
        cpu.insert("realtimeRuntime".into(), json!(v));
    }
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
    if let Some(v) = hc.resources.pids_limit.filter(|v| *v != 0) {
        r["pids"] = json!({"limit": v});
    }
    let mut blk = serde_json::Map::new();
    if let Some(w) = hc.resources.blkio_weight.filter(|v| *v > 0) {
        if cgroup_v2() {
            // runc's mapping, written through `unified`: libcgroups 0.7 converts the weight in
            // u16 arithmetic, which overflows for any weight above 16.
            let (file, value) = io_weight_v2(w, std::path::Path::new("/sys/module/bfq").exists());
            r["unified"] = json!({ file: value });
        } else {
            blk.insert("weight".into(), json!(w));
        }
    }
    for (key, list) in [
        ("throttleReadBpsDevice", &hc.resources.blkio_device_read_bps),
        ("throttleWriteBpsDevice", &hc.resources.blkio_device_write_bps),
        ("throttleReadIOPSDevice", &hc.resources.blkio_device_read_iops),
        ("throttleWriteIOPSDevice", &hc.resources.blkio_device_write_iops),
    ] {
        let v = device_rate(list)?;
        if !v.is_empty() {
            blk.insert(key.into(), json!(v));
        }
    }
    if !blk.is_empty() {
        r["blockIO"] = Value::Object(blk);
    }
    Ok(r)
}

/// `--blkio-weight` (10 to 1000) on cgroup v2, as runc writes it: BFQ's own weight when the
/// BFQ scheduler is loaded, else `io.weight` mapped linearly onto 1 to 10000.
pub(crate) fn io_weight_v2(weight: u16, bfq: bool) -> (&'static str, String) {
    if bfq {
        ("io.bfq.weight", weight.to_string())
    } else {
        let w = u32::from(weight);
        ("io.weight", (1 + w.saturating_sub(10) * 9999 / 990).to_string())
    }
}
