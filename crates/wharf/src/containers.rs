//! Container commands besides `create`/`run`: `ps`, `start`, `stop`, `kill`, `restart`,
//! `pause`, `unpause`, `rm`, `logs`, `exec`, `wait`, `rename`, `top`, `attach`, `update`, with
//! the docker CLI's output and exit codes.

use clap::Args;
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{q, Body, Client};
use crate::error::{CliError, Result};
use crate::format::{tabwrite, Format};
use crate::images::{ellipsis, filters_param};
use crate::run::{attach_stream, follow_resize, Session};
use crate::stream::{self, End};
use crate::{ago, short_id, stdout, term};

/// The docker CLI's `PORTS` column: mappings to other host ports listed one by one, the rest
/// grouped into ranges per address and protocol, sorted as the docker CLI sorts them.
fn displayable_ports(ports: &[Value]) -> String {
    struct P {
        ip: String,
        private: u64,
        public: u64,
        typ: String,
    }
    let mut v: Vec<P> = ports
        .iter()
        .map(|p| P {
            ip: p["IP"].as_str().unwrap_or("").to_string(),
            private: p["PrivatePort"].as_u64().unwrap_or(0),
            public: p["PublicPort"].as_u64().unwrap_or(0),
            typ: p["Type"].as_str().unwrap_or("tcp").to_string(),
        })
        .collect();
    v.sort_by(|a, b| (a.private, &a.ip, a.public, &a.typ).cmp(&(b.private, &b.ip, b.public, &b.typ)));
    let form = |key: &str, first: u64, last: u64| {
        let (ip, typ) = match key.split_once('/') {
            Some((ip, t)) => (ip, t),
            None => ("", key),
        };
        let mut g = first.to_string();
        if first != last {
            g = format!("{g}-{last}");
        }
        if !ip.is_empty() {
            g = format!("{ip}:{g}->{g}");
        }
        format!("{g}/{typ}")
    };
    let mut groups: Vec<(String, u64, u64)> = Vec::new();
    let mut result = Vec::new();
    let mut mappings = Vec::new();
    for p in &v {
        let mut key = p.typ.clone();
        if !p.ip.is_empty() {
            if p.public != p.private {
                let host = if p.ip.contains(':') {
                    format!("[{}]", p.ip)
                } else {
                    p.ip.clone()
                };
                mappings.push(format!("{host}:{}->{}/{}", p.public, p.private, p.typ));
                continue;
            }
            key = format!("{}/{}", p.ip, p.typ);
        }
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            None => groups.push((key, p.private, p.private)),
            Some(g) if p.private == g.2 + 1 => g.2 = p.private,
            Some(g) => {
                result.push(form(&g.0, g.1, g.2));
                g.1 = p.private;
                g.2 = p.private;
            }
        }
    }
    for (k, a, b) in &groups {
        result.push(form(k, *a, *b));
    }
    result.extend(mappings);
    result.join(", ")
}

/// `wharf ps`.
#[derive(Args, Debug)]
pub struct PsCmd {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long, default_value_t = -1, allow_hyphen_values = true)]
    last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    latest: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
}

impl PsCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let limit = if self.latest { 1 } else { self.last };
        let filters = filters_param(&self.filter, None)?;
        let list = c
            .get(&format!(
                "/containers/json?all={}&limit={limit}&size={}{filters}",
                (self.all || limit > 0) as u8,
                self.size as u8
            ))
            .await?;
        let items: Vec<&Value> = list.as_array().map(|a| a.iter().collect()).unwrap_or_default();
        if self.quiet {
            let out: String = items
                .iter()
                .map(|i| {
                    let id = i["Id"].as_str().unwrap_or_default();
                    format!("{}\n", if self.no_trunc { id.to_string() } else { short_id(id) })
                })
                .collect();
            return stdout(&out);
        }
        let rows: Vec<Value> = items.iter().map(|i| ps_row(i, self.no_trunc)).collect();
        let default = if self.size {
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
        } else {
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
        };
        let f = Format::parse(self.format.as_deref().unwrap_or(default))?;
        stdout(&f.list(
            &rows,
            &[
                ("ID", "CONTAINER ID"),
                ("Image", "IMAGE"),
                ("Command", "COMMAND"),
                ("CreatedAt", "CREATED AT"),
                ("RunningFor", "CREATED"),
                ("Status", "STATUS"),
                ("State", "STATE"),
                ("Ports", "PORTS"),
                ("Names", "NAMES"),
                ("Labels", "LABELS"),
                ("Size", "SIZE"),
                ("Mounts", "MOUNTS"),
                ("Networks", "NETWORKS"),
            ],
        )?)
    }
}

