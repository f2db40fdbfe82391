//! Networking for real, through the real docker CLI against wharfd: bridges, veths and
//! namespaces made through netlink, nftables NAT and published ports, DNS on user networks.
//! Every packet stays on this machine: loopback, the test daemon's own bridges and the
//! containers' namespaces.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bridge_name, test_subnet, Wharfd};

fn daemon() -> Wharfd {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    w
}

fn inspect(w: &Wharfd, name: &str, fmt: &str) -> String {
    w.ok(&["inspect", "-f", fmt, name]).trim().to_string()
}

/// `GET /` from this host; the body, or the error.
fn http_get(addr: &str) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

fn wait_http(addr: &str) -> String {
    let start = Instant::now();
    loop {
        match http_get(addr) {
            Ok(b) if !b.is_empty() => return b,
            r if start.elapsed() > Duration::from_secs(10) => panic!("{addr}: {r:?}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A web server in a container answering `body`.
fn web(w: &Wharfd, args: &[&str], body: &str) -> String {
    let script = format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["busybox", "sh", "-c", &script]);
    w.ok(&a).trim().to_string()
}

fn gateway(w: &Wharfd) -> Ipv4Addr {
    inspect(w, "bridge", "{{(index .IPAM.Config 0).Gateway}}")
        .parse()
        .unwrap()
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn published_ports_from_loopback_host_addresses_and_containers() {
    let w = daemon();
    let port = 20000 + (std::process::id() % 5000) as u16 * 2;
    let p = |x: u16| (port + x).to_string();
    web(&w, &["--name", "web", "-p", &format!("{}:80", p(0))], "hello-web");
    let gw = gateway(&w);
    // From the host's loopback, and from one of the host's own addresses (the bridge's).
    assert_eq!(wait_http(&format!("127.0.0.1:{}", p(0))), "hello-web\n");
    assert_eq!(wait_http(&format!("{gw}:{}", p(0))), "hello-web\n");
    // From another container, by the host's address.
    let o = w.ok(&[
        "run",
        "--rm",
        "busybox",
        "wget",
        "-qO-",
        &format!("http://{gw}:{}/", p(0)),
    ]);
    assert_eq!(o, "hello-web\n");
    // docker port, ps, and the inspect template from the docs.
    assert_eq!(w.ok(&["port", "web"]), format!("80/tcp -> 0.0.0.0:{}\n", p(0)));
    assert_eq!(
        inspect(
            &w,
            "web",
            "{{range $p, $conf := .NetworkSettings.Ports}}{{$p}} -> {{(index $conf 0).HostPort}}{{end}}"
        ),
        format!("80/tcp -> {}", p(0))
    );
    assert_eq!(
        w.ok(&["ps", "--format", "{{.Ports}}"]).trim(),
        format!("0.0.0.0:{}->80/tcp", p(0))
    );
    let ip = inspect(&w, "web", "{{.NetworkSettings.IPAddress}}");
    assert!(
        ip.starts_with(&gw.to_string()[..gw.to_string().rfind('.').unwrap()]),
        "{ip} on {gw}"
    );
    assert_eq!(inspect(&w, "web", "{{.NetworkSettings.Gateway}}"), gw.to_string());
    assert!(inspect(&w, "web", "{{.NetworkSettings.MacAddress}}").starts_with("02:42:"));
    // The same host port twice is refused with Docker's words.
    let e = w.fails(&["run", "-d", "-p", &format!("{}:80", p(0)), "busybox", "true"]);
    assert!(e.contains("port is already allocated"), "{e}");
    // A 127.0.0.1 binding answers on loopback and not to other containers.
    web(
        &w,
        &["--name", "local", "-p", &format!("127.0.0.1:{}:80", p(1))],
        "only-local",
    );
    assert_eq!(wait_http(&format!("127.0.0.1:{}", p(1))), "only-local\n");
    let o = w.docker(&[
        "run",
        "--rm",
        "busybox",
        "wget",
        "-T",
        "2",
        "-qO-",
        &format!("http://{gw}:{}/", p(1)),
    ]);
    assert!(!o.status.success(), "a loopback-only port answered a container");
    // -P: every exposed port on a random port of the ephemeral range.
    web(&w, &["--name", "all", "-P", "--expose", "80"], "random");
    let hp: u16 = inspect(
        &w,
        "all",
        "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}",
    )
    .parse()
    .unwrap();
    assert!(hp >= 1024, "{hp}");
    assert_eq!(wait_http(&format!("127.0.0.1:{hp}")), "random\n");
    // UDP: a datagram to the published port reaches the container (its receiver runs in the
    // container's network namespace; busybox has no UDP server).
    w.ok(&[
        "run",
        "-d",
        "--name",
        "udp",
        "-p",
        &format!("{}:9999/udp", p(2)),
        "busybox",
        "sleep",
        "1000",
    ]);
    let pid = inspect(&w, "udp", "{{.State.Pid}}");
    let mut rx = Command::new("nsenter")
        .args(["-t", &pid, "-n", "python3", "-c"])
        .arg("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 9999)); s.settimeout(10); print(s.recvfrom(100)[0].decode(), flush=True)")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..20 {
        sock.send_to(b"datagram", format!("127.0.0.1:{}", p(2))).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        if rx.try_wait().unwrap().is_some() {
            break;
        }
    }
    let got = rx.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout), "datagram\n");
    // Stopped: the port is gone at once.
    w.ok(&["stop", "-t", "0", "web"]);
    assert!(http_get(&format!("127.0.0.1:{}", p(0))).is_err());
    assert_eq!(inspect(&w, "web", "{{.NetworkSettings.IPAddress}}"), "");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn user_networks_names_aliases_isolation_and_connect() {
    let w = daemon();
    let s1 = test_subnet(&w, 0);
    let s2 = test_subnet(&w, 1);
    let id = w.ok(&["network", "create", "--subnet", &s1, "--label", "team=a", "front"]);
    assert_eq!(id.trim().len(), 64);
    w.ok(&["network", "create", "--subnet", &s2, "back"]);
    let e = w.fails(&["network", "create", "front"]);
    assert!(e.contains("network with name front already exists"), "{e}");
    assert_eq!(
        inspect(&w, "front", "{{(index .IPAM.Config 0).Subnet}} {{.Labels.team}}"),
        format!("{s1} a")
    );
    // Names and aliases resolve on the network (its DNS answers on the gateway).
    let base = s1.trim_end_matches("0/24");
    let fixed = format!("{base}77");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "front",
        "--network-alias",
        "database",
        "--ip",
        &fixed,
        "busybox",
        "sleep",
        "1000",
    ]);
    let o = w.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W2 db >/dev/null && ping -c1 -W2 database >/dev/null && nslookup db",
    ]);
    assert!(o.contains(&fixed), "{o}");
    // Not across networks: neither the name nor the address.
    let o = w.docker(&[
        "run",
        "--rm",
        "--network",
        "back",
        "busybox",
        "ping",
        "-c1",
        "-W1",
        "db",
    ]);
    assert!(!o.status.success());
    let o = w.docker(&[
        "run",
        "--rm",
        "--network",
        "back",
        "busybox",
        "ping",
        "-c1",
        "-W1",
        &fixed,
    ]);
    assert!(!o.status.success(), "isolation between networks");
    // An --internal network reaches nothing beyond its bridge (not even the default bridge).
    let s3 = test_subnet(&w, 5);
    w.ok(&["network", "create", "--internal", "--subnet", &s3, "sealed"]);
    w.ok(&["run", "-d", "--name", "outside", "busybox", "sleep", "1000"]);
    let outside = inspect(&w, "outside", "{{.NetworkSettings.IPAddress}}");
    let o = w.docker(&[
        "run",
        "--rm",
        "--network",
        "sealed",
        "busybox",
        "ping",
        "-c1",
        "-W1",
        &outside,
    ]);
    assert!(!o.status.success(), "an internal network reached the default bridge");
    let o = w.ok(&["run", "--rm", "--network", "sealed", "busybox", "ip", "route"]);
    assert!(!o.contains("default"), "{o}");
    w.ok(&["rm", "-f", "outside"]);
    w.ok(&["network", "rm", "sealed"]);
    // --ip is kept across restarts.
    w.ok(&["restart", "-t", "0", "db"]);
    assert_eq!(
        inspect(&w, "db", "{{.NetworkSettings.Networks.front.IPAddress}}"),
        fixed
    );
    assert_eq!(
        inspect(&w, "db", "{{json .NetworkSettings.Networks.front.Aliases}}"),
        r#"["database"]"#
    );
    let containers = inspect(&w, "front", "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}");
    assert_eq!(containers, format!("db {fixed}/24"));
    // connect gives a running container a new interface; disconnect cuts it at once.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--network",
        "back",
        "busybox",
        "sleep",
        "1000",
    ]);
    w.ok(&["network", "connect", "--alias", "api", "front", "app"]);
    assert_eq!(
        w.ok(&["exec", "db", "sh", "-c", "ping -c1 -W2 api >/dev/null && echo reached"]),
        "reached\n"
    );
    w.ok(&["exec", "app", "ping", "-c1", "-W2", &fixed]);
    // The network's DNS answers over TCP too (a query with a two-byte length, RFC 7766).
    let gw = inspect(&w, "front", "{{(index .IPAM.Config 0).Gateway}}");
    let pid = inspect(&w, "app", "{{.State.Pid}}");
    let script = format!(
        "import socket,struct\n\
         q=b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x02db\\x00\\x00\\x01\\x00\\x01'\n\
         s=socket.create_connection(('{gw}',53),timeout=5)\n\
         s.sendall(struct.pack('>H',len(q))+q)\n\
         n=struct.unpack('>H',s.recv(2))[0]\n\
         r=b''\n\
         while len(r)<n: r+=s.recv(n-len(r))\n\
         print('.'.join(map(str,r[-4:])))"
    );
    let o = Command::new("nsenter")
        .args(["-t", &pid, "-n", "python3", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        fixed,
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // /etc/hosts follows: a line for each network's address, as Docker rewrites it.
    let ips = inspect(&w, "app", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}");
    let ips: Vec<&str> = ips.split_whitespace().collect();
    assert_eq!(ips.len(), 2, "{ips:?}");
    let hosts = w.ok(&["exec", "app", "cat", "/etc/hosts"]);
    for ip in &ips {
        assert!(hosts.contains(&format!("{ip}\t")), "{ip} missing: {hosts}");
    }
    w.ok(&["network", "disconnect", "front", "app"]);
    let o = w.docker(&["exec", "app", "ping", "-c1", "-W1", &fixed]);
    assert!(!o.status.success(), "still connected after disconnect");
    let left = inspect(&w, "app", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    let hosts = w.ok(&["exec", "app", "cat", "/etc/hosts"]);
    for ip in &ips {
        assert_eq!(hosts.contains(&format!("{ip}\t")), *ip == left, "{hosts}");
    }
    // --network container: shares the namespace.
    let shared = w.ok(&[
        "run",
        "--rm",
        "--network",
        "container:db",
        "busybox",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(shared.contains(&fixed), "{shared}");
    // In use: refused; predefined: forbidden.
    let e = w.fails(&["network", "rm", "front"]);
    assert!(e.contains("has active endpoints"), "{e}");
    let e = w.fails(&["network", "rm", "bridge"]);
    assert!(
        e.contains("bridge is a pre-defined network and cannot be removed"),
        "{e}"
    );
    let e = w.fails(&["run", "--rm", "--network", "nosuch", "busybox", "true"]);
    assert!(e.contains("network nosuch not found"), "{e}");
    let e = w.fails(&["run", "--rm", "--ip", "10.0.0.9", "busybox", "true"]);
    assert!(
        e.contains("user specified IP address is supported on user defined networks only"),
        "{e}"
    );
    w.ok(&["rm", "-f", "db", "app"]);
    assert_eq!(w.ok(&["network", "rm", "front", "back"]), "front\nback\n");
    let links = String::from_utf8(Command::new("ip").args(["-o", "link"]).output().unwrap().stdout).unwrap();
    let front_bridge = format!("br-{}", &id.trim()[..12]);
    assert!(!links.contains(&front_bridge), "{links}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn hosts_links_dns_options_and_concurrent_addresses() {
    let w = daemon();
    let s = test_subnet(&w, 2);
    w.ok(&["network", "create", "--subnet", &s, "many"]);
    let gw = gateway(&w);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--expose",
        "5432",
        "--expose",
        "53/udp",
        "--expose",
        "53",
        "-e",
        "SECRET=s3",
        "busybox",
        "sleep",
        "1000",
    ]);
    let hosts = w.ok(&[
        "run",
        "--rm",
        "--hostname",
        "box",
        "--add-host",
        "gw:host-gateway",
        "--add-host",
        "other:10.1.2.3",
        "--link",
        "srv:alias",
        "--dns",
        "10.9.9.9",
        "--dns-search",
        "example.test",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts /etc/resolv.conf",
    ]);
    let srv_ip = inspect(&w, "srv", "{{.NetworkSettings.IPAddress}}");
    assert!(hosts.contains(&format!("{gw}\tgw\n")), "{hosts}");
    assert!(hosts.contains("10.1.2.3\tother\n"), "{hosts}");
    assert!(hosts.contains(&format!("{srv_ip}\talias srv\n")), "{hosts}");
    assert!(hosts.contains("\tbox\n"), "{hosts}");
    assert!(
        hosts.contains("nameserver 10.9.9.9") && hosts.contains("search example.test"),
        "{hosts}"
    );
    // The legacy link variables, as Docker sets them.
    let env = w.ok(&["run", "--rm", "--name", "app", "--link", "srv:my-db", "busybox", "env"]);
    let mut vars: Vec<&str> = env.lines().filter(|l| l.starts_with("MY_DB_")).collect();
    vars.sort();
    let want = [
        "MY_DB_ENV_SECRET=s3".to_string(),
        "MY_DB_NAME=/app/my-db".to_string(),
        format!("MY_DB_PORT=tcp://{srv_ip}:53"),
        format!("MY_DB_PORT_53_TCP=tcp://{srv_ip}:53"),
        format!("MY_DB_PORT_53_TCP_ADDR={srv_ip}"),
        "MY_DB_PORT_53_TCP_PORT=53".to_string(),
        "MY_DB_PORT_53_TCP_PROTO=tcp".to_string(),
        format!("MY_DB_PORT_53_UDP=udp://{srv_ip}:53"),
        format!("MY_DB_PORT_53_UDP_ADDR={srv_ip}"),
        "MY_DB_PORT_53_UDP_PORT=53".to_string(),
        "MY_DB_PORT_53_UDP_PROTO=udp".to_string(),
        format!("MY_DB_PORT_5432_TCP=tcp://{srv_ip}:5432"),
        format!("MY_DB_PORT_5432_TCP_ADDR={srv_ip}"),
        "MY_DB_PORT_5432_TCP_PORT=5432".to_string(),
        "MY_DB_PORT_5432_TCP_PROTO=tcp".to_string(),
    ];
    assert_eq!(vars, want, "{env}");
    // 20 containers started at once on one network: 20 distinct addresses.
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let sock = w.sock.clone();
            std::thread::spawn(move || {
                let o = Command::new("docker")
                    .env("DOCKER_HOST", format!("unix://{}", sock.display()))
                    .args([
                        "run",
                        "-d",
                        "--name",
                        &format!("c{i:02}"),
                        "--network",
                        "many",
                        "busybox",
                        "sleep",
                        "1000",
                    ])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut ips: Vec<String> = (0..20)
        .map(|i| inspect(&w, &format!("c{i:02}"), "{{.NetworkSettings.Networks.many.IPAddress}}"))
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "{ips:?}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn nothing_is_left_after_shutdown_or_a_crash() {
    let mut w = daemon();
    let br = bridge_name(w.dir.path());
    let table = format!("wharf_{br}");
    let s = test_subnet(&w, 3);
    w.ok(&["network", "create", "--subnet", &s, "gone"]);
    let user_br = format!("br-{}", &inspect(&w, "gone", "{{.Id}}")[..12]);
    w.ok(&[
        "run", "-d", "--name", "ca", "-p", "80", "busybox", "httpd", "-f", "-p", "80",
    ]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "cb",
        "--network",
        "gone",
        "busybox",
        "sleep",
        "1000",
    ]);
    // A crash: the containers keep running; after the restart their ports and names work.
    w.kill9();
    w.spawn();
    let hp = inspect(
        &w,
        "ca",
        "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}",
    );
    let out = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("dport {hp} dnat")),
        "ports restored"
    );
    w.ok(&["rm", "-f", "ca", "cb"]);
    let netns = std::fs::read_dir(w.dir.path().join("exec/netns"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(netns, 0, "pinned namespaces left");
    // A clean shutdown with nothing running takes the bridges and the table away.
    w.stop();
    let link = |n: &str| {
        Command::new("ip")
            .args(["link", "show", n])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!link(&br), "the default bridge is left");
    assert!(!link(&user_br), "a network's bridge is left");
    let t = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    assert!(!t.status.success(), "the nftables table is left");
    let veths = String::from_utf8(
        Command::new("ip")
            .args(["-o", "link", "show", "master", &br])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(veths.trim().is_empty(), "{veths}");
    // And the next start makes them again.
    w.spawn();
    assert!(link(&br));
    let o = w.ok(&[
        "run",
        "--rm",
        "--network",
        "gone",
        "busybox",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(o.contains(s.trim_end_matches("0/24")), "{o}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn iptables_off_serves_published_ports_through_the_userland_proxy() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    // As dockerd: no NAT rules, the daemon itself listens on the published port.
    let w = Wharfd::start_with(&["--iptables=false"]);
    w.import_busybox("busybox:latest");
    let table = format!("wharf_{}", bridge_name(w.dir.path()));
    let port = free();
    web(&w, &["--name", "proxied", "-p", &format!("{port}:80")], "via-proxy");
    assert_eq!(wait_http(&format!("127.0.0.1:{port}")), "via-proxy\n");
    let tables = String::from_utf8(Command::new("nft").args(["list", "tables"]).output().unwrap().stdout).unwrap();
    assert!(!tables.contains(&table), "{tables}");
    // A second container cannot take the same host port.
    let e = w.fails(&["run", "-d", "-p", &format!("{port}:80"), "busybox", "true"]);
    assert!(e.contains("port is already allocated"), "{e}");
    w.ok(&["stop", "-t", "0", "proxied"]);
    assert!(
        http_get(&format!("127.0.0.1:{port}")).is_err(),
        "the proxy closes with the container"
    );
    // With the proxy off too, a published port is not reachable (as in Docker).
    let bare = Wharfd::start_with(&["--iptables=false", "--userland-proxy=false"]);
    bare.import_busybox("busybox:latest");
    let port = free();
    web(&bare, &["--name", "unreached", "-p", &format!("{port}:80")], "inside");
    let start = Instant::now();
    while bare
        .docker(&["exec", "unreached", "wget", "-qO-", "127.0.0.1:80"])
        .stdout
        .is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(10), "httpd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(http_get(&format!("127.0.0.1:{port}")).is_err());
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn user_network_links_aux_addresses_and_endpoint_settings() {
    let w = daemon();
    let s = test_subnet(&w, 7);
    let base = s.trim_end_matches("0/24");
    // dockerd takes any name; auxiliary addresses are kept out of every container's reach.
    w.ok(&[
        "network",
        "create",
        "--subnet",
        &s,
        "--aux-address",
        &format!("router={base}2"),
        "my net",
    ]);
    assert_eq!(
        inspect(&w, "my net", "{{json (index .IPAM.Config 0).AuxiliaryAddresses}}"),
        format!(r#"{{"router":"{base}2"}}"#)
    );
    // A link on a user network is an alias only its container resolves, to a container that
    // may come later.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "linker",
        "--network",
        "my net",
        "--link",
        "upstream:bar",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(
        inspect(
            &w,
            "linker",
            r#"{{json (index .NetworkSettings.Networks "my net").Links}}"#
        ),
        r#"["upstream:bar"]"#
    );
    // The first address handed out skips the gateway (.1) and the auxiliary one (.2).
    assert_eq!(
        inspect(
            &w,
            "linker",
            r#"{{(index .NetworkSettings.Networks "my net").IPAddress}}"#
        ),
        format!("{base}3")
    );
    let none = w.docker(&["exec", "linker", "nslookup", "bar"]);
    assert!(!none.status.success(), "bar resolved before upstream existed");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "upstream",
        "--network",
        "my net",
        "busybox",
        "sleep",
        "600",
    ]);
    let up_ip = inspect(
        &w,
        "upstream",
        r#"{{(index .NetworkSettings.Networks "my net").IPAddress}}"#,
    );
    let found = w.ok(&["exec", "linker", "nslookup", "bar"]);
    assert!(found.contains(&up_ip), "{found}");
    // Only the linking container has the alias.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "my net",
        "busybox",
        "sleep",
        "600",
    ]);
    assert!(!w.docker(&["exec", "other", "nslookup", "bar"]).status.success());
    // Endpoint settings a client gives are kept and shown, as dockerd shows them.
    let body = serde_json::json!({
        "Image": "busybox", "Cmd": ["sleep", "600"], "MacAddress": "02:42:ac:11:00:0a",
        "HostConfig": {"NetworkMode": "bridge"},
        "NetworkingConfig": {"EndpointsConfig": {"bridge": {
            "IPAMConfig": {"LinkLocalIPs": ["169.254.8.8"]}, "DriverOpts": {"com.example.setting": "on"}
        }}}
    });
    let (status, _, out) = w.http("POST", "/containers/create?name=ep", body.to_string().as_bytes());
    assert!(status.contains("201"), "{status} {}", String::from_utf8_lossy(&out));
    w.ok(&["start", "ep"]);
    assert_eq!(
        inspect(&w, "ep", "{{.NetworkSettings.Networks.bridge.MacAddress}} {{json .NetworkSettings.Networks.bridge.IPAMConfig.LinkLocalIPs}} {{json .NetworkSettings.Networks.bridge.DriverOpts}}"),
        r#"02:42:ac:11:00:0a ["169.254.8.8"] {"com.example.setting":"on"}"#
    );
    let mac = w.ok(&["exec", "ep", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(mac.trim(), "02:42:ac:11:00:0a");
    w.ok(&["rm", "-f", "linker", "upstream", "other", "ep"]);
    w.ok(&["network", "rm", "my net"]);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn ipv6_networks_address_route_and_resolve() {
    let w = daemon();
    let s = test_subnet(&w, 6);
    let s6 = format!("fd42:{:x}:{:x}::/64", 0x100 + w.index, std::process::id() % 0xffff);
    let base6 = s6.trim_end_matches("/64");
    w.ok(&["network", "create", "--ipv6", "--subnet", &s, "--subnet", &s6, "v6"]);
    assert_eq!(
        inspect(
            &w,
            "v6",
            "{{.EnableIPv6}} {{(index .IPAM.Config 1).Subnet}} {{(index .IPAM.Config 1).Gateway}}"
        ),
        format!("true {s6} {base6}1")
    );
    w.ok(&[
        "run",
        "-d",
        "--name",
        "six-a",
        "--network",
        "v6",
        "busybox",
        "sleep",
        "600",
    ]);
    let fixed = format!("{base6}99");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "six-b",
        "--network",
        "v6",
        "--ip6",
        &fixed,
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(
        inspect(&w, "six-b", "{{.NetworkSettings.Networks.v6.IPAMConfig.IPv6Address}} {{.NetworkSettings.Networks.v6.GlobalIPv6Address}}/{{.NetworkSettings.Networks.v6.GlobalIPv6PrefixLen}} {{.NetworkSettings.Networks.v6.IPv6Gateway}}"),
        format!("{fixed} {fixed}/64 {base6}1")
    );
    let a6 = inspect(&w, "six-a", "{{.NetworkSettings.Networks.v6.GlobalIPv6Address}}");
    assert_eq!(a6, format!("{base6}2"));
    // The address is on the interface, the default route goes through the bridge, and the
    // containers reach each other and the gateway over IPv6; the DNS answers AAAA.
    assert!(w
        .ok(&["exec", "six-a", "ip", "-6", "addr", "show", "eth0"])
        .contains(&format!("{a6}/64")));
    assert!(w
        .ok(&["exec", "six-a", "ip", "-6", "route"])
        .contains(&format!("default via {base6}1")));
    w.ok(&["exec", "six-a", "ping6", "-c1", "-W2", &fixed]);
    w.ok(&["exec", "six-a", "ping6", "-c1", "-W2", &format!("{base6}1")]);
    assert!(w
        .ok(&["exec", "six-a", "nslookup", "-type=aaaa", "six-b"])
        .contains(&fixed));
    assert!(w.ok(&["exec", "six-b", "cat", "/etc/hosts"]).contains(&fixed));
    // Leaving and joining again keeps the requested address.
    w.ok(&["network", "disconnect", "v6", "six-b"]);
    w.ok(&["network", "connect", "--ip6", &fixed, "v6", "six-b"]);
    w.ok(&["exec", "six-a", "ping6", "-c1", "-W2", &fixed]);
    let e = w.fails(&["run", "--rm", "--network", "v6", "--ip6", &fixed, "busybox", "true"]);
    assert!(e.contains("Address already in use"), "{e}");
    // Without --ipv6 an IPv6 subnet is kept and shown, and no container gets an address of it.
    let s2 = test_subnet(&w, 8);
    w.ok(&["network", "create", "--subnet", &s2, "--subnet", "fd43::/64", "kept"]);
    assert_eq!(inspect(&w, "kept", "{{.EnableIPv6}} {{len .IPAM.Config}}"), "false 2");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "six-c",
        "--network",
        "kept",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(
        inspect(&w, "six-c", "{{.NetworkSettings.Networks.kept.GlobalIPv6Address}}"),
        ""
    );
    w.ok(&["rm", "-f", "six-a", "six-b", "six-c"]);
    w.ok(&["network", "rm", "v6", "kept"]);
}

/// A stand-in upstream resolver on this host's loopback: `outside.test` is 10.123.45.67,
/// every other name NXDOMAIN. It answers until the test ends.
fn loopback_upstream(addr: Ipv4Addr) {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
    let sock = std::net::UdpSocket::bind((addr, 53)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .add_queries(q.queries().to_vec());
            match q.queries().first() {
                Some(qq) if qq.name().to_ascii() == "outside.test." && qq.query_type() == RecordType::A => {
                    r.add_answer(Record::from_rdata(
                        qq.name().clone(),
                        60,
                        RData::A(A::new(10, 123, 45, 67)),
                    ));
                }
                Some(qq) if qq.name().to_ascii() == "outside.test." => {}
                _ => {
                    r.set_response_code(ResponseCode::NXDomain);
                }
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), peer);
        }
    });
}

/// Compose's pattern: a container on several networks at create (`--network a --network b`
/// sends them all in `EndpointsConfig`), the default route chosen by `GwPriority` (then by
/// name), and one nameserver, 127.0.0.11, that answers for every network the container is on
/// now, joined later or left, forwards the rest to its `--dns` servers (here a stand-in on
/// this host's loopback) and leaves port 53 to the container.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn several_networks_at_create_and_names_across_all_of_them() {
    let w = daemon();
    let (sa, sb, sc) = (test_subnet(&w, 3), test_subnet(&w, 4), test_subnet(&w, 5));
    w.ok(&["network", "create", "--subnet", &sa, "mna"]);
    w.ok(&["network", "create", "--subnet", &sb, "mnb"]);
    w.ok(&["network", "create", "--subnet", &sc, "mnc"]);
    let gw = |n: &str| inspect(&w, n, "{{(index .IPAM.Config 0).Gateway}}");
    let sleeper = |name: &str, net: &str, extra: &[&str]| {
        let mut a = vec!["run", "-d", "--name", name, "--network", net];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["busybox", "sleep", "1000"]);
        w.ok(&a);
    };
    sleeper("peer-a", "mna", &[]);
    sleeper("peer-b", "mnb", &["--network-alias", "store"]);
    sleeper("peer-c", "mnc", &[]);
    let upstream: Ipv4Addr = Ipv4Addr::new(127, 0, 77, (w.index % 200 + 2) as u8);
    loopback_upstream(upstream);
    sleeper("multi", "mna", &["--network", "mnb", "--dns", &upstream.to_string()]);
    assert_eq!(
        inspect(
            &w,
            "multi",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{if $v.IPAddress}}ip {{end}}{{end}}"
        ),
        "mna=ip mnb=ip"
    );
    // One nameserver; Docker's comment names where the rest goes.
    let conf = w.ok(&["exec", "multi", "cat", "/etc/resolv.conf"]);
    assert_eq!(conf.matches("nameserver").count(), 1, "{conf}");
    assert!(conf.contains("nameserver 127.0.0.11\n"), "{conf}");
    assert!(conf.contains(&format!("# ExtServers: [{upstream}]")), "{conf}");
    let ip_of = |c: &str, n: &str| {
        inspect(
            &w,
            c,
            &format!("{{{{(index .NetworkSettings.Networks \"{n}\").IPAddress}}}}"),
        )
    };
    let lookup = |name: &str| w.docker(&["exec", "multi", "nslookup", name]);
    let resolves = |name: &str, ip: &str| {
        let o = lookup(name);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(o.status.success() && out.contains(ip), "{name} should be {ip}: {out}");
    };
    resolves("peer-a", &ip_of("peer-a", "mna"));
    resolves("store", &ip_of("peer-b", "mnb"));
    resolves("peer-b", &ip_of("peer-b", "mnb"));
    w.ok(&["exec", "multi", "ping", "-c1", "-W2", "store"]);
    // Names with dots go to the container's own servers, from the daemon's namespace.
    resolves("outside.test", "10.123.45.67");
    assert!(!lookup("nowhere.test").status.success());
    // Not on mnc yet; joined, the same nameserver answers for it; left, no more.
    assert!(!lookup("peer-c").status.success());
    w.ok(&["network", "connect", "mnc", "multi"]);
    resolves("peer-c", &ip_of("peer-c", "mnc"));
    w.ok(&["network", "disconnect", "mnb", "multi"]);
    assert!(!lookup("store").status.success());
    resolves("peer-a", &ip_of("peer-a", "mna"));
    // Port 53 is the container's own: a server of its own binds it, and names still resolve.
    w.ok(&["exec", "-d", "multi", "nc", "-ll", "-p", "53", "-e", "true"]);
    let start = Instant::now();
    while !w.ok(&["exec", "multi", "netstat", "-ltn"]).contains(":53 ") {
        assert!(start.elapsed() < Duration::from_secs(5), "nc never listened on port 53");
        std::thread::sleep(Duration::from_millis(50));
    }
    resolves("peer-c", &ip_of("peer-c", "mnc"));
    // The default route: the highest GwPriority, else the first name in order.
    let route = |nets: &[&str]| {
        let mut a = vec!["run", "--rm"];
        for n in nets {
            a.extend_from_slice(&["--network", n]);
        }
        a.extend_from_slice(&["busybox", "ip", "route", "show", "default"]);
        w.ok(&a)
    };
    assert!(route(&["mnb", "mna"]).contains(&format!("via {} ", gw("mna"))));
    assert!(route(&["mna", "name=mnb,gw-priority=10"]).contains(&format!("via {} ", gw("mnb"))));
    // Joining a network with a higher priority takes the route over; leaving it gives it back.
    w.ok(&["network", "connect", "--gw-priority", "5", "mnb", "multi"]);
    let def = || w.ok(&["exec", "multi", "ip", "route", "show", "default"]);
    assert!(def().contains(&format!("via {} ", gw("mnb"))), "{}", def());
    assert_eq!(
        inspect(&w, "multi", "{{(index .NetworkSettings.Networks \"mnb\").GwPriority}}"),
        "5"
    );
    w.ok(&["network", "disconnect", "mnb", "multi"]);
    assert!(def().contains(&format!("via {} ", gw("mna"))), "{}", def());
    // A daemon restarted under running containers serves their resolvers again.
    let ip_a = ip_of("peer-a", "mna");
    let mut w = w;
    w.kill9();
    w.spawn();
    for (name, ip) in [("peer-a", ip_a.as_str()), ("outside.test", "10.123.45.67")] {
        let out = w.ok(&["exec", "multi", "nslookup", name]);
        assert!(out.contains(ip), "{name} after the restart: {out}");
    }
    // Before API 1.44, several networks at create are refused, as dockerd refuses them.
    let body = br#"{"Image":"busybox","HostConfig":{"NetworkMode":"mna"},"NetworkingConfig":{"EndpointsConfig":{"mna":{},"mnb":{}}}}"#;
    let (st, _, b) = w.http("POST", "/v1.43/containers/create", body);
    assert!(st.contains(" 400 "), "{st}");
    assert!(
        String::from_utf8_lossy(&b).contains("Container cannot be connected to network endpoints: mna, mnb"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    w.ok(&["rm", "-f", "multi", "peer-a", "peer-b", "peer-c"]);
    w.ok(&["network", "rm", "mna", "mnb", "mnc"]);
}
