//! Address management: IPv4 subnets in CIDR form, the addresses a network hands out, and the
//! choice of a free subnet that overlaps nothing already routed on the host; and a network's
//! IPv6 subnet (given, or a random unique local /64 as dockerd picks one) and its addresses.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{NetworkError, Result};

/// An IPv4 subnet (`172.17.0.0/16`), kept in canonical form (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    /// The network address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0 to 32.
    pub prefix: u8,
}

impl Subnet {
    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// Does the subnet contain `ip`?
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Do the two share any address?
    pub fn overlaps(&self, o: &Subnet) -> bool {
        self.contains(o.addr) || o.contains(self.addr)
    }

    /// The first and last address (network and broadcast).
    pub fn bounds(&self) -> (u32, u32) {
        let base = u32::from(self.addr);
        (base, base | !self.mask())
    }

    /// The first usable address (Docker's default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// The subnet of `ip/prefix` (host bits cleared).
    pub fn of(ip: Ipv4Addr, prefix: u8) -> Subnet {
        let s = Subnet {
            addr: Ipv4Addr::UNSPECIFIED,
            prefix,
        };
        Subnet {
            addr: Ipv4Addr::from(u32::from(ip) & s.mask()),
            prefix,
        }
    }
}

/// An IPv6 subnet (`2001:db8::/64`), kept in canonical form (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet6 {
    /// The network address.
    pub addr: Ipv6Addr,
    /// Prefix length, 0 to 128.
    pub prefix: u8,
}

impl Subnet6 {
    fn mask(&self) -> u128 {
        if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        }
    }

    /// Does the subnet contain `ip`?
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.addr)
    }

    /// Do the two share any address?
    pub fn overlaps(&self, o: &Subnet6) -> bool {
        self.contains(o.addr) || o.contains(self.addr)
    }

    /// The subnet of `ip/prefix` (host bits cleared).
    pub fn of(ip: Ipv6Addr, prefix: u8) -> Subnet6 {
        let m = Subnet6 {
            addr: Ipv6Addr::UNSPECIFIED,
            prefix,
        }
        .mask();
        Subnet6 {
            addr: Ipv6Addr::from(u128::from(ip) & m),
            prefix,
        }
    }

    /// A random unique local /64 (RFC 4193: `fd` and a 40-bit global ID), from 5 random bytes.
    pub fn unique_local(random: [u8; 5]) -> Subnet6 {
        let mut b = [0u8; 16];
        b[0] = 0xfd;
        b[1..6].copy_from_slice(&random);
        Subnet6 {
            addr: Ipv6Addr::from(b),
            prefix: 64,
        }
    }
}

/// CIDR text (`addr/prefix`) for a subnet type: `Display`, `FromStr` (host bits cleared, the
/// prefix at most `$max`) and serde as that string.
macro_rules! cidr_text {
    ($t:ty, $addr:ty, $max:expr) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}/{}", self.addr, self.prefix)
            }
        }

        impl FromStr for $t {
            type Err = NetworkError;
            fn from_str(s: &str) -> Result<Self> {
                let bad = || NetworkError::Invalid(format!("invalid CIDR address: {s}"));
                let (a, p) = s.split_once('/').ok_or_else(bad)?;
                let addr: $addr = a.parse().map_err(|_| bad())?;
                let prefix: u8 = p.parse().map_err(|_| bad())?;
                if prefix > $max {
                    return Err(bad());
                }
                Ok(<$t>::of(addr, prefix))
            }
        }

        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

cidr_text!(Subnet, Ipv4Addr, 32);
cidr_text!(Subnet6, Ipv6Addr, 128);

/// What a pool needs of a subnet type, IPv4 or IPv6 alike: its addresses as numbers.
pub trait Cidr: Copy + PartialEq + fmt::Display {
    /// The address type.
    type Addr: Copy + Ord + fmt::Display;
    /// `IPv4` or `IPv6`, for messages.
    const FAMILY: &'static str;
    /// The longest prefix with room for a gateway and one container.
    const MAX_PREFIX: u8;
    /// The subnet's first and last address, as numbers.
    fn span(&self) -> (u128, u128);
    /// The prefix length.
    fn prefix_len(&self) -> u8;
    /// An address as a number.
    fn num(a: Self::Addr) -> u128;
    /// The address of a number (in range for the family).
    fn addr(n: u128) -> Self::Addr;
}

