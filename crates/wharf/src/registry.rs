//! `pull`, `push`, `login`, `logout` and `search`, with credentials kept in the docker CLI's
//! own config file (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`: `auths`,
//! `credsStore`, `credHelpers`), so that `wharf login` and `docker login` share them. Progress
//! renders as `docker pull` does: one line per layer, updated in place on a terminal, status
//! lines only otherwise.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{q, Body, Client};
use crate::error::{CliError, Result};
use crate::format::Format;

/// Docker Hub's key in config files.
const HUB_KEY: &str = "https://index.docker.io/v1/";

/// The registry a reference names (`docker.io` when none), as the config file keys it.
pub fn registry_of(name: &str) -> String {
    let first = name.split('/').next().unwrap_or("");
    if name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        first.to_string()
    } else {
        "docker.io".to_string()
    }
}

fn config_key(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    match s.as_str() {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => HUB_KEY.to_string(),
        _ => s,
    }
}

fn config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".docker")
            .join("config.json"),
    }
}

fn load_config() -> Result<Value> {
    match std::fs::read(config_path()) {
        Ok(b) if b.iter().all(|c| c.is_ascii_whitespace()) => Ok(json!({})),
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| CliError::Usage(format!("loading config file {}: {e}", config_path().display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e.into()),
    }
}

fn save_config(v: &Value) -> Result<()> {
    let p = config_path();
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = p.with_extension("json.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(v).expect("JSON"))?;
        f.write_all(b"\n")?;
    }
    std::fs::rename(&tmp, &p)?;
    Ok(())
}

fn helper_for(cfg: &Value, key: &str) -> Option<String> {
    cfg["credHelpers"][key]
        .as_str()
        .or_else(|| cfg["credsStore"].as_str())
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

fn run_helper(helper: &str, action: &str, input: &str) -> Result<String> {
    let prog = format!("docker-credential-{helper}");
    let mut child = Command::new(&prog)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::Usage(format!("credential helper {prog}: {e}")))?;
    child.stdin.take().expect("stdin").write_all(input.as_bytes())?;
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out)?;
    let st = child.wait()?;
    if !st.success() {
        return Err(CliError::Usage(format!(
            "credential helper {prog} {action}: {}",
            out.trim()
        )));
    }
    Ok(out)
}

/// The stored credentials for `registry`, as the Engine API's auth config.
fn stored_auth(registry: &str) -> Result<Option<Value>> {
    let cfg = load_config()?;
    let key = config_key(registry);
    if let Some(h) = helper_for(&cfg, &key) {
        return match run_helper(&h, "get", &key) {
            Ok(out) => {
                let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
                let user = v["Username"].as_str().unwrap_or("");
                let secret = v["Secret"].as_str().unwrap_or("");
                Ok(Some(if user == "<token>" {
                    json!({"identitytoken": secret, "serveraddress": key})
                } else {
                    json!({"username": user, "password": secret, "serveraddress": key})
                }))
            }
            Err(_) => Ok(None),
        };
    }
    let e = &cfg["auths"][&key];
    if e.is_null() {
        return Ok(None);
    }
    let mut out = json!({"serveraddress": key});
    if let Some(a) = e["auth"].as_str() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a)
            .map_err(|_| CliError::Usage(format!("invalid auth for {key} in {}", config_path().display())))?;
        let s = String::from_utf8_lossy(&raw).to_string();
        let (u, p) = s.split_once(':').unwrap_or((&s, ""));
        out["username"] = json!(u);
        out["password"] = json!(p);
    }
    if let Some(t) = e["identitytoken"].as_str() {
        out["identitytoken"] = json!(t);
    }
    Ok(Some(out))
}

/// The `X-Registry-Auth` value for `registry` (URL-safe base64 of the auth config; `{}` when
/// there are no credentials, as the docker CLI sends).
pub fn auth_header(registry: &str) -> Result<String> {
    let v = stored_auth(registry)?.unwrap_or_else(|| json!({}));
    Ok(base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&v).expect("JSON")))
}

