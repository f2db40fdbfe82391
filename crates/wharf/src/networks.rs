//! `wharf network create|ls|inspect|rm|connect|disconnect|prune` and `wharf port`, with the
//! docker CLI's columns and messages.

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{q, Client};
use crate::error::{CliError, Result};
use crate::format::Format;
use crate::images::filters_param;
use crate::{short_id, stdout};

/// `wharf network`.
#[derive(Args, Debug)]
pub struct NetworkCmd {
    #[command(subcommand)]
    cmd: NetworkSub,
}

#[derive(Subcommand, Debug)]
enum NetworkSub {
    /// Create a network
    Create(CreateCmd),
    /// List networks
    #[command(alias = "list")]
    Ls(LsCmd),
    /// Display detailed information on one or more networks
    Inspect(InspectCmd),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(NamesCmd),
    /// Connect a container to a network
    Connect(ConnectCmd),
    /// Disconnect a container from a network
    Disconnect(DisconnectCmd),
    /// Remove all unused networks
    Prune(PruneCmd),
}

#[derive(Args, Debug)]
struct CreateCmd {
    /// Driver to manage the Network
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long)]
    ip_range: Vec<String>,
    /// Auxiliary IPv4 or IPv6 addresses used by Network driver
    #[arg(long)]
    aux_address: Vec<String>,
    /// Enable or disable IPv6 networking
    #[arg(long)]
    ipv6: bool,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    attachable: bool,
    /// Set metadata on a network
    #[arg(long)]
    label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    opt: Vec<String>,
    /// The network's name
    name: String,
}

#[derive(Args, Debug)]
struct LsCmd {
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Do not truncate the output
    #[arg(long)]
    no_trunc: bool,
    /// Only display network IDs
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct InspectCmd {
    /// Format output using a custom template
    #[arg(short, long)]
    format: Option<String>,
    /// Networks
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args, Debug)]
struct NamesCmd {
    /// Networks
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args, Debug)]
struct ConnectCmd {
    /// Add network-scoped alias for the container
    #[arg(long)]
    alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    ip6: Option<String>,
    /// Add link to another container
    #[arg(long)]
    link: Vec<String>,
    /// The network
    network: String,
    /// The container
    container: String,
}

#[derive(Args, Debug)]
struct DisconnectCmd {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    force: bool,
    /// The network
    network: String,
    /// The container
    container: String,
}

#[derive(Args, Debug)]
struct PruneCmd {
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long)]
    filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

fn key_values(list: &[String]) -> Value {
    Value::Object(
        list.iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), json!(v))
            })
            .collect(),
    )
}

/// The IPAM pools of `network create`, as the docker CLI groups them: each `--subnet` takes the
/// `--gateway` and `--ip-range` inside it and the `--aux-address`es inside it.
fn ipam_configs(x: &CreateCmd) -> Result<Vec<Value>> {
    use std::net::IpAddr;
    let inside = |subnet: &str, ip: &str| -> bool {
        let ip = ip.split('/').next().unwrap_or(ip);
        let Some((net, len)) = subnet.split_once('/') else {
            return false;
        };
        let len: u32 = len.parse().unwrap_or(0);
        match (net.parse::<IpAddr>(), ip.parse::<IpAddr>()) {
            (Ok(IpAddr::V4(n)), Ok(IpAddr::V4(a))) => {
                let m = u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0);
                u32::from(n) & m == u32::from(a) & m
            }
            (Ok(IpAddr::V6(n)), Ok(IpAddr::V6(a))) => {
                let m = u128::MAX.checked_shl(128 - len.min(128)).unwrap_or(0);
                u128::from(n) & m == u128::from(a) & m
            }
            _ => false,
        }
    };
    let mut out: Vec<Value> = Vec::new();
    for s in &x.subnet {
        let mut c = json!({"Subnet": s});
        if let Some(g) = x.gateway.iter().find(|g| inside(s, g)) {
            c["Gateway"] = json!(g);
        }
        if let Some(r) = x.ip_range.iter().find(|r| inside(s, r)) {
            c["IPRange"] = json!(r);
        }
        let aux: serde_json::Map<String, Value> = x
            .aux_address
            .iter()
            .filter_map(|a| a.split_once('='))
            .filter(|(_, ip)| inside(s, ip))
            .map(|(k, ip)| (k.to_string(), json!(ip)))
            .collect();
        if !aux.is_empty() {
            c["AuxiliaryAddresses"] = Value::Object(aux);
        }
        out.push(c);
    }
    if x.subnet.is_empty() && (!x.gateway.is_empty() || !x.ip_range.is_empty() || !x.aux_address.is_empty()) {
        return Err(CliError::Usage(
            "every ip-range, gateway and aux-address must have a corresponding subnet".into(),
        ));
    }
    Ok(out)
}

