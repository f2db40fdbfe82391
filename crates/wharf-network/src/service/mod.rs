//! The network service: the predefined `bridge`, `host` and `none` networks and user-defined
//! bridge networks, their records (`<data-root>/network/<id>.json`, written whole), their
//! addresses, their bridges, the nftables table, published ports and the DNS responders.
//!
//! Invariants: an address is handed out only under the store lock and written to the network's
//! record before it is used, so concurrent starts never share one; every change to bridges or
//! ports rewrites the daemon's nftables table in one transaction; a network some container is
//! attached to is never removed.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::dns::Responder;
use crate::error::{NetworkError, Result};
use crate::ipam::{self, Pool, Pool6, Subnet};
use crate::link::{self};
use crate::nft::{self, PortRule};
use crate::resolver::Resolver;

mod create;
use create::bridge_v6;
mod endpoint;
mod ports;

/// Daemon settings for networking (dockerd's flag names).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// `--data-root`.
    pub data_root: PathBuf,
    /// `--exec-root`: namespaces are pinned under `netns/`.
    pub exec_root: PathBuf,
    /// `--bridge`: the default bridge's interface (`none`: no default bridge network).
    pub bridge: String,
    /// `--bip`: the default bridge's address and prefix.
    pub bip: Option<(Ipv4Addr, u8)>,
    /// `--default-address-pool`s (base, size).
    pub pools: Vec<(Subnet, u8)>,
    /// `--mtu`.
    pub mtu: Option<u32>,
    /// `--iptables`: manage the nftables table.
    pub iptables: bool,
    /// `--userland-proxy`: with `iptables` off, serve published ports from the daemon.
    pub userland_proxy: bool,
}

impl NetConfig {
    /// The nftables table this daemon owns: one per default bridge, so that daemons side by
    /// side never touch each other's rules.
    pub fn table(&self) -> String {
        let clean: String = self.bridge.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        format!("wharf_{clean}")
    }
}

/// One network as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Network {
    /// 64 hex.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    /// RFC 3339.
    pub created: String,
    /// `--internal`.
    pub internal: bool,
    /// `--attachable`.
    pub attachable: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Driver options (`-o`).
    pub options: BTreeMap<String, String>,
    /// IPAM driver options (`--ipam-opt`), kept and shown as given.
    #[serde(default)]
    pub ipam_options: BTreeMap<String, String>,
    /// Addresses (bridge networks).
    pub pool: Option<Pool>,
    /// The host bridge interface.
    pub bridge: String,
    /// The predefined `bridge` network: no DNS, no aliases, no `--ip`.
    pub default_bridge: bool,
    /// The subnet was given by the user (`--ip` is allowed only then).
    pub user_subnet: bool,
    /// `--ipv6`: containers get an address of `pool6` too.
    #[serde(default)]
    pub enable_ipv6: bool,
    /// The IPv6 subnet (given, or a unique local /64 for `--ipv6` without one). Without
    /// `enable_ipv6` it is only kept and shown, as dockerd keeps it.
    #[serde(default)]
    pub pool6: Option<Pool6>,
}

impl Network {
    /// A new network of `driver` with a fresh ID and nothing else set.
    pub(crate) fn blank(name: &str, driver: &str) -> Network {
        Network {
            id: random_id(),
            name: name.to_string(),
            driver: driver.to_string(),
            created: now(),
            internal: false,
            attachable: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            ipam_options: BTreeMap::new(),
            pool: None,
            bridge: String::new(),
            default_bridge: false,
            user_subnet: false,
            enable_ipv6: false,
            pool6: None,
        }
    }