/// Render a pull or push progress stream. Returns the `aux` messages.
pub async fn render_progress(
    res: hyper::Response<hyper::body::Incoming>,
    quiet: bool,
    to_stderr: bool,
) -> Result<Vec<Value>> {
    let tty = !quiet
        && if to_stderr {
            rustix::termios::isatty(std::io::stderr())
        } else {
            rustix::termios::isatty(std::io::stdout())
        };
    let mp = indicatif::MultiProgress::with_draw_target(if to_stderr {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::stdout()
    });
    let line = |s: &str| {
        if to_stderr {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    let style = indicatif::ProgressStyle::with_template("{prefix}: {msg}").expect("template");
    let mut bars: HashMap<String, indicatif::ProgressBar> = HashMap::new();
    let mut aux = Vec::new();
    let mut body = res.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut failure: Option<String> = None;
    let mut handle = |v: Value, bars: &mut HashMap<String, indicatif::ProgressBar>| {
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            failure = Some(e.to_string());
            return;
        }
        if let Some(a) = v.get("aux") {
            aux.push(a.clone());
            return;
        }
        if quiet {
            return;
        }
        let status = v["status"].as_str().unwrap_or("");
        let id = v["id"].as_str().unwrap_or("");
        let progress = v["progress"].as_str().unwrap_or("");
        if id.is_empty() {
            if tty {
                let _ = mp.println(status);
            } else {
                line(status);
            }
            return;
        }
        if tty {
            let b = bars.entry(id.to_string()).or_insert_with(|| {
                let b = mp.add(indicatif::ProgressBar::new_spinner());
                b.set_style(style.clone());
                b.set_prefix(id.to_string());
                b
            });
            b.set_message(if progress.is_empty() {
                status.to_string()
            } else {
                format!("{status} {progress}")
            });
        } else if progress.is_empty() {
            line(&format!("{id}: {status}"));
        }
    };
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Ok(d) = frame.into_data() {
            buf.extend_from_slice(&d);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let t = String::from_utf8_lossy(&line);
                let t = t.trim();
                if t.is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(t).map_err(|e| CliError::Protocol(e.to_string()))?;
                handle(v, &mut bars);
            }
        }
    }
    let rest = String::from_utf8_lossy(&buf).trim().to_string();
    if !rest.is_empty() {
        let v: Value = serde_json::from_str(&rest).map_err(|e| CliError::Protocol(e.to_string()))?;
        handle(v, &mut bars);
    }
    for b in bars.values() {
        b.finish();
    }
    match failure {
        Some(e) => Err(CliError::Protocol(e)),
        None => Ok(aux),
    }
}

/// Pull `image` (as `run` and `create` do when it is missing), progress on stderr-like output.
pub async fn pull_image(c: &Client, image: &str, platform: Option<&str>, quiet: bool) -> Result<()> {
    let (name, tag) = split_tag(image);
    let mut path = format!("/images/create?fromImage={}", q(&name));
    path.push_str(&format!("&tag={}", q(tag.as_deref().unwrap_or("latest"))));
    if let Some(p) = platform {
        path.push_str(&format!("&platform={}", q(p)));
    }
    let res = c
        .call_with_header(
            Method::POST,
            &path,
            Body::empty(),
            "X-Registry-Auth",
            &auth_header(&registry_of(&name))?,
        )
        .await?;
    render_progress(res, quiet, true).await?;
    Ok(())
}

/// Split `name:tag` / `name@digest` (a port's colon is not a tag).
fn split_tag(image: &str) -> (String, Option<String>) {
    if let Some((n, d)) = image.split_once('@') {
        return (n.to_string(), Some(d.to_string()));
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, t)) => (image[..image.len() - t.len() - 1].to_string(), Some(t.to_string())),
        None => (image.to_string(), None),
    }
}

/// `wharf pull`.
#[derive(Args, Debug)]
pub struct PullCmd {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    all_tags: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Name of the image: NAME[:TAG|@DIGEST]
    name: String,
}

