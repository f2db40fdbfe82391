//! docker's management command groups (`container`, `image`, `system`): the same commands as
//! the top-level verbs under their group names (`container ls`, `image rm`, `system info`),
//! with the few that exist only there (`container prune`, `image prune`, `system prune`,
//! `system events`); and the shell completions and man pages made from the command tree.

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;

use crate::client::{q, Body, Client};
use crate::containers::{self, deleted_section, PruneCmd};
use crate::error::Result;
use crate::format::Format;
use crate::images::{self, filters_param};
use crate::{cp, networks, registry, run, stats, stdout, Cmd, FormatOnly, InspectCmd};

/// `wharf container`.
#[derive(Args, Debug)]
pub struct ContainerGroup {
    #[command(subcommand)]
    cmd: ContainerSub,
}

#[derive(Subcommand, Debug)]
enum ContainerSub {
    /// List containers
    #[command(visible_aliases = ["list", "ps"])]
    Ls(containers::PsCmd),
    /// Create and run a new container from an image
    Run(run::RunCmd),
    /// Create a new container
    Create(run::CreateCmd),
    /// Start one or more stopped containers
    Start(containers::StartCmd),
    /// Stop one or more running containers
    Stop(containers::StopCmd),
    /// Restart one or more containers
    Restart(containers::StopCmd),
    /// Kill one or more running containers
    Kill(containers::KillCmd),
    /// Pause all processes within one or more containers
    Pause(containers::NamesCmd),
    /// Unpause all processes within one or more containers
    Unpause(containers::NamesCmd),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::NamesCmd),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(containers::RmCmd),
    /// Fetch the logs of a container
    Logs(containers::LogsCmd),
    /// Execute a command in a running container
    Exec(containers::ExecCmd),
    /// Attach local standard input, output, and error streams to a running container
    Attach(containers::AttachCmd),
    /// Rename a container
    Rename(containers::RenameCmd),
    /// Display the running processes of a container
    Top(containers::TopCmd),
    /// Update configuration of one or more containers
    Update(containers::UpdateCmd),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpCmd),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(containers::DiffCmd),
    /// Export a container's filesystem as a tar archive
    Export(containers::ExportCmd),
    /// Create a new image from a container's changes
    Commit(containers::CommitCmd),
    /// Display detailed information on one or more containers
    Inspect(InspectCmd),
    /// List port mappings or a specific mapping for the container
    Port(networks::PortCmd),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::StatsCmd),
    /// Remove all stopped containers
    Prune(PruneCmd),
}

impl ContainerGroup {
    /// The top-level command it is.
    pub fn into_cmd(self) -> Cmd {
        match self.cmd {
            ContainerSub::Ls(x) => Cmd::Ps(x),
            ContainerSub::Run(x) => Cmd::Run(x),
            ContainerSub::Create(x) => Cmd::Create(x),
            ContainerSub::Start(x) => Cmd::Start(x),
            ContainerSub::Stop(x) => Cmd::Stop(x),
            ContainerSub::Restart(x) => Cmd::Restart(x),
            ContainerSub::Kill(x) => Cmd::Kill(x),
            ContainerSub::Pause(x) => Cmd::Pause(x),
            ContainerSub::Unpause(x) => Cmd::Unpause(x),
            ContainerSub::Wait(x) => Cmd::Wait(x),
            ContainerSub::Rm(x) => Cmd::Rm(x),
            ContainerSub::Logs(x) => Cmd::Logs(x),
            ContainerSub::Exec(x) => Cmd::Exec(x),
            ContainerSub::Attach(x) => Cmd::Attach(x),
            ContainerSub::Rename(x) => Cmd::Rename(x),
            ContainerSub::Top(x) => Cmd::Top(x),
            ContainerSub::Update(x) => Cmd::Update(x),
            ContainerSub::Cp(x) => Cmd::Cp(x),
            ContainerSub::Diff(x) => Cmd::Diff(x),
            ContainerSub::Export(x) => Cmd::Export(x),
            ContainerSub::Commit(x) => Cmd::Commit(x),
            ContainerSub::Inspect(x) => Cmd::Inspect(x.of_type("container")),
            ContainerSub::Port(x) => Cmd::Port(x),
            ContainerSub::Stats(x) => Cmd::Stats(x),
            ContainerSub::Prune(x) => Cmd::ContainerPrune(x),
        }
    }
}

/// `wharf image`.
#[derive(Args, Debug)]
pub struct ImageGroup {
    #[command(subcommand)]
    cmd: ImageSub,
}

