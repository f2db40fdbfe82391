//! `wharf build`: docker's `build` flags, over the same `POST /build` the docker CLI uses, plus
//! what the classic path lacks: a context sent by content (only the files the daemon does not
//! hold travel; see `buildctx`), `--secret`, `--output`, `--iidfile`, and `--progress` with a
//! live per-step view on a terminal. Against a daemon that does not take contexts by content
//! (dockerd), it sends the context as a tar, as the docker CLI does.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};
use wharf_dockerfile::ignore::Ignore;

use crate::buildctx::{self, DigestCache};
use crate::client::{q, Body, Client};
use crate::error::{CliError, Result};

/// Build an image from a Dockerfile
#[derive(clap::Args, Debug)]
pub struct BuildCmd {
    /// Name and optionally a tag (format: "name:tag")
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile"; "-" reads it from stdin)
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pull: bool,
    /// Set metadata for an image
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long, default_value = "default")]
    network: String,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    platform: Option<String>,
    /// Add a custom host-to-IP mapping ("host:ip")
    #[arg(long = "add-host")]
    add_hosts: Vec<String>,
    /// Images to consider as cache sources
    #[arg(long = "cache-from")]
    cache_from: Vec<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Always remove intermediate containers
    #[arg(long = "force-rm")]
    force_rm: bool,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    rm: bool,
    /// Write the image ID to the file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Secret to expose to the build ("id=mysecret[,src=/local/secret]" or "id=x,env=VAR")
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// Output destination ("type=local,dest=path", "type=tar,dest=file|-", or a directory)
    #[arg(short = 'o', long = "output")]
    output: Option<String>,
    /// Type of progress output: auto, plain, tty, quiet
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Build context: a directory, or "-" for a Dockerfile (or a context tar) on stdin
    path: String,
}

/// Where `--output` puts the result's file system.
#[derive(Debug, PartialEq, Eq)]
enum Output {
    Local(PathBuf),
    Tar(String),
}

fn parse_output(s: &str) -> Result<Output> {
    if !s.contains('=') {
        return Ok(Output::Local(s.into()));
    }
    let mut kind = "local";
    let mut dest = None;
    for kv in s.split(',') {
        match kv.split_once('=') {
            Some(("type", v)) => {
                kind = if v == "local" {
                    "local"
                } else if v == "tar" {
                    "tar"
                } else {
                    ""
                }
            }
            Some(("dest", v)) => dest = Some(v.to_string()),
            _ => return Err(CliError::Usage(format!("invalid --output {s:?}"))),
        }
    }
    let dest = dest.ok_or_else(|| CliError::Usage(format!("--output {s:?}: dest is required")))?;
    match kind {
        "local" => Ok(Output::Local(dest.into())),
        "tar" => Ok(Output::Tar(dest)),
        _ => Err(CliError::Usage(format!("--output {s:?}: type is local or tar"))),
    }
}

/// `--secret id=x[,src=path|,env=VAR]`: id to content, as base64. With neither, the variable
/// named by the id, else the file.
fn read_secrets(specs: &[String]) -> Result<BTreeMap<String, String>> {
    use base64::Engine as _;
    let mut out = BTreeMap::new();
    for s in specs {
        let mut id = None;
        let mut src = None;
        let mut env = None;
        for kv in s.split(',') {
            match kv.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(v.to_string()),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", "file" | "env")) => {}
                _ => return Err(CliError::Usage(format!("invalid --secret {s:?}"))),
            }
        }
        let id = id.ok_or_else(|| CliError::Usage(format!("--secret {s:?}: id is required")))?;
        let value = match (src, env) {
            (Some(p), _) => std::fs::read(&p).map_err(|e| CliError::Usage(format!("secret {id}: {p}: {e}")))?,
            (None, Some(v)) => std::env::var(&v)
                .map_err(|_| CliError::Usage(format!("secret {id}: variable {v} is not set")))?
                .into_bytes(),
            (None, None) => match std::env::var(&id) {
                Ok(v) => v.into_bytes(),
                Err(_) => std::fs::read(&id).map_err(|e| CliError::Usage(format!("secret {id}: {e}")))?,
            },
        };
        out.insert(id, base64::engine::general_purpose::STANDARD.encode(value));
    }
    Ok(out)
}

