//! The DNS responder of a user-defined network (as podman's aardvark-dns): a UDP and TCP server
//! on the network's gateway address, port 53, that answers A queries for the names and aliases of the
//! containers on that network and forwards every other query to the host's resolvers. A
//! container's links on the network (`--link name:alias`) are aliases only it resolves: the
//! responder tells containers apart by the address a query comes from. Messages are parsed and
//! written with hickory-proto.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// What one network's responder knows.
#[derive(Debug, Default)]
pub struct Table {
    /// Name (lower case, no trailing dot) → addresses.
    pub names: HashMap<String, Vec<Ipv4Addr>>,
    /// Name → IPv6 addresses (on networks with IPv6 enabled).
    pub names6: HashMap<String, Vec<Ipv6Addr>>,
    /// A container's address → its link aliases (lower case) → the names they stand for.
    pub links: HashMap<Ipv4Addr, HashMap<String, String>>,
}

impl Table {
    /// The addresses `name` has for a query from `from`: its links first, then the network's
    /// names. IPv4 and IPv6 ones.
    pub fn lookup(&self, name: &str, from: Option<Ipv4Addr>) -> Option<(Vec<Ipv4Addr>, Vec<Ipv6Addr>)> {
        let target = from
            .and_then(|ip| self.links.get(&ip))
            .and_then(|l| l.get(name))
            .map(|t| t.to_ascii_lowercase());
        let of = |n: &str| {
            self.names
                .get(n)
                .map(|v4| (v4.clone(), self.names6.get(n).cloned().unwrap_or_default()))
        };
        // A link to a container that is not on the network (yet) is no name at all.
        target.and_then(|t| of(&t)).or_else(|| of(name))
    }
}

/// One network's [`Table`], shared with the network service.
pub type Names = Arc<RwLock<Table>>;

/// What one query is answered from: the tables of the asker's networks, each with the asker's
/// address on it (its links are told apart by it), in the order they are tried; where the
/// other names go; and whether they may go at all (not from internal networks only).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The tables to look in, first hit wins.
    pub tables: Vec<(Names, Option<Ipv4Addr>)>,
    /// Resolvers for names no table has.
    pub upstreams: Vec<SocketAddr>,
}

impl Scope {
    /// A name's addresses in the first table that has it.
    pub fn lookup(&self, name: &str) -> Option<(Vec<Ipv4Addr>, Vec<Ipv6Addr>)> {
        self.tables
            .iter()
            .find_map(|(t, from)| t.read().expect("names").lookup(name, *from))
    }
}

/// A running responder; dropping it stops the server.
#[derive(Debug)]
pub struct Responder {
    task: tokio::task::JoinHandle<()>,
    tcp: tokio::task::JoinHandle<()>,
    /// The names it answers for.
    pub names: Names,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
        self.tcp.abort();
    }
}

/// The host's resolvers from `/etc/resolv.conf`. Loopback ones too (a local caching
/// resolver, systemd-resolved's 127.0.0.53): queries are forwarded from the daemon, in the
/// host's namespace, where they answer, as Docker's embedded resolver does.
pub fn upstreams() -> Vec<SocketAddr> {
    servers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

/// The `nameserver` addresses of a resolv.conf text, port 53.
pub fn servers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// How a server finds what to answer a query from `peer` with.
pub(crate) type ScopeOf = Arc<dyn Fn(&SocketAddr) -> Scope + Send + Sync>;

/// Answer DNS over UDP on `sock` and over TCP on `listener`, each query from the scope
/// `scope_of` gives for its sender; the two serving tasks.
pub(crate) fn spawn_servers(
    sock: UdpSocket,
    listener: TcpListener,
    scope_of: ScopeOf,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let sock = Arc::new(sock);
    let s = scope_of.clone();
    let tcp = tokio::spawn(async move {
        loop {
            let Ok((conn, peer)) = listener.accept().await else {
                continue;
            };
            let scope = s(&peer);
            tokio::spawn(async move {
                let _ = serve_tcp(conn, &scope).await;
            });
        }
    });
    let udp = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, peer)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            let query = buf[..len].to_vec();
            let (sock, scope) = (sock.clone(), scope_of(&peer));
            tokio::spawn(async move {
                if let Some(reply) = answer(&query, &scope).await {
                    let _ = sock.send_to(&reply, peer).await;
                }
            });
        }
    });
    (udp, tcp)
}

