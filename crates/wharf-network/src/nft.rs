//! The daemon's nftables table: NAT for outbound traffic, DNAT for published ports (from the
//! host's own addresses, its loopback, and other containers), isolation between networks and
//! for `--internal` ones. The whole table is rewritten in one `nft -f` transaction per change
//! (`table; delete table; table { ... }`), so a reader never sees half a ruleset and there is
//! never one process per rule.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::error::{NetworkError, Result};
use crate::ipam::Subnet;

/// A bridge network as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRule {
    /// The host interface.
    pub name: String,
    /// Its subnet.
    pub subnet: Subnet,
    /// `--internal`: no traffic in or out of the bridge.
    pub internal: bool,
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// `tcp` or `udp`.
    pub proto: String,
    /// Only traffic to this host address (`-p 127.0.0.1:8080:80`); `None`: every local address.
    pub host_ip: Option<Ipv4Addr>,
    /// The host port.
    pub host_port: u16,
    /// The container's address.
    pub ip: Ipv4Addr,
    /// The container's port.
    pub port: u16,
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', ""))
}

/// The complete table.
pub fn ruleset(table: &str, bridges: &[BridgeRule], ports: &[PortRule]) -> String {
    let mut s = String::new();
    // Create-if-missing, then delete and recreate: one atomic replacement.
    let _ = writeln!(s, "table ip {table}\ndelete table ip {table}\ntable ip {table} {{");
    s.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local jump ports\n  }\n");
    s.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump ports\n  }\n");
    s.push_str("  chain ports {\n");
    for p in ports {
        let daddr = p.host_ip.map(|ip| format!("ip daddr {ip} ")).unwrap_or_default();
        let _ = writeln!(
            s,
            "    {daddr}{proto} dport {hp} dnat to {ip}:{port}",
            proto = p.proto,
            hp = p.host_port,
            ip = p.ip,
            port = p.port
        );
    }
    s.push_str("  }\n");
    s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    for b in bridges {
        let n = quote(&b.name);
        if !b.internal {
            let _ = writeln!(s, "    ip saddr {} oifname != {n} masquerade", b.subnet);
        }
        // Published ports reached from the host's loopback, and from containers of the same
        // bridge through a host address (hairpin): the container answers to the gateway.
        let _ = writeln!(s, "    oifname {n} ip saddr 127.0.0.0/8 masquerade");
        let _ = writeln!(s, "    oifname {n} ct status dnat ip saddr {} masquerade", b.subnet);
    }
    s.push_str("  }\n");
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    for b in bridges {
        let n = quote(&b.name);
        if b.internal {
            let _ = writeln!(
                s,
                "    iifname {n} oifname != {n} drop\n    oifname {n} iifname != {n} drop"
            );
        }
        let others: Vec<String> = bridges
            .iter()
            .filter(|o| o.name != b.name)
            .map(|o| quote(&o.name))
            .collect();
        if !others.is_empty() {
            let _ = writeln!(s, "    iifname {n} oifname {{ {} }} drop", others.join(", "));
        }
    }
    s.push_str("  }\n");
    if !bridges.is_empty() {
        // The bridges route 127.0.0.0/8 (route_localnet, for the loopback hairpin); nothing
        // arriving from a container may reach the host's loopback services that way.
        let names: Vec<String> = bridges.iter().map(|b| quote(&b.name)).collect();
        let _ = writeln!(
            s,
            "  chain raw {{\n    type filter hook prerouting priority raw; policy accept;\n    iifname {{ {} }} ip daddr 127.0.0.0/8 drop\n  }}",
            names.join(", ")
        );
    }
    s.push_str("}\n");
    s
}

/// Apply a ruleset (or any nft script) in one transaction.
pub fn apply(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetworkError::System(format!("running nft (install Debian's nftables): {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| NetworkError::System(format!("nft: {e}")))?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(NetworkError::System(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Remove the table (shutdown, or `--iptables=false`); a missing table is fine.
pub fn delete(table: &str) -> Result<()> {
    apply(&format!("table ip {table}\ndelete table ip {table}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_has_nat_ports_and_isolation() {
        let b = vec![
            BridgeRule {
                name: "wharf0".into(),
                subnet: "172.17.0.0/16".parse().unwrap(),
                internal: false,
            },
            BridgeRule {
                name: "br-a".into(),
                subnet: "172.18.0.0/16".parse().unwrap(),
                internal: true,
            },
        ];
        let p = vec![PortRule {
            proto: "tcp".into(),
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: 8080,
            ip: "172.17.0.2".parse().unwrap(),
            port: 80,
        }];
        let r = ruleset("wharf", &b, &p);
        assert!(r.starts_with("table ip wharf\ndelete table ip wharf\n"), "{r}");
        assert!(
            r.contains("ip daddr 127.0.0.1 tcp dport 8080 dnat to 172.17.0.2:80"),
            "{r}"
        );
        assert!(
            r.contains("ip saddr 172.17.0.0/16 oifname != \"wharf0\" masquerade"),
            "{r}"
        );
        assert!(
            !r.contains("ip saddr 172.18.0.0/16 oifname != \"br-a\" masquerade"),
            "internal: {r}"
        );
        assert!(r.contains("iifname \"br-a\" oifname != \"br-a\" drop"), "{r}");
        assert!(r.contains("iifname \"wharf0\" oifname { \"br-a\" } drop"), "{r}");
    }
}
