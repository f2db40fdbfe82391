//! A container's networking: which networks it joins (`--network`, `NetworkingConfig`,
//! `network connect`), its namespace, endpoints and published ports while it runs, its
//! `/etc/hosts` and `/etc/resolv.conf`, and `NetworkSettings` as inspect shows them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wharf_network::link::Target;
use wharf_network::nft::PortRule;
use wharf_network::{Endpoint, EndpointRequest, NetworkError, NetworkService};

use crate::error::{ContainerError, Result};
use crate::record::Record;

/// How a container joins one network, as its record keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointConfig {
    /// The network's ID.
    pub network_id: String,
    /// `--network-alias`.
    pub aliases: Vec<String>,
    /// `--ip`.
    pub ipv4: Option<String>,
    /// `--ip6` (assigned on a network with IPv6 enabled, else only kept and shown).
    #[serde(default)]
    pub ipv6: Option<String>,
    /// `--mac-address`.
    pub mac: Option<String>,
    /// `--link`: legacy links on the default bridge, DNS aliases on a user network.
    pub links: Vec<String>,
    /// `--link-local-ip`, kept and shown (the address is not configured).
    #[serde(default)]
    pub link_local_ips: Vec<String>,
    /// `--driver-opt`s of the endpoint, kept and shown.
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    /// `GwPriority` (API 1.48): the network with the highest gives the default route.
    #[serde(default)]
    pub gw_priority: i64,
}

/// One published port while the container runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortMapping {
    /// The container's port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
    /// The host address (`0.0.0.0` for all).
    pub host_ip: String,
    /// The host port.
    pub host_port: u16,
}

/// A running container's network state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetState {
    /// Its pinned namespace (empty for host, none-less modes).
    pub sandbox_key: String,
    /// Its endpoints, in interface order.
    pub endpoints: Vec<Endpoint>,
    /// Its published ports.
    pub ports: Vec<PortMapping>,
    /// It is on a user-defined network: its nameserver is the resolver at 127.0.0.11.
    #[serde(default)]
    pub resolver: bool,
}

impl From<NetworkError> for ContainerError {
    fn from(e: NetworkError) -> Self {
        match e {
            NetworkError::NotFound(_) => ContainerError::NetworkNotFound(e.to_string()),
            NetworkError::Invalid(m) => ContainerError::Invalid(m),
            NetworkError::Conflict(m) | NetworkError::Forbidden(m) => ContainerError::Conflict(m),
            NetworkError::System(m) => ContainerError::Internal(m),
        }
    }
}

/// Does this network mode give the container its own bridge-attached namespace?
pub fn uses_networks(mode: &str) -> bool {
    !matches!(mode, "host" | "none") && !mode.starts_with("container:")
}

