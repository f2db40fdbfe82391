//! Image commands: `images`, `rmi`, `tag`, `history`, `load`, `save`, `import`, with the docker
//! CLI's columns, flags and messages.

use std::io::Write;

use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::client::{q, Body, Client};
use crate::error::{CliError, Result};
use crate::format::Format;
use crate::{ago, short_id, stdout};

/// `wharf images`.
#[derive(Args, Debug)]
pub struct ImagesCmd {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Filter by repository[:tag]
    reference: Option<String>,
}

/// Docker's filters parameter from `key=value` flags.
pub fn filters_param(list: &[String], extra: Option<(&str, &str)>) -> Result<String> {
    let mut m = serde_json::Map::new();
    let mut add = |k: &str, v: &str| {
        let e = m.entry(k.to_string()).or_insert_with(|| json!({}));
        e[v] = json!(true);
    };
    for f in list {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("bad format of filter (expected name=value): {f}")))?;
        add(k, v);
    }
    if let Some((k, v)) = extra {
        add(k, v);
    }
    Ok(if m.is_empty() {
        String::new()
    } else {
        format!("&filters={}", q(&Value::Object(m).to_string()))
    })
}

fn split_repo_tag(t: &str) -> (String, String) {
    match t.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => (r.to_string(), tag.to_string()),
        _ => (t.to_string(), "<none>".into()),
    }
}

impl ImagesCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let filters = filters_param(&self.filter, self.reference.as_deref().map(|r| ("reference", r)))?;
        let list = c
            .get(&format!("/images/json?all={}&digests=1{filters}", self.all as u8))
            .await?;
        let mut rows = Vec::new();
        let mut ids = Vec::new();
        for img in list.as_array().into_iter().flatten() {
            let id = img["Id"].as_str().unwrap_or_default();
            let shown = if self.no_trunc { id.to_string() } else { short_id(id) };
            let tags: Vec<String> = img["RepoTags"]
                .as_array()
                .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
                .unwrap_or_default();
            let digests: Vec<&str> = img["RepoDigests"]
                .as_array()
                .map(|a| a.iter().filter_map(|d| d.as_str()).collect())
                .unwrap_or_default();
            // As the docker CLI: a repository known only by digest gets a `<none>` tag row.
            let mut tags = tags;
            let tagged: Vec<String> = tags.iter().map(|t| split_repo_tag(t).0).collect();
            for d in &digests {
                if let Some((repo, _)) = d.split_once('@') {
                    if !tagged.iter().any(|r| r == repo) && !tags.iter().any(|t| t == repo) {
                        tags.push(repo.to_string());
                    }
                }
            }
            if tags.is_empty() {
                tags.push("<none>:<none>".to_string());
            }
            for t in tags {
                let (repo, tag) = split_repo_tag(&t);
                let digest = digests
                    .iter()
                    .find(|d| d.starts_with(&format!("{repo}@")))
                    .and_then(|d| d.split_once('@'))
                    .map(|(_, d)| d.to_string())
                    .unwrap_or_else(|| "<none>".into());
                let created = img["Created"].as_i64().unwrap_or(0);
                ids.push(shown.clone());
                rows.push(json!({
                    "ID": shown,
                    "Repository": repo,
                    "Tag": tag,
                    "Digest": digest,
                    "CreatedSince": ago(created),
                    "CreatedAt": crate::local_time(created),
                    "Size": wharf_units::human_size(img["Size"].as_f64().unwrap_or(0.0)),
                    "Containers": img["Containers"].to_string(),
                }));
            }
        }
        if self.quiet {
            let mut out = String::new();
            for id in ids {
                out.push_str(&id);
                out.push('\n');
            }
            return stdout(&out);
        }
        let default = if self.digests {
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
        } else {
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
        };
        let f = Format::parse(self.format.as_deref().unwrap_or(default))?;
        stdout(&f.list(
            &rows,
            &[
                ("ID", "IMAGE ID"),
                ("Repository", "REPOSITORY"),
                ("Tag", "TAG"),
                ("Digest", "DIGEST"),
                ("CreatedSince", "CREATED"),
                ("CreatedAt", "CREATED AT"),
                ("Size", "SIZE"),
                ("Containers", "CONTAINERS"),
            ],
        )?)
    }
}

