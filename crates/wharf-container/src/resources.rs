//! A container's resource limits as the OCI spec's `linux.resources`: memory and swap, CPU
//! shares, quota, sets and realtime, pids, block IO weights and throttles, and the default
//! device rules; each value checked as dockerd checks it, before anything is created.

use oci_spec::runtime::{
    LinuxBlockIo, LinuxBlockIoBuilder, LinuxCpu, LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxMemory, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
    LinuxThrottleDevice, LinuxThrottleDeviceBuilder,
};

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

fn device_rate(list: &Option<Vec<crate::config::ThrottleDevice>>) -> Result<Option<Vec<LinuxThrottleDevice>>> {
    let mut out = Vec::new();
    for d in list.iter().flatten() {
        let path = d.path.clone().unwrap_or_default();
        let (major, minor) = device_numbers(&path)?;
        out.push(
            LinuxThrottleDeviceBuilder::default()
                .major(major as i64)
                .minor(minor as i64)
                .rate(d.rate.unwrap_or(0).max(0) as u64)
                .build()
                .map_err(oci)?,
        );
    }
    Ok(Some(out).filter(|o| !o.is_empty()))
}

pub(crate) fn device_numbers(path: &str) -> Result<(u64, u64)> {
    let st = rustix::fs::stat(path).map_err(|e| ContainerError::Invalid(format!("{path}: {e}")))?;
    let rdev = st.st_rdev;
    Ok((rustix::fs::major(rdev) as u64, rustix::fs::minor(rdev) as u64))
}

/// An oci-spec builder's error (a required field left unset: a bug here, not the user's).
pub(crate) fn oci(e: oci_spec::OciSpecError) -> ContainerError {
    ContainerError::Internal(format!("building the OCI spec: {e}"))
}

/// One device cgroup rule.
pub(crate) fn device_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).access(access);
    if let Some(t) = typ {
        b = b.typ(t);
    }
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().expect("a device rule has no required field")
}

/// The `linux.resources` object.
pub fn resources(hc: &crate::config::HostSpec) -> Result<LinuxResources> {
    let devices = if hc.security.privileged.unwrap_or(false) {
        vec![device_rule(true, None, None, None, "rwm")]
    } else {
        let mut devices = vec![device_rule(false, None, None, None, "rwm")];
        for (maj, min) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 1),
            (5, 2),
            (136, -1),
            (10, 200),
        ] {
            let minor = Some(min).filter(|m| *m >= 0);
            devices.push(device_rule(true, Some(LinuxDeviceType::C), Some(maj), minor, "rwm"));
        }
        devices
    };
    let r = &hc.resources;
    let mut res = LinuxResourcesBuilder::default().devices(devices).build().map_err(oci)?;
    let mut mem = LinuxMemoryBuilder::default().build().map_err(oci)?;
    if let Some(v) = r.memory.filter(|v| *v > 0) {
        mem.set_limit(Some(v));
        // Docker: unset swap means twice the memory limit.
        mem.set_swap(Some(r.memory_swap.filter(|s| *s != 0).unwrap_or(v * 2)));
    }
    mem.set_reservation(r.memory_reservation.filter(|v| *v > 0));
    mem.set_swappiness(r.memory_swappiness.filter(|v| *v >= 0).map(|v| v as u64));
    mem.set_disable_oom_killer(r.oom_kill_disable.filter(|d| *d));
    if mem != LinuxMemory::default() {
        res.set_memory(Some(mem));
    }
    let mut cpu = LinuxCpuBuilder::default().build().map_err(oci)?;
    cpu.set_shares(r.cpu_shares.filter(|v| *v > 0).map(|v| v as u64));
    if let Some(n) = r.nano_cpus.filter(|v| *v > 0) {
        let period = 100_000i64;
        cpu.set_period(Some(period as u64));
        cpu.set_quota(Some(n * period / 1_000_000_000));
    }
    if let Some(v) = r.cpu_period.filter(|v| *v > 0) {
        cpu.set_period(Some(v as u64));
    }
    if let Some(v) = r.cpu_quota.filter(|v| *v != 0) {
        cpu.set_quota(Some(v));
    }
    cpu.set_cpus(r.cpuset_cpus.clone().filter(|v| !v.is_empty()));
    cpu.set_mems(r.cpuset_mems.clone().filter(|v| !v.is_empty()));
    // The real-time budget, as given: a parent without one refuses it at start, as with Docker.
    cpu.set_realtime_period(r.cpu_realtime_period.filter(|v| *v > 0).map(|v| v as u64));
    cpu.set_realtime_runtime(r.cpu_realtime_runtime.filter(|v| *v != 0));
    if cpu != LinuxCpu::default() {
        res.set_cpu(Some(cpu));
    }
    if let Some(v) = r.pids_limit.filter(|v| *v != 0) {
        res.set_pids(Some(LinuxPidsBuilder::default().limit(v).build().map_err(oci)?));
    }
    let mut blk = LinuxBlockIoBuilder::default().build().map_err(oci)?;
    if let Some(w) = r.blkio_weight.filter(|v| *v > 0) {
        if cgroup_v2() {
            // runc's mapping, written through `unified`: libcgroups 0.7 converts the weight in
            // u16 arithmetic, which overflows for any weight above 16.
            let (file, value) = io_weight_v2(w, std::path::Path::new("/sys/module/bfq").exists());
            res.set_unified(Some([(file.to_string(), value)].into()));
        } else {
            blk.set_weight(Some(w));
        }
    }
    blk.set_throttle_read_bps_device(device_rate(&r.blkio_device_read_bps)?);
    blk.set_throttle_write_bps_device(device_rate(&r.blkio_device_write_bps)?);
    blk.set_throttle_read_iops_device(device_rate(&r.blkio_device_read_iops)?);
    blk.set_throttle_write_iops_device(device_rate(&r.blkio_device_write_iops)?);
    if blk != LinuxBlockIo::default() {
        res.set_block_io(Some(blk));
    }
    Ok(res)
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
