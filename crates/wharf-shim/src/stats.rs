//! The container's cgroup figures for `docker stats`, read through libcgroups' manager (the one
//! libcontainer created the cgroup with) and made to mean the same on v1 and v2: CPU times in
//! nanoseconds (cgroup v2 counts microseconds; dockerd reports nanoseconds on both). On v2 a
//! file libcgroups 0.7 cannot parse fails all of its figures: 6.1 kernels print a bare
//! `MAJ:MIN` line in `io.stat` for a throttled device nothing has read yet, so any container
//! with `--device-read-bps` would show no stats at all. Then the v2 files are read here, with
//! such lines skipped.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use libcgroups::common::{AnyCgroupManager, CgroupManager};
use libcgroups::stats::{BlkioDeviceStat, MemoryData, Stats};

/// The figures of the cgroup at `rel` (relative to the cgroup root) as JSON.
pub fn read(manager: &AnyCgroupManager, rel: &str) -> Result<serde_json::Value, String> {
    let v2 = matches!(manager, AnyCgroupManager::V2(_));
    let mut stats = match manager.stats() {
        Ok(s) => s,
        Err(e) if v2 => {
            let dir = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
            unified(&dir).ok_or_else(|| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };
    if v2 {
        let u = &mut stats.cpu.usage;
        for v in [&mut u.usage_total, &mut u.usage_user, &mut u.usage_kernel] {
            *v = v.saturating_mul(1000);
        }
        stats.cpu.throttling.throttled_time = stats.cpu.throttling.throttled_time.saturating_mul(1000);
    }
    serde_json::to_value(&stats).map_err(|e| e.to_string())
}

/// `KEY VALUE` lines.
fn flat(dir: &Path, file: &str) -> HashMap<String, u64> {
    fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// One number, or `max` (no limit) as `u64::MAX`.
fn single(dir: &Path, file: &str) -> Option<u64> {
    let s = fs::read_to_string(dir.join(file)).ok()?;
    match s.trim() {
        "max" => Some(u64::MAX),
        v => v.parse().ok(),
    }
}

/// The v2 figures libcgroups' v2 manager reads, from the same files; `None` when the cgroup is
/// gone.
fn unified(dir: &Path) -> Option<Stats> {
    let mut s = Stats::default();
    let cpu = flat(dir, "cpu.stat");
    s.cpu.usage.usage_total = *cpu.get("usage_usec")?;
    s.cpu.usage.usage_user = cpu.get("user_usec").copied().unwrap_or(0);
    s.cpu.usage.usage_kernel = cpu.get("system_usec").copied().unwrap_or(0);
    s.cpu.throttling.periods = cpu.get("nr_periods").copied().unwrap_or(0);
    s.cpu.throttling.throttled_periods = cpu.get("nr_throttled").copied().unwrap_or(0);
    s.cpu.throttling.throttled_time = cpu.get("throttled_usec").copied().unwrap_or(0);
    let events = flat(dir, "memory.events");
    s.memory.memory = MemoryData {
        usage: single(dir, "memory.current").unwrap_or(0),
        max_usage: single(dir, "memory.peak").unwrap_or(0),
        fail_count: events.get("oom").copied().unwrap_or(0),
        limit: single(dir, "memory.max").unwrap_or(u64::MAX),
    };
    s.memory.memswap = MemoryData {
        usage: single(dir, "memory.swap.current").unwrap_or(0),
        max_usage: 0,
        fail_count: flat(dir, "memory.swap.events").get("fail").copied().unwrap_or(0),
        limit: single(dir, "memory.swap.max").unwrap_or(u64::MAX),
    };
    s.memory.hierarchy = true;
    s.memory.stats = flat(dir, "memory.stat");
    s.pids.current = single(dir, "pids.current").unwrap_or(0);
    s.pids.limit = single(dir, "pids.max").filter(|v| *v != u64::MAX).unwrap_or(0);
    let io = fs::read_to_string(dir.join("io.stat")).unwrap_or_default();
    s.blkio.service_bytes = io_stat(&io, ["rbytes", "wbytes"]);
    s.blkio.serviced = io_stat(&io, ["rios", "wios"]);
    Some(s)
}

/// `io.stat`'s read and write counters named `keys`, per device; lines without any are skipped.
fn io_stat(text: &str, keys: [&str; 2]) -> Vec<BlkioDeviceStat> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else { continue };
            let op = match k {
                _ if k == keys[0] => "read",
                _ if k == keys[1] => "write",
                _ => continue,
            };
            if let Ok(value) = v.parse() {
                out.push(BlkioDeviceStat {
                    major,
                    minor,
                    op_type: Some(op.to_string()),
                    value,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_stat_skips_bare_devices() {
        let text = "7:0 \n254:0 rbytes=4096 wbytes=512 rios=1 wios=2 dbytes=0 dios=0\n";
        let b = io_stat(text, ["rbytes", "wbytes"]);
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].major, b[0].minor, b[0].value), (254, 0, 4096));
        assert_eq!(b[1].op_type.as_deref(), Some("write"));
        assert_eq!(b[1].value, 512);
        let n = io_stat(text, ["rios", "wios"]);
        assert_eq!(n.iter().map(|s| s.value).collect::<Vec<_>>(), [1, 2]);
    }
}
