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

use crate::dns::{self, Responder};
use crate::error::{NetworkError, Result};
use crate::ipam::{self, Pool, Pool6, Subnet, Subnet6};
use crate::link::{self, Target, Wire};
use crate::nft::{self, BridgeRule, PortRule};
use crate::resolver::{self, Resolver};

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
    fn blank(name: &str, driver: &str) -> Network {
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

/// `--aux-address` values as addresses of one family.
fn parse_aux<A: std::str::FromStr>(aux: &BTreeMap<String, String>) -> Result<BTreeMap<String, A>> {
    aux.iter()
        .map(|(k, v)| {
            v.parse::<A>()
                .map(|ip| (k.clone(), ip))
                .map_err(|_| NetworkError::Invalid(format!("invalid auxiliary address {k}={v}")))
        })
        .collect()
}

/// The bridge's IPv6 address, when the network has IPv6 enabled.
async fn bridge_v6(h: &rtnetlink::Handle, n: &Network) -> Result<()> {
    match n.pool6.as_ref().filter(|_| n.enable_ipv6) {
        Some(p6) => link::ensure_bridge_v6(h, &n.bridge, p6.gateway, p6.subnet.prefix).await,
        None => Ok(()),
    }
}

/// Which containers use a network (set by the container service).
pub type UsageCheck = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

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
    rules: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for NetworkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkService").field("cfg", &self.cfg).finish()
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn random_id() -> String {
    let mut b = [0u8; 32];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).expect("getrandom");
    hex::encode(b)
}