    /// `bridge`, `host` and `none`.
    pub fn predefined(&self) -> bool {
        self.default_bridge || self.driver == "host" || self.driver == "null"
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Name.
    pub name: String,
    /// Driver (`bridge` when empty).
    pub driver: String,
    /// `--subnet`.
    pub subnet: Option<String>,
    /// `--gateway`.
    pub gateway: Option<String>,
    /// `--ip-range`.
    pub ip_range: Option<String>,
    /// `--internal`.
    pub internal: bool,
    /// `--attachable`.
    pub attachable: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Options.
    pub options: BTreeMap<String, String>,
    /// `IPAM.Options`.
    pub ipam_options: BTreeMap<String, String>,
    /// `--aux-address`: name → address.
    pub aux: BTreeMap<String, String>,
    /// `--ipv6`.
    pub enable_ipv6: bool,
    /// The IPv6 `--subnet`, `--gateway` and `--ip-range`.
    pub subnet6: Option<String>,
    /// See `subnet6`.
    pub gateway6: Option<String>,
    /// See `subnet6`.
    pub ip_range6: Option<String>,
    /// `--aux-address`es in the IPv6 subnet: name → address.
    pub aux6: BTreeMap<String, String>,
}

/// A container's request to join one network.
#[derive(Debug, Clone)]
pub struct EndpointRequest {
    /// The network (name or ID).
    pub network: String,
    /// `--ip`.
    pub ip: Option<Ipv4Addr>,
    /// `--ip6` (assigned on networks with IPv6 enabled).
    pub ip6: Option<Ipv6Addr>,
    /// `--mac-address`.
    pub mac: Option<[u8; 6]>,
    /// Names other containers on the network resolve to it (its name, aliases, short ID).
    pub dns_names: Vec<String>,
    /// Its links on the network: (alias, container name), names only it resolves.
    pub links: Vec<(String, String)>,
    /// The default route goes through this network (never an internal one).
    pub default_route: bool,
}

/// A container's place on one network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    /// The network's ID.
    pub network_id: String,
    /// The network's name.
    pub network_name: String,
    /// 64 hex.
    pub endpoint_id: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// The gateway.
    pub gateway: Ipv4Addr,
    /// MAC address.
    pub mac: String,
    /// The interface in the container.
    pub ifname: String,
    /// Names registered in the network's DNS.
    pub dns_names: Vec<String>,
    /// Link aliases registered for it in the network's DNS: (alias, container name).
    #[serde(default)]
    pub links: Vec<(String, String)>,
    /// Its IPv6 address, prefix length and gateway, on a network with IPv6 enabled.
    #[serde(default)]
    pub ip6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
}

/// Which containers use a network (set by the container service).
pub type UsageCheck = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// Where the service's events go (`network` events: the action, the network's ID,
/// attributes), set by the daemon to its event stream.
pub type EventSink = Arc<dyn Fn(&'static str, &str, BTreeMap<String, String>) + Send + Sync>;

/// The service.
pub struct NetworkService {
    cfg: NetConfig,
    nets: Mutex<BTreeMap<String, Network>>,
    ports: Mutex<BTreeMap<String, Vec<PortRule>>>,
    /// The userland proxies of each container (`--iptables=false`).
    proxies: tokio::sync::Mutex<HashMap<String, Vec<crate::proxy::Proxy>>>,
    dns: Mutex<HashMap<String, Responder>>,
    /// Each running container's resolver at 127.0.0.11, by container ID.
    resolvers: Mutex<HashMap<String, Resolver>>,
    usage: Mutex<Option<UsageCheck>>,
    events: Mutex<Option<EventSink>>,
    rules: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for NetworkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkService").field("cfg", &self.cfg).finish()
    }
}

pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn random_id() -> String {
    let mut b = [0u8; 32];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).expect("getrandom");
    hex::encode(b)
}

/// Docker's rule for network names (the same as for containers).
/// dockerd takes any name that is not empty (`test 01` too); a `/` would make it unreachable
/// in URLs and a control character unprintable, so those are refused.
pub(crate) fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 255 && !n.contains('/') && !n.chars().any(char::is_control)
}