impl PullCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let (name, tag) = split_tag(&self.name);
        if self.all_tags && tag.is_some() {
            return Err(CliError::Usage("tag can't be used with --all-tags/-a".into()));
        }
        let mut path = format!("/images/create?fromImage={}", q(&name));
        let tag = if self.all_tags {
            String::new()
        } else {
            tag.clone().unwrap_or_else(|| "latest".into())
        };
        path.push_str(&format!("&tag={}", q(&tag)));
        if let Some(p) = &self.platform {
            path.push_str(&format!("&platform={}", q(p)));
        }
        if !self.all_tags
            && !self.quiet
            && !self.name.contains('@')
            && !self.name.rsplit('/').next().unwrap_or("").contains(':')
        {
            println!("Using default tag: latest");
        }
        let res = c
            .call_with_header(
                Method::POST,
                &path,
                Body::empty(),
                "X-Registry-Auth",
                &auth_header(&registry_of(&name))?,
            )
            .await?;
        render_progress(res, self.quiet, false).await?;
        // The docker CLI ends with the fully qualified reference.
        let full = qualify(&name);
        if self.all_tags {
            println!("{full}");
        } else if tag.starts_with("sha256:") {
            println!("{full}@{tag}");
        } else {
            println!("{full}:{tag}");
        }
        Ok(())
    }
}

/// `busybox` → `docker.io/library/busybox`.
fn qualify(name: &str) -> String {
    if registry_of(name) != "docker.io" {
        return name.to_string();
    }
    let path = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(name);
    if path.contains('/') {
        format!("docker.io/{path}")
    } else {
        format!("docker.io/library/{path}")
    }
}

/// `wharf push`.
#[derive(Args, Debug)]
pub struct PushCmd {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long = "all-tags")]
    all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Name of the image: NAME[:TAG]
    name: String,
}

impl PushCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let (name, tag) = split_tag(&self.name);
        if self.all_tags && tag.is_some() {
            return Err(CliError::Usage("tag can't be used with --all-tags/-a".into()));
        }
        let tag = if self.all_tags {
            String::new()
        } else {
            tag.unwrap_or_else(|| "latest".into())
        };
        if !self.all_tags && !self.name.rsplit('/').next().unwrap_or("").contains(':') && !self.quiet {
            println!("Using default tag: latest");
        }
        let path = format!("/images/{}/push?tag={}", name, q(&tag));
        let res = c
            .call_with_header(
                Method::POST,
                &path,
                Body::empty(),
                "X-Registry-Auth",
                &auth_header(&registry_of(&name))?,
            )
            .await?;
        let aux = render_progress(res, self.quiet, false).await?;
        if self.quiet {
            println!("{}", qualify(&name) + if tag.is_empty() { "" } else { ":" } + &tag);
        }
        let _ = aux;
        Ok(())
    }
}

/// `wharf login`.
#[derive(Args, Debug)]
pub struct LoginCmd {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    /// The registry (Docker Hub when omitted)
    server: Option<String>,
}