/// The networks a new container joins, from `--network` and the create body's
/// `NetworkingConfig.EndpointsConfig`, checked as Docker checks them.
pub fn endpoint_configs(
    net: &NetworkService,
    hc: &crate::config::HostSpec,
    networking: Option<&Value>,
) -> Result<BTreeMap<String, EndpointConfig>> {
    let mode = hc.network.network_mode.clone().unwrap_or_else(|| "bridge".into());
    let mut out = BTreeMap::new();
    if !uses_networks(&mode) {
        if mode.starts_with("container:") && hc.network.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(ContainerError::Invalid(
                "conflicting options: port publishing and the container type network mode".into(),
            ));
        }
        return Ok(out);
    }
    // As in Docker 28: a missing network fails the start, not the create.
    let n = match net.get(&mode) {
        Ok(n) => n,
        Err(NetworkError::NotFound(_)) => {
            out.insert(mode.clone(), EndpointConfig::default());
            return Ok(out);
        }
        Err(e) => return Err(e.into()),
    };
    let given = networking
        .and_then(|v| v.get("EndpointsConfig"))
        .and_then(|v| v.as_object())
        .cloned()
        .unwrap_or_default();
    let cfg_for = |name: &str, id: &str| -> Option<Value> {
        given
            .iter()
            .find(|(k, _)| *k == name || *k == id || (name == "bridge" && *k == "default"))
            .map(|(_, v)| v.clone())
    };
    let ec = endpoint_config(&n.id, cfg_for(&n.name, &n.id).as_ref())?;
    out.insert(n.name.clone(), checked(&n, ec, hc)?);
    // The other networks of `EndpointsConfig` (API 1.44 and later; the API edge refuses
    // them before). One missing fails the start, as the mode's.
    for (key, v) in &given {
        if *key == n.name || *key == n.id || (n.name == "bridge" && key == "default") {
            continue;
        }
        match net.get(key) {
            Ok(other) => {
                let ec = endpoint_config(&other.id, Some(v))?;
                out.insert(other.name.clone(), checked(&other, ec, hc)?);
            }
            Err(NetworkError::NotFound(_)) => {
                out.insert(key.clone(), endpoint_config("", Some(v))?);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// One endpoint's settings checked against its network, as Docker checks them; links of
/// `--link` go to the default bridge or become aliases on a user network.
fn checked(n: &wharf_network::Network, mut ec: EndpointConfig, hc: &crate::config::HostSpec) -> Result<EndpointConfig> {
    if n.default_bridge {
        if ec.ipv4.is_some() {
            return Err(ContainerError::Invalid(
                "invalid config for network bridge: invalid endpoint settings:\nuser specified IP address is supported on user defined networks only".into(),
            ));
        }
        if !ec.aliases.is_empty() {
            return Err(ContainerError::Invalid(
                "invalid config for network bridge: invalid endpoint settings:\nnetwork-scoped alias is supported only for containers in user defined networks".into(),
            ));
        }
        ec.links = hc.network.links.clone().unwrap_or_default();
    } else if ec.ipv4.is_some() && !n.user_subnet {
        return Err(ContainerError::Invalid(format!(
            "invalid config for network {}: invalid endpoint settings:\nuser specified IP address is supported only when connecting to networks with user configured subnets",
            n.name
        )));
    } else if ec.links.is_empty() {
        // `--link` with a user network: aliases on it (its DNS answers them).
        ec.links = hc.network.links.clone().unwrap_or_default();
    }
    Ok(ec)
}

/// One `EndpointSettings` object into our config.
pub fn endpoint_config(network_id: &str, v: Option<&Value>) -> Result<EndpointConfig> {
    let s = |p: &str| {
        v.and_then(|v| v.pointer(p))
            .and_then(|x| x.as_str())
            .filter(|x| !x.is_empty())
            .map(String::from)
    };
    let list = |k: &str| -> Vec<String> {
        v.and_then(|v| v.get(k))
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let ipv4 = s("/IPAMConfig/IPv4Address");
    if let Some(ip) = &ipv4 {
        ip.parse::<Ipv4Addr>()
            .map_err(|_| ContainerError::Invalid(format!("invalid IPv4 address: {ip}")))?;
    }
    let ipv6 = s("/IPAMConfig/IPv6Address");
    if let Some(ip) = &ipv6 {
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| ContainerError::Invalid(format!("invalid IPv6 address: {ip}")))?;
    }
    let mac = s("/MacAddress");
    if let Some(mac) = &mac {
        if wharf_network::link::parse_mac(mac).is_none() {
            return Err(ContainerError::Invalid(format!("invalid MAC address: {mac}")));
        }
    }
    let link_local_ips: Vec<String> = v
        .and_then(|v| v.pointer("/IPAMConfig/LinkLocalIPs"))
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default();
    for ip in &link_local_ips {
        ip.parse::<std::net::IpAddr>()
            .map_err(|_| ContainerError::Invalid(format!("invalid link-local IP address: {ip}")))?;
    }
    let driver_opts = v
        .and_then(|v| v.get("DriverOpts"))
        .and_then(|o| o.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let gw_priority = match v.and_then(|v| v.get("GwPriority")) {
        None | Some(Value::Null) => 0,
        Some(p) => p
            .as_i64()
            .ok_or_else(|| ContainerError::Invalid(format!("invalid GwPriority: {p}")))?,
    };
    Ok(EndpointConfig {
        network_id: network_id.to_string(),
        gw_priority,
        aliases: list("Aliases"),
        ipv4,
        ipv6,
        mac,
        links: list("Links"),
        link_local_ips,
        driver_opts,
    })
}

/// A container's links on a network as (alias, container name): `name:alias` or `name`.
pub fn link_aliases(ec: &EndpointConfig) -> Vec<(String, String)> {
    ec.links
        .iter()
        .map(|l| {
            let (name, alias) = l.split_once(':').unwrap_or((l, l));
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            (alias.to_string(), name.trim_start_matches('/').to_string())
        })
        .collect()
}

/// The names a container answers to on a user network, in Docker's order and without
/// repeats: its name, its aliases, its short ID, its hostname.
pub fn dns_names(rec: &Record, ec: &EndpointConfig) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let hostname = rec.config.hostname.as_deref().filter(|h| !h.is_empty());
    for n in std::iter::once(rec.name.as_str())
        .chain(ec.aliases.iter().map(String::as_str))
        .chain(std::iter::once(&rec.id[..12]))
        .chain(hostname)
    {
        if !v.iter().any(|x| x == n) {
            v.push(n.to_string());
        }
    }
    v
}

/// Which of `networks` (name, priority) gives the default route, as Docker 28 chooses: the
/// highest `GwPriority`, then the first name in lexical order; never an internal network.
pub fn gateway_network<'a>(
    net: &NetworkService,
    networks: impl IntoIterator<Item = (&'a str, i64)>,
) -> Option<&'a str> {
    networks
        .into_iter()
        .filter(|(name, _)| net.get(name).is_ok_and(|n| !n.internal))
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(name, _)| name)
}

/// The endpoint requests for a start, the network named by the mode first (`eth0`), the
/// others in name order.
pub fn requests(net: &NetworkService, rec: &Record) -> Result<Vec<EndpointRequest>> {
    let mode = rec.host_config.network.network_mode.clone().unwrap_or_default();
    let is_mode = |name: &str, ec: &EndpointConfig| {
        name == mode || ec.network_id == mode || (mode == "default" && name == "bridge")
    };
    let mut items: Vec<(&String, &EndpointConfig)> = rec.networks.iter().collect();
    items.sort_by_key(|(name, ec)| !is_mode(name, ec));
    let gateway = gateway_network(net, items.iter().map(|(name, ec)| (name.as_str(), ec.gw_priority)));
    items
        .into_iter()
        .map(|(name, ec)| {
            Ok(EndpointRequest {
                default_route: gateway == Some(name.as_str()),
                network: if ec.network_id.is_empty() {
                    name.clone()
                } else {
                    ec.network_id.clone()
                },
                ip: ec
                    .ipv4
                    .as_deref()
                    .map(|i| i.parse())
                    .transpose()
                    .map_err(|_| ContainerError::Invalid("bad --ip".into()))?,
                ip6: ec.ipv6.as_deref().and_then(|i| i.parse().ok()),
                // The container-wide MacAddress (before API 1.44) is the mode network's,
                // even after a client disconnected and connected that network again.
                mac: ec
                    .mac
                    .as_deref()
                    .or(rec.config.mac_address.as_deref().filter(|_| is_mode(name, ec)))
                    .and_then(wharf_network::link::parse_mac),
                dns_names: dns_names(rec, ec),
                links: link_aliases(ec),
            })
        })
        .collect()
}

/// A port to publish: container port, protocol, host address (`None`: all), host port (0: any).
pub type PortRequest = (u16, String, Option<Ipv4Addr>, u16);

/// `-p` and `-P`.
pub fn port_requests(rec: &Record) -> Result<Vec<PortRequest>> {
    let mut out = Vec::new();
    let parse_key = |k: &str| -> Result<(u16, String)> {
        let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
        let port = p
            .parse::<u16>()
            .map_err(|_| ContainerError::Invalid(format!("invalid port specification: \"{k}\"")))?;
        Ok((port, proto.to_string()))
    };
    for (k, binds) in rec.host_config.network.port_bindings.iter().flatten() {
        let (port, proto) = parse_key(k)?;
        for b in binds.iter().flatten() {
            let hip = b
                .host_ip
                .as_deref()
                .filter(|h| !h.is_empty() && *h != "0.0.0.0")
                .map(|h| {
                    h.parse::<Ipv4Addr>()
                        .map_err(|_| ContainerError::Invalid(format!("invalid IP address: {h}")))
                })
                .transpose()?;
            let hp = match b.host_port.as_deref().filter(|h| !h.is_empty()) {
                None => 0,
                Some(h) => h
                    .split('-')
                    .next()
                    .unwrap_or("")
                    .parse::<u16>()
                    .map_err(|_| ContainerError::Invalid(format!("invalid port specification: \"{h}\"")))?,
            };
            out.push((port, proto.clone(), hip, hp));
        }
    }
    if rec.host_config.network.publish_all_ports.unwrap_or(false) {
        for k in rec.config.exposed_ports.iter().flat_map(|e| e.keys()) {
            let (port, proto) = parse_key(k)?;
            if !out.iter().any(|(p, pr, _, _)| *p == port && *pr == proto) {
                out.push((port, proto, None, 0));
            }
        }
    }
    Ok(out)
}

/// Join the container's networks in a new namespace and publish its ports.
pub async fn start(net: &NetworkService, rec: &Record) -> Result<NetState> {
    let key: PathBuf = net.sandbox_key(&rec.id);
    wharf_network::link::release_namespace(&key);
    let reqs = requests(net, rec)?;
    let endpoints = net
        .attach(&rec.id, Target::New(key.clone()), &reqs, 0)
        .await
        .map_err(|e| match e {
            NetworkError::NotFound(_) => {
                ContainerError::NetworkNotFound(format!("failed to set up container networking: {e}"))
            }
            other => other.into(),
        })?;
    let mut st = NetState {
        sandbox_key: key.display().to_string(),
        endpoints,
        ports: Vec::new(),
        resolver: false,
    };
    if let Err(e) = publish(net, rec, &mut st).await {
        stop(net, &rec.id, &st).await;
        return Err(e);
    }
    // The resolver itself is opened by the caller, beside the rest of the start.
    st.resolver = wants_resolver(net, &st);
    Ok(st)
}

/// Is the container on a user-defined network (the default bridge has no names)?
pub fn wants_resolver(net: &NetworkService, st: &NetState) -> bool {
    st.endpoints
        .iter()
        .any(|ep| net.get(&ep.network_id).is_ok_and(|n| !n.default_bridge))
}

/// Open the resolver at 127.0.0.11 for a container on a user-defined network; it forwards to
/// the container's `--dns` servers when it has some. Its nftables transaction waits for the
/// kernel (about 10 ms, an RCU grace period), so a start runs it beside the shim's create.
pub async fn start_resolver(net: &NetworkService, rec: &Record, st: &mut NetState) -> Result<()> {
    if !st.resolver && !wants_resolver(net, st) {
        return Ok(());
    }
    let servers = rec
        .host_config
        .network
        .dns
        .iter()
        .flatten()
        .filter_map(|d| d.parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .collect();
    net.start_resolver(&rec.id, &st.endpoints, servers).await?;
    st.resolver = true;
    Ok(())
}

async fn publish(net: &NetworkService, rec: &Record, st: &mut NetState) -> Result<()> {
    let wanted = port_requests(rec)?;
    let Some(ep) = st.endpoints.first() else { return Ok(()) };
    let mut rules = Vec::new();
    for (port, proto, hip, hp) in wanted {
        let host_port = net.host_port(&proto, hip, hp)?;
        rules.push(PortRule {
            proto: proto.clone(),
            host_ip: hip,
            host_port,
            ip: ep.ip,
            port,
        });
        st.ports.push(PortMapping {
            port,
            proto,
            host_ip: hip.map(|h| h.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
            host_port,
        });
    }
    net.set_ports(&rec.id, rules).await?;
    Ok(())
}

/// Undo [`start`]: ports, addresses, names, and the pinned namespace.
pub async fn stop(net: &NetworkService, id: &str, st: &NetState) {
    if let Err(e) = net.set_ports(id, Vec::new()).await {
        tracing::warn!(%id, "unpublishing ports: {e}");
    }
    net.release(id, &st.endpoints);
    net.stop_resolver(id);
    if !st.sandbox_key.is_empty() {
        wharf_network::link::release_namespace(std::path::Path::new(&st.sandbox_key));
    }
}

/// A running container found again after a daemon restart: its names, resolver and ports
/// come back.
pub async fn restore(net: &NetworkService, rec: &Record, st: &NetState) {
    let id = rec.id.as_str();
    net.restore(id, &st.endpoints);
    if st.resolver {
        if let Err(e) = start_resolver(net, rec, &mut st.clone()).await {
            tracing::warn!(%id, "restoring the resolver at 127.0.0.11: {e}");
        }
    }
    let Some(ep) = st.endpoints.first() else { return };
    let rules = st
        .ports
        .iter()
        .map(|p| PortRule {
            proto: p.proto.clone(),
            host_ip: p.host_ip.parse().ok().filter(|ip: &Ipv4Addr| !ip.is_unspecified()),
            host_port: p.host_port,
            ip: ep.ip,
            port: p.port,
        })
        .collect();
    if let Err(e) = net.set_ports(id, rules).await {
        tracing::warn!(%id, "republishing ports: {e}");
    }
}

/// `/etc/hosts`: Docker's lines, `--add-host` (`host-gateway` is the default bridge's
/// gateway), linked containers, and the container's own address and hostname.
pub fn hosts_file(
    rec: &Record,
    st: &NetState,
    host_gateway: Option<Ipv4Addr>,
    links: &[(String, String, Ipv4Addr)],
) -> String {
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for h in rec.host_config.network.extra_hosts.iter().flatten() {
        if let Some((name, ip)) = h.split_once(':').or_else(|| h.split_once('=')) {
            let ip = if ip == "host-gateway" {
                host_gateway.map(|g| g.to_string()).unwrap_or_else(|| ip.to_string())
            } else {
                ip.to_string()
            };
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    for (alias, name, ip) in links {
        if alias == name {
            hosts.push_str(&format!("{ip}\t{alias}\n"));
        } else {
            hosts.push_str(&format!("{ip}\t{alias} {name}\n"));
        }
    }
    // One line per network the container is on, as Docker writes them.
    let host = rec.config.hostname.clone().unwrap_or_default();
    for ep in &st.endpoints {
        hosts.push_str(&format!("{}\t{host}\n", ep.ip));
        if let Some((ip6, _, _)) = ep.ip6 {
            hosts.push_str(&format!("{ip6}\t{host}\n"));
        }
    }
    hosts
}

/// `NetworkSettings` as Docker shows it.
pub fn settings_json(rec: &Record) -> Value {
    let st = &rec.net;
    let mut ports = serde_json::Map::new();
    for k in rec.config.exposed_ports.iter().flat_map(|e| e.keys()) {
        ports.insert(k.clone(), Value::Null);
    }
    for p in &st.ports {
        let e = ports
            .entry(format!("{}/{}", p.port, p.proto))
            .or_insert_with(|| json!([]));
        if !e.is_array() {
            *e = json!([]);
        }
        e.as_array_mut()
            .expect("array")
            .push(json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}));
    }
    let mut networks = serde_json::Map::new();
    let mode = rec.host_config.network.network_mode.clone().unwrap_or_default();
    if !uses_networks(&mode) && !mode.starts_with("container:") {
        networks.insert(mode.clone(), endpoint_json(None, None));
    }
    for (name, ec) in &rec.networks {
        let ep = st
            .endpoints
            .iter()
            .find(|e| &e.network_name == name || e.network_id == ec.network_id);
        networks.insert(name.clone(), endpoint_json(Some(ec), ep));
    }
    let default = st.endpoints.iter().find(|e| e.network_name == "bridge");
    let f = |g: &dyn Fn(&Endpoint) -> Value, none: Value| default.map(g).unwrap_or(none);
    json!({
        "Bridge": "",
        "SandboxID": if st.sandbox_key.is_empty() { String::new() } else { rec.id.clone() },
        "SandboxKey": st.sandbox_key,
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports,
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": f(&|e| json!(e.endpoint_id), json!("")),
        "Gateway": f(&|e| json!(e.gateway.to_string()), json!("")),
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": f(&|e| json!(e.ip.to_string()), json!("")),
        "IPPrefixLen": f(&|e| json!(e.prefix), json!(0)),
        "IPv6Gateway": "",
        "MacAddress": f(&|e| json!(e.mac), json!("")),
        "Networks": networks,
    })
}

fn endpoint_json(ec: Option<&EndpointConfig>, ep: Option<&Endpoint>) -> Value {
    let ipam = match ec {
        Some(c) if c.ipv4.is_some() || c.ipv6.is_some() || !c.link_local_ips.is_empty() => {
            let mut v = json!({});
            if let Some(ip) = &c.ipv4 {
                v["IPv4Address"] = json!(ip);
            }
            if let Some(ip) = &c.ipv6 {
                v["IPv6Address"] = json!(ip);
            }
            if !c.link_local_ips.is_empty() {
                v["LinkLocalIPs"] = json!(c.link_local_ips);
            }
            v
        }
        _ => Value::Null,
    };
    let driver_opts = ec
        .filter(|c| !c.driver_opts.is_empty())
        .map(|c| json!(c.driver_opts))
        .unwrap_or(Value::Null);
    let aliases = ec
        .filter(|c| !c.aliases.is_empty())
        .map(|c| json!(c.aliases))
        .unwrap_or(Value::Null);
    let links = ec
        .filter(|c| !c.links.is_empty())
        .map(|c| json!(c.links))
        .unwrap_or(Value::Null);
    json!({
        "IPAMConfig": ipam,
        "Links": links,
        "Aliases": aliases,
        "MacAddress": ep
            .map(|e| e.mac.clone())
            .or_else(|| ec.and_then(|c| c.mac.clone()))
            .unwrap_or_default(),
        "DriverOpts": driver_opts,
        "GwPriority": ec.map(|c| c.gw_priority).unwrap_or(0),
        "NetworkID": ec.map(|c| c.network_id.clone()).unwrap_or_default(),
        "EndpointID": ep.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
        "Gateway": ep.map(|e| e.gateway.to_string()).unwrap_or_default(),
        "IPAddress": ep.map(|e| e.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": ep.map(|e| e.prefix).unwrap_or(0),
        "IPv6Gateway": ep.and_then(|e| e.ip6).map(|(_, _, g)| g.to_string()).unwrap_or_default(),
        "GlobalIPv6Address": ep.and_then(|e| e.ip6).map(|(a, _, _)| a.to_string()).unwrap_or_default(),
        "GlobalIPv6PrefixLen": ep.and_then(|e| e.ip6).map(|(_, p, _)| p).unwrap_or(0),
        "DNSNames": ep.filter(|e| !e.dns_names.is_empty()).map(|e| json!(e.dns_names)).unwrap_or(Value::Null),
    })
}

/// `ps`'s `Ports` list.
pub fn ports_summary(rec: &Record) -> Value {
    let mut v: Vec<Value> = rec
        .net
        .ports
        .iter()
        .map(|p| json!({"IP": p.host_ip, "PrivatePort": p.port, "PublicPort": p.host_port, "Type": p.proto}))
        .collect();
    for k in rec.config.exposed_ports.iter().flat_map(|e| e.keys()) {
        let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
        let port: u16 = p.parse().unwrap_or(0);
        if !rec.net.ports.iter().any(|m| m.port == port && m.proto == proto) {
            v.push(json!({"PrivatePort": port, "Type": proto}));
        }
    }
    Value::Array(v)
}

/// The legacy link variables Docker gives a container for `--link other:alias`: `ALIAS_NAME`,
/// the first exposed port as `ALIAS_PORT`, each port's `ALIAS_PORT_<n>_<PROTO>{,_ADDR,_PORT,
/// _PROTO}`, and the other container's environment as `ALIAS_ENV_<NAME>` (not HOME or PATH).
pub fn link_env(alias: &str, me: &str, ip: Ipv4Addr, other: &Record) -> Vec<String> {
    let prefix = alias.to_ascii_uppercase().replace('-', "_");
    let mut out = vec![format!("{prefix}_NAME=/{me}/{alias}")];
    let mut ports: Vec<(u16, String)> = other
        .config
        .exposed_ports
        .iter()
        .flat_map(|e| e.keys())
        .filter_map(|k| {
            let (n, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            Some((n.parse().ok()?, proto.to_string()))
        })
        .collect();
    // Ascending by number, tcp before the others at the same number (Docker's nat.Sort).
    ports.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then((a.1 != "tcp").cmp(&(b.1 != "tcp")))
            .then(a.1.cmp(&b.1))
    });
    if let Some((n, proto)) = ports.first() {
        out.push(format!("{prefix}_PORT={proto}://{ip}:{n}"));
    }
    for (n, proto) in &ports {
        let p = format!("{prefix}_PORT_{n}_{}", proto.to_ascii_uppercase());
        out.push(format!("{p}={proto}://{ip}:{n}"));
        out.push(format!("{p}_ADDR={ip}"));
        out.push(format!("{p}_PORT={n}"));
        out.push(format!("{p}_PROTO={proto}"));
    }
    for e in other.config.env.iter().flatten() {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        if k != "HOME" && k != "PATH" {
            out.push(format!("{prefix}_ENV_{k}={v}"));
        }
    }
    out
}
