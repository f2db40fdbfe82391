//! The embedded resolver at `127.0.0.11`: the one nameserver of every container on a
//! user-defined network, as Docker's. The daemon opens a UDP socket and a TCP listener on
//! `127.0.0.11`, at ports the kernel picks, inside the container's network namespace (a thread
//! of its own enters the namespace, binds, and ends; the sockets stay in that namespace), and
//! an nftables table in the namespace redirects port 53 to them, so port 53 stays free for
//! the container's own servers. Queries are answered from the name tables of all the
//! container's networks as they are when the query arrives, so a network joined later needs
//! no other `nameserver` line; other names go to the container's `--dns` servers or the
//! host's resolvers, from the daemon's own namespace (where a loopback resolver answers too),
//! and nowhere for a container whose networks are all `--internal`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::net::{TcpListener, UdpSocket};

use crate::dns::{self, Scope};
use crate::error::Result;
use crate::link;

/// The address containers are given as their nameserver.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// The nftables table in each container's namespace.
pub const TABLE: &str = "wharf_dns";

/// A container's resolver; dropping it stops answering.
#[derive(Debug)]
pub struct Resolver {
    udp: tokio::task::JoinHandle<()>,
    tcp: tokio::task::JoinHandle<()>,
    /// What it answers from; the network service changes it as the container joins and
    /// leaves networks.
    pub scope: Arc<RwLock<Scope>>,
    /// The container's own servers (`--dns`); empty: the host's.
    pub servers: Vec<std::net::SocketAddr>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.udp.abort();
        self.tcp.abort();
    }
}

/// The table that sends the container's queries to 127.0.0.11:53 to the resolver's ports,
/// replacing any earlier one in one transaction (a restored container gets new ports).
pub fn ruleset(udp_port: u16, tcp_port: u16) -> String {
    format!(
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    ip daddr {ADDRESS} udp dport 53 dnat to {ADDRESS}:{udp_port}\n    ip daddr {ADDRESS} tcp dport 53 dnat to {ADDRESS}:{tcp_port}\n  }}\n}}\n"
    )
}

/// Open the resolver in the namespace pinned at `netns` and start answering from `scope`.
pub async fn open(netns: PathBuf, scope: Scope, servers: Vec<std::net::SocketAddr>) -> Result<Resolver> {
    let (udp, tcp) = link::on_thread(async move {
        link::enter(&netns)?;
        let udp = std::net::UdpSocket::bind((ADDRESS, 0))?;
        let tcp = std::net::TcpListener::bind((ADDRESS, 0))?;
        // `nft` runs in this thread's namespace: the container's.
        crate::nft::apply(&ruleset(udp.local_addr()?.port(), tcp.local_addr()?.port()))?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    })
    .await?;
    let scope = Arc::new(RwLock::new(scope));
    let s = scope.clone();
    let (udp, tcp) = dns::spawn_servers(
        UdpSocket::from_std(udp)?,
        TcpListener::from_std(tcp)?,
        // The scope as it is when the query arrives: networks come and go.
        Arc::new(move |_| s.read().expect("scope").clone()),
    );
    Ok(Resolver {
        udp,
        tcp,
        scope,
        servers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_redirects_both_protocols() {
        let r = ruleset(40001, 40002);
        assert!(r.starts_with("table ip wharf_dns\ndelete table ip wharf_dns\n"), "{r}");
        assert!(
            r.contains("ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:40001"),
            "{r}"
        );
        assert!(
            r.contains("ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:40002"),
            "{r}"
        );
    }
}
