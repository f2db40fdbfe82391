//! `create` and `run`: docker's flags turned into the create body (`Config` + `HostConfig`), and
//! the run flow the docker CLI follows: create, attach before start, wait (headers first), start,
//! stream until the end, exit with the container's code.

use std::collections::BTreeMap;

use clap::Args;
use hyper::Method;
use serde_json::{json, Map, Value};

use crate::client::{q, Client};
use crate::error::{CliError, Result};
use crate::runflags::{mount_flag, network_flag, ports_flags, unknown_flag, volume_flags};
use crate::stream::{self, End};
use crate::term;

/// The resource flags `create`, `run` and `update` share.
#[derive(Args, Debug, Default)]
pub struct ResourceFlags {
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long)]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
}

impl ResourceFlags {
    /// Set the fields given on a `HostConfig` (or an update body).
    pub fn apply(&self, target: &mut Value) -> Result<()> {
        for (k, v) in [
            ("Memory", bytes_flag("memory", &self.memory)?),
            ("MemorySwap", bytes_flag("memory-swap", &self.memory_swap)?),
            (
                "MemoryReservation",
                bytes_flag("memory-reservation", &self.memory_reservation)?,
            ),
            ("CpuShares", self.cpu_shares),
            ("CpuPeriod", self.cpu_period),
            ("CpuQuota", self.cpu_quota),
            ("PidsLimit", self.pids_limit),
            ("BlkioWeight", self.blkio_weight.map(i64::from)),
            ("NanoCpus", self.cpus.map(|c| (c * 1e9).round() as i64)),
        ] {
            if let Some(v) = v {
                target[k] = json!(v);
            }
        }
        for (k, v) in [("CpusetCpus", &self.cpuset_cpus), ("CpusetMems", &self.cpuset_mems)] {
            if let Some(v) = v {
                target[k] = json!(v);
            }
        }
        Ok(())
    }
}

/// The flags `create` and `run` share.
#[derive(Args, Debug, Default)]
pub struct CreateOpts {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Pull image before creating ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long = "quiet")]
    pub quiet_pull: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Set meta data on a container
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Write the container ID to the file
    #[arg(long)]
    pub cidfile: Option<String>,
    /// Tune container memory swappiness (0 to 100)
    #[arg(long, default_value_t = -1)]
    pub memory_swappiness: i64,
    /// Disable OOM Killer
    #[arg(long)]
    pub oom_kill_disable: bool,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub oom_score_adj: i64,
    /// Limit read rate (bytes per second) from a device
    #[arg(long)]
    pub device_read_bps: Vec<String>,
    /// Limit write rate (bytes per second) to a device
    #[arg(long)]
    pub device_write_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device
    #[arg(long)]
    pub device_read_iops: Vec<String>,
    /// Limit write rate (IO per second) to a device
    #[arg(long)]
    pub device_write_iops: Vec<String>,
    /// Optional parent cgroup for the container
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Security Options
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Bind mount a volume
    #[arg(short, long)]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long)]
    pub volumes_from: Vec<String>,
    /// Add a host device to the container
    #[arg(long)]
    pub device: Vec<String>,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// PID namespace to use
    #[arg(long)]
    pub pid: Option<String>,
    /// IPC mode to use
    #[arg(long)]
    pub ipc: Option<String>,
    /// UTS namespace to use
    #[arg(long)]
    pub uts: Option<String>,
    /// User namespace to use
    #[arg(long)]
    pub userns: Option<String>,
    /// Connect a container to a network (`name`, or `name=n,alias=a,ip=...,gw-priority=N`)
    #[arg(long, alias = "net")]
    pub network: Vec<String>,
    /// Signal to stop the container
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Command to run to check health
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long)]
    pub health_start_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long)]
    pub health_retries: Option<i64>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Timeout (in seconds) to stop a container
    #[arg(long)]
    pub stop_timeout: Option<i64>,
    /// Size of /dev/shm
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Logging driver for the container
    #[arg(long)]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long)]
    pub dns_option: Vec<String>,
    /// Add additional groups to join
    #[arg(long)]
    pub group_add: Vec<String>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short, long)]
    pub attach: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short, long)]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    pub ip6: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long)]
    pub mac_address: Option<String>,
    /// Add link to another container
    #[arg(long)]
    pub link: Vec<String>,
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// The image, then the command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    pub argv: Vec<String>,
}

