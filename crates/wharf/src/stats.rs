//! `wharf stats`: resource use per container, computed from the stats API as the docker CLI
//! computes it (CPU % from the deltas to the previous sample, memory without the inactive
//! page cache), as a table that refreshes every second or once with `--no-stream`.

use clap::Args;
use serde_json::{json, Value};

use crate::client::{q, Client};
use crate::error::Result;
use crate::format::Format;
use crate::{short_id, stdout};

/// `wharf stats`.
#[derive(Args, Debug)]
pub struct StatsCmd {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Containers (default: all running)
    containers: Vec<String>,
}

fn u(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// One row of the table from one stats sample.
pub fn row(s: &Value, no_trunc: bool) -> Value {
    let cpu = &s["cpu_stats"];
    let pre = &s["precpu_stats"];
    let cpu_delta = u(&cpu["cpu_usage"]["total_usage"]) - u(&pre["cpu_usage"]["total_usage"]);
    let sys_delta = u(&cpu["system_cpu_usage"]) - u(&pre["system_cpu_usage"]);
    let online = cpu["online_cpus"].as_f64().filter(|n| *n > 0.0).unwrap_or_else(|| {
        cpu["cpu_usage"]["percpu_usage"]
            .as_array()
            .map(|a| a.len() as f64)
            .unwrap_or(1.0)
    });
    let cpu_pct = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let m = &s["memory_stats"];
    let usage = u(&m["usage"]);
    let inactive = m["stats"]["total_inactive_file"]
        .as_f64()
        .or_else(|| m["stats"]["inactive_file"].as_f64())
        .filter(|i| *i < usage)
        .unwrap_or(0.0);
    let used = usage - inactive;
    let limit = u(&m["limit"]);
    let mem_pct = if limit > 0.0 { used / limit * 100.0 } else { 0.0 };
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in s["networks"].as_object().into_iter().flatten() {
        rx += u(&n.1["rx_bytes"]);
        tx += u(&n.1["tx_bytes"]);
    }
    let (mut br, mut bw) = (0.0, 0.0);
    for e in s["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().unwrap_or("").to_ascii_lowercase().as_str() {
            "read" => br += u(&e["value"]),
            "write" => bw += u(&e["value"]),
            _ => {}
        }
    }
    let id = s["id"].as_str().unwrap_or("");
    json!({
        "Container": if no_trunc { id.to_string() } else { short_id(id) },
        "ID": if no_trunc { id.to_string() } else { short_id(id) },
        "Name": s["name"].as_str().unwrap_or("").trim_start_matches('/'),
        "CPUPerc": format!("{cpu_pct:.2}%"),
        "MemUsage": format!("{} / {}", wharf_units::bytes_size(used), wharf_units::bytes_size(limit)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "NetIO": format!("{} / {}", wharf_units::human_size(rx), wharf_units::human_size(tx)),
        "BlockIO": format!("{} / {}", wharf_units::human_size(br), wharf_units::human_size(bw)),
        "PIDs": s["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    })
}

const HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

impl StatsCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let spec = self.format.clone().unwrap_or_else(|| {
            "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}".into()
        });
        let f = Format::parse(&spec)?;
        loop {
            let names: Vec<String> = if self.containers.is_empty() {
                let list = c.get(&format!("/containers/json?all={}", self.all as u8)).await?;
                list.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x["Id"].as_str().map(String::from))
                    .collect()
            } else {
                self.containers.clone()
            };
            let mut rows = Vec::new();
            for n in &names {
                let s = c.get(&format!("/containers/{}/stats?stream=0", q(n))).await?;
                rows.push(row(&s, self.no_trunc));
            }
            let out = f.list(&rows, HEADERS)?;
            if self.no_stream {
                return stdout(&out);
            }
            // Clear the screen and draw the table again, as the docker CLI does.
            stdout(&format!("\x1b[2J\x1b[H{out}"))?;
        }
    }
}
