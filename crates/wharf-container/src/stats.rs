//! `GET /containers/{id}/stats`: one sample of a container's resource use in Docker's JSON,
//! from the cgroup (read by the shim through libcgroups, v1 or v2), the host's `/proc/stat`
//! (the system CPU time the docker CLI divides by) and the container's `/proc/<pid>/net/dev`.

use serde_json::{json, Value};

use crate::record::{Record, ZERO_TIME};

/// The host's total CPU time in nanoseconds, as Docker reads it from `/proc/stat`.
pub fn system_cpu_usage() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal, in clock ticks (USER_HZ = 100).
    let ticks: u64 = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse::<u64>().ok())
        .sum();
    ticks * (1_000_000_000 / 100)
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Interfaces of the container's namespace (not `lo`), from `/proc/<pid>/net/dev`.
fn networks(pid: i64) -> Value {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    let mut out = serde_json::Map::new();
    for l in text.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let n: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if n.len() < 16 {
            continue;
        }
        out.insert(
            name.to_string(),
            json!({
                "rx_bytes": n[0], "rx_packets": n[1], "rx_errors": n[2], "rx_dropped": n[3],
                "tx_bytes": n[8], "tx_packets": n[9], "tx_errors": n[10], "tx_dropped": n[11],
            }),
        );
    }
    Value::Object(out)
}

fn blkio(list: Option<&Value>) -> Value {
    let Some(a) = list.and_then(|v| v.as_array()) else {
        return Value::Null;
    };
    Value::Array(
        a.iter()
            .map(|e| {
                json!({
                    "major": e["major"], "minor": e["minor"],
                    "op": e["op_type"].as_str().unwrap_or("").to_ascii_lowercase(),
                    "value": e["value"],
                })
            })
            .collect(),
    )
}

/// The CPU part of a sample (`cpu_stats` or, from the previous sample, `precpu_stats`).
pub fn cpu_json(raw: Option<&Value>, system: u64, ncpu: usize) -> Value {
    let Some(raw) = raw else {
        return json!({"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}});
    };
    let u = &raw["cpu"]["usage"];
    let t = &raw["cpu"]["throttling"];
    json!({
        "cpu_usage": {
            "total_usage": u["usage_total"],
            "percpu_usage": u["per_core_usage_total"],
            "usage_in_kernelmode": u["usage_kernel"],
            "usage_in_usermode": u["usage_user"],
        },
        "system_cpu_usage": system,
        "online_cpus": ncpu,
        "throttling_data": {"periods": t["periods"], "throttled_periods": t["throttled_periods"], "throttled_time": t["throttled_time"]},
    })
}

/// One sample in Docker's shape. `raw` is the shim's cgroup reading (`None`: not running);
/// `pre` is the previous sample's `cpu_stats` (or an empty one) and its time.
pub fn sample(rec: &Record, raw: Option<&Value>, read: &str, cpu: Value, pre: (Value, String)) -> Value {
    let running = raw.is_some();
    let m = raw.map(|r| &r["memory"]);
    let total = mem_total();
    let limit = m
        .and_then(|m| m["memory"]["limit"].as_u64())
        .filter(|l| *l > 0 && *l < total)
        .unwrap_or(total);
    let memory = match m {
        Some(m) => json!({
            "usage": m["memory"]["usage"],
            "max_usage": m["memory"]["max_usage"],
            "failcnt": m["memory"]["fail_count"],
            "stats": m["stats"],
            "limit": limit,
        }),
        None => json!({}),
    };
    let pids = match raw {
        Some(r) => {
            let mut p = json!({"current": r["pids"]["current"]});
            if let Some(l) = r["pids"]["limit"].as_u64().filter(|l| *l > 0) {
                p["limit"] = json!(l);
            }
            p
        }
        None => json!({}),
    };
    let b = raw.map(|r| &r["blkio"]);
    json!({
        "read": if running { read.to_string() } else { ZERO_TIME.to_string() },
        "preread": pre.1,
        "pids_stats": pids,
        "blkio_stats": {
            "io_service_bytes_recursive": blkio(b.map(|b| &b["service_bytes"])),
            "io_serviced_recursive": blkio(b.map(|b| &b["serviced"])),
            "io_queue_recursive": null, "io_service_time_recursive": null, "io_wait_time_recursive": null,
            "io_merged_recursive": null, "io_time_recursive": null, "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu,
        "precpu_stats": pre.0,
        "memory_stats": memory,
        "name": format!("/{}", rec.name),
        "id": rec.id,
        "networks": if running { networks(rec.state.pid) } else { Value::Null },
    })
}