/// A size flag (`64m`, `-1` for unlimited) in bytes.
pub fn bytes_flag(name: &str, v: &Option<String>) -> Result<Option<i64>> {
    match v.as_deref() {
        None => Ok(None),
        Some("-1") => Ok(Some(-1)),
        Some(s) => wharf_units::ram_in_bytes(s)
            .map(Some)
            .ok_or_else(|| CliError::Usage(format!("invalid argument \"{s}\" for \"--{name}\" flag"))),
    }
}

fn key_values(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

fn throttle(name: &str, list: &[String], bytes: bool) -> Result<Value> {
    let mut out = Vec::new();
    for l in list {
        let (path, rate) = l
            .rsplit_once(':')
            .ok_or_else(|| CliError::Usage(format!("bad format for --{name}: {l}")))?;
        let rate = if bytes {
            wharf_units::ram_in_bytes(rate)
        } else {
            rate.parse().ok()
        }
        .ok_or_else(|| CliError::Usage(format!("invalid rate for --{name}: {l}")))?;
        out.push(json!({"Path": path, "Rate": rate}));
    }
    Ok(Value::Array(out))
}

impl CreateOpts {
    /// `--health-*` and `--no-healthcheck` as the docker CLI turns them into `Healthcheck`.
    fn healthcheck(&self) -> Result<Option<Value>> {
        let durations = [
            ("Interval", "--health-interval", &self.health_interval),
            ("Timeout", "--health-timeout", &self.health_timeout),
            ("StartPeriod", "--health-start-period", &self.health_start_period),
            ("StartInterval", "--health-start-interval", &self.health_start_interval),
        ];
        let any = self.health_cmd.is_some() || self.health_retries.is_some() || durations.iter().any(|d| d.2.is_some());
        if self.no_healthcheck {
            if any {
                return Err(CliError::Usage(
                    "--no-healthcheck conflicts with --health-* options".into(),
                ));
            }
            return Ok(Some(json!({"Test": ["NONE"]})));
        }
        if !any {
            return Ok(None);
        }
        let test = match self.health_cmd.as_deref() {
            Some(c) if !c.is_empty() => json!(["CMD-SHELL", c]),
            _ => json!([]),
        };
        let mut h = json!({"Test": test});
        for (key, flag, v) in durations {
            if let Some(v) = v {
                let d = wharf_units::parse_go_duration(v).ok_or_else(|| {
                    CliError::Usage(format!(
                        "invalid argument \"{v}\" for \"{flag}\" flag: time: invalid duration \"{v}\""
                    ))
                })?;
                h[key] = json!(d.as_nanos() as i64);
            }
        }
        if let Some(r) = self.health_retries {
            if r < 0 {
                return Err(CliError::Usage("--health-retries cannot be negative".into()));
            }
            h["Retries"] = json!(r);
        }
        Ok(Some(h))
    }

    /// The `POST /containers/create` body.
    pub fn body(&self) -> Result<Value> {
        let image = self.argv[0].clone();
        unknown_flag(&image)?;
        let cmd: Vec<String> = self.argv[1..].to_vec();
        let env = self.env_list()?;
        let attach = |s: &str| {
            if self.attach.is_empty() {
                s != "stdin" || self.interactive
            } else {
                self.attach.iter().any(|a| a.eq_ignore_ascii_case(s))
            }
        };
        let mut config = json!({
            "Image": image,
            "Tty": self.tty,
            "OpenStdin": self.interactive,
            "StdinOnce": self.interactive,
            "AttachStdin": attach("stdin"),
            "AttachStdout": attach("stdout"),
            "AttachStderr": attach("stderr"),
            "Env": env,
            "Labels": key_values(&self.label),
        });
        if !cmd.is_empty() {
            config["Cmd"] = json!(cmd);
        }
        if let Some(e) = &self.entrypoint {
            config["Entrypoint"] = if e.is_empty() { json!([""]) } else { json!([e]) };
        }
        for (k, v) in [
            ("WorkingDir", &self.workdir),
            ("User", &self.user),
            ("Hostname", &self.hostname),
            ("StopSignal", &self.stop_signal),
        ] {
            if let Some(v) = v {
                config[k] = json!(v);
            }
        }
        if let Some(t) = self.stop_timeout {
            config["StopTimeout"] = json!(t);
        }
        if let Some(h) = self.healthcheck()? {
            config["Healthcheck"] = h;
        }
        let (policy, retries) = match self.restart.split_once(':') {
            Some((p, n)) => (
                p.to_string(),
                n.parse::<i64>()
                    .map_err(|_| CliError::Usage(format!("invalid restart policy format: {}", self.restart)))?,
            ),
            None => (self.restart.clone(), 0),
        };
        let mut hc = json!({
            "AutoRemove": self.rm,
            "RestartPolicy": {"Name": policy, "MaximumRetryCount": retries},
            "Privileged": self.privileged,
            "ReadonlyRootfs": self.read_only,
            "CapAdd": self.cap_add,
            "CapDrop": self.cap_drop,
            "SecurityOpt": self.security_opt,
            "ExtraHosts": self.add_host,
            "Dns": self.dns,
            "DnsSearch": self.dns_search,
            "DnsOptions": self.dns_option,
            "GroupAdd": self.group_add,
            "OomKillDisable": self.oom_kill_disable,
            "OomScoreAdj": self.oom_score_adj,
            "MemorySwappiness": if self.memory_swappiness >= 0 { json!(self.memory_swappiness) } else { Value::Null },
            "BlkioDeviceReadBps": throttle("device-read-bps", &self.device_read_bps, true)?,
            "BlkioDeviceWriteBps": throttle("device-write-bps", &self.device_write_bps, true)?,
            "BlkioDeviceReadIOps": throttle("device-read-iops", &self.device_read_iops, false)?,
            "BlkioDeviceWriteIOps": throttle("device-write-iops", &self.device_write_iops, false)?,
        });
        if self.init {
            hc["Init"] = json!(true);
        }
        self.resources.apply(&mut hc)?;
        if let Some(v) = bytes_flag("shm-size", &self.shm_size)? {
            hc["ShmSize"] = json!(v);
        }
        for (k, v) in [
            ("CgroupParent", &self.cgroup_parent),
            ("PidMode", &self.pid),
            ("IpcMode", &self.ipc),
            ("UTSMode", &self.uts),
            ("UsernsMode", &self.userns),
        ] {
            if let Some(v) = v {
                hc[k] = json!(v);
            }
        }
        let mut tmpfs = Map::new();
        for t in &self.tmpfs {
            let (dest, opts) = t.split_once(':').unwrap_or((t, ""));
            tmpfs.insert(dest.to_string(), json!(opts));
        }
        hc["Tmpfs"] = Value::Object(tmpfs);
        let (binds, anon) = volume_flags(&self.volume)?;
        hc["Binds"] = json!(binds);
        if !anon.is_empty() {
            config["Volumes"] = Value::Object(anon.into_iter().map(|d| (d, json!({}))).collect());
        }
        hc["Mounts"] = Value::Array(self.mount.iter().map(|m| mount_flag(m)).collect::<Result<_>>()?);
        hc["VolumesFrom"] = json!(self.volumes_from);
        hc["Sysctls"] = json!(key_values(&self.sysctl));
        let ulimits = self.ulimits()?;
        hc["Ulimits"] = Value::Array(ulimits);
        let devices = self.devices()?;
        hc["Devices"] = Value::Array(devices);
        if self.log_driver.is_some() || !self.log_opt.is_empty() {
            hc["LogConfig"] = json!({
                "Type": self.log_driver.clone().unwrap_or_default(),
                "Config": key_values(&self.log_opt),
            });
        }
        let (exposed, bindings) = ports_flags(&self.publish, &self.expose)?;
        if !exposed.is_empty() {
            config["ExposedPorts"] = Value::Object(exposed.into_iter().map(|k| (k, json!({}))).collect());
        }
        hc["PortBindings"] = Value::Object(bindings);
        hc["PublishAllPorts"] = json!(self.publish_all);
        hc["Links"] = json!(self.link);
        self.networking(&mut config, &mut hc)?;
        config["HostConfig"] = hc;
        Ok(config)
    }

    /// `--env-file`s, then `-e`s; `-e NAME` takes the value from this environment, as the
    /// docker CLI does.
    fn env_list(&self) -> Result<Vec<String>> {
        let mut env = Vec::new();
        for f in &self.env_file {
            let text = std::fs::read_to_string(f).map_err(|e| CliError::Usage(format!("open {f}: {e}")))?;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                env.push(line.to_string());
            }
        }
        env.extend(self.env.iter().cloned());
        // `-e NAME` takes the value from this environment, as the docker CLI does.
        Ok(env
            .into_iter()
            .filter_map(|e| {
                if e.contains('=') {
                    Some(e)
                } else {
                    std::env::var(&e).ok().map(|v| format!("{e}={v}"))
                }
            })
            .collect())
    }

    /// `--ulimit name=soft[:hard]`.
    fn ulimits(&self) -> Result<Vec<Value>> {
        let mut ulimits = Vec::new();
        for u in &self.ulimit {
            let (name, vals) = u
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("invalid ulimit argument: {u}")))?;
            let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
            let n = |s: &str| {
                s.parse::<i64>()
                    .map_err(|_| CliError::Usage(format!("invalid ulimit argument: {u}")))
            };
            ulimits.push(json!({"Name": name, "Soft": n(soft)?, "Hard": n(hard)?}));
        }
        Ok(ulimits)
    }

    /// `--device host[:container][:perms]`.
    fn devices(&self) -> Result<Vec<Value>> {
        let mut devices = Vec::new();
        for d in &self.device {
            let parts: Vec<&str> = d.split(':').collect();
            let (host, ctr, perms) = match parts.as_slice() {
                [h] => (*h, *h, "rwm"),
                [h, c] if c.chars().all(|x| "rwm".contains(x)) => (*h, *h, *c),
                [h, c] => (*h, *c, "rwm"),
                [h, c, p] => (*h, *c, *p),
                _ => return Err(CliError::Usage(format!("invalid device specification: {d}"))),
            };
            devices.push(json!({"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms}));
        }
        Ok(devices)
    }

    /// `--network` (several), and the container-wide `--network-alias`, `--ip`, `--ip6` and
    /// `--mac-address`, which are the first network's.
    fn networking(&self, config: &mut Value, hc: &mut Value) -> Result<()> {
        let nets = self
            .network
            .iter()
            .map(|n| network_flag(n))
            .collect::<Result<Vec<_>>>()?;
        if let Some((name, _)) = nets.first() {
            hc["NetworkMode"] = json!(name);
        }
        let legacy =
            !self.network_alias.is_empty() || self.ip.is_some() || self.ip6.is_some() || self.mac_address.is_some();
        if legacy || nets.len() > 1 || nets.iter().any(|(_, ep)| ep.as_object().is_some_and(|o| !o.is_empty())) {
            let mut endpoints = serde_json::Map::new();
            let first = nets.first().map(|(n, _)| n.clone()).unwrap_or_else(|| "default".into());
            for (name, ep) in nets {
                endpoints.insert(name, ep);
            }
            // The container-wide flags are the first network's.
            let ep = endpoints.entry(first).or_insert_with(|| json!({}));
            if !self.network_alias.is_empty() {
                ep["Aliases"] = json!(self.network_alias);
            }
            if let Some(ip) = &self.ip {
                ep["IPAMConfig"]["IPv4Address"] = json!(ip);
            }
            if let Some(ip) = &self.ip6 {
                ep["IPAMConfig"]["IPv6Address"] = json!(ip);
            }
            if let Some(mac) = &self.mac_address {
                ep["MacAddress"] = json!(mac);
            }
            config["NetworkingConfig"] = json!({"EndpointsConfig": endpoints});
        }
        Ok(())
    }

    /// Create the container; returns its ID.
    pub async fn create(&self, c: &Client) -> Result<String> {
        if let Some(f) = &self.cidfile {
            if std::path::Path::new(f).exists() {
                return Err(CliError::Usage(format!(
                    "container ID file found, make sure the other container isn't running or delete {f}"
                )));
            }
        }
        let body = self.body()?;
        let path = match &self.name {
            Some(n) => format!("/containers/create?name={}", q(n)),
            None => "/containers/create".to_string(),
        };
        let image = self.argv[0].clone();
        let shown = if image.contains('@') || image.rsplit('/').next().unwrap_or("").contains(':') {
            image.clone()
        } else {
            format!("{image}:latest")
        };
        match self.pull.as_str() {
            "always" => crate::registry::pull_image(c, &image, self.platform.as_deref(), self.quiet_pull).await?,
            "missing" | "never" => {}
            other => {
                return Err(CliError::Usage(format!(
                    "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
                )))
            }
        }
        let res = match c.json(Method::POST, &path, Some(&body)).await {
            Err(CliError::Daemon { status: 404, message })
                if message.starts_with("No such image") && self.pull == "missing" =>
            {
                eprintln!("Unable to find image '{shown}' locally");
                crate::registry::pull_image(c, &image, self.platform.as_deref(), self.quiet_pull).await?;
                c.json(Method::POST, &path, Some(&body)).await?
            }
            Err(CliError::Daemon { status: 404, message }) if message.starts_with("No such image") => {
                eprintln!("Unable to find image '{shown}' locally");
                return Err(CliError::Daemon { status: 404, message });
            }
            r => r?,
        };
        for w in res["Warnings"].as_array().into_iter().flatten() {
            if let Some(w) = w.as_str() {
                eprintln!("WARNING: {w}");
            }
        }
        let id = res["Id"].as_str().unwrap_or_default().to_string();
        if let Some(f) = &self.cidfile {
            std::fs::write(f, &id)?;
        }
        Ok(id)
    }
}

/// `wharf run`.
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunCmd {
    /// Run container in background and print container ID
    #[arg(short, long)]
    detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    detach_keys: Option<String>,
    /// Proxy received signals to the process
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sig_proxy: bool,
    #[command(flatten)]
    opts: CreateOpts,
}

/// `wharf create`.
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct CreateCmd {
    #[command(flatten)]
    opts: CreateOpts,
}

impl CreateCmd {
    /// The create body (for tests).
    #[cfg(test)]
    pub fn body_for_test(&self) -> Result<Value> {
        self.opts.body()
    }

    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let id = self.opts.create(c).await?;
        println!("{id}");
        Ok(())
    }
}

/// Attach to a container's streams (before or after it starts).
pub async fn attach_stream(
    c: &Client,
    id: &str,
    stdin: bool,
    tty: bool,
    keys: Option<&str>,
) -> Result<crate::client::Hijacked> {
    let mut path = format!(
        "/containers/{}/attach?stream=1&stdout=1&stderr=1&stdin={}",
        q(id),
        stdin as u8
    );
    if let Some(k) = keys {
        path.push_str(&format!("&detachKeys={}", q(k)));
    }
    let _ = tty;
    c.hijack(&path, None).await
}

/// Send the terminal size, then again on every SIGWINCH, until dropped.
pub fn follow_resize(c: &Client, path: String) -> Option<tokio::task::JoinHandle<()>> {
    term::size()?;
    let c = c.clone();
    Some(tokio::spawn(async move {
        let mut sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
        loop {
            if let Some((h, w)) = term::size() {
                let _ = c.post(&format!("{path}?h={h}&w={w}")).await;
            }
            match sig.as_mut() {
                Some(s) => {
                    if s.recv().await.is_none() {
                        return;
                    }
                }
                None => return,
            }
        }
    }))
}

/// Forward SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2 to the container (`--sig-proxy`).
pub fn proxy_signals(c: &Client, id: &str) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let c = c.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::quit(), "SIGQUIT"),
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
        ];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (k, name) in kinds {
            if let Ok(mut s) = signal(k) {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        if tx.send(name).is_err() {
                            return;
                        }
                    }
                });
            }
        }
        while let Some(name) = rx.recv().await {
            let _ = c.post(&format!("/containers/{}/kill?signal={name}", q(&id))).await;
        }
    })
}

