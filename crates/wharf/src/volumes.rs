//! `wharf volume create|ls|inspect|rm|prune`, with the docker CLI's columns and messages.

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{q, Client};
use crate::error::Result;
use crate::format::Format;
use crate::images::filters_param;
use crate::stdout;

/// `wharf volume`.
#[derive(Args, Debug)]
pub struct VolumeCmd {
    #[command(subcommand)]
    cmd: VolumeSub,
}

#[derive(Subcommand, Debug)]
enum VolumeSub {
    /// Create a volume
    Create(CreateCmd),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsCmd),
    /// Display detailed information on one or more volumes
    Inspect(InspectCmd),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmCmd),
    /// Remove unused local volumes
    Prune(PruneCmd),
}

#[derive(Args, Debug)]
struct CreateCmd {
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    opt: Vec<String>,
    /// The volume's name
    name: Option<String>,
}

#[derive(Args, Debug)]
struct LsCmd {
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct InspectCmd {
    /// Format output using a custom template
    #[arg(short, long)]
    format: Option<String>,
    /// Volumes
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args, Debug)]
struct RmCmd {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    force: bool,
    /// Volumes
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args, Debug)]
struct PruneCmd {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long)]
    filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

fn key_values(list: &[String]) -> Value {
    let mut m = serde_json::Map::new();
    for kv in list {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        m.insert(k.to_string(), json!(v));
    }
    Value::Object(m)
}

impl VolumeCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        match self.cmd {
            VolumeSub::Create(x) => {
                let body = json!({
                    "Name": x.name.unwrap_or_default(),
                    "Driver": x.driver,
                    "DriverOpts": key_values(&x.opt),
                    "Labels": key_values(&x.label),
                });
                let v = c.json(Method::POST, "/volumes/create", Some(&body)).await?;
                stdout(&format!("{}\n", v["Name"].as_str().unwrap_or("")))
            }
            VolumeSub::Ls(x) => {
                let filters = filters_param(&x.filter, None)?;
                let filters = filters.strip_prefix('&').unwrap_or("");
                let list = c.get(&format!("/volumes?{filters}")).await?;
                let vols: Vec<Value> = list["Volumes"].as_array().cloned().unwrap_or_default();
                if x.quiet {
                    let out: String = vols
                        .iter()
                        .map(|v| format!("{}\n", v["Name"].as_str().unwrap_or("")))
                        .collect();
                    return stdout(&out);
                }
                let spec = x.format.unwrap_or_else(|| "table {{.Driver}}\t{{.Name}}".into());
                let rows: Vec<Value> = vols
                    .iter()
                    .map(|v| {
                        let mut labels: Vec<String> = v["Labels"]
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                                    .collect()
                            })
                            .unwrap_or_default();
                        labels.sort();
                        json!({
                            "Name": v["Name"], "Driver": v["Driver"], "Mountpoint": v["Mountpoint"],
                            "Scope": v["Scope"], "CreatedAt": v["CreatedAt"], "Labels": labels.join(","),
                        })
                    })
                    .collect();
                let f = Format::parse(&spec)?;
                stdout(&f.list(
                    &rows,
                    &[
                        ("Driver", "DRIVER"),
                        ("Name", "VOLUME NAME"),
                        ("Mountpoint", "MOUNTPOINT"),
                        ("Scope", "SCOPE"),
                        ("Labels", "LABELS"),
                        ("CreatedAt", "CREATED"),
                    ],
                )?)
            }
            VolumeSub::Inspect(x) => {
                crate::inspect_each(c, "volume", &x.names, x.format.as_deref(), |n| {
                    format!("/volumes/{}", q(n))
                })
                .await
            }
            VolumeSub::Rm(x) => {
                let force = x.force as u8;
                crate::containers::each(&x.names, |n| async move {
                    c.json(Method::DELETE, &format!("/volumes/{}?force={force}", q(&n)), None)
                        .await
                        .map(|_| ())
                })
                .await
            }
            VolumeSub::Prune(x) => {
                crate::error::require_force(x.force, "volume prune")?;
                let filters = filters_param(&x.filter, x.all.then_some(("all", "true")))?;
                let filters = filters.strip_prefix('&').unwrap_or("");
                let r = c.json(Method::POST, &format!("/volumes/prune?{filters}"), None).await?;
                let mut out = String::new();
                crate::containers::deleted_section(&mut out, "Deleted Volumes", &r["VolumesDeleted"]);
                let bytes = r["SpaceReclaimed"].as_u64().unwrap_or(0);
                out.push_str(&format!(
                    "Total reclaimed space: {}\n",
                    wharf_units::human_size(bytes as f64)
                ));
                stdout(&out)
            }
        }
    }
}
