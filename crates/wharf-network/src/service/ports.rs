//! Published ports: host ports chosen or checked, and the nftables rules that forward them.

use super::*;
use crate::error::{NetworkError, Result};
use crate::nft::{self, BridgeRule, PortRule};
use std::net::Ipv4Addr;

impl NetworkService {
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

    pub(crate) async fn apply_rules(&self) -> Result<()> {
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
}