/// `wharf rmi`.
#[derive(Args, Debug)]
pub struct RmiCmd {
    /// Force removal of the image
    #[arg(short, long)]
    force: bool,
    /// Do not delete untagged parents
    #[arg(long)]
    no_prune: bool,
    /// Images
    #[arg(required = true)]
    images: Vec<String>,
}

impl RmiCmd {
    /// Run it; every image is tried, the first error decides the exit code.
    pub async fn run(self, c: &Client) -> Result<()> {
        let mut failed = None;
        for i in &self.images {
            let path = format!(
                "/images/{}?force={}&noprune={}",
                q(i),
                self.force as u8,
                self.no_prune as u8
            );
            match c.json(Method::DELETE, &path, None).await {
                Ok(v) => {
                    let mut out = String::new();
                    for item in v.as_array().into_iter().flatten() {
                        if let Some(t) = item["Untagged"].as_str() {
                            out.push_str(&format!("Untagged: {t}\n"));
                        }
                        if let Some(d) = item["Deleted"].as_str() {
                            out.push_str(&format!("Deleted: {d}\n"));
                        }
                    }
                    stdout(&out)?;
                }
                Err(e) => {
                    eprintln!("{e}");
                    failed = Some(CliError::Status(1));
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// `wharf tag`.
#[derive(Args, Debug)]
pub struct TagCmd {
    /// SOURCE_IMAGE[:TAG]
    source: String,
    /// TARGET_IMAGE[:TAG]
    target: String,
}

impl TagCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let (repo, tag) = match self.target.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
            _ => (self.target.clone(), "latest".into()),
        };
        c.post(&format!(
            "/images/{}/tag?repo={}&tag={}",
            q(&self.source),
            q(&repo),
            q(&tag)
        ))
        .await
    }
}

/// `wharf history`.
#[derive(Args, Debug)]
pub struct HistoryCmd {
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Image
    image: String,
}

impl HistoryCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let list = c.get(&format!("/images/{}/history", q(&self.image))).await?;
        let mut rows = Vec::new();
        for h in list.as_array().into_iter().flatten() {
            let id = h["Id"].as_str().unwrap_or("<missing>");
            let id = if id == "<missing>" || self.no_trunc {
                id.to_string()
            } else {
                short_id(id)
            };
            let created = h["Created"].as_i64().unwrap_or(0);
            let by = h["CreatedBy"].as_str().unwrap_or_default().replace('\t', " ");
            let by = if self.no_trunc { by } else { ellipsis(&by, 45) };
            let size = h["Size"].as_f64().unwrap_or(0.0);
            rows.push(json!({
                "ID": id,
                "CreatedSince": if self.human { ago(created) } else { crate::local_time(created) },
                "CreatedAt": crate::local_time(created),
                "CreatedBy": by,
                "Size": if self.human { wharf_units::human_size(size) } else { (size as i64).to_string() },
                "Comment": h["Comment"].as_str().unwrap_or_default(),
            }));
        }
        if self.quiet {
            let out: String = rows
                .iter()
                .map(|r| format!("{}\n", r["ID"].as_str().unwrap_or("")))
                .collect();
            return stdout(&out);
        }
        let f = Format::parse(
            self.format
                .as_deref()
                .unwrap_or("table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"),
        )?;
        stdout(&f.list(
            &rows,
            &[
                ("ID", "IMAGE"),
                ("CreatedSince", "CREATED"),
                ("CreatedAt", "CREATED AT"),
                ("CreatedBy", "CREATED BY"),
                ("Size", "SIZE"),
                ("Comment", "COMMENT"),
            ],
        )?)
    }
}

/// Docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max - 1).chain(std::iter::once('…')).collect()
    }
}

