//! The userland proxy: with `--iptables=false` and `--userland-proxy` (Docker's default) no NAT
//! rule exists, and a published port is served by the daemon itself, as dockerd's
//! `docker-proxy` does: a listener on the host address and port that copies every TCP
//! connection, and relays every UDP flow, to the container's address. With both off, a
//! published port is not reachable, as in Docker.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::nft::PortRule;

/// The listeners of one published port; dropping it closes them.
#[derive(Debug)]
pub struct Proxy {
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An idle UDP flow is forgotten after this long (Docker's proxy uses 90 s).
const UDP_IDLE: Duration = Duration::from_secs(90);

/// Listen for `rule` and forward to the container.
pub async fn start(rule: &PortRule) -> std::io::Result<Proxy> {
    let bind = SocketAddr::from((rule.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), rule.host_port));
    let to = SocketAddr::from((rule.ip, rule.port));
    let task = if rule.proto == "udp" {
        let sock = Arc::new(UdpSocket::bind(bind).await?);
        tokio::spawn(relay_udp(sock, to))
    } else {
        let l = TcpListener::bind(bind).await?;
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = l.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        })
    };
    Ok(Proxy { task })
}

/// One upstream socket per client address; replies go back from the listening socket.
async fn relay_udp(sock: Arc<UdpSocket>, to: SocketAddr) {
    let flows: Arc<tokio::sync::Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let up = {
            let mut f = flows.lock().await;
            match f.get(&client) {
                Some(u) => u.clone(),
                None => {
                    let Ok(u) = UdpSocket::bind("0.0.0.0:0").await else {
                        continue;
                    };
                    if u.connect(to).await.is_err() {
                        continue;
                    }
                    let u = Arc::new(u);
                    f.insert(client, u.clone());
                    let (u2, back, flows2) = (u.clone(), sock.clone(), flows.clone());
                    tokio::spawn(async move {
                        let mut b = vec![0u8; 65536];
                        while let Ok(Ok(k)) = tokio::time::timeout(UDP_IDLE, u2.recv(&mut b)).await {
                            let _ = back.send_to(&b[..k], client).await;
                        }
                        flows2.lock().await.remove(&client);
                    });
                    u
                }
            }
        };
        let _ = up.send(&buf[..n]).await;
    }
}
