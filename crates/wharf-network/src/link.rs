//! Links, addresses and routes through netlink (rtnetlink), and network namespaces.
//!
//! A container's namespace is made by a short-lived thread of the daemon: it opens a netlink
//! socket in the host's namespace, `unshare(CLONE_NEWNET)`s itself (only that thread moves),
//! bind-mounts its new namespace at `<exec-root>/netns/<id>` (what the OCI spec then names),
//! opens a second socket inside it, and wires the veths from both sides. Joining an existing
//! namespace (`network connect`) is the same with `setns`. Nothing runs `ip`.
//!
//! Teardown is unmounting that file: when the container's processes are gone too, the kernel
//! frees the namespace and its veths off the daemon's path (a synchronous veth delete costs
//! ~20 ms).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::{NetworkError, Result};

fn nl(what: &str) -> impl Fn(rtnetlink::Error) -> NetworkError + '_ {
    move |e| NetworkError::System(format!("{what}: {e}"))
}

fn is_exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -17)
}

/// A netlink connection on the current thread's namespace, driven by the current runtime.
pub fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The index of the link called `name`, if there is one.
pub async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -19 => Ok(None),
        Err(e) => Err(nl("looking up a link")(e)),
    }
}

/// The IPv4 routes' destinations on the host (for choosing subnets that overlap nothing).
pub async fn routed_subnets(h: &Handle) -> Result<Vec<crate::ipam::Subnet>> {
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    let mut out = Vec::new();
    let mut routes = h.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
    while let Some(r) = routes.try_next().await.map_err(nl("listing routes"))? {
        let len = r.header.destination_prefix_length;
        if len == 0 {
            continue;
        }
        for a in &r.attributes {
            if let RouteAttribute::Destination(RouteAddress::Inet(ip)) = a {
                out.push(crate::ipam::Subnet::of(*ip, len));
            }
        }
    }
    Ok(out)
}

/// Make sure the bridge `name` exists, holds `gateway/prefix` and is up.
pub async fn ensure_bridge(h: &Handle, name: &str, gateway: Ipv4Addr, prefix: u8, mtu: Option<u32>) -> Result<u32> {
    let idx = match index_of(h, name).await? {
        Some(i) => i,
        None => {
            let mut b = LinkBridge::new(name);
            if let Some(m) = mtu {
                b = b.mtu(m);
            }
            match h.link().add(b.build()).execute().await {
                Ok(()) => {}
                Err(e) if is_exists(&e) => {}
                Err(e) => return Err(nl("creating the bridge")(e)),
            }
            index_of(h, name)
                .await?
                .ok_or_else(|| NetworkError::System(format!("bridge {name} vanished")))?
        }
    };
    match h.address().add(idx, gateway.into(), prefix).execute().await {
        Ok(()) => {}
        Err(e) if is_exists(&e) => {}
        Err(e) => return Err(nl("adding the bridge address")(e)),
    }
    h.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(nl("bringing the bridge up"))?;
    // Published ports reached from the host's loopback are routed out of the bridge.
    let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{name}/route_localnet"), "1");
    Ok(idx)
}

/// Make sure the bridge `name` also holds the IPv6 `gateway/prefix`, usable at once (no
/// duplicate address detection: the subnet is the network's own).
pub async fn ensure_bridge_v6(h: &Handle, name: &str, gateway: Ipv6Addr, prefix: u8) -> Result<()> {
    let idx = index_of(h, name)
        .await?
        .ok_or_else(|| NetworkError::System(format!("bridge {name} is missing")))?;
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "0");
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/accept_dad"), "0");
    match h.address().add(idx, gateway.into(), prefix).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_exists(&e) => Ok(()),
        Err(e) => Err(nl("adding the bridge's IPv6 address")(e)),
    }
}