#[derive(Subcommand, Debug)]
enum ImageSub {
    /// List images
    #[command(visible_alias = "list")]
    Ls(images::ImagesCmd),
    /// Download an image from a registry
    Pull(registry::PullCmd),
    /// Upload an image to a registry
    Push(registry::PushCmd),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(images::RmiCmd),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagCmd),
    /// Show the history of an image
    History(images::HistoryCmd),
    /// Load an image from a tar archive or STDIN
    Load(images::LoadCmd),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(images::SaveCmd),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportCmd),
    /// Display detailed information on one or more images
    Inspect(InspectCmd),
    /// Remove unused images
    Prune(ImagePruneCmd),
}

impl ImageGroup {
    /// The top-level command it is.
    pub fn into_cmd(self) -> Cmd {
        match self.cmd {
            ImageSub::Ls(x) => Cmd::Images(x),
            ImageSub::Pull(x) => Cmd::Pull(x),
            ImageSub::Push(x) => Cmd::Push(x),
            ImageSub::Rm(x) => Cmd::Rmi(x),
            ImageSub::Tag(x) => Cmd::Tag(x),
            ImageSub::History(x) => Cmd::History(x),
            ImageSub::Load(x) => Cmd::Load(x),
            ImageSub::Save(x) => Cmd::Save(x),
            ImageSub::Import(x) => Cmd::Import(x),
            ImageSub::Inspect(x) => Cmd::Inspect(x.of_type("image")),
            ImageSub::Prune(x) => Cmd::ImagePrune(x),
        }
    }
}

/// `wharf image prune`.
#[derive(Args, Debug)]
pub struct ImagePruneCmd {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

impl ImagePruneCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        crate::error::require_force(self.force, "image prune")?;
        let mut out = String::new();
        let reclaimed = prune_images(c, &self.filter, self.all, &mut out).await?;
        out.push_str(&format!(
            "Total reclaimed space: {}\n",
            wharf_units::human_size(reclaimed)
        ));
        stdout(&out)
    }
}

/// `wharf system`.
#[derive(Args, Debug)]
pub struct SystemGroup {
    #[command(subcommand)]
    cmd: SystemSub,
}

#[derive(Subcommand, Debug)]
enum SystemSub {
    /// Display system-wide information
    Info(FormatOnly),
    /// Get real time events from the server
    Events(EventsCmd),
    /// Remove unused data
    Prune(SystemPruneCmd),
}

impl SystemGroup {
    /// The top-level command it is.
    pub fn into_cmd(self) -> Cmd {
        match self.cmd {
            SystemSub::Info(x) => Cmd::Info(x),
            SystemSub::Events(x) => Cmd::Events(x),
            SystemSub::Prune(x) => Cmd::SystemPrune(x),
        }
    }
}

/// `wharf completion SHELL`: the shell's completion script, from the command tree.
#[derive(Args, Debug)]
pub struct CompletionCmd {
    /// bash, zsh, fish, elvish or powershell
    shell: clap_complete::Shell,
}

impl CompletionCmd {
    /// Print the script.
    pub fn run(self) -> Result<()> {
        let mut cmd = <crate::Cli as clap::CommandFactory>::command();
        let mut out = Vec::new();
        clap_complete::generate(self.shell, &mut cmd, "wharf", &mut out);
        stdout(&String::from_utf8_lossy(&out))
    }
}

/// `wharf man-pages DIR`: `wharf.1` and one page per command (`wharf-container-ls.1`, ...).
#[derive(Args, Debug)]
pub struct ManPagesCmd {
    /// Where to write the pages
    dir: std::path::PathBuf,
}

impl ManPagesCmd {
    /// Write them.
    pub fn run(self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let cmd = <crate::Cli as clap::CommandFactory>::command();
        clap_mangen::generate_to(cmd, &self.dir)?;
        Ok(())
    }
}

/// `wharf events`.
#[derive(Args, Debug)]
pub struct EventsCmd {
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    until: Option<String>,
}