impl NetworkService {
    /// Load the records, make the predefined networks, bring every bridge up, write the
    /// nftables table and start the DNS responders.
    pub async fn open(cfg: NetConfig) -> Result<Arc<Self>> {
        let dir = cfg.data_root.join("network");
        std::fs::create_dir_all(&dir)?;
        let mut nets = BTreeMap::new();
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                let _ = std::fs::remove_file(&p); // a write that never finished
                continue;
            }
            match std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Network>(&b).ok())
            {
                Some(n) => {
                    nets.insert(n.id.clone(), n);
                }
                None => tracing::warn!(file = %p.display(), "ignoring an unreadable network record"),
            }
        }
        let svc = Arc::new(NetworkService {
            cfg,
            nets: Mutex::new(nets),
            ports: Mutex::new(BTreeMap::new()),
            proxies: tokio::sync::Mutex::new(HashMap::new()),
            dns: Mutex::new(HashMap::new()),
            resolvers: Mutex::new(HashMap::new()),
            usage: Mutex::new(None),
            events: Mutex::new(None),
            rules: tokio::sync::Mutex::new(()),
        });
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
        let h = link::connect()?;
        for (driver, name) in [("host", "host"), ("null", "none")] {
            if svc.find(name).is_none() {
                svc.insert(Network::blank(name, driver))?;
            }
        }
        if svc.cfg.bridge != "none" {
            svc.default_bridge(&h).await?;
        }
        for n in svc.list() {
            if n.driver == "bridge" {
                let pool = n.pool.clone().expect("bridge networks have a pool");
                link::ensure_bridge(&h, &n.bridge, pool.gateway, pool.subnet.prefix, svc.cfg.mtu).await?;
                bridge_v6(&h, &n).await?;
                if !n.default_bridge {
                    svc.start_dns(&n).await;
                }
            }
        }
        svc.apply_rules().await?;
        Ok(svc)
    }

    pub(crate) async fn default_bridge(&self, h: &rtnetlink::Handle) -> Result<()> {
        let bridge = self.cfg.bridge.clone();
        let existing = self.find("bridge");
        let (gateway, subnet) = match (self.cfg.bip, &existing) {
            (Some((ip, prefix)), _) => (ip, Subnet::of(ip, prefix)),
            (None, Some(n)) if n.bridge == bridge => {
                let p = n.pool.clone().expect("pool");
                (p.gateway, p.subnet)
            }
            _ => {
                let others: Vec<Subnet> = self
                    .list()
                    .iter()
                    .filter(|n| !n.default_bridge)
                    .filter_map(|n| n.pool.as_ref().map(|p| p.subnet))
                    .collect();
                let s = self
                    .free_subnet(h, others)
                    .await?
                    .ok_or_else(|| NetworkError::System("no free subnet for the default bridge".into()))?;
                (s.first_host(), s)
            }
        };
        let mut pool = Pool::new(subnet, None, Some(gateway))?;
        let mut n = match existing {
            Some(mut n) => {
                if let Some(old) = n.pool.take() {
                    if old.subnet == subnet {
                        pool.allocated = old.allocated;
                    }
                }
                n
            }
            None => Network {
                default_bridge: true,
                ..Network::blank("bridge", "bridge")
            },
        };
        n.bridge = bridge.clone();
        n.pool = Some(pool);
        n.options = [
            ("com.docker.network.bridge.default_bridge", "true"),
            ("com.docker.network.bridge.enable_icc", "true"),
            ("com.docker.network.bridge.enable_ip_masquerade", "true"),
            ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
            ("com.docker.network.bridge.name", bridge.as_str()),
            (
                "com.docker.network.driver.mtu",
                &self.cfg.mtu.unwrap_or(1500).to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        self.insert(n)
    }

    /// Like Docker: the first subnet of the address pools that overlaps no route on the host
    /// and none of `others`.
    pub(crate) async fn free_subnet(&self, h: &rtnetlink::Handle, others: Vec<Subnet>) -> Result<Option<Subnet>> {
        let mut taken = link::routed_subnets(h).await?;
        taken.retain(|t| t.prefix > 0);
        taken.extend(others);
        let pools = if self.cfg.pools.is_empty() {
            ipam::default_pools()
        } else {
            self.cfg.pools.clone()
        };
        Ok(ipam::pick_subnet(&pools, &taken))
    }

    pub(crate) fn record_path(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("network").join(format!("{id}.json"))
    }

    /// Write a record whole (rename; with fsync when `durable`). Callers hold the `nets`
    /// lock. Address changes are not made durable one by one: after a crash the addresses of
    /// the running containers are claimed again from their records (`restore`).
    pub(crate) fn write(&self, n: &Network, durable: bool) -> Result<()> {
        let path = self.record_path(&n.id);
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(n).map_err(|e| NetworkError::System(e.to_string()))?)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    pub(crate) fn insert(&self, n: Network) -> Result<()> {
        let mut nets = self.nets.lock().expect("nets");
        self.write(&n, true)?;
        nets.insert(n.id.clone(), n);
        Ok(())
    }

    /// Tell the service where its events go.
    pub fn set_event_sink(&self, f: EventSink) {
        *self.events.lock().expect("events") = Some(f);
    }

    /// A `network` event of `n` (with the container, for connect and disconnect).
    pub fn publish(&self, action: &'static str, n: &Network, container: Option<&str>) {
        let f = self.events.lock().expect("events").clone();
        if let Some(f) = f {
            let mut attrs = BTreeMap::from([
                ("name".to_string(), n.name.clone()),
                ("type".to_string(), n.driver.clone()),
            ]);
            if let Some(c) = container {
                attrs.insert("container".into(), c.to_string());
            }
            f(action, &n.id, attrs);
        }
    }

    /// Tell the service how to find the containers attached to a network.
    pub fn set_usage_check(&self, f: UsageCheck) {
        *self.usage.lock().expect("usage") = Some(f);
    }

    pub(crate) fn users(&self, id: &str) -> Vec<String> {
        let f = self.usage.lock().expect("usage").clone();
        f.map(|f| f(id)).unwrap_or_default()
    }

    /// Where a container's namespace is pinned.
    pub fn sandbox_key(&self, container: &str) -> PathBuf {
        self.cfg
            .exec_root
            .join("netns")
            .join(&container[..12.min(container.len())])
    }

    /// Every network, by name.
    pub fn list(&self) -> Vec<Network> {
        let mut v: Vec<Network> = self.nets.lock().expect("nets").values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub(crate) fn find(&self, key: &str) -> Option<Network> {
        let nets = self.nets.lock().expect("nets");
        if let Some(n) = nets.get(key) {
            return Some(n.clone());
        }
        if let Some(n) = nets.values().find(|n| n.name == key) {
            return Some(n.clone());
        }
        let mut by_prefix = nets.values().filter(|n| n.id.starts_with(key));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(n), None) if !key.is_empty() => Some(n.clone()),
            _ => None,
        }
    }

    /// A network by ID, name or unique ID prefix.
    pub fn get(&self, key: &str) -> Result<Network> {
        self.find(key).ok_or_else(|| NetworkError::NotFound(key.to_string()))
    }

    /// Daemon shutdown. With no container running, the table and the bridges go too (they are
    /// made again at the next start); otherwise everything stays for the live containers.
    pub async fn shutdown(&self, any_running: bool) {
        self.resolvers.lock().expect("resolvers").clear();
        self.dns.lock().expect("dns").clear();
        if any_running {
            return;
        }
        if self.cfg.iptables {
            let table = self.cfg.table();
            let _ = tokio::task::spawn_blocking(move || nft::delete(&table)).await;
        }
        if let Ok(h) = link::connect() {
            for n in self.list().into_iter().filter(|n| n.driver == "bridge") {
                if let Err(e) = link::delete_link(&h, &n.bridge).await {
                    tracing::warn!(bridge = %n.bridge, "{e}");
                }
            }
        }
    }

    /// The network as `GET /networks/{id}` shows it; `containers` is the `Containers` map.
    pub fn to_json(&self, n: &Network, containers: Value) -> Value {
        // dockerd shows the IPAM options it was given, null when none.
        let ipam_options = if n.ipam_options.is_empty() {
            Value::Null
        } else {
            json!(n.ipam_options)
        };
        let ipam = match &n.pool {
            Some(p) => {
                let mut c = json!({"Subnet": p.subnet.to_string(), "Gateway": p.gateway.to_string()});
                if let Some(r) = p.range {
                    c["IPRange"] = json!(r.to_string());
                }
                if !p.aux.is_empty() {
                    c["AuxiliaryAddresses"] = json!(p.aux);
                }
                let mut configs = vec![c];
                if let Some(p6) = &n.pool6 {
                    let mut c6 = json!({"Subnet": p6.subnet.to_string(), "Gateway": p6.gateway.to_string()});
                    if let Some(r) = p6.range {
                        c6["IPRange"] = json!(r.to_string());
                    }
                    if !p6.aux.is_empty() {
                        c6["AuxiliaryAddresses"] = json!(p6.aux);
                    }
                    configs.push(c6);
                }
                json!({"Driver": "default", "Options": ipam_options, "Config": configs})
            }
            None => json!({"Driver": "default", "Options": ipam_options, "Config": null}),
        };
        json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created,
            "Scope": "local",
            "Driver": n.driver,
            "EnableIPv4": true,
            "EnableIPv6": n.enable_ipv6,
            "IPAM": ipam,
            "Internal": n.internal,
            "Attachable": n.attachable,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": n.options,
            "Labels": n.labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("my-net_1.0"));
        assert!(valid_name("test 01") && valid_name("-x"));
        assert!(!valid_name("a/b") && !valid_name("") && !valid_name("a\nb"));
    }

    #[test]
    fn table_names_follow_the_bridge() {
        let c = NetConfig {
            data_root: "/x".into(),
            exec_root: "/y".into(),
            bridge: "wh-test0".into(),
            bip: None,
            pools: vec![],
            mtu: None,
            iptables: true,
            userland_proxy: true,
        };
        assert_eq!(c.table(), "wharf_whtest0");
    }
}