impl BuildCmd {
    fn query(&self, dockerfile: &str) -> String {
        let mut p = vec![format!("dockerfile={}", q(dockerfile))];
        for t in &self.tags {
            p.push(format!("t={}", q(t)));
        }
        let args: BTreeMap<&str, Option<String>> = self
            .build_args
            .iter()
            .map(|a| match a.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (a.as_str(), std::env::var(a).ok()),
            })
            .collect();
        p.push(format!("buildargs={}", q(&json!(args).to_string())));
        let labels: BTreeMap<&str, &str> = self
            .labels
            .iter()
            .map(|l| l.split_once('=').unwrap_or((l, "")))
            .collect();
        p.push(format!("labels={}", q(&json!(labels).to_string())));
        if !self.cache_from.is_empty() {
            p.push(format!("cachefrom={}", q(&json!(self.cache_from).to_string())));
        }
        if let Some(t) = &self.target {
            p.push(format!("target={}", q(t)));
        }
        if let Some(pl) = &self.platform {
            p.push(format!("platform={}", q(pl)));
        }
        for h in &self.add_hosts {
            p.push(format!("extrahosts={}", q(h)));
        }
        p.push(format!("networkmode={}", q(&self.network)));
        p.push(format!("nocache={}", self.no_cache as u8));
        p.push(format!("pull={}", self.pull as u8));
        p.push(format!("rm={}", self.rm as u8));
        p.push(format!("forcerm={}", self.force_rm as u8));
        p.push(format!("q={}", self.quiet as u8));
        format!("/build?{}", p.join("&"))
    }

    pub async fn run(self, c: &Client) -> Result<()> {
        let secrets = read_secrets(&self.secrets)?;
        let output = self.output.as_deref().map(parse_output).transpose()?;
        let mode = match (self.quiet, self.progress.as_str()) {
            (true, _) | (_, "quiet") => Progress::Quiet,
            (_, "plain") => Progress::Plain,
            (_, "tty") => Progress::Tty,
            (_, "auto") if rustix::termios::isatty(std::io::stderr()) => Progress::Tty,
            (_, "auto") => Progress::Plain,
            (_, other) => return Err(CliError::Usage(format!("invalid --progress {other:?}"))),
        };
        let res = self.send_context(c, &secrets).await?;
        let id = show_progress(res, mode).await?;
        if let Some(f) = &self.iidfile {
            std::fs::write(f, &id).map_err(|e| CliError::Usage(format!("{}: {e}", f.display())))?;
        }
        if let Some(o) = output {
            export(c, &id, &o).await?;
        }
        if mode == Progress::Quiet {
            println!("{id}");
        }
        Ok(())
    }

    /// Sends the context: by content when the daemon takes it so, else as a tar.
    async fn send_context(
        &self,
        c: &Client,
        secrets: &BTreeMap<String, String>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let stdin_df = self.file.as_deref() == Some("-") || self.path == "-";
        let ctx = if self.path == "-" {
            tempfile_dir()?
        } else {
            PathBuf::from(&self.path)
        };
        let mut dockerfile = self
            .file
            .clone()
            .filter(|f| f != "-")
            .unwrap_or_else(|| "Dockerfile".into());
        let ignore_text = std::fs::read_to_string(ctx.join(format!("{dockerfile}.dockerignore")))
            .or_else(|_| std::fs::read_to_string(ctx.join(".dockerignore")))
            .unwrap_or_default();
        // A Dockerfile outside the context (or from stdin) is sent under a name of its own.
        let outside = Path::new(&dockerfile).is_absolute() || dockerfile.starts_with("../");
        let mut extra: Option<(String, Vec<u8>)> = None;
        if stdin_df || outside {
            let body = if stdin_df {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                    .map_err(|e| CliError::Usage(format!("reading the Dockerfile from stdin: {e}")))?;
                b
            } else {
                std::fs::read(&dockerfile).map_err(|e| CliError::Usage(format!("{dockerfile}: {e}")))?
            };
            dockerfile = format!(".dockerfile.{}", std::process::id());
            extra = Some((dockerfile.clone(), body));
        }
        let ignore = Ignore::parse(&ignore_text);
        let keep = [dockerfile.as_str(), ".dockerignore"];
        let mut entries = buildctx::walk(&ctx, &ignore, &keep)?;
        let mut scratch = None;
        if let Some((name, body)) = extra {
            let d = tempfile_dir()?;
            let p = d.join(&name);
            std::fs::write(&p, body).map_err(|e| CliError::Usage(e.to_string()))?;
            entries.push(buildctx::Entry {
                path: name,
                kind: "file",
                mode: 0o644,
                digest: None,
                target: None,
                mtime: None,
                local: Some(p),
            });
            scratch = Some(d);
        }
        let mut cache = DigestCache::load(&ctx);
        let mut es = entries;
        buildctx::digest_all(&mut es, &mut cache)?;
        cache.save(&es);
        let digests: Vec<String> = es.iter().filter_map(|e| e.digest.clone()).collect();
        let path = self.query(&dockerfile);
        let r = match c
            .json(
                Method::POST,
                "/build/context/missing",
                Some(&json!({ "digests": digests })),
            )
            .await
        {
            Ok(v) => {
                let missing: Vec<String> = serde_json::from_value(v["missing"].clone()).unwrap_or_default();
                if !missing.is_empty() {
                    let body = stream_blobs(es.clone(), missing)?;
                    let res = c
                        .call_raw(Method::POST, "/build/context/upload", body, "application/x-tar")
                        .await?;
                    res.into_body().collect().await?;
                }
                let m = buildctx::manifest(&es, secrets);
                c.call_raw(
                    Method::POST,
                    &path,
                    Body::json(&m),
                    "application/vnd.wharf.build-context+json",
                )
                .await
            }
            // Not wharfd: the context as a tar, as the docker CLI sends it.
            Err(CliError::Daemon { status: 404, .. }) => {
                if !secrets.is_empty() {
                    return Err(CliError::Usage(
                        "--secret needs a daemon that takes contexts by content (wharfd)".into(),
                    ));
                }
                let mut tar = tar::Builder::new(Vec::new());
                tar.follow_symlinks(false);
                for e in &es {
                    let src = e.local.clone().unwrap_or_else(|| ctx.join(&e.path));
                    tar.append_path_with_name(&src, &e.path)
                        .map_err(|err| CliError::Usage(err.to_string()))?;
                }
                let bytes = tar.into_inner().map_err(|e| CliError::Usage(e.to_string()))?;
                c.call_raw(Method::POST, &path, Body::Full(bytes.into()), "application/x-tar")
                    .await
            }
            Err(e) => Err(e),
        };
        if let Some(d) = scratch {
            let _ = std::fs::remove_dir_all(d);
        }
        if self.path == "-" {
            let _ = std::fs::remove_dir_all(&ctx);
        }
        r
    }
}