impl NetworkCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        match self.cmd {
            NetworkSub::Create(x) => {
                let ipam = json!({"Driver": "default", "Config": ipam_configs(&x)?});
                let body = json!({
                    "Name": x.name, "Driver": x.driver, "IPAM": ipam, "Internal": x.internal,
                    "Attachable": x.attachable, "Labels": key_values(&x.label), "Options": key_values(&x.opt),
                    "EnableIPv6": x.ipv6,
                });
                let v = c.json(Method::POST, "/networks/create", Some(&body)).await?;
                stdout(&format!("{}\n", v["Id"].as_str().unwrap_or("")))
            }
            NetworkSub::Ls(x) => {
                let filters = filters_param(&x.filter, None)?;
                let list = c.get(&format!("/networks?{}", filters.trim_start_matches('&'))).await?;
                let nets: Vec<Value> = list.as_array().cloned().unwrap_or_default();
                if x.quiet {
                    let out: String = nets
                        .iter()
                        .map(|n| {
                            let id = n["Id"].as_str().unwrap_or("");
                            format!("{}\n", if x.no_trunc { id.to_string() } else { short_id(id) })
                        })
                        .collect();
                    return stdout(&out);
                }
                let rows: Vec<Value> = nets
                    .iter()
                    .map(|n| {
                        let id = n["Id"].as_str().unwrap_or("");
                        json!({
                            "ID": if x.no_trunc { id.to_string() } else { short_id(id) },
                            "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"],
                            "IPv6": n["EnableIPv6"], "Internal": n["Internal"], "CreatedAt": n["Created"],
                        })
                    })
                    .collect();
                let f = Format::parse(
                    x.format
                        .as_deref()
                        .unwrap_or("table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"),
                )?;
                stdout(&f.list(
                    &rows,
                    &[
                        ("ID", "NETWORK ID"),
                        ("Name", "NAME"),
                        ("Driver", "DRIVER"),
                        ("Scope", "SCOPE"),
                        ("IPv6", "IPV6"),
                        ("Internal", "INTERNAL"),
                        ("CreatedAt", "CREATED AT"),
                    ],
                )?)
            }
            NetworkSub::Inspect(x) => {
                crate::inspect_each(c, "network", &x.names, x.format.as_deref(), |n| {
                    format!("/networks/{}", q(n))
                })
                .await
            }
            NetworkSub::Rm(x) => {
                crate::containers::each(&x.names, |n| async move {
                    c.json(Method::DELETE, &format!("/networks/{}", q(&n)), None)
                        .await
                        .map(|_| ())
                })
                .await
            }
            NetworkSub::Connect(x) => {
                let mut ep = json!({"Aliases": x.alias, "Links": x.link});
                if let Some(ip) = &x.ip {
                    ep["IPAMConfig"]["IPv4Address"] = json!(ip);
                }
                if let Some(ip) = &x.ip6 {
                    ep["IPAMConfig"]["IPv6Address"] = json!(ip);
                }
                let body = json!({"Container": x.container, "EndpointConfig": ep});
                c.json(
                    Method::POST,
                    &format!("/networks/{}/connect", q(&x.network)),
                    Some(&body),
                )
                .await
                .map(|_| ())
            }
            NetworkSub::Disconnect(x) => {
                let body = json!({"Container": x.container, "Force": x.force});
                c.json(
                    Method::POST,
                    &format!("/networks/{}/disconnect", q(&x.network)),
                    Some(&body),
                )
                .await
                .map(|_| ())
            }
            NetworkSub::Prune(x) => {
                crate::error::require_force(x.force, "network prune")?;
                let filters = filters_param(&x.filter, None)?;
                let r = c
                    .json(
                        Method::POST,
                        &format!("/networks/prune?{}", filters.trim_start_matches('&')),
                        None,
                    )
                    .await?;
                let gone = r["NetworksDeleted"].as_array().cloned().unwrap_or_default();
                let mut out = String::new();
                if !gone.is_empty() {
                    out.push_str("Deleted Networks:\n");
                    for g in gone {
                        out.push_str(&format!("{}\n", g.as_str().unwrap_or("")));
                    }
                }
                stdout(&out)
            }
        }
    }
}

/// `wharf port`.
#[derive(Args, Debug)]
pub struct PortCmd {
    /// The container
    container: String,
    /// PRIVATE_PORT[/PROTO]
    port: Option<String>,
}

impl PortCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let v = c.get(&format!("/containers/{}/json", q(&self.container))).await?;
        let ports = v["NetworkSettings"]["Ports"].as_object().cloned().unwrap_or_default();
        let want = self.port.as_deref().map(|p| {
            if p.contains('/') {
                p.to_string()
            } else {
                format!("{p}/tcp")
            }
        });
        let mut keys: Vec<&String> = ports.keys().collect();
        keys.sort_by_key(|k| {
            (
                k.split('/').next().and_then(|p| p.parse::<u32>().ok()).unwrap_or(0),
                (*k).clone(),
            )
        });
        let mut out = String::new();
        for k in keys {
            if want.as_ref().is_some_and(|w| w != k) {
                continue;
            }
            for b in ports[k].as_array().into_iter().flatten() {
                let addr = format!(
                    "{}:{}",
                    b["HostIp"].as_str().unwrap_or(""),
                    b["HostPort"].as_str().unwrap_or("")
                );
                if want.is_some() {
                    out.push_str(&format!("{addr}\n"));
                } else {
                    out.push_str(&format!("{k} -> {addr}\n"));
                }
            }
        }
        if out.is_empty() {
            if let Some(w) = want {
                return Err(CliError::Usage(format!(
                    "Error: No public port '{w}' published for {}",
                    self.container
                )));
            }
        }
        stdout(&out)
    }
}