/// The exit status of a `wait` response body.
async fn wait_result(res: hyper::Response<hyper::body::Incoming>) -> Result<i32> {
    use http_body_util::BodyExt;
    let bytes = res.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| CliError::Protocol(e.to_string()))?;
    if let Some(m) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
        return Err(CliError::Protocol(m.to_string()));
    }
    Ok(v["StatusCode"].as_i64().unwrap_or(125) as i32)
}

impl RunCmd {
    /// The create body (for tests).
    #[cfg(test)]
    pub fn body_for_test(&self) -> Result<Value> {
        self.opts.body()
    }

    /// Run it: the docker CLI's exit codes (125 for the daemon's errors, 126/127 for a command
    /// that cannot run, else the container's own).
    pub async fn run(self, c: &Client) -> Result<()> {
        let opts = &self.opts;
        let id = opts.create(c).await.map_err(as_125)?;
        if self.detach {
            c.post(&format!("/containers/{id}/start")).await.map_err(as_125)?;
            println!("{id}");
            return Ok(());
        }
        let stdin = opts.interactive;
        let stream = attach_stream(c, &id, stdin, opts.tty, self.detach_keys.as_deref())
            .await
            .map_err(as_125)?;
        let cond = if opts.rm { "removed" } else { "next-exit" };
        let waiter = c
            .call(
                Method::POST,
                &format!("/containers/{id}/wait?condition={cond}"),
                crate::client::Body::empty(),
            )
            .await
            .map_err(as_125)?;
        let raw = if opts.tty && stdin {
            Some(term::RawGuard::new())
        } else {
            None
        };
        if let Err(e) = c.post(&format!("/containers/{id}/start")).await {
            drop(raw);
            return Err(start_error(e));
        }
        let session = Session {
            id: &id,
            tty: opts.tty,
            stdin,
            detach_keys: self.detach_keys.as_deref(),
            sig_proxy: self.sig_proxy,
        };
        session.follow(c, stream, waiter, raw).await
    }
}