impl LoginCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let server = self.server.clone().unwrap_or_else(|| HUB_KEY.to_string());
        let key = config_key(&server);
        if self.password.is_some() && self.password_stdin {
            return Err(CliError::Usage(
                "--password and --password-stdin are mutually exclusive".into(),
            ));
        }
        let password = if self.password_stdin {
            if self.username.is_none() {
                return Err(CliError::Usage("Must provide --username with --password-stdin".into()));
            }
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s.trim_end_matches(['\n', '\r']).to_string()
        } else if let Some(p) = self.password.clone() {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p
        } else {
            String::new()
        };
        let Some(username) = self.username.clone() else {
            return Err(CliError::Usage(
                "Error: Cannot perform an interactive login from a non TTY device: pass --username and --password-stdin"
                    .into(),
            ));
        };
        if password.is_empty() {
            return Err(CliError::Usage("Error: Password Required".into()));
        }
        let body = json!({"username": username, "password": password, "serveraddress": key});
        let v = c.json(Method::POST, "/auth", Some(&body)).await?;
        let mut cfg = load_config()?;
        if let Some(h) = helper_for(&cfg, &key) {
            let input = json!({"ServerURL": key, "Username": username, "Secret": password}).to_string();
            run_helper(&h, "store", &input)?;
        } else {
            if !cfg.is_object() {
                cfg = json!({});
            }
            if !cfg["auths"].is_object() {
                cfg["auths"] = json!({});
            }
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            cfg["auths"][&key] = json!({"auth": auth});
            save_config(&cfg)?;
            eprintln!(
                "WARNING! Your password will be stored unencrypted in {}.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n",
                config_path().display()
            );
        }
        println!("{}", v["Status"].as_str().unwrap_or("Login Succeeded"));
        Ok(())
    }
}

/// `wharf logout`.
#[derive(Args, Debug)]
pub struct LogoutCmd {
    /// The registry (Docker Hub when omitted)
    server: Option<String>,
}

impl LogoutCmd {
    /// Run it.
    pub async fn run(self) -> Result<()> {
        let key = config_key(self.server.as_deref().unwrap_or(HUB_KEY));
        let mut cfg = load_config()?;
        let stored = !cfg["auths"][&key].is_null();
        let helper = helper_for(&cfg, &key);
        if !stored && helper.is_none() {
            println!("Not logged in to {key}");
            return Ok(());
        }
        println!("Removing login credentials for {key}");
        if let Some(h) = helper {
            run_helper(&h, "erase", &key)?;
        }
        if let Some(a) = cfg["auths"].as_object_mut() {
            a.remove(&key);
            save_config(&cfg)?;
        }
        Ok(())
    }
}

/// `wharf search`.
#[derive(Args, Debug)]
pub struct SearchCmd {
    /// Filter output based on conditions provided
    #[arg(short, long)]
    filter: Vec<String>,
    /// Pretty-print search using a Go template
    #[arg(long)]
    format: Option<String>,
    /// Max number of search results
    #[arg(long)]
    limit: Option<usize>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// The term to search for
    term: String,
}

impl SearchCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        for f in &self.filter {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("bad format of filter (expected name=value): {f}")))?;
            filters.entry(k.to_string()).or_default().push(v.to_string());
        }
        let mut path = format!("/images/search?term={}", q(&self.term));
        if let Some(l) = self.limit {
            path.push_str(&format!("&limit={l}"));
        }
        if !filters.is_empty() {
            path.push_str(&format!(
                "&filters={}",
                q(&serde_json::to_string(&filters).expect("JSON"))
            ));
        }
        let res = c
            .call_with_header(
                Method::GET,
                &path,
                Body::empty(),
                "X-Registry-Auth",
                &auth_header(&registry_of(&self.term))?,
            )
            .await?;
        let bytes = res.into_body().collect().await?.to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| CliError::Protocol(e.to_string()))?;
        let rows: Vec<Value> = v
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let mut desc = r["description"].as_str().unwrap_or("").replace('\n', " ");
                if !self.no_trunc && desc.chars().count() > 45 {
                    desc = desc.chars().take(44).collect::<String>() + "…";
                }
                json!({
                    "Name": r["name"],
                    "Description": desc,
                    "StarCount": r["star_count"].as_i64().unwrap_or(0).to_string(),
                    "IsOfficial": if r["is_official"].as_bool() == Some(true) { "[OK]" } else { "" },
                })
            })
            .collect();
        let fmt = self
            .format
            .unwrap_or_else(|| "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}".into());
        let f = Format::parse(&fmt)?;
        let headers = [
            ("Name", "NAME"),
            ("Description", "DESCRIPTION"),
            ("StarCount", "STARS"),
            ("IsOfficial", "OFFICIAL"),
        ];
        crate::stdout(&f.list(&rows, &headers)?)
    }
}