impl Cidr for Subnet {
    type Addr = Ipv4Addr;
    const FAMILY: &'static str = "IPv4";
    const MAX_PREFIX: u8 = 30;
    fn span(&self) -> (u128, u128) {
        let (lo, hi) = self.bounds();
        (u128::from(lo), u128::from(hi))
    }
    fn prefix_len(&self) -> u8 {
        self.prefix
    }
    fn num(a: Ipv4Addr) -> u128 {
        u128::from(u32::from(a))
    }
    fn addr(n: u128) -> Ipv4Addr {
        Ipv4Addr::from(n as u32)
    }
}

impl Cidr for Subnet6 {
    type Addr = Ipv6Addr;
    const FAMILY: &'static str = "IPv6";
    const MAX_PREFIX: u8 = 126;
    fn span(&self) -> (u128, u128) {
        let lo = u128::from(self.addr);
        (lo, lo | !self.mask())
    }
    fn prefix_len(&self) -> u8 {
        self.prefix
    }
    fn num(a: Ipv6Addr) -> u128 {
        u128::from(a)
    }
    fn addr(n: u128) -> Ipv6Addr {
        Ipv6Addr::from(n)
    }
}

/// One network's addresses of one family: its subnet, the range it hands out from, its
/// gateway (the bridge's own address), the auxiliary addresses no container gets, and who
/// holds what. The subnet's first and last addresses are never handed out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(bound(
    serialize = "S: Serialize, S::Addr: Serialize",
    deserialize = "S: Deserialize<'de>, S::Addr: Deserialize<'de>"
))]
pub struct AddrPool<S: Cidr> {
    /// The subnet.
    pub subnet: S,
    /// `--ip-range`: where dynamic addresses come from (the whole subnet if absent).
    pub range: Option<S>,
    /// The gateway (the bridge's own address).
    pub gateway: S::Addr,
    /// Address → holder (a container ID).
    #[serde(default)]
    pub allocated: BTreeMap<S::Addr, String>,
    /// `--aux-address`: name → an address kept out of every container's reach.
    #[serde(default)]
    pub aux: BTreeMap<String, S::Addr>,
}

/// A network's IPv4 pool.
pub type Pool = AddrPool<Subnet>;
/// A network's IPv6 pool.
pub type Pool6 = AddrPool<Subnet6>;

impl<S: Cidr> AddrPool<S> {
    /// A pool for `subnet`, with Docker's defaults and checks for the gateway and range.
    pub fn new(subnet: S, range: Option<S>, gateway: Option<S::Addr>) -> Result<Self> {
        if subnet.prefix_len() > S::MAX_PREFIX {
            return Err(NetworkError::Invalid(format!(
                "subnet {subnet} is too small: it has no room for a gateway and a container"
            )));
        }
        let (lo, hi) = subnet.span();
        if let Some(r) = range {
            let (rlo, rhi) = r.span();
            if rlo < lo || rhi > hi {
                return Err(NetworkError::Invalid(format!(
                    "invalid pool request: ip-range {r} is not in subnet {subnet}"
                )));
            }
        }
        let gateway = gateway.unwrap_or_else(|| S::addr(lo + 1));
        let g = S::num(gateway);
        if g <= lo || g >= hi {
            return Err(NetworkError::Invalid(format!(
                "invalid pool request: gateway {gateway} is not a host address of subnet {subnet}"
            )));
        }
        Ok(AddrPool {
            subnet,
            range,
            gateway,
            allocated: BTreeMap::new(),
            aux: BTreeMap::new(),
        })
    }

    fn is_host(&self, a: S::Addr) -> bool {
        let (lo, hi) = self.subnet.span();
        let n = S::num(a);
        n > lo && n < hi
    }

    fn reserved(&self, a: S::Addr) -> bool {
        a == self.gateway || self.aux.values().any(|x| *x == a)
    }