/// `wharf load`.
#[derive(Args, Debug)]
pub struct LoadCmd {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

async fn open_input(path: Option<&str>) -> Result<Body> {
    Ok(match path {
        None | Some("-") => Body::Reader(Box::pin(tokio::io::stdin())),
        Some(p) => Body::Reader(Box::pin(
            tokio::fs::File::open(p)
                .await
                .map_err(|e| CliError::Usage(format!("open {p}: {e}")))?,
        )),
    })
}

/// Print a JSON progress stream's `stream` lines and fail on its `error`.
async fn print_progress(res: hyper::Response<hyper::body::Incoming>, quiet: bool) -> Result<()> {
    let bytes = res.into_body().collect().await?.to_bytes();
    let mut out = String::new();
    for v in serde_json::Deserializer::from_slice(&bytes).into_iter::<Value>() {
        let v = v.map_err(|e| CliError::Protocol(e.to_string()))?;
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            stdout(&out)?;
            return Err(CliError::Protocol(e.to_string()));
        }
        if let Some(s) = v.get("stream").and_then(|s| s.as_str()) {
            if !quiet {
                out.push_str(s);
            }
        } else if let Some(s) = v.get("status").and_then(|s| s.as_str()) {
            if !quiet {
                out.push_str(s);
                out.push('\n');
            }
        }
    }
    stdout(&out)
}

impl LoadCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        if self.input.is_none() && rustix::termios::isatty(std::io::stdin()) {
            return Err(CliError::Usage("requested load from stdin, but stdin is empty".into()));
        }
        let body = open_input(self.input.as_deref()).await?;
        let res = c
            .call_raw(
                Method::POST,
                &format!("/images/load?quiet={}", self.quiet as u8),
                body,
                "application/x-tar",
            )
            .await?;
        print_progress(res, false).await
    }
}

/// `wharf save`.
#[derive(Args, Debug)]
pub struct SaveCmd {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<String>,
    /// Images
    #[arg(required = true)]
    images: Vec<String>,
}

impl SaveCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        if self.output.is_none() && rustix::termios::isatty(std::io::stdout()) {
            return Err(CliError::Usage(
                "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
            ));
        }
        let names: Vec<String> = self.images.iter().map(|i| format!("names={}", q(i))).collect();
        let res = c
            .call(Method::GET, &format!("/images/get?{}", names.join("&")), Body::empty())
            .await?;
        let mut body = res.into_body();
        let mut out: std::pin::Pin<Box<dyn tokio::io::AsyncWrite>> = match &self.output {
            Some(p) => Box::pin(tokio::fs::File::create(p).await?),
            None => Box::pin(tokio::io::stdout()),
        };
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                out.write_all(&data).await?;
            }
        }
        out.flush().await?;
        Ok(())
    }
}

/// `wharf import`.
#[derive(Args, Debug)]
pub struct ImportCmd {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    platform: Option<String>,
    /// file|URL|-
    source: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

impl ImportCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let mut path = String::from("/images/create?fromSrc=-");
        if let Some(r) = &self.reference {
            let (repo, tag) = match r.rsplit_once(':') {
                Some((a, t)) if !t.contains('/') => (a.to_string(), t.to_string()),
                _ => (r.clone(), String::new()),
            };
            path.push_str(&format!("&repo={}&tag={}", q(&repo), q(&tag)));
        }
        for ch in &self.change {
            path.push_str(&format!("&changes={}", q(ch)));
        }
        if let Some(m) = &self.message {
            path.push_str(&format!("&message={}", q(m)));
        }
        if let Some(p) = &self.platform {
            path.push_str(&format!("&platform={}", q(p)));
        }
        let body = open_input(Some(&self.source)).await?;
        let res = c.call_raw(Method::POST, &path, body, "application/x-tar").await?;
        print_progress(res, false).await
    }
}

/// Write the final newline-terminated JSON of an inspect.
pub fn print_json_array(items: &[Value]) -> Result<()> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(&items, &mut ser).map_err(|e| CliError::Protocol(e.to_string()))?;
    buf.push(b'\n');
    std::io::stdout().write_all(&buf)?;
    Ok(())
}