fn ps_row(i: &Value, no_trunc: bool) -> Value {
    let id = i["Id"].as_str().unwrap_or_default();
    let command = i["Command"].as_str().unwrap_or_default();
    let command = if no_trunc {
        command.to_string()
    } else {
        ellipsis(command, 20)
    };
    let names: Vec<String> = i["Names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str())
                .map(|n| n.trim_start_matches('/').to_string())
                .filter(|n| no_trunc || !n.contains('/'))
                .collect()
        })
        .unwrap_or_default();
    let labels: Vec<String> = i["Labels"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    let created = i["Created"].as_i64().unwrap_or(0);
    let size = match (i["SizeRw"].as_f64(), i["SizeRootFs"].as_f64()) {
        (Some(rw), Some(root)) => format!(
            "{} (virtual {})",
            wharf_units::human_size(rw),
            wharf_units::human_size(root)
        ),
        (Some(rw), None) => wharf_units::human_size(rw),
        _ => "0B".into(),
    };
    let networks: Vec<String> = i["NetworkSettings"]["Networks"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    json!({
        "ID": if no_trunc { id.to_string() } else { short_id(id) },
        "Image": i["Image"],
        "Command": format!("\"{command}\""),
        "CreatedAt": crate::local_time(created),
        "RunningFor": ago(created),
        "Status": i["Status"],
        "State": i["State"],
        "Ports": displayable_ports(i["Ports"].as_array().map(|a| a.as_slice()).unwrap_or(&[])),
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Size": size,
        "Mounts": "",
        "Networks": networks.join(","),
    })
}

/// A command over several containers that prints each name and reports each failure.
pub(crate) async fn each<F, Fut>(names: &[String], f: F) -> Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    each_print(names, |n| {
        let fut = f(n.clone());
        async move { fut.await.map(|()| n) }
    })
    .await
}

/// Like [`each`], printing what each call returns.
pub(crate) async fn each_print<F, Fut>(names: &[String], f: F) -> Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<String>>,
{
    let mut failed = false;
    for n in names {
        match f(n.clone()).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        Err(CliError::Status(1))
    } else {
        Ok(())
    }
}

/// `wharf stop` and `wharf restart`.
#[derive(Args, Debug)]
pub struct StopCmd {
    /// Signal to send to the container
    #[arg(short, long)]
    signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short, long = "timeout", allow_hyphen_values = true)]
    time: Option<i64>,
    /// Containers
    #[arg(required = true)]
    containers: Vec<String>,
}

impl StopCmd {
    /// Run it as `stop` (`restart` when `restart`).
    pub async fn run(self, c: &Client, restart: bool) -> Result<()> {
        let mut params = Vec::new();
        if let Some(t) = self.time {
            params.push(format!("t={t}"));
        }
        if let Some(s) = &self.signal {
            params.push(format!("signal={}", q(s)));
        }
        let verb = if restart { "restart" } else { "stop" };
        let params = params.join("&");
        each(&self.containers, |n| {
            let path = format!("/containers/{}/{verb}?{params}", q(&n));
            async move { c.post(&path).await }
        })
        .await
    }
}

/// `wharf kill`.
#[derive(Args, Debug)]
pub struct KillCmd {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    /// Containers
    #[arg(required = true)]
    containers: Vec<String>,
}

impl KillCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let sig = q(&self.signal);
        each(&self.containers, |n| {
            let path = format!("/containers/{}/kill?signal={sig}", q(&n));
            async move { c.post(&path).await }
        })
        .await
    }
}

/// `pause`, `unpause`, `wait`-free one-verb commands.
#[derive(Args, Debug)]
pub struct NamesCmd {
    /// Containers
    #[arg(required = true)]
    containers: Vec<String>,
}

impl NamesCmd {
    /// POST `/containers/{name}/{verb}` for each.
    pub async fn run(self, c: &Client, verb: &str) -> Result<()> {
        each(&self.containers, |n| {
            let path = format!("/containers/{}/{verb}", q(&n));
            async move { c.post(&path).await }
        })
        .await
    }

    /// `wharf wait`: each container's exit code.
    pub async fn wait(self, c: &Client) -> Result<()> {
        each_print(&self.containers, |n| async move {
            let v = c
                .json(Method::POST, &format!("/containers/{}/wait", q(&n)), None)
                .await?;
            Ok(v["StatusCode"].as_i64().unwrap_or(-1).to_string())
        })
        .await
    }
}