    /// Reserve the auxiliary addresses (`--aux-address name=ip`): each must be a host address
    /// of the subnet other than the gateway.
    pub fn with_aux(mut self, aux: BTreeMap<String, S::Addr>) -> Result<Self> {
        for (name, ip) in &aux {
            if !self.is_host(*ip) || *ip == self.gateway {
                return Err(NetworkError::Invalid(format!(
                    "invalid auxiliary address {name}={ip}: not a free host address of subnet {}",
                    self.subnet
                )));
            }
        }
        self.aux = aux;
        Ok(self)
    }

    /// Hand out `want` (it must be free and in the subnet) or the first free dynamic address.
    pub fn allocate(&mut self, holder: &str, want: Option<S::Addr>) -> Result<S::Addr> {
        if let Some(ip) = want {
            if !self.is_host(ip) {
                return Err(NetworkError::Invalid(format!(
                    "invalid address {ip}: it does not belong to any of this network's subnets"
                )));
            }
            if self.reserved(ip) {
                return Err(NetworkError::Conflict(format!(
                    "Address already in use: {ip} is the gateway or an auxiliary address"
                )));
            }
            if self.allocated.get(&ip).is_some_and(|h| h != holder) {
                return Err(NetworkError::Conflict("Address already in use".into()));
            }
            self.allocated.insert(ip, holder.to_string());
            return Ok(ip);
        }
        let (lo, hi) = self.subnet.span();
        let (rlo, rhi) = self.range.map(|r| r.span()).unwrap_or((lo, hi));
        let (first, last) = (rlo.max(lo + 1), rhi.min(hi - 1));
        // An IPv6 range has more addresses than containers: the first free one is near its start.
        for n in (first..=last).take(1 << 24) {
            let ip = S::addr(n);
            if self.reserved(ip) || self.allocated.contains_key(&ip) {
                continue;
            }
            self.allocated.insert(ip, holder.to_string());
            return Ok(ip);
        }
        Err(NetworkError::Conflict(format!(
            "no available {} addresses on this network's address pools: {}",
            S::FAMILY,
            self.subnet
        )))
    }

    /// Give back what `holder` holds.
    pub fn release(&mut self, holder: &str) {
        self.allocated.retain(|_, h| h != holder);
    }
}

/// Docker's default address pools: 172.17-31.0.0/16 then 192.168.0-240.0/20.
pub fn default_pools() -> Vec<(Subnet, u8)> {
    vec![
        ("172.17.0.0/16".parse().expect("const"), 16),
        ("172.18.0.0/16".parse().expect("const"), 16),
        ("172.19.0.0/16".parse().expect("const"), 16),
        ("172.20.0.0/14".parse().expect("const"), 16),
        ("172.24.0.0/14".parse().expect("const"), 16),
        ("172.28.0.0/14".parse().expect("const"), 16),
        ("192.168.0.0/16".parse().expect("const"), 20),
    ]
}