/// An empty directory of our own under the system's temporary directory.
fn tempfile_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "wharf-build-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::create_dir_all(&d).map_err(|e| CliError::Usage(format!("{}: {e}", d.display())))?;
    Ok(d)
}

/// The tar of the missing files, written by a thread of its own as the daemon reads it.
fn stream_blobs(entries: Vec<buildctx::Entry>, missing: Vec<String>) -> Result<Body> {
    let (a, b) = std::os::unix::net::UnixStream::pair().map_err(|e| CliError::Usage(e.to_string()))?;
    std::thread::spawn(move || {
        let _ = buildctx::write_blobs(&entries, &missing, std::io::BufWriter::with_capacity(1 << 20, a));
    });
    b.set_nonblocking(true).map_err(|e| CliError::Usage(e.to_string()))?;
    let r = tokio::net::UnixStream::from_std(b).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(Body::Reader(Box::pin(r)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Quiet,
    Plain,
    Tty,
}

/// Reads the build's JSON lines as they come and shows them; returns the image ID.
async fn show_progress(res: hyper::Response<hyper::body::Incoming>, mode: Progress) -> Result<String> {
    let mut body = res.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut id = String::new();
    let mut view = crate::buildview::View::new(mode == Progress::Tty);
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(text).map_err(|e| CliError::Protocol(e.to_string()))?;
            if let Some(e) = v.get("error").and_then(Value::as_str) {
                view.fail();
                return Err(CliError::Protocol(e.to_string()));
            }
            if let Some(i) = v["aux"]["ID"].as_str() {
                id = i.to_string();
            }
            if let Some(s) = v.get("stream").and_then(Value::as_str) {
                // A daemon that sends no `aux` (dockerd's quiet builds): the ID from the text.
                let t = s.trim();
                if id.is_empty() && t.starts_with("sha256:") && !t.contains(char::is_whitespace) {
                    id = t.to_string();
                } else if let Some(short) = t.strip_prefix("Successfully built ") {
                    if id.is_empty() {
                        id = short.to_string();
                    }
                }
                match mode {
                    Progress::Quiet => {}
                    Progress::Plain => {
                        print!("{s}");
                        let _ = std::io::stdout().flush();
                    }
                    Progress::Tty => view.text(s),
                }
            }
        }
    }
    view.finish();
    if id.is_empty() {
        return Err(CliError::Protocol("the build ended without an image".into()));
    }
    Ok(id)
}

