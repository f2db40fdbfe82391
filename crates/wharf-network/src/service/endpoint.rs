//! Endpoints: a container joining a network (addresses, veth, names in the network's DNS
//! table), leaving it, and the addresses held back across a daemon restart; the embedded
//! resolver of each container and its default route.

use super::*;
use crate::dns::{self};
use crate::error::{NetworkError, Result};
use crate::link::{self, Target, Wire};
use crate::resolver::{self};

impl NetworkService {
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

    pub(crate) fn allocate(&self, container: &str, r: &EndpointRequest, ifindex: usize) -> Result<Endpoint> {
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

    pub(crate) fn register_names(&self, ep: &Endpoint) {
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
    pub(crate) fn scope(&self, eps: &[Endpoint], servers: &[std::net::SocketAddr]) -> dns::Scope {
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
}