/// Delete a link (a bridge at network removal); a missing one is fine.
pub async fn delete_link(h: &Handle, name: &str) -> Result<()> {
    if let Some(i) = index_of(h, name).await? {
        match h.link().del(i).execute().await {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -19 => {}
            Err(e) => return Err(nl("deleting a link")(e)),
        }
    }
    Ok(())
}

/// One interface to wire into a container's namespace.
#[derive(Debug, Clone)]
pub struct Wire {
    /// The host bridge.
    pub bridge: String,
    /// The name inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
    /// Its address and prefix.
    pub ip: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// The gateway; the default route goes through it when `default_route`.
    pub gateway: Ipv4Addr,
    /// Route everything through this interface.
    pub default_route: bool,
    /// MAC address.
    pub mac: [u8; 6],
    /// MTU.
    pub mtu: Option<u32>,
    /// Its IPv6 address, prefix length and gateway (networks with IPv6 enabled).
    pub ip6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
}

/// Where the wiring happens.
#[derive(Debug, Clone)]
pub enum Target {
    /// A new namespace, bind-mounted at this path.
    New(PathBuf),
    /// The namespace bind-mounted at this path.
    Existing(PathBuf),
}

/// Docker's MAC for an address: `02:42` and the four bytes of the IPv4 address.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Format a MAC address.
pub fn mac_string(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    parts.try_into().ok()
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n.div_ceil(2)];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).expect("getrandom");
    hex::encode(b)[..n].to_string()
}

/// Create (or enter) the namespace and wire `wires` into it; returns the host-side veth names.
/// Runs on its own thread: `unshare`/`setns` move only the calling thread.
pub async fn wire(target: Target, wires: Vec<Wire>) -> Result<Vec<String>> {
    on_thread(wire_here(target, wires)).await
}

async fn wire_here(target: Target, wires: Vec<Wire>) -> Result<Vec<String>> {
    let host = connect()?;
    let nsfile: OwnedFd = match &target {
        Target::New(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::File::create(path)?;
            // SAFETY: only NEWNET: this thread's network namespace changes, its file table
            // (shared with the daemon's other threads) does not.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .map_err(|e| NetworkError::System(format!("unshare: {e}")))?;
            let own = "/proc/thread-self/ns/net";
            if let Err(e) = rustix::mount::mount_bind(own, path.as_path()) {
                let _ = std::fs::remove_file(path);
                return Err(NetworkError::System(format!("pinning the namespace: {e}")));
            }
            rustix::fs::open(
                own,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| NetworkError::System(e.to_string()))?
        }
        Target::Existing(path) => enter(path)?,
    };
    let inner = connect()?;
    if matches!(target, Target::New(_)) {
        let lo = index_of(&inner, "lo").await?.unwrap_or(1);
        inner
            .link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(nl("loopback up"))?;
    }
    let mut hosts = Vec::new();
    for w in wires {
        let br = index_of(&host, &w.bridge)
            .await?
            .ok_or_else(|| NetworkError::System(format!("bridge {} is missing", w.bridge)))?;
        let hname = format!("veth{}", random_hex(7));
        // The peer is made inside the container's namespace under its final name: moving a
        // device between namespaces waits for an RCU grace period (milliseconds), creating it
        // there does not.
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(w.ifname.clone())
            .address(w.mac.to_vec())
            .setns_by_fd(nsfile.as_raw_fd());
        let mut v = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(hname.clone())
            .controller(br)
            .up();
        if let Some(m) = w.mtu {
            v = v.mtu(m);
            peer = peer.mtu(m);
        }
        let msg = v.set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build()))).build();
        host.link()
            .add(msg)
            .execute()
            .await
            .map_err(nl("creating a veth pair"))?;
        // A container may reach itself through a published port.
        let _ = std::fs::write(format!("/sys/class/net/{hname}/brport/hairpin_mode"), "1");
        let cidx = index_of(&inner, &w.ifname)
            .await?
            .ok_or_else(|| NetworkError::System("veth peer not in the namespace".into()))?;
        inner
            .address()
            .add(cidx, w.ip.into(), w.prefix)
            .execute()
            .await
            .map_err(nl("adding the container's address"))?;
        if let Some((ip6, prefix6, _)) = w.ip6 {
            // This thread is in the container's namespace: these are its interface's settings.
            let conf = format!("/proc/sys/net/ipv6/conf/{}", w.ifname);
            let _ = std::fs::write(format!("{conf}/disable_ipv6"), "0");
            let _ = std::fs::write(format!("{conf}/accept_dad"), "0");
            inner
                .address()
                .add(cidx, ip6.into(), prefix6)
                .execute()
                .await
                .map_err(nl("adding the container's IPv6 address"))?;
        }
        inner
            .link()
            .set(LinkUnspec::new_with_index(cidx).up().build())
            .execute()
            .await
            .map_err(nl("bringing the container's interface up"))?;
        if w.default_route {
            default_route(&inner, cidx, w.gateway, w.ip6.map(|(_, _, g)| g)).await?;
        }
        hosts.push(hname);
    }
    Ok(hosts)
}