/// `--output`: the image's file system, through a container that never runs.
async fn export(c: &Client, id: &str, o: &Output) -> Result<()> {
    let created = c
        .json(
            Method::POST,
            "/containers/create",
            Some(&json!({"Image": id, "Cmd": ["/wharf-export"], "Entrypoint": [""], "NetworkDisabled": true})),
        )
        .await?;
    let cid = created["Id"].as_str().unwrap_or("").to_string();
    let r = async {
        let res = c
            .call(Method::GET, &format!("/containers/{cid}/export"), Body::empty())
            .await?;
        let bytes = res.into_body().collect().await?.to_bytes();
        match o {
            Output::Tar(dest) if dest == "-" => std::io::stdout()
                .write_all(&bytes)
                .map_err(|e| CliError::Usage(e.to_string())),
            Output::Tar(dest) => std::fs::write(dest, &bytes).map_err(|e| CliError::Usage(format!("{dest}: {e}"))),
            Output::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| CliError::Usage(format!("{}: {e}", dir.display())))?;
                let mut ar = tar::Archive::new(&bytes[..]);
                ar.set_preserve_permissions(true);
                ar.unpack(dir)
                    .map_err(|e| CliError::Usage(format!("{}: {e}", dir.display())))
            }
        }
    }
    .await;
    let _ = c
        .call(Method::DELETE, &format!("/containers/{cid}?force=1"), Body::empty())
        .await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_and_secrets_as_buildx_takes_them() {
        assert_eq!(parse_output("out").unwrap(), Output::Local("out".into()));
        assert_eq!(parse_output("type=local,dest=d").unwrap(), Output::Local("d".into()));
        assert_eq!(parse_output("type=tar,dest=-").unwrap(), Output::Tar("-".into()));
        assert!(parse_output("type=registry,dest=x").is_err());
        assert!(parse_output("type=tar").is_err());
        std::env::set_var("WHARF_TEST_SECRET", "s3");
        let s = read_secrets(&["id=a,env=WHARF_TEST_SECRET".into()]).unwrap();
        assert_eq!(s["a"], "czM=");
        assert!(read_secrets(&["src=x".into()]).is_err());
        assert!(read_secrets(&["id=b,env=WHARF_TEST_NOT_SET".into()]).is_err());
    }
}
