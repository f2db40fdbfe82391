//! `network create` and `rm`/`prune`: validation, subnets from the pools (v4 and v6), the
//! bridge, the record, and the network's DNS responder.

use super::*;
use crate::dns::{self};
use crate::error::{NetworkError, Result};
use crate::ipam::{Pool, Pool6, Subnet, Subnet6};
use crate::link::{self};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

impl NetworkService {
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
        self.publish("create", &n, None);
        Ok(n)
    }

    /// The IPv6 pool a new network asks for: its IPv6 subnet, or with `--ipv6` and none a
    /// random unique local /64 (as dockerd), clear of the other networks' ones.
    pub(crate) fn pool6_for(&self, req: &CreateRequest) -> Result<Option<Pool6>> {
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

    pub(crate) async fn start_dns(&self, n: &Network) {
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
        let applied = self.apply_rules().await;
        self.publish("destroy", &n, None);
        applied
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
}

/// `--aux-address` values as addresses of one family.
pub(crate) fn parse_aux<A: std::str::FromStr>(aux: &BTreeMap<String, String>) -> Result<BTreeMap<String, A>> {
    aux.iter()
        .map(|(k, v)| {
            v.parse::<A>()
                .map(|ip| (k.clone(), ip))
                .map_err(|_| NetworkError::Invalid(format!("invalid auxiliary address {k}={v}")))
        })
        .collect()
}

/// The bridge's IPv6 address, when the network has IPv6 enabled.
pub(crate) async fn bridge_v6(h: &rtnetlink::Handle, n: &Network) -> Result<()> {
    match n.pool6.as_ref().filter(|_| n.enable_ipv6) {
        Some(p6) => link::ensure_bridge_v6(h, &n.bridge, p6.gateway, p6.subnet.prefix).await,
        None => Ok(()),
    }
}