/// The default route (and the IPv6 one) through `gateway` on interface `index`, replacing any
/// other: a network joined later may take it over.
async fn default_route(h: &Handle, index: u32, gateway: Ipv4Addr, gateway6: Option<Ipv6Addr>) -> Result<()> {
    let r = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .build();
    h.route()
        .add(r)
        .replace()
        .execute()
        .await
        .map_err(nl("adding the default route"))?;
    if let Some(g6) = gateway6 {
        let r = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(g6)
            .output_interface(index)
            .build();
        h.route()
            .add(r)
            .replace()
            .execute()
            .await
            .map_err(nl("adding the IPv6 default route"))?;
    }
    Ok(())
}

/// Route everything through `ifname` in the namespace pinned at `path` (the network that
/// gave the default route was left).
pub async fn route_through(path: PathBuf, ifname: String, gateway: Ipv4Addr, gateway6: Option<Ipv6Addr>) -> Result<()> {
    on_thread(async move {
        enter(&path)?;
        let h = connect()?;
        let index = index_of(&h, &ifname)
            .await?
            .ok_or_else(|| NetworkError::System(format!("{ifname} is not in the container")))?;
        default_route(&h, index, gateway, gateway6).await
    })
    .await
}

/// Remove the interface `ifname` from the namespace pinned at `path` (its veth peer goes too).
pub async fn unwire(path: PathBuf, ifname: String) -> Result<()> {
    on_thread(async move {
        enter(&path)?;
        let h = connect()?;
        delete_link(&h, &ifname).await
    })
    .await
}

/// Move the calling thread into the namespace pinned at `path`; its descriptor.
pub(crate) fn enter(path: &Path) -> Result<OwnedFd> {
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| NetworkError::System(format!("opening {}: {e}", path.display())))?;
    rustix::thread::move_into_link_name_space(fd.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
        .map_err(|e| NetworkError::System(format!("setns: {e}")))?;
    Ok(fd)
}

/// Run `f` on a thread of its own with a runtime of its own: `unshare` and `setns` move only
/// the calling thread, which must not be one of the daemon's workers.
pub(crate) async fn on_thread<T: Send + 'static>(
    f: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("wharf-netns".into()).spawn(move || {
        let r = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(f),
            Err(e) => Err(NetworkError::System(e.to_string())),
        };
        let _ = tx.send(r);
    })?;
    rx.await
        .map_err(|_| NetworkError::System("the namespace thread died".into()))?
}

/// Unpin a container's namespace; the kernel frees it (and its veths) once nothing uses it.
pub fn release_namespace(path: &Path) {
    if path.exists() {
        let _ = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH);
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        let ip: Ipv4Addr = "172.17.0.2".parse().unwrap();
        assert_eq!(mac_string(&mac_for(ip)), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02:42:ac:11:00:02"), Some(mac_for(ip)));
        assert_eq!(parse_mac("zz"), None);
    }
}
