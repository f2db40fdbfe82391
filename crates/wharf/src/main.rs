//! `wharf`, the command-line client. It speaks the Docker Engine API to wharfd (or any
//! Docker-compatible daemon) with docker's command names, flags, output formats and exit codes:
//! tables, `-q`, `--no-trunc`, `--format` Go templates, JSON for inspect. The daemon is found
//! through `-H`, `WHARF_HOST` or `DOCKER_HOST`.

#![forbid(unsafe_code)]

mod build;
mod buildctx;
mod buildview;
mod client;
mod containers;
mod cp;
mod error;
mod format;
mod images;
mod manage;
mod networks;
mod registry;
mod run;
mod runflags;
mod stats;
mod stream;
mod term;
mod volumes;

use std::io::Write;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::client::{q, Client};
use crate::error::{CliError, Result};
use crate::format::Format;

/// A self-sufficient runtime for containers.
#[derive(Parser, Debug)]
#[command(
    name = "wharf",
    version,
    about = "A Docker-compatible container engine client",
    disable_version_flag = true
)]
pub(crate) struct Cli {
    /// Print version information and quit (docker's `-v, --version`)
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: (),
    /// Daemon socket to connect to (unix:///path or tcp://host:port)
    #[arg(short = 'H', long = "host")]
    host: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Create and run a new container from an image
    Run(run::RunCmd),
    /// Create a new container
    Create(run::CreateCmd),
    /// List containers
    #[command(alias = "list")]
    Ps(containers::PsCmd),
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
    /// Manage Docker
    System(manage::SystemGroup),
    /// Manage containers
    Container(manage::ContainerGroup),
    /// Manage images
    Image(manage::ImageGroup),
    /// Get real time events from the server
    Events(manage::EventsCmd),
    /// Manage volumes
    Volume(volumes::VolumeCmd),
    /// Manage networks
    Network(networks::NetworkCmd),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::StatsCmd),
    /// List port mappings or a specific mapping for the container
    Port(networks::PortCmd),
    /// List images
    Images(images::ImagesCmd),
    /// Build an image from a Dockerfile
    Build(build::BuildCmd),
    /// Download an image from a registry
    Pull(registry::PullCmd),
    /// Upload an image to a registry
    Push(registry::PushCmd),
    /// Authenticate to a registry
    Login(registry::LoginCmd),
    /// Log out from a registry
    Logout(registry::LogoutCmd),
    /// Search Docker Hub (or a registry with the v1 search API) for images
    Search(registry::SearchCmd),
    /// Remove one or more images
    Rmi(images::RmiCmd),
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
    /// Return low-level information on Docker objects
    Inspect(InspectCmd),
    /// Show the version information
    Version(FormatOnly),
    /// Display system-wide information
    Info(FormatOnly),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion(manage::CompletionCmd),
    /// Write the man pages into a directory
    #[command(hide = true)]
    ManPages(manage::ManPagesCmd),
    /// `container prune` (only under its group)
    #[command(skip)]
    ContainerPrune(containers::PruneCmd),
    /// `image prune` (only under its group)
    #[command(skip)]
    ImagePrune(manage::ImagePruneCmd),
    /// `system prune` (only under its group)
    #[command(skip)]
    SystemPrune(manage::SystemPruneCmd),
}

/// `inspect`.
#[derive(clap::Args, Debug)]
pub(crate) struct InspectCmd {
    /// Format output using a custom template
    #[arg(short, long)]
    format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    size: bool,
    /// Return JSON for specified type
    #[arg(long = "type")]
    kind: Option<String>,
    /// Objects
    #[arg(required = true)]
    names: Vec<String>,
}

/// `volume inspect`, `network inspect`: each object by name, printed with the template or as
/// a JSON array; a missing one is reported as the docker CLI reports it and fails the command.
pub async fn inspect_each(
    c: &Client,
    kind: &str,
    names: &[String],
    format: Option<&str>,
    path: impl Fn(&str) -> String,
) -> Result<()> {
    let mut found = Vec::new();
    let mut failed = false;
    for n in names {
        match c.get(&path(n)).await {
            Ok(v) => found.push(v),
            Err(CliError::Daemon { status: 404, .. }) => {
                eprintln!("Error: No such {kind}: {n}");
                failed = true;
            }
            Err(e) => return Err(e),
        }
    }
    print_objects(&found, format)?;
    if failed {
        Err(CliError::Status(1))
    } else {
        Ok(())
    }
}

/// Objects as `inspect` prints them: one rendering of the template per object, or a JSON array.
fn print_objects(found: &[serde_json::Value], format: Option<&str>) -> Result<()> {
    match format {
        Some(f) => {
            let f = Format::parse(f)?;
            let mut out = String::new();
            for v in found {
                out.push_str(&f.render(v)?);
                out.push('\n');
            }
            stdout(&out)
        }
        None => images::print_json_array(found),
    }
}

/// Commands with only `--format`.
#[derive(clap::Args, Debug)]
pub(crate) struct FormatOnly {
    /// Format output using a custom template
    #[arg(short, long)]
    format: Option<String>,
}