/// `wharf rm`.
#[derive(Args, Debug)]
pub struct RmCmd {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    force: bool,
    /// Remove the specified link
    #[arg(short, long)]
    link: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    volumes: bool,
    /// Containers
    #[arg(required = true)]
    containers: Vec<String>,
}

impl RmCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let params = format!(
            "force={}&v={}&link={}",
            self.force as u8, self.volumes as u8, self.link as u8
        );
        each(&self.containers, |n| {
            let path = format!("/containers/{}?{params}", q(&n));
            async move { c.json(Method::DELETE, &path, None).await.map(|_| ()) }
        })
        .await
    }
}

/// `wharf start`.
#[derive(Args, Debug)]
pub struct StartCmd {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    detach_keys: Option<String>,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    /// Containers
    #[arg(required = true)]
    containers: Vec<String>,
}

impl StartCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        if !(self.attach || self.interactive) {
            return each(&self.containers, |n| {
                let path = format!("/containers/{}/start", q(&n));
                async move { c.post(&path).await }
            })
            .await;
        }
        if self.containers.len() > 1 {
            return Err(CliError::Usage(
                "you cannot start and attach multiple containers at once".into(),
            ));
        }
        let name = &self.containers[0];
        let info = c.get(&format!("/containers/{}/json", q(name))).await?;
        let id = info["Id"].as_str().unwrap_or(name).to_string();
        let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
        let stdin = self.interactive && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
        let stream = attach_stream(c, &id, stdin, tty, self.detach_keys.as_deref()).await?;
        let waiter = c
            .call(
                Method::POST,
                &format!("/containers/{id}/wait?condition=next-exit"),
                Body::empty(),
            )
            .await?;
        let raw = (tty && stdin).then(term::RawGuard::new);
        c.post(&format!("/containers/{id}/start")).await?;
        let session = Session {
            id: &id,
            tty,
            stdin,
            detach_keys: self.detach_keys.as_deref(),
            sig_proxy: true,
        };
        session.follow(c, stream, waiter, raw).await
    }
}

/// `wharf attach`.
#[derive(Args, Debug)]
pub struct AttachCmd {
    /// Override the key sequence for detaching a container
    #[arg(long)]
    detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long)]
    no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sig_proxy: bool,
    /// Container
    container: String,
}

impl AttachCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let info = c.get(&format!("/containers/{}/json", q(&self.container))).await?;
        if info["State"]["Running"].as_bool() != Some(true) {
            return Err(CliError::Usage(
                "You cannot attach to a stopped container, start it first".into(),
            ));
        }
        let id = info["Id"].as_str().unwrap_or_default().to_string();
        let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
        let stdin = !self.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
        let stream = attach_stream(c, &id, stdin, tty, self.detach_keys.as_deref()).await?;
        let waiter = c
            .call(Method::POST, &format!("/containers/{id}/wait"), Body::empty())
            .await?;
        let raw = (tty && stdin).then(term::RawGuard::new);
        let session = Session {
            id: &id,
            tty,
            stdin,
            detach_keys: self.detach_keys.as_deref(),
            sig_proxy: self.sig_proxy,
        };
        session.follow(c, stream, waiter, raw).await
    }
}

/// `wharf logs`.
#[derive(Args, Debug)]
pub struct LogsCmd {
    /// Show extra details provided to logs
    #[arg(long)]
    details: bool,
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Show logs since timestamp or relative (e.g. 42m)
    #[arg(long)]
    since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    /// Show logs before a timestamp or relative (e.g. 42m)
    #[arg(long)]
    until: Option<String>,
    /// Container
    container: String,
}

/// Docker's relative times ("42m", "1h30m" …) as Unix seconds; timestamps pass through.
fn time_param(s: &str) -> String {
    let units = [('s', 1i64), ('m', 60), ('h', 3600)];
    let mut total = 0i64;
    let mut num = String::new();
    let mut ok = !s.is_empty();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
        } else if let Some((_, mult)) = units.iter().find(|(u, _)| *u == ch) {
            total += num.parse::<i64>().unwrap_or(0) * mult;
            num.clear();
        } else {
            ok = false;
            break;
        }
    }
    if ok && num.is_empty() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        (now - total).to_string()
    } else {
        q(s)
    }
}

