//! `network connect` and `network disconnect` of a container, and removing a legacy link
//! (`rm --link`): endpoints, the hosts file and the resolver follow.

use super::*;
use crate::error::{ContainerError, Result};
use crate::netsetup;
use serde_json::Value;
use std::sync::Arc;

impl ContainerService {
    /// `POST /networks/{id}/connect`: join a network now (running) or at the next start.
    pub async fn network_connect(&self, name: &str, network: &str, settings: Option<&Value>) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let n = self.net.get(network)?;
        let rec = e.snapshot();
        let mode = rec.host_config.network.network_mode.clone().unwrap_or_default();
        if !netsetup::uses_networks(&mode) {
            return Err(ContainerError::Invalid(format!(
                "container sharing network namespace with another container or host cannot be connected to any other network (mode {mode})"
            )));
        }
        if rec.networks.contains_key(&n.name) {
            return Err(ContainerError::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, n.name
            )));
        }
        let ec = netsetup::endpoint_config(&n.id, settings)?;
        if n.default_bridge && (ec.ipv4.is_some() || !ec.aliases.is_empty()) {
            return Err(ContainerError::Invalid(
                "user specified IP address or aliases are supported on user defined networks only".into(),
            ));
        }
        if rec.state.is_running() {
            // The new network takes the default route over if its priority says so.
            let mut all: Vec<(&str, i64)> = rec
                .net
                .endpoints
                .iter()
                .map(|ep| {
                    (
                        ep.network_name.as_str(),
                        rec.networks.get(&ep.network_name).map_or(0, |c| c.gw_priority),
                    )
                })
                .collect();
            all.push((n.name.as_str(), ec.gw_priority));
            let gateway = netsetup::gateway_network(&self.net, all);
            let req = wharf_network::EndpointRequest {
                default_route: gateway == Some(n.name.as_str()),
                network: n.id.clone(),
                ip: ec.ipv4.as_deref().and_then(|i| i.parse().ok()),
                ip6: ec.ipv6.as_deref().and_then(|i| i.parse().ok()),
                mac: ec.mac.as_deref().and_then(wharf_network::link::parse_mac),
                dns_names: netsetup::dns_names(&rec, &ec),
                links: netsetup::link_aliases(&ec),
            };
            let target = wharf_network::link::Target::Existing(self.net.sandbox_key(&rec.id));
            let eps = self
                .net
                .attach(&rec.id, target, &[req], free_ifindex(&rec.net.endpoints))
                .await?;
            let mut st = {
                let mut r = e.rec.lock().expect("record lock");
                r.net.endpoints.extend(eps);
                r.net.clone()
            };
            if st.resolver {
                self.net.update_resolver(&rec.id, &st.endpoints);
            } else {
                // A container of the default bridge joining a user network gets the resolver.
                netsetup::start_resolver(&self.net, &rec, &mut st).await?;
                e.rec.lock().expect("record lock").net.resolver = st.resolver;
            }
        }
        e.rec.lock().expect("record lock").networks.insert(n.name.clone(), ec);
        self.save(&e)?;
        self.rewrite_hosts(&e)?;
        self.net.publish("connect", &n, Some(&rec.id));
        Ok(())
    }

    /// `DELETE /containers/{parent}/{alias}?link=1`: remove the legacy link `alias` from
    /// `parent` (both containers stay); a running parent's `/etc/hosts` loses the name.
    pub async fn remove_link(&self, parent: &str, alias: &str) -> Result<()> {
        let e = self.lookup(parent)?;
        let _op = e.op.lock().await;
        let matches = |l: &String| {
            let (target, a) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
            a.trim_start_matches('/') == alias || (a == target && target.trim_start_matches('/') == alias)
        };
        let found = {
            let mut rec = e.rec.lock().expect("record lock");
            let mut found = false;
            if let Some(links) = rec.host_config.network.links.as_mut() {
                let before = links.len();
                links.retain(|l| !matches(l));
                found |= links.len() != before;
            }
            for ec in rec.networks.values_mut() {
                let before = ec.links.len();
                ec.links.retain(|l| !matches(l));
                found |= ec.links.len() != before;
            }
            found
        };
        if !found {
            return Err(ContainerError::NotFound(format!(
                "No such link: /{}/{alias}",
                e.snapshot().name
            )));
        }
        self.save(&e)?;
        self.rewrite_hosts(&e)
    }

    /// After a running container joined or left a network: its `/etc/hosts` (the file its
    /// bind mount shows) gets the addresses it has now, as Docker rewrites it.
    pub(crate) fn rewrite_hosts(&self, e: &Arc<Entry>) -> Result<()> {
        let rec = e.snapshot();
        if rec.state.is_running() {
            let st = rec.net.clone();
            if let Err(err) = self.write_net_files(&rec, &st) {
                tracing::warn!(container = %rec.id, "rewriting /etc/hosts: {err}");
            }
        }
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`: leave a network at once.
    pub async fn network_disconnect(&self, name: &str, network: &str, force: bool) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let n = self.net.get(network)?;
        let rec = e.snapshot();
        if !rec.networks.contains_key(&n.name) {
            return Err(ContainerError::Conflict(format!(
                "container {} is not connected to network {}",
                rec.id, n.name
            )));
        }
        if let Some(ep) = rec.net.endpoints.iter().find(|x| x.network_id == n.id) {
            if let Err(err) = self.net.detach(&rec.id, ep).await {
                if !force {
                    return Err(err.into());
                }
            }
            let left = {
                let mut r = e.rec.lock().expect("record lock");
                r.net.endpoints.retain(|x| x.network_id != n.id);
                r.net.endpoints.clone()
            };
            self.net.update_resolver(&rec.id, &left);
            // The default route moves to the next network in line when it went with this one.
            let prio = |name: &str| rec.networks.get(name).map_or(0, |c| c.gw_priority);
            let before = netsetup::gateway_network(
                &self.net,
                rec.net
                    .endpoints
                    .iter()
                    .map(|x| (x.network_name.as_str(), prio(&x.network_name))),
            );
            if before == Some(n.name.as_str()) {
                let next = netsetup::gateway_network(
                    &self.net,
                    left.iter().map(|x| (x.network_name.as_str(), prio(&x.network_name))),
                );
                if let Some(ep) = left.iter().find(|x| Some(x.network_name.as_str()) == next) {
                    if let Err(err) = self.net.route_through(&rec.id, ep).await {
                        tracing::warn!(container = %rec.id, "moving the default route: {err}");
                    }
                }
            }
        }
        e.rec.lock().expect("record lock").networks.remove(&n.name);
        self.save(&e)?;
        self.rewrite_hosts(&e)?;
        self.net.publish("disconnect", &n, Some(&rec.id));
        Ok(())
    }
}

/// The lowest `ethN` a running container does not have (a network left frees its name).
pub(crate) fn free_ifindex(eps: &[wharf_network::Endpoint]) -> usize {
    (0..)
        .find(|i| !eps.iter().any(|e| e.ifname == format!("eth{i}")))
        .unwrap_or(eps.len())
}