/// Docker's rule for network names (the same as for containers).
/// dockerd takes any name that is not empty (`test 01` too); a `/` would make it unreachable
/// in URLs and a control character unprintable, so those are refused.
fn valid_name(n: &str) -> bool {
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

    async fn default_bridge(&self, h: &rtnetlink::Handle) -> Result<()> {
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
    async fn free_subnet(&self, h: &rtnetlink::Handle, others: Vec<Subnet>) -> Result<Option<Subnet>> {
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

    fn record_path(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("network").join(format!("{id}.json"))
    }

    /// Write a record whole (rename; with fsync when `durable`). Callers hold the `nets`
    /// lock. Address changes are not made durable one by one: after a crash the addresses of
    /// the running containers are claimed again from their records (`restore`).
    fn write(&self, n: &Network, durable: bool) -> Result<()> {
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

    fn insert(&self, n: Network) -> Result<()> {
        let mut nets = self.nets.lock().expect("nets");
        self.write(&n, true)?;
        nets.insert(n.id.clone(), n);
        Ok(())
    }

    /// Tell the service how to find the containers attached to a network.
    pub fn set_usage_check(&self, f: UsageCheck) {
        *self.usage.lock().expect("usage") = Some(f);
    }

    fn users(&self, id: &str) -> Vec<String> {
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

    fn find(&self, key: &str) -> Option<Network> {
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

    /// `POST /networks/create`.
    pub async fn create(&self, req: CreateRequest) -> Result<Network> {
        if !valid_name(&req.name) {
            return Err(NetworkError::Invalid(format!(
                "invalid network name \"{}\": it must not be empty or hold '/' or control characters",
                req.name
            )));
        }
        if self.list().iter().any(|n| n.name == req.name) {
            return Err(NetworkError::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let driver = if req.driver.is_empty() {
            "bridge".to_string()
        } else {
            req.driver.clone()
        };
        match driver.as_str() {
            "bridge" => {}
            "host" | "null" => {
                return Err(NetworkError::Forbidden(format!(
                    "only one instance of \"{driver}\" network is allowed"
                )))
            }
            other => return Err(NetworkError::NotFound(format!("plugin \"{other}\" not found"))),
        }
        let parse = |s: &Option<String>| -> Result<Option<Subnet>> { s.as_deref().map(str::parse).transpose() };
        let subnet = parse(&req.subnet)?;
        let subnet_given = subnet;
        let range = parse(&req.ip_range)?;
        let gateway = req
            .gateway
            .as_deref()
            .map(|g| {
                g.parse::<Ipv4Addr>()
                    .map_err(|_| NetworkError::Invalid(format!("invalid gateway address: {g}")))
            })
            .transpose()?;
        if subnet.is_none() && (range.is_some() || gateway.is_some()) {
            return Err(NetworkError::Invalid("gateway and ip-range need a subnet".into()));
        }
        let others: Vec<Subnet> = self
            .list()
            .iter()
            .filter_map(|n| n.pool.as_ref().map(|p| p.subnet))
            .collect();
        let h = link::connect()?;
        let subnet = match subnet {
            Some(s) => {
                if others.iter().any(|o| o.overlaps(&s)) {
                    return Err(NetworkError::Forbidden(format!(
                        "invalid pool request: Pool overlaps with other one on this address space: {s}"
                    )));
                }
                s
            }
            None => self.free_subnet(&h, others).await?.ok_or_else(|| {
                NetworkError::Forbidden("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into())
            })?,
        };
        if subnet_given.is_none() && !req.aux.is_empty() {
            return Err(NetworkError::Invalid("auxiliary addresses need a subnet".into()));
        }
        let aux = parse_aux::<Ipv4Addr>(&req.aux)?;
        let pool = Pool::new(subnet, range, gateway)?.with_aux(aux)?;
        let pool6 = self.pool6_for(&req)?;
        let id = random_id();
        let bridge = req
            .options
            .get("com.docker.network.bridge.name")
            .cloned()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge.len() > 15 {
            return Err(NetworkError::Invalid(format!(
                "bridge name {bridge} is longer than 15 characters"
            )));
        }
        let n = Network {
            id,
            name: req.name,
            driver,
            created: now(),
            internal: req.internal,
            attachable: req.attachable,
            labels: req.labels,
            options: req.options,
            ipam_options: req.ipam_options,
            pool: Some(pool.clone()),
            bridge: bridge.clone(),
            default_bridge: false,
            user_subnet: req.subnet.is_some(),
            enable_ipv6: req.enable_ipv6,
            pool6,
        };
        link::ensure_bridge(&h, &bridge, pool.gateway, subnet.prefix, self.cfg.mtu).await?;
        if let Err(e) = bridge_v6(&h, &n).await {
            let _ = link::delete_link(&h, &bridge).await;
            return Err(e);
        }
        if let Err(e) = self.insert(n.clone()) {
            let _ = link::delete_link(&h, &bridge).await;
            return Err(e);
        }
        self.start_dns(&n).await;
        self.apply_rules().await?;
        Ok(n)
    }

    /// The IPv6 pool a new network asks for: its IPv6 subnet, or with `--ipv6` and none a
    /// random unique local /64 (as dockerd), clear of the other networks' ones.
    fn pool6_for(&self, req: &CreateRequest) -> Result<Option<Pool6>> {
        let parse = |s: &Option<String>| -> Result<Option<Subnet6>> { s.as_deref().map(str::parse).transpose() };
        let others: Vec<Subnet6> = self
            .list()
            .iter()
            .filter_map(|n| n.pool6.as_ref().map(|p| p.subnet))
            .collect();
        let subnet = match parse(&req.subnet6)? {
            Some(s) => {
                if let Some(o) = others.iter().find(|o| o.overlaps(&s)) {
                    return Err(NetworkError::Forbidden(format!(
                        "invalid pool request: Pool overlaps with other one on this address space: {s} and {o}"
                    )));
                }
                s
            }
            None if req.enable_ipv6 => loop {
                let id = random_id();
                let b = (0..5)
                    .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap_or(0))
                    .collect::<Vec<_>>();
                let s = Subnet6::unique_local([b[0], b[1], b[2], b[3], b[4]]);
                if !others.iter().any(|o| o.overlaps(&s)) {
                    break s;
                }
            },
            None => return Ok(None),
        };
        let gateway = req
            .gateway6
            .as_deref()
            .map(|g| {
                g.parse::<Ipv6Addr>()
                    .map_err(|_| NetworkError::Invalid(format!("invalid gateway address: {g}")))
            })
            .transpose()?;
        let aux = parse_aux::<Ipv6Addr>(&req.aux6)?;
        Ok(Some(
            Pool6::new(subnet, parse(&req.ip_range6)?, gateway)?.with_aux(aux)?,
        ))
    }

    async fn start_dns(&self, n: &Network) {
        let Some(pool) = &n.pool else { return };
        match dns::serve(pool.gateway, dns::Names::default()).await {
            Ok(r) => {
                self.dns.lock().expect("dns").insert(n.id.clone(), r);
            }
            Err(e) => tracing::warn!(network = %n.name, "DNS responder on {}:53: {e}", pool.gateway),
        }
    }

    /// `DELETE /networks/{id}`.
    pub async fn remove(&self, key: &str) -> Result<()> {
        let n = self.get(key)?;
        if n.predefined() {
            return Err(NetworkError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        let users = self.users(&n.id);
        if !users.is_empty() {
            return Err(NetworkError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        self.dns.lock().expect("dns").remove(&n.id);
        let h = link::connect()?;
        link::delete_link(&h, &n.bridge).await?;
        let _ = std::fs::remove_file(self.record_path(&n.id));
        self.nets.lock().expect("nets").remove(&n.id);
        self.apply_rules().await
    }

    /// `POST /networks/prune`: remove the user networks no container uses that `keep` spares not.
    pub async fn prune(&self, keep: &(dyn Fn(&Network) -> bool + Sync)) -> Vec<String> {
        let mut gone = Vec::new();
        for n in self.list() {
            if n.predefined() || keep(&n) || !self.users(&n.id).is_empty() {
                continue;
            }
            if self.remove(&n.id).await.is_ok() {
                gone.push(n.name);
            }
        }
        gone
    }

    /// Join `container` to the networks in `reqs` inside `target` (the first request carries the
    /// default route). Addresses are recorded before the wiring; on failure they are released.
    pub async fn attach(
        &self,
        container: &str,
        target: Target,
        reqs: &[EndpointRequest],
        first_ifindex: usize,
    ) -> Result<Vec<Endpoint>> {
        let mut eps = Vec::new();
        let mut wires = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            let ep = match self.allocate(container, r, first_ifindex + i) {
                Ok(ep) => ep,
                Err(e) => {
                    self.release(container, &eps);
                    return Err(e);
                }
            };
            let n = self.get(&ep.network_id)?;
            wires.push(Wire {
                bridge: n.bridge.clone(),
                ifname: ep.ifname.clone(),
                ip: ep.ip,
                prefix: ep.prefix,
                gateway: ep.gateway,
                default_route: r.default_route && !n.internal,
                mac: link::parse_mac(&ep.mac).unwrap_or_else(|| link::mac_for(ep.ip)),
                mtu: self.cfg.mtu,
                ip6: ep.ip6,
            });
            eps.push(ep);
        }
        if let Err(e) = link::wire(target, wires).await {
            self.release(container, &eps);
            return Err(e);
        }
        for ep in &eps {
            self.register_names(ep);
        }
        Ok(eps)
    }

    fn allocate(&self, container: &str, r: &EndpointRequest, ifindex: usize) -> Result<Endpoint> {
        let mut nets = self.nets.lock().expect("nets");
        let n = nets
            .values_mut()
            .find(|n| n.id == r.network || n.name == r.network)
            .ok_or_else(|| NetworkError::NotFound(r.network.clone()))?;
        if n.driver != "bridge" {
            return Err(NetworkError::Invalid(format!(
                "container cannot be connected to network {} of driver {}",
                n.name, n.driver
            )));
        }
        if r.ip.is_some() && !n.user_subnet {
            return Err(NetworkError::Invalid(
                "invalid config for network ".to_string() + &n.name + ": invalid endpoint settings:\nuser specified IP address is supported only when connecting to networks with user configured subnets",
            ));
        }
        let pool = n.pool.as_mut().expect("bridge networks have a pool");
        let ip = pool.allocate(container, r.ip)?;
        let (prefix, gateway) = (pool.subnet.prefix, pool.gateway);
        let ip6 = match n.pool6.as_mut().filter(|_| n.enable_ipv6) {
            Some(p6) => match p6.allocate(container, r.ip6) {
                Ok(a) => Some((a, p6.subnet.prefix, p6.gateway)),
                Err(e) => {
                    n.pool.as_mut().expect("pool").allocated.remove(&ip);
                    return Err(e);
                }
            },
            None => None,
        };
        let snapshot = n.clone();
        // Written under the lock: records reach the disk in the order they changed.
        if let Err(e) = self.write(&snapshot, false) {
            n.pool.as_mut().expect("pool").allocated.remove(&ip);
            if let (Some(p6), Some((a, _, _))) = (n.pool6.as_mut(), ip6) {
                p6.allocated.remove(&a);
            }
            return Err(e);
        }
        drop(nets);
        Ok(Endpoint {
            network_id: snapshot.id.clone(),
            network_name: snapshot.name.clone(),
            endpoint_id: random_id(),
            ip,
            prefix,
            gateway,
            mac: link::mac_string(&r.mac.unwrap_or_else(|| link::mac_for(ip))),
            ifname: format!("eth{ifindex}"),
            dns_names: if snapshot.default_bridge {
                Vec::new()
            } else {
                r.dns_names.clone()
            },
            links: if snapshot.default_bridge {
                Vec::new()
            } else {
                r.links.clone()
            },
            ip6,
        })
    }

    fn register_names(&self, ep: &Endpoint) {
        if let Some(r) = self.dns.lock().expect("dns").get(&ep.network_id) {
            let mut t = r.names.write().expect("names");
            for n in &ep.dns_names {
                let e = t.names.entry(n.to_ascii_lowercase()).or_default();
                if !e.contains(&ep.ip) {
                    e.push(ep.ip);
                }
                if let Some((a, _, _)) = ep.ip6 {
                    let e = t.names6.entry(n.to_ascii_lowercase()).or_default();
                    if !e.contains(&a) {
                        e.push(a);
                    }
                }
            }
            if !ep.links.is_empty() {
                let links = ep
                    .links
                    .iter()
                    .map(|(alias, target)| (alias.to_ascii_lowercase(), target.clone()))
                    .collect();
                t.links.insert(ep.ip, links);
            }
        }
    }

    /// Give back the addresses and DNS names of `eps` (a stopped container: its namespace, and
    /// the veths in it, go with its last process).
    pub fn release(&self, container: &str, eps: &[Endpoint]) {
        for ep in eps {
            if let Some(r) = self.dns.lock().expect("dns").get(&ep.network_id) {
                let mut t = r.names.write().expect("names");
                for n in &ep.dns_names {
                    let key = n.to_ascii_lowercase();
                    if let Some(v) = t.names.get_mut(&key) {
                        v.retain(|ip| *ip != ep.ip);
                        if v.is_empty() {
                            t.names.remove(&key);
                        }
                    }
                    if let (Some(v), Some((a, _, _))) = (t.names6.get_mut(&key), ep.ip6) {
                        v.retain(|ip| *ip != a);
                        if v.is_empty() {
                            t.names6.remove(&key);
                        }
                    }
                }
                t.links.remove(&ep.ip);
            }
            let mut nets = self.nets.lock().expect("nets");
            let Some(n) = nets.get_mut(&ep.network_id) else {
                continue;
            };
            if let Some(p) = n.pool.as_mut() {
                if p.allocated.get(&ep.ip).is_some_and(|h| h == container) {
                    p.allocated.remove(&ep.ip);
                }
            }
            if let (Some(p6), Some((a, _, _))) = (n.pool6.as_mut(), ep.ip6) {
                if p6.allocated.get(&a).is_some_and(|h| h == container) {
                    p6.allocated.remove(&a);
                }
            }
            let snapshot = n.clone();
            let _ = self.write(&snapshot, false);
        }
    }

    /// A running container found again after a daemon restart: its addresses are its own
    /// again and its names answer again.
    pub fn restore(&self, container: &str, eps: &[Endpoint]) {
        for ep in eps {
            {
                let mut nets = self.nets.lock().expect("nets");
                if let Some(n) = nets.get_mut(&ep.network_id) {
                    if let Some(p) = n.pool.as_mut() {
                        if p.allocated.get(&ep.ip).map(String::as_str) != Some(container) {
                            p.allocated.insert(ep.ip, container.to_string());
                            let snapshot = n.clone();
                            let _ = self.write(&snapshot, false);
                        }
                    }
                    if let (Some(p6), Some((a, _, _))) = (n.pool6.as_mut(), ep.ip6) {
                        if p6.allocated.get(&a).map(String::as_str) != Some(container) {
                            p6.allocated.insert(a, container.to_string());
                            let snapshot = n.clone();
                            let _ = self.write(&snapshot, false);
                        }
                    }
                }
            }
            self.register_names(ep);
        }
    }

    /// Drop addresses held by containers that are not running (after a crash).
    pub fn release_all_except(&self, running: &[String]) {
        let mut nets = self.nets.lock().expect("nets");
        for n in nets.values_mut() {
            let mut changed = false;
            if let Some(p) = n.pool.as_mut() {
                let before = p.allocated.len();
                p.allocated.retain(|_, h| running.contains(h));
                changed |= p.allocated.len() != before;
            }
            if let Some(p6) = n.pool6.as_mut() {
                let before = p6.allocated.len();
                p6.allocated.retain(|_, h| running.contains(h));
                changed |= p6.allocated.len() != before;
            }
            if changed {
                let snapshot = n.clone();
                let _ = self.write(&snapshot, false);
            }
        }
    }

    /// What a container's resolver answers from: the tables of its user networks in the
    /// order of `eps`, its address on each; `servers` (or the host's resolvers) for the rest,
    /// unless every network it is on is internal.
    fn scope(&self, eps: &[Endpoint], servers: &[std::net::SocketAddr]) -> dns::Scope {
        let outside = eps
            .iter()
            .any(|ep| self.get(&ep.network_id).map(|n| !n.internal).unwrap_or(false));
        let responders = self.dns.lock().expect("dns");
        let tables = eps
            .iter()
            .filter_map(|ep| responders.get(&ep.network_id).map(|r| (r.names.clone(), Some(ep.ip))))
            .collect();
        let upstreams = match (outside, servers.is_empty()) {
            (false, _) => Vec::new(),
            (true, true) => dns::upstreams(),
            (true, false) => servers.to_vec(),
        };
        dns::Scope { tables, upstreams }
    }

    /// Serve 127.0.0.11 in the running container's namespace (`resolver`), answering from
    /// the networks of `eps` and forwarding to `servers` (its `--dns`; empty: the host's).
    /// Replaces a resolver the container had (a restore).
    pub async fn start_resolver(
        &self,
        container: &str,
        eps: &[Endpoint],
        servers: Vec<std::net::SocketAddr>,
    ) -> Result<()> {
        let scope = self.scope(eps, &servers);
        let r = resolver::open(self.sandbox_key(container), scope, servers).await?;
        self.resolvers
            .lock()
            .expect("resolvers")
            .insert(container.to_string(), r);
        Ok(())
    }

    /// The container joined or left a network: its resolver answers from what it is on now.
    pub fn update_resolver(&self, container: &str, eps: &[Endpoint]) {
        let resolvers = self.resolvers.lock().expect("resolvers");
        if let Some(r) = resolvers.get(container) {
            let scope = self.scope(eps, &r.servers);
            *r.scope.write().expect("scope") = scope;
        }
    }

    /// Does the container have a resolver now?
    pub fn has_resolver(&self, container: &str) -> bool {
        self.resolvers.lock().expect("resolvers").contains_key(container)
    }

    /// The container stopped: its resolver goes (its namespace goes too).
    pub fn stop_resolver(&self, container: &str) {
        self.resolvers.lock().expect("resolvers").remove(container);
    }

    /// Route the container's traffic through `ep` (the network that gave its default route
    /// was left, or one with a higher priority joined).
    pub async fn route_through(&self, container: &str, ep: &Endpoint) -> Result<()> {
        if self.get(&ep.network_id).map(|n| n.internal).unwrap_or(true) {
            return Ok(());
        }
        link::route_through(
            self.sandbox_key(container),
            ep.ifname.clone(),
            ep.gateway,
            ep.ip6.map(|(_, _, g)| g),
        )
        .await
    }

    /// Disconnect one endpoint of a running container.
    pub async fn detach(&self, container: &str, ep: &Endpoint) -> Result<()> {
        let key = self.sandbox_key(container);
        link::unwire(key, ep.ifname.clone()).await?;
        self.release(container, std::slice::from_ref(ep));
        Ok(())
    }

    /// A host port for `proto` on `host_ip` that no mapping uses and nothing on the host has
    /// bound: `want`, or one from the ephemeral range when `want` is 0.
    pub fn host_port(&self, proto: &str, host_ip: Option<Ipv4Addr>, want: u16) -> Result<u16> {
        let used = |p: u16| {
            self.ports.lock().expect("ports").values().flatten().any(|r| {
                r.proto == proto
                    && r.host_port == p
                    && (r.host_ip.is_none() || host_ip.is_none() || r.host_ip == host_ip)
            })
        };
        let free_on_host = |p: u16| {
            let addr = (host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p);
            if proto == "udp" {
                std::net::UdpSocket::bind(addr).is_ok()
            } else {
                std::net::TcpListener::bind(addr).is_ok()
            }
        };
        let ip = host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into());
        if want != 0 {
            if used(want) || !free_on_host(want) {
                return Err(NetworkError::Conflict(format!(
                    "Bind for {ip}:{want} failed: port is already allocated"
                )));
            }
            return Ok(want);
        }
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
        let mut it = range.split_whitespace().filter_map(|x| x.parse::<u16>().ok());
        let (lo, hi) = (it.next().unwrap_or(32768), it.next().unwrap_or(60999));
        let span = u32::from(hi - lo) + 1;
        let mut seed = [0u8; 4];
        rustix::rand::getrandom(&mut seed, rustix::rand::GetRandomFlags::empty()).expect("getrandom");
        let start = u32::from_le_bytes(seed) % span;
        for i in 0..span {
            let p = lo + ((start + i) % span) as u16;
            if !used(p) && free_on_host(p) {
                return Ok(p);
            }
        }
        Err(NetworkError::Conflict(format!("no free host port for {proto} on {ip}")))
    }

    /// Publish `rules` for `container` (replacing what it had) in one transaction.
    pub async fn set_ports(&self, container: &str, rules: Vec<PortRule>) -> Result<()> {
        if !self.cfg.iptables && self.cfg.userland_proxy {
            let mut proxies = self.proxies.lock().await;
            proxies.remove(container);
            let mut started = Vec::new();
            for r in &rules {
                let p = crate::proxy::start(r).await.map_err(|e| {
                    NetworkError::Conflict(format!(
                        "driver failed programming external connectivity on endpoint {container}: Bind for {}:{} failed: {e}",
                        r.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                        r.host_port
                    ))
                })?;
                started.push(p);
            }
            if !started.is_empty() {
                proxies.insert(container.to_string(), started);
            }
        }
        let changed = {
            let mut ports = self.ports.lock().expect("ports");
            if rules.is_empty() {
                ports.remove(container).is_some()
            } else {
                ports.insert(container.to_string(), rules);
                true
            }
        };
        if changed {
            self.apply_rules().await?;
        }
        Ok(())
    }

    async fn apply_rules(&self) -> Result<()> {
        if !self.cfg.iptables {
            return Ok(());
        }
        let _g = self.rules.lock().await;
        let bridges: Vec<BridgeRule> = self
            .list()
            .into_iter()
            .filter(|n| n.driver == "bridge")
            .map(|n| BridgeRule {
                name: n.bridge.clone(),
                subnet: n.pool.as_ref().expect("pool").subnet,
                internal: n.internal,
            })
            .collect();
        let ports: Vec<PortRule> = self.ports.lock().expect("ports").values().flatten().cloned().collect();
        let script = nft::ruleset(&self.cfg.table(), &bridges, &ports);
        tokio::task::spawn_blocking(move || nft::apply(&script))
            .await
            .map_err(|e| NetworkError::System(e.to_string()))?
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