impl LogsCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let info = c.get(&format!("/containers/{}/json", q(&self.container))).await?;
        let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
        let mut path = format!(
            "/containers/{}/logs?stdout=1&stderr=1&follow={}&timestamps={}&details={}&tail={}",
            q(&self.container),
            self.follow as u8,
            self.timestamps as u8,
            self.details as u8,
            q(&self.tail)
        );
        if let Some(s) = &self.since {
            path.push_str(&format!("&since={}", time_param(s)));
        }
        if let Some(u) = &self.until {
            path.push_str(&format!("&until={}", time_param(u)));
        }
        let res = c.call(Method::GET, &path, Body::empty()).await?;
        stream::pump(crate::client::Hijacked::Body(res.into_body()), tty, false, &[]).await?;
        Ok(())
    }
}

/// `wharf exec`.
#[derive(Args, Debug)]
pub struct ExecCmd {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// The container, then the command and its arguments
    #[arg(required = true, num_args = 2.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "CONTAINER COMMAND [ARG...]")]
    argv: Vec<String>,
}

impl ExecCmd {
    /// Run it; exits with the command's exit code.
    pub async fn run(self, c: &Client) -> Result<()> {
        let name = &self.argv[0];
        crate::runflags::unknown_flag(name)?;
        let mut cfg = json!({
            "AttachStdin": self.interactive && !self.detach,
            "AttachStdout": !self.detach,
            "AttachStderr": !self.detach,
            "Tty": self.tty,
            "Privileged": self.privileged,
            "Env": self.env,
            "Cmd": &self.argv[1..],
        });
        if let Some(u) = &self.user {
            cfg["User"] = json!(u);
        }
        if let Some(w) = &self.workdir {
            cfg["WorkingDir"] = json!(w);
        }
        if let Some(k) = &self.detach_keys {
            cfg["DetachKeys"] = json!(k);
        }
        if let Some((h, w)) = term::size().filter(|_| self.tty) {
            cfg["ConsoleSize"] = json!([h, w]);
        }
        let created = c
            .json(Method::POST, &format!("/containers/{}/exec", q(name)), Some(&cfg))
            .await?;
        let id = created["Id"].as_str().unwrap_or_default().to_string();
        if self.detach {
            return c
                .json(
                    Method::POST,
                    &format!("/exec/{id}/start"),
                    Some(&json!({"Detach": true, "Tty": self.tty})),
                )
                .await
                .map(|_| ());
        }
        let raw = (self.tty && self.interactive).then(term::RawGuard::new);
        let stream = c
            .hijack(
                &format!("/exec/{id}/start"),
                Some(&json!({"Detach": false, "Tty": self.tty})),
            )
            .await?;
        let resizer = if self.tty {
            follow_resize(c, format!("/exec/{id}/resize"))
        } else {
            None
        };
        let keys = stream::detach_keys(self.detach_keys.as_deref());
        let end = stream::pump(stream, self.tty, self.interactive, &keys).await?;
        drop(raw);
        if let Some(r) = resizer {
            r.abort();
        }
        if end == End::Detached {
            return Err(CliError::Protocol("read escape sequence".into()));
        }
        let info = c.get(&format!("/exec/{id}/json")).await?;
        match info["ExitCode"].as_i64().unwrap_or(0) {
            0 => Ok(()),
            n => Err(CliError::Status(n as i32)),
        }
    }
}

/// `wharf rename`.
#[derive(Args, Debug)]
pub struct RenameCmd {
    /// Container
    container: String,
    /// New name
    new_name: String,
}

impl RenameCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        c.post(&format!(
            "/containers/{}/rename?name={}",
            q(&self.container),
            q(&self.new_name)
        ))
        .await
    }
}

/// `wharf top`.
#[derive(Args, Debug)]
pub struct TopCmd {
    /// Container
    container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

impl TopCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let mut path = format!("/containers/{}/top", q(&self.container));
        if !self.ps_args.is_empty() {
            path.push_str(&format!("?ps_args={}", q(&self.ps_args.join(" "))));
        }
        let v = c.get(&path).await?;
        let mut lines = Vec::new();
        let titles: Vec<&str> = v["Titles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str())
            .collect();
        lines.push(titles.join("\t"));
        for p in v["Processes"].as_array().into_iter().flatten() {
            let cells: Vec<&str> = p.as_array().into_iter().flatten().filter_map(|t| t.as_str()).collect();
            lines.push(cells.join("\t"));
        }
        stdout(&tabwrite(&lines.join("\n")))
    }
}

/// `wharf update`.
#[derive(Args, Debug)]
pub struct UpdateCmd {
    #[command(flatten)]
    resources: crate::run::ResourceFlags,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    /// Containers
    #[arg(required = true)]
    containers: Vec<String>,
}