/// The first subnet of `size` from `pools` that overlaps none of `taken` (the host's routes
/// and the other networks).
pub fn pick_subnet(pools: &[(Subnet, u8)], taken: &[Subnet]) -> Option<Subnet> {
    for (base, size) in pools {
        let step = 1u64 << (32 - u32::from(*size));
        let (lo, hi) = base.bounds();
        let mut n = u64::from(lo);
        while n + step - 1 <= u64::from(hi) {
            let cand = Subnet::of(Ipv4Addr::from(n as u32), *size);
            if !taken.iter().any(|t| t.overlaps(&cand)) {
                return Some(cand);
            }
            n += step;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_overlap() {
        let s: Subnet = "10.1.2.3/16".parse().unwrap();
        assert_eq!(s.to_string(), "10.1.0.0/16");
        assert!(s.contains("10.1.255.254".parse().unwrap()));
        assert!(!s.contains("10.2.0.1".parse().unwrap()));
        assert!(s.overlaps(&"10.0.0.0/8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Subnet>().is_err());
        assert!("x/8".parse::<Subnet>().is_err());
    }

    #[test]
    fn allocation_skips_gateway_and_respects_range() {
        let mut p = Pool::new(
            "10.5.0.0/24".parse().unwrap(),
            Some("10.5.0.128/25".parse().unwrap()),
            None,
        )
        .unwrap();
        assert_eq!(p.gateway, "10.5.0.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(p.allocate("a", None).unwrap().to_string(), "10.5.0.128");
        assert_eq!(p.allocate("b", None).unwrap().to_string(), "10.5.0.129");
        assert_eq!(
            p.allocate("c", Some("10.5.0.9".parse().unwrap())).unwrap().to_string(),
            "10.5.0.9"
        );
        assert!(matches!(
            p.allocate("d", Some("10.5.0.9".parse().unwrap())),
            Err(NetworkError::Conflict(_))
        ));
        assert!(p.allocate("d", Some("10.6.0.9".parse().unwrap())).is_err());
        assert!(p.allocate("d", Some("10.5.0.1".parse().unwrap())).is_err());
        p.release("a");
        assert_eq!(p.allocate("e", None).unwrap().to_string(), "10.5.0.128");
        let mut aux = Pool::new("10.9.0.0/29".parse().unwrap(), None, None)
            .unwrap()
            .with_aux(BTreeMap::from([("a".to_string(), "10.9.0.2".parse().unwrap())]))
            .unwrap();
        assert_eq!(
            aux.allocate("c", None).unwrap(),
            "10.9.0.3".parse::<Ipv4Addr>().unwrap()
        );
        assert!(aux.allocate("d", Some("10.9.0.2".parse().unwrap())).is_err());
        assert!(Pool::new("10.9.0.0/29".parse().unwrap(), None, None)
            .unwrap()
            .with_aux(BTreeMap::from([("x".to_string(), "10.8.0.2".parse().unwrap())]))
            .is_err());
        let mut v6 = Pool6::new(
            "2001:389::1/64".parse().unwrap(),
            Some("2001:389::/96".parse().unwrap()),
            Some("2001:389::ffff".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(v6.subnet.to_string(), "2001:389::/64");
        assert_eq!(
            v6.allocate("a", None).unwrap(),
            "2001:389::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            v6.allocate("b", Some("2001:389::f00d".parse().unwrap()))
                .unwrap()
                .to_string(),
            "2001:389::f00d"
        );
        assert!(v6.allocate("c", Some("2001:389::f00d".parse().unwrap())).is_err());
        assert!(v6.allocate("c", Some("2001:db8::1".parse().unwrap())).is_err());
        v6.release("b");
        assert!(v6.allocate("c", Some("2001:389::f00d".parse().unwrap())).is_ok());
        let mut aux6 = Pool6::new("fd00:1::/64".parse().unwrap(), None, None)
            .unwrap()
            .with_aux(BTreeMap::from([("r".to_string(), "fd00:1::2".parse().unwrap())]))
            .unwrap();
        assert_eq!(aux6.allocate("a", None).unwrap().to_string(), "fd00:1::3");
        assert!(aux6.allocate("b", Some("fd00:1::2".parse().unwrap())).is_err());
        let ula = Subnet6::unique_local([1, 2, 3, 4, 5]);
        assert_eq!(ula.to_string(), "fd01:203:405::/64");
        assert!(ula.overlaps(&"fd01:203:405::/48".parse().unwrap()));
        let mut tiny = Pool::new("10.9.0.0/30".parse().unwrap(), None, None).unwrap();
        assert_eq!(tiny.allocate("x", None).unwrap().to_string(), "10.9.0.2");
        assert!(
            tiny.allocate("y", None).is_err(),
            "a /30 has one address after the gateway"
        );
        assert!(Pool::new("10.9.0.0/24".parse().unwrap(), None, Some("10.8.0.1".parse().unwrap())).is_err());
    }

    #[test]
    fn picks_a_subnet_clear_of_routes() {
        let taken: Vec<Subnet> = vec!["172.17.0.0/16".parse().unwrap(), "172.18.5.0/24".parse().unwrap()];
        assert_eq!(
            pick_subnet(&default_pools(), &taken).unwrap().to_string(),
            "172.19.0.0/16"
        );
    }
}