/// An attached container's streams, followed to the end (`run`, `start -a`, `attach`).
pub struct Session<'a> {
    /// The container.
    pub id: &'a str,
    /// It has a terminal.
    pub tty: bool,
    /// Stdin is forwarded.
    pub stdin: bool,
    /// `--detach-keys`.
    pub detach_keys: Option<&'a str>,
    /// `--sig-proxy` (only without a terminal, as in docker).
    pub sig_proxy: bool,
}

impl Session<'_> {
    /// Pump the streams with resizes and forwarded signals until the output ends or the user
    /// detaches; then exit with the container's code from `waiter`.
    pub async fn follow(
        &self,
        c: &Client,
        stream: crate::client::Hijacked,
        waiter: hyper::Response<hyper::body::Incoming>,
        raw: Option<term::RawGuard>,
    ) -> Result<()> {
        let id = self.id;
        let resizer = if self.tty {
            follow_resize(c, format!("/containers/{id}/resize"))
        } else {
            None
        };
        let proxy = (self.sig_proxy && !self.tty).then(|| proxy_signals(c, id));
        let keys = stream::detach_keys(self.detach_keys);
        let end = stream::pump(stream, self.tty, self.stdin, &keys).await;
        drop(raw);
        for t in [resizer, proxy].into_iter().flatten() {
            t.abort();
        }
        if end? == End::Detached {
            return Err(CliError::Protocol("read escape sequence".into()));
        }
        match wait_result(waiter).await? {
            0 => Ok(()),
            code => Err(CliError::Status(code)),
        }
    }
}

/// The docker CLI exits 125 when the daemon refuses a run.
fn as_125(e: CliError) -> CliError {
    match e {
        CliError::Daemon { .. } | CliError::Connect(_) => {
            eprintln!("wharf: {e}");
            eprintln!("\nRun 'wharf run --help' for more information");
            CliError::Status(125)
        }
        other => other,
    }
}

/// A failed start: 127 when the command is not found, 126 when it cannot be run, else 125.
fn start_error(e: CliError) -> CliError {
    let msg = e.to_string();
    let code = if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") {
        126
    } else {
        125
    };
    eprintln!("wharf: {msg}");
    CliError::Status(code)
}