/// A `--since`/`--until` value as the API takes it: relative durations (`10m`, `1h30m`) become
/// unix seconds, anything else goes as given.
fn timestamp(v: &str) -> String {
    let (mut total, mut num) = (0f64, String::new());
    let mut ok = !v.is_empty();
    for ch in v.chars() {
        match ch {
            '0'..='9' | '.' => num.push(ch),
            'h' | 'm' | 's' if !num.is_empty() => {
                let n: f64 = num.parse().unwrap_or(0.0);
                total += n * match ch {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                num.clear();
            }
            _ => ok = false,
        }
    }
    if !ok || !num.is_empty() {
        return v.to_string();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    format!("{:.9}", now - total)
}

impl EventsCmd {
    /// Run it: one line an event, as they happen.
    pub async fn run(self, c: &Client) -> Result<()> {
        use http_body_util::BodyExt;
        let mut url = format!("/events?{}", filters_param(&self.filter, None)?.trim_start_matches('&'));
        for (k, v) in [("since", &self.since), ("until", &self.until)] {
            if let Some(v) = v {
                url.push_str(&format!("&{k}={}", q(&timestamp(v))));
            }
        }
        let f = self.format.as_deref().map(Format::parse).transpose()?;
        let res = c.call(Method::GET, &url, Body::empty()).await?;
        let mut body = res.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(d) = frame?.into_data() else { continue };
            buf.extend_from_slice(&d);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(e) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let text = match &f {
                    Some(f) => f.render(&e)?,
                    None => {
                        let nanos = e["timeNano"].as_i64().unwrap_or(0);
                        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
                            .map(|t| {
                                format!(
                                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                                    t.year(),
                                    t.month() as u8,
                                    t.day(),
                                    t.hour(),
                                    t.minute(),
                                    t.second(),
                                    t.nanosecond()
                                )
                            })
                            .unwrap_or_default();
                        let attrs: Vec<String> = e["Actor"]["Attributes"]
                            .as_object()
                            .map(|o| {
                                o.iter()
                                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                                    .collect()
                            })
                            .unwrap_or_default();
                        format!(
                            "{t} {} {} {} ({})",
                            e["Type"].as_str().unwrap_or(""),
                            e["Action"].as_str().unwrap_or(""),
                            e["Actor"]["ID"].as_str().unwrap_or(""),
                            attrs.join(", ")
                        )
                    }
                };
                stdout(&format!("{text}\n"))?;
            }
        }
        Ok(())
    }
}

/// `wharf system prune`: stopped containers, unused networks, dangling (with `-a`: unused)
/// images, build cache, and with `--volumes` anonymous volumes, as `docker system prune`.
#[derive(Args, Debug)]
pub struct SystemPruneCmd {
    /// Remove all unused images not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long)]
    filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    volumes: bool,
}

impl SystemPruneCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        crate::error::require_force(self.force, "system prune")?;
        let filters = filters_param(&self.filter, None)?;
        let q = filters.trim_start_matches('&').to_string();
        let mut out = String::new();
        let mut reclaimed = 0.0;
        let r = c.json(Method::POST, &format!("/containers/prune?{q}"), None).await?;
        reclaimed += r["SpaceReclaimed"].as_f64().unwrap_or(0.0);
        deleted_section(&mut out, "Deleted Containers", &r["ContainersDeleted"]);
        let r = c.json(Method::POST, &format!("/networks/prune?{q}"), None).await?;
        deleted_section(&mut out, "Deleted Networks", &r["NetworksDeleted"]);
        if self.volumes {
            let r = c.json(Method::POST, &format!("/volumes/prune?{q}"), None).await?;
            reclaimed += r["SpaceReclaimed"].as_f64().unwrap_or(0.0);
            deleted_section(&mut out, "Deleted Volumes", &r["VolumesDeleted"]);
        }
        reclaimed += prune_images(c, &self.filter, self.all, &mut out).await?;
        let r = c.json(Method::POST, "/build/prune", None).await?;
        reclaimed += r["SpaceReclaimed"].as_f64().unwrap_or(0.0);
        out.push_str(&format!(
            "Total reclaimed space: {}\n",
            wharf_units::human_size(reclaimed)
        ));
        stdout(&out)
    }
}

/// `POST /images/prune` (dangling only, or every unused image with `all`) and its report
/// section; the bytes reclaimed.
async fn prune_images(c: &Client, filter: &[String], all: bool, out: &mut String) -> Result<f64> {
    let img_filters = filters_param(filter, Some(("dangling", if all { "false" } else { "true" })))?;
    let r = c
        .json(
            Method::POST,
            &format!("/images/prune?{}", img_filters.trim_start_matches('&')),
            None,
        )
        .await?;
    let images: Vec<Value> = r["ImagesDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i["Untagged"]
                .as_str()
                .map(|u| format!("untagged: {u}"))
                .or_else(|| i["Deleted"].as_str().map(|d| format!("deleted: {d}")))
        })
        .map(Value::String)
        .collect();
    deleted_section(out, "Deleted Images", &Value::Array(images));
    Ok(r["SpaceReclaimed"].as_f64().unwrap_or(0.0))
}