impl UpdateCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let mut body = json!({});
        self.resources.apply(&mut body)?;
        if let Some(r) = &self.restart {
            let (name, n) = r.split_once(':').unwrap_or((r, "0"));
            body["RestartPolicy"] = json!({"Name": name, "MaximumRetryCount": n.parse::<i64>().unwrap_or(0)});
        }
        let body = &body;
        each(&self.containers, |n| {
            let path = format!("/containers/{}/update", q(&n));
            async move { c.json(Method::POST, &path, Some(body)).await.map(|_| ()) }
        })
        .await
    }
}

/// `wharf diff`.
#[derive(Args, Debug)]
pub struct DiffCmd {
    /// The container
    container: String,
}

impl DiffCmd {
    /// Run it: `A`, `C` or `D` and the path, a line each.
    pub async fn run(self, c: &Client) -> Result<()> {
        let v = c.get(&format!("/containers/{}/changes", q(&self.container))).await?;
        let mut out = String::new();
        for ch in v.as_array().into_iter().flatten() {
            let kind = match ch["Kind"].as_u64() {
                Some(1) => "A",
                Some(2) => "D",
                _ => "C",
            };
            out.push_str(&format!("{kind} {}\n", ch["Path"].as_str().unwrap_or("")));
        }
        stdout(&out)
    }
}

/// `wharf commit`.
#[derive(Args, Debug)]
pub struct CommitCmd {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
    /// The container
    container: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

impl CommitCmd {
    /// Run it: prints the new image's ID.
    pub async fn run(self, c: &Client) -> Result<()> {
        let mut path = format!("/commit?container={}&pause={}", q(&self.container), self.pause as u8);
        if let Some(r) = &self.reference {
            let last = r.rsplit('/').next().unwrap_or(r);
            match last.rsplit_once(':') {
                Some((_, tag)) => {
                    let repo = &r[..r.len() - tag.len() - 1];
                    path.push_str(&format!("&repo={}&tag={}", q(repo), q(tag)));
                }
                None => path.push_str(&format!("&repo={}", q(r))),
            }
        }
        if let Some(m) = &self.message {
            path.push_str(&format!("&comment={}", q(m)));
        }
        if let Some(a) = &self.author {
            path.push_str(&format!("&author={}", q(a)));
        }
        for ch in &self.change {
            path.push_str(&format!("&changes={}", q(ch)));
        }
        let v = c.json(Method::POST, &path, Some(&serde_json::json!({}))).await?;
        println!("{}", v["Id"].as_str().unwrap_or_default());
        Ok(())
    }
}

/// `wharf export`.
#[derive(Args, Debug)]
pub struct ExportCmd {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<String>,
    /// The container
    container: String,
}

impl ExportCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        use http_body_util::BodyExt;
        use tokio::io::AsyncWriteExt;
        if self.output.is_none() && rustix::termios::isatty(std::io::stdout()) {
            return Err(CliError::Usage(
                "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
            ));
        }
        let res = c
            .call(
                Method::GET,
                &format!("/containers/{}/export", q(&self.container)),
                Body::empty(),
            )
            .await?;
        let mut out: Box<dyn tokio::io::AsyncWrite + Unpin> = match &self.output {
            Some(p) => Box::new(tokio::fs::File::create(p).await?),
            None => Box::new(tokio::io::stdout()),
        };
        let mut body = res.into_body();
        while let Some(f) = body.frame().await {
            if let Ok(d) = f?.into_data() {
                out.write_all(&d).await?;
            }
        }
        out.flush().await?;
        Ok(())
    }
}

/// `wharf container prune`.
#[derive(Args, Debug)]
pub struct PruneCmd {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

impl PruneCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        crate::error::require_force(self.force, "container prune")?;
        let filters = filters_param(&self.filter, None)?;
        let r = c
            .json(
                Method::POST,
                &format!("/containers/prune?{}", filters.trim_start_matches('&')),
                None,
            )
            .await?;
        let mut out = String::new();
        deleted_section(&mut out, "Deleted Containers", &r["ContainersDeleted"]);
        let bytes = r["SpaceReclaimed"].as_f64().unwrap_or(0.0);
        out.push_str(&format!("Total reclaimed space: {}\n", wharf_units::human_size(bytes)));
        stdout(&out)
    }
}

/// A prune report's section as the docker CLI prints it: the title, one line per name, a
/// blank line; nothing when nothing went.
pub(crate) fn deleted_section(out: &mut String, title: &str, items: &Value) {
    let items: Vec<&str> = items
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    if !items.is_empty() {
        out.push_str(&format!("{title}:\n"));
        for i in items {
            out.push_str(i);
            out.push('\n');
        }
        out.push('\n');
    }
}