/// Start answering on `addr:53`, UDP and TCP.
pub async fn serve(addr: Ipv4Addr, names: Names) -> std::io::Result<Responder> {
    let sock = UdpSocket::bind((addr, 53)).await?;
    let listener = TcpListener::bind((addr, 53)).await?;
    let n = names.clone();
    let (task, tcp) = spawn_servers(sock, listener, Arc::new(move |peer| gateway_scope(&n, peer)));
    Ok(Responder { task, tcp, names })
}

/// A gateway responder answers from its own network only (the embedded resolver at
/// 127.0.0.11, `resolver`, answers from all of a container's networks).
fn gateway_scope(names: &Names, peer: &SocketAddr) -> Scope {
    Scope {
        tables: vec![(names.clone(), peer_v4(peer))],
        upstreams: upstreams(),
    }
}

fn peer_v4(peer: &SocketAddr) -> Option<Ipv4Addr> {
    match peer.ip() {
        std::net::IpAddr::V4(ip) => Some(ip),
        std::net::IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    }
}

/// DNS over TCP (RFC 7766): each message behind a two-byte length, several per connection;
/// an idle connection is closed after ten seconds.
async fn serve_tcp(mut conn: TcpStream, scope: &Scope) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
        tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut query))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let Some(reply) = answer(&query, scope).await else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        conn.write_all(&n.to_be_bytes()).await?;
        conn.write_all(&reply).await?;
    }
}

/// The answer to one query packet (`None`: not a query we can read at all).
pub async fn answer(query: &[u8], scope: &Scope) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    if req.message_type() != MessageType::Query {
        return None;
    }
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true)
        .add_queries(req.queries().to_vec());
    let Some(q) = req.queries().first() else {
        resp.set_response_code(ResponseCode::FormErr);
        return resp.to_vec().ok();
    };
    let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let known = scope.lookup(&name);
    match known {
        Some((v4, v6)) => {
            // A name on this network: its addresses for A and AAAA, nothing (but no error)
            // for others.
            if q.query_type() == RecordType::A {
                for ip in v4 {
                    resp.add_answer(Record::from_rdata(q.name().clone(), 600, RData::A(A(ip))));
                }
            }
            if q.query_type() == RecordType::AAAA {
                for ip in v6 {
                    resp.add_answer(Record::from_rdata(q.name().clone(), 600, RData::AAAA(AAAA(ip))));
                }
            }
            resp.set_authoritative(true);
            resp.to_vec().ok()
        }
        // A single label is a container name or nothing: it is not sent to the host's
        // resolvers (which would only say NXDOMAIN, later, and off this machine).
        None if !name.contains('.') => {
            resp.set_response_code(ResponseCode::NXDomain);
            resp.to_vec().ok()
        }
        None => match forward(query, &scope.upstreams).await {
            Some(r) => Some(r),
            None => {
                resp.set_response_code(ResponseCode::ServFail);
                resp.to_vec().ok()
            }
        },
    }
}