/// Write to stdout, ignoring a closed pipe.
pub fn stdout(s: &str) -> Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|_| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// The 12-hex short form of an ID (without `sha256:`).
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// "5 minutes ago".
pub fn ago(unix: i64) -> String {
    format!("{} ago", wharf_units::human_duration(now() - unix))
}

/// Docker's `CreatedAt` layout: `2006-01-02 15:04:05 -0700 MST`, in UTC here.
pub fn local_time(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] +0000 UTC");
    t.format(&f).unwrap_or_default()
}

impl InspectCmd {
    /// `container inspect`, `image inspect`: only objects of that type.
    fn of_type(mut self, kind: &str) -> InspectCmd {
        self.kind = Some(kind.to_string());
        self
    }

    async fn run(self, c: &Client) -> Result<()> {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for n in &self.names {
            let tries: Vec<String> = match self.kind.as_deref() {
                Some("container") => vec![format!("/containers/{}/json?size={}", q(n), self.size as u8)],
                Some("image") => vec![format!("/images/{}/json", q(n))],
                Some("volume") => vec![format!("/volumes/{}", q(n))],
                Some("network") => vec![format!("/networks/{}", q(n))],
                Some(k) => return Err(CliError::Usage(format!("\"{k}\" is not a valid value for --type"))),
                None => vec![
                    format!("/containers/{}/json?size={}", q(n), self.size as u8),
                    format!("/images/{}/json", q(n)),
                    format!("/networks/{}", q(n)),
                    format!("/volumes/{}", q(n)),
                ],
            };
            let mut got = None;
            for path in tries {
                match c.get(&path).await {
                    Ok(v) => {
                        got = Some(v);
                        break;
                    }
                    Err(CliError::Daemon { status: 404, .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            match got {
                Some(v) => found.push(v),
                None => missing.push(n.clone()),
            }
        }
        print_objects(&found, self.format.as_deref())?;
        if missing.is_empty() {
            Ok(())
        } else {
            for m in &missing {
                eprintln!("Error: No such object: {m}");
            }
            Err(CliError::Status(1))
        }
    }
}

async fn version(c: &Client, f: FormatOnly) -> Result<()> {
    let server = c.get("/version").await;
    let client = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": "1.50",
        "Os": std::env::consts::OS,
        "Arch": if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH },
    });
    // The docker CLI's templates see Go's field names (`.Server.APIVersion`), not the JSON's.
    let mut client = client;
    client["APIVersion"] = client["ApiVersion"].clone();
    let server = server.map(|mut s| {
        s["APIVersion"] = s["ApiVersion"].clone();
        s
    });
    let all = json!({"Client": client, "Server": server.as_ref().ok()});
    if let Some(f) = f.format {
        stdout(&(Format::parse(&f)?.render(&all)? + "\n"))?;
        return server.map(|_| ());
    }
    let mut out = format!(
        "Client:\n Version:           {}\n API version:       1.50\n OS/Arch:           {}/{}\n",
        client["Version"].as_str().unwrap_or(""),
        client["Os"].as_str().unwrap_or(""),
        client["Arch"].as_str().unwrap_or("")
    );
    let s = server?;
    let field = |k: &str| s[k].as_str().unwrap_or("").to_string();
    out.push_str(&format!(
        "\nServer: {}\n Engine:\n  Version:          {}\n  API version:      {} (minimum version {})\n  Git commit:       {}\n  OS/Arch:          {}/{}\n",
        s["Platform"]["Name"].as_str().unwrap_or("wharf"),
        field("Version"),
        field("ApiVersion"),
        field("MinAPIVersion"),
        field("GitCommit"),
        field("Os"),
        field("Arch")
    ));
    stdout(&out)
}

async fn info(c: &Client, f: FormatOnly) -> Result<()> {
    let i = c.get("/info").await?;
    if let Some(f) = f.format {
        return stdout(&(Format::parse(&f)?.render(&i)? + "\n"));
    }
    let v = |k: &str| match &i[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    stdout(&format!(
        "Server:\n Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}\n Images: {}\n Server Version: {}\n Storage Driver: {}\n Logging Driver: {}\n Cgroup Driver: {}\n Cgroup Version: {}\n Kernel Version: {}\n Operating System: {}\n OSType: {}\n Architecture: {}\n CPUs: {}\n Total Memory: {}\n Name: {}\n ID: {}\n Docker Root Dir: {}\n",
        v("Containers"),
        v("ContainersRunning"),
        v("ContainersPaused"),
        v("ContainersStopped"),
        v("Images"),
        v("ServerVersion"),
        v("Driver"),
        v("LoggingDriver"),
        v("CgroupDriver"),
        v("CgroupVersion"),
        v("KernelVersion"),
        v("OperatingSystem"),
        v("OSType"),
        v("Architecture"),
        v("NCPU"),
        wharf_units::bytes_size(i["MemTotal"].as_f64().unwrap_or(0.0)),
        v("Name"),
        v("ID"),
        v("DockerRootDir"),
    ))
}

async fn dispatch(cli: Cli) -> Result<()> {
    let c = Client::new(cli.host)?;
    let cmd = match cli.cmd {
        Cmd::Container(g) => g.into_cmd(),
        Cmd::Image(g) => g.into_cmd(),
        Cmd::System(g) => g.into_cmd(),
        other => other,
    };
    run_cmd(cmd, &c).await
}

async fn run_cmd(cmd: Cmd, c: &Client) -> Result<()> {
    match cmd {
        Cmd::Run(x) => x.run(c).await,
        Cmd::Create(x) => x.run(c).await,
        Cmd::Ps(x) => x.run(c).await,
        Cmd::Start(x) => x.run(c).await,
        Cmd::Stop(x) => x.run(c, false).await,
        Cmd::Restart(x) => x.run(c, true).await,
        Cmd::Kill(x) => x.run(c).await,
        Cmd::Pause(x) => x.run(c, "pause").await,
        Cmd::Unpause(x) => x.run(c, "unpause").await,
        Cmd::Wait(x) => x.wait(c).await,
        Cmd::Rm(x) => x.run(c).await,
        Cmd::Logs(x) => x.run(c).await,
        Cmd::Exec(x) => x.run(c).await,
        Cmd::Attach(x) => x.run(c).await,
        Cmd::Rename(x) => x.run(c).await,
        Cmd::Top(x) => x.run(c).await,
        Cmd::Update(x) => x.run(c).await,
        Cmd::Cp(x) => x.run(c).await,
        Cmd::Diff(x) => x.run(c).await,
        Cmd::Export(x) => x.run(c).await,
        Cmd::Container(_) | Cmd::Image(_) | Cmd::System(_) => unreachable!("groups are resolved first"),
        Cmd::ContainerPrune(x) => x.run(c).await,
        Cmd::ImagePrune(x) => x.run(c).await,
        Cmd::SystemPrune(x) => x.run(c).await,
        Cmd::Completion(x) => x.run(),
        Cmd::ManPages(x) => x.run(),
        Cmd::Events(x) => x.run(c).await,
        Cmd::Volume(x) => x.run(c).await,
        Cmd::Network(x) => x.run(c).await,
        Cmd::Stats(x) => x.run(c).await,
        Cmd::Port(x) => x.run(c).await,
        Cmd::Images(x) => x.run(c).await,
        Cmd::Commit(x) => x.run(c).await,
        Cmd::Pull(x) => x.run(c).await,
        Cmd::Push(x) => x.run(c).await,
        Cmd::Login(x) => x.run(c).await,
        Cmd::Logout(x) => x.run().await,
        Cmd::Search(x) => x.run(c).await,
        Cmd::Rmi(x) => x.run(c).await,
        Cmd::Tag(x) => x.run(c).await,
        Cmd::History(x) => x.run(c).await,
        Cmd::Load(x) => x.run(c).await,
        Cmd::Build(x) => x.run(c).await,
        Cmd::Save(x) => x.run(c).await,
        Cmd::Import(x) => x.run(c).await,
        Cmd::Inspect(x) => x.run(c).await,
        Cmd::Version(f) => version(c, f).await,
        Cmd::Info(f) => info(c, f).await,
    }
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let r = rt.block_on(dispatch(cli));
    // Streams to stdin may still be blocked in a read; do not wait for them.
    rt.shutdown_background();
    match r {
        Ok(()) => {}
        Err(CliError::Status(code)) => std::process::exit(code),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(e.exit_code());
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_stops_parsing_flags_at_the_image() {
        let cli = Cli::try_parse_from([
            "wharf", "run", "--rm", "-h", "box", "-e", "A=1", "busybox", "ls", "-l", "--rm",
        ])
        .unwrap();
        let Cmd::Run(r) = cli.cmd else { panic!("not run") };
        let body = r.body_for_test().unwrap();
        assert_eq!(body["Image"], "busybox");
        assert_eq!(body["Cmd"], json!(["ls", "-l", "--rm"]));
        assert_eq!(body["Hostname"], "box");
        assert_eq!(body["Env"], json!(["A=1"]));
        assert_eq!(body["HostConfig"]["AutoRemove"], true);
    }

    #[test]
    fn resource_flags_become_host_config() {
        let cli = Cli::try_parse_from([
            "wharf",
            "create",
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "-1",
            "--ulimit",
            "nofile=100:200",
            "--restart",
            "on-failure:3",
            "--init",
            "--ipc",
            "shareable",
            "busybox",
        ])
        .unwrap();
        let Cmd::Create(c) = cli.cmd else { panic!("not create") };
        let hc = c.body_for_test().unwrap()["HostConfig"].clone();
        assert_eq!(hc["Memory"], 64 << 20);
        assert_eq!(hc["NanoCpus"], 500_000_000);
        assert_eq!(hc["PidsLimit"], -1);
        assert_eq!(hc["Ulimits"], json!([{"Name": "nofile", "Soft": 100, "Hard": 200}]));
        assert_eq!(
            hc["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert_eq!(hc["Init"], true);
        assert_eq!(hc["IpcMode"], "shareable");
    }
}