async fn forward(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for &up in upstreams {
        let Ok(s) = UdpSocket::bind("0.0.0.0:0").await else {
            continue;
        };
        if s.send_to(query, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf)).await {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    fn one(names: &Names, from: Option<Ipv4Addr>) -> Scope {
        Scope {
            tables: vec![(names.clone(), from)],
            upstreams: Vec::new(),
        }
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(7)
            .set_message_type(MessageType::Query)
            .set_recursion_desired(true);
        m.add_query(Query::query(Name::from_str(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    #[tokio::test]
    async fn answers_names_on_the_network() {
        let names: Names = Arc::default();
        names
            .write()
            .unwrap()
            .names
            .insert("web".into(), vec!["10.0.0.2".parse().unwrap()]);
        let r = Message::from_vec(&answer(&query("Web.", RecordType::A), &one(&names, None)).await.unwrap()).unwrap();
        assert_eq!(r.id(), 7);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert_eq!(r.answers().len(), 1);
        assert_eq!(r.answers()[0].data(), &RData::A(A("10.0.0.2".parse().unwrap())));
        let r = Message::from_vec(
            &answer(&query("web.", RecordType::AAAA), &one(&names, None))
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!((r.response_code(), r.answers().len()), (ResponseCode::NoError, 0));
        names
            .write()
            .unwrap()
            .names6
            .insert("web".into(), vec!["fd00::2".parse().unwrap()]);
        let r = Message::from_vec(
            &answer(&query("web.", RecordType::AAAA), &one(&names, None))
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r.answers()[0].data(), &RData::AAAA(AAAA("fd00::2".parse().unwrap())));
        let r = Message::from_vec(
            &answer(&query("elsewhere.", RecordType::A), &one(&names, None))
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        assert!(answer(b"garbage", &one(&names, None)).await.is_none());
    }

    #[tokio::test]
    async fn links_are_the_linking_containers_own() {
        let names: Names = Arc::default();
        let (a, b): (Ipv4Addr, Ipv4Addr) = ("10.0.0.3".parse().unwrap(), "10.0.0.4".parse().unwrap());
        {
            let mut t = names.write().unwrap();
            t.names.insert("upstream".into(), vec!["10.0.0.2".parse().unwrap()]);
            t.links
                .insert(a, HashMap::from([("bar".to_string(), "upstream".to_string())]));
            t.links
                .insert(b, HashMap::from([("gone".to_string(), "nobody".to_string())]));
        }
        let ask = |from| {
            let names = names.clone();
            async move {
                Message::from_vec(&answer(&query("bar.", RecordType::A), &one(&names, from)).await.unwrap()).unwrap()
            }
        };
        let r = ask(Some(a)).await;
        assert_eq!(r.answers()[0].data(), &RData::A(A("10.0.0.2".parse().unwrap())));
        // Another container does not see a's alias.
        assert_eq!(ask(Some(b)).await.response_code(), ResponseCode::NXDomain);
        assert_eq!(ask(None).await.response_code(), ResponseCode::NXDomain);
        // A link to a container not (yet) on the network is no name.
        let r = Message::from_vec(
            &answer(&query("gone.", RecordType::A), &one(&names, Some(b)))
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
    }

    #[tokio::test]
    async fn a_scope_answers_from_every_network_of_the_asker() {
        let (front, back): (Names, Names) = (Arc::default(), Arc::default());
        let me_back: Ipv4Addr = "10.1.0.5".parse().unwrap();
        front
            .write()
            .unwrap()
            .names
            .insert("web".into(), vec!["10.0.0.2".parse().unwrap()]);
        {
            let mut b = back.write().unwrap();
            b.names.insert("db".into(), vec!["10.1.0.2".parse().unwrap()]);
            b.names.insert("web".into(), vec!["10.1.0.3".parse().unwrap()]);
            b.links
                .insert(me_back, HashMap::from([("store".to_string(), "db".to_string())]));
        }
        let scope = Scope {
            tables: vec![
                (front.clone(), Some("10.0.0.5".parse().unwrap())),
                (back.clone(), Some(me_back)),
            ],
            upstreams: Vec::new(),
        };
        let ask = |name: &'static str| {
            let scope = scope.clone();
            async move { Message::from_vec(&answer(&query(name, RecordType::A), &scope).await.unwrap()).unwrap() }
        };
        // A name on the second network, and a link alias there.
        assert_eq!(
            ask("db.").await.answers()[0].data(),
            &RData::A(A("10.1.0.2".parse().unwrap()))
        );
        assert_eq!(
            ask("store.").await.answers()[0].data(),
            &RData::A(A("10.1.0.2".parse().unwrap()))
        );
        // A name on both: the first network's address.
        assert_eq!(
            ask("web.").await.answers()[0].data(),
            &RData::A(A("10.0.0.2".parse().unwrap()))
        );
        // Nowhere: NXDOMAIN for a single label; with nowhere to forward, SERVFAIL for the rest.
        assert_eq!(ask("nobody.").await.response_code(), ResponseCode::NXDomain);
        assert_eq!(ask("example.org.").await.response_code(), ResponseCode::ServFail);
    }
}
