//! `wharf cp`: files between a container and the local filesystem through the archive API,
//! with the docker CLI's rules for where a copy lands (into an existing directory, as a new
//! name, `dir/.` for a directory's contents, `-` for a tar on stdin or stdout).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::client::{q, Body, Client};
use crate::error::{CliError, Result};

/// `wharf cp`.
#[derive(Args, Debug)]
pub struct CpCmd {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short, long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH or SRC_PATH|-
    src: String,
    /// DEST_PATH|- or CONTAINER:DEST_PATH
    dest: String,
}

/// A path's stat as the daemon reports it.
#[derive(Debug, Clone, Default)]
struct Stat {
    name: String,
    mode: u32,
    link_target: String,
}

impl Stat {
    fn is_dir(&self) -> bool {
        self.mode & (1 << 31) != 0
    }
    fn is_link(&self) -> bool {
        self.mode & (1 << 27) != 0
    }
}

fn split_spec(s: &str) -> (Option<&str>, &str) {
    // A local path with a colon must start with `/` or `.` (as in the docker CLI).
    if s.starts_with('/') || s.starts_with('.') {
        return (None, s);
    }
    match s.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, s),
    }
}

fn ends_with_dot(p: &str) -> bool {
    p.ends_with("/.") || p == "."
}

fn ends_with_sep(p: &str) -> bool {
    p.ends_with('/')
}

fn decode_stat(res_header: Option<&hyper::header::HeaderValue>) -> Result<Stat> {
    let raw = res_header
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| CliError::Protocol("no container path stat in the answer".into()))?;
    let json = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|e| CliError::Protocol(format!("bad container path stat: {e}")))?;
    let v: Value =
        serde_json::from_slice(&json).map_err(|e| CliError::Protocol(format!("bad container path stat: {e}")))?;
    Ok(Stat {
        name: v["name"].as_str().unwrap_or("").to_string(),
        mode: v["mode"].as_u64().unwrap_or(0) as u32,
        link_target: v["linkTarget"].as_str().unwrap_or("").to_string(),
    })
}

async fn stat(c: &Client, ctr: &str, path: &str) -> Result<Option<Stat>> {
    let url = format!("/containers/{}/archive?path={}", q(ctr), q(path));
    match c.call(Method::HEAD, &url, Body::empty()).await {
        Ok(res) => Ok(Some(decode_stat(res.headers().get("X-Docker-Container-Path-Stat"))?)),
        Err(CliError::Daemon { status: 404, message }) if !message.contains("No such container") => Ok(None),
        Err(CliError::Daemon { status: 404, .. }) => Err(CliError::Usage(format!(
            "Error response from daemon: No such container: {ctr}"
        ))),
        Err(e) => Err(e),
    }
}

fn abs_container(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// Rename the top entry `from` of a tar stream to `to` (`None`: drop the top entry and put its
/// children at the top, for `dir/.`).
fn rebase(name: &Path, from: &str, to: Option<&str>) -> Option<PathBuf> {
    if from == "." {
        // `dir/.`: the children are at the top already.
        let rel: PathBuf = name.components().filter(|c| !matches!(c, Component::CurDir)).collect();
        if rel.as_os_str().is_empty() {
            return None;
        }
        return Some(match to {
            Some(t) => Path::new(t).join(rel),
            None => rel,
        });
    }
    let mut comps = name.components().filter(|c| !matches!(c, Component::CurDir));
    let first = comps.next()?;
    if first.as_os_str() != from {
        return Some(name.to_path_buf());
    }
    let rest: PathBuf = comps.collect();
    match to {
        Some(t) => Some(Path::new(t).join(rest)),
        None if rest.as_os_str().is_empty() => None,
        None => Some(rest),
    }
}

impl CpCmd {
    /// Run it.
    pub async fn run(self, c: &Client) -> Result<()> {
        let (sc, sp) = split_spec(&self.src);
        let (dc, dp) = split_spec(&self.dest);
        match (sc, dc) {
            (Some(_), Some(_)) => Err(CliError::Usage("copying between containers is not supported".into())),
            (None, None) => Err(CliError::Usage("must specify at least one container source".into())),
            (Some(ctr), None) => self.copy_out(c, ctr, sp, dp).await,
            (None, Some(ctr)) => self.copy_in(c, sp, ctr, dp).await,
        }
    }

    async fn copy_out(&self, c: &Client, ctr: &str, src: &str, dst: &str) -> Result<()> {
        let mut src = abs_container(src);
        if self.follow_link {
            if let Some(st) = stat(c, ctr, &src).await? {
                if st.is_link() {
                    src = st.link_target;
                }
            }
        }
        let url = format!("/containers/{}/archive?path={}", q(ctr), q(&src));
        let res = c.call(Method::GET, &url, Body::empty()).await?;
        let st = decode_stat(res.headers().get("X-Docker-Container-Path-Stat"))?;
        let mut body = res.into_body();
        if dst == "-" {
            let mut out = tokio::io::stdout();
            while let Some(f) = body.frame().await {
                if let Ok(d) = f?.into_data() {
                    out.write_all(&d).await?;
                }
            }
            out.flush().await?;
            return Ok(());
        }
        // Where it lands, by the docker CLI's rules.
        let dpath = Path::new(dst);
        let (into, rename): (PathBuf, Option<String>) = match std::fs::metadata(dpath) {
            Ok(md) if md.is_dir() => {
                if st.is_dir() && ends_with_dot(&src) {
                    (dpath.to_path_buf(), None)
                } else {
                    (dpath.to_path_buf(), Some(st.name.clone()))
                }
            }
            Ok(_) => {
                if st.is_dir() {
                    return Err(CliError::Usage(format!("cannot copy a directory to a file: {dst}")));
                }
                (parent_of(dpath), Some(file_name(dpath)))
            }
            Err(_) => {
                if ends_with_sep(dst) && !st.is_dir() {
                    return Err(CliError::Usage(format!(
                        "destination directory \"{dst}\" must exist if it is a directory"
                    )));
                }
                (parent_of(dpath), Some(file_name(dpath)))
            }
        };
        let (mut ours, theirs) = tokio_pair()?;
        let top = st.name.clone();
        let archive = self.archive;
        let extract = tokio::task::spawn_blocking(move || extract(theirs, &into, &top, rename.as_deref(), archive));
        while let Some(f) = body.frame().await {
            if let Ok(d) = f?.into_data() {
                if ours.write_all(&d).await.is_err() {
                    break;
                }
            }
        }
        drop(ours);
        extract.await.map_err(|e| CliError::Protocol(e.to_string()))??;
        self.done(&self.src, dst);
        Ok(())
    }

    async fn copy_in(&self, c: &Client, src: &str, ctr: &str, dst: &str) -> Result<()> {
        let dst = abs_container(dst);
        let mut dst_stat = stat(c, ctr, &dst).await?;
        let mut dst_path = dst.clone();
        if let Some(st) = dst_stat.as_ref().filter(|s| s.is_link()) {
            dst_path = st.link_target.clone();
            dst_stat = stat(c, ctr, &dst_path).await?;
        }
        if src == "-" {
            if !dst_stat.as_ref().is_some_and(Stat::is_dir) {
                return Err(CliError::Usage(format!(
                    "destination \"{ctr}:{dst}\" must be a directory"
                )));
            }
            let body = Body::Reader(Box::pin(tokio::io::stdin()));
            return self.put(c, ctr, &dst_path, body).await;
        }
        let spath = Path::new(src);
        let smeta = if self.follow_link {
            std::fs::metadata(spath)
        } else {
            std::fs::symlink_metadata(spath)
        }
        .map_err(|e| CliError::Usage(format!("could not find the file {src} in the local filesystem: {e}")))?;
        let (put_into, name, contents_only) = match &dst_stat {
            Some(d) if d.is_dir() => (dst_path.clone(), file_name(spath), smeta.is_dir() && ends_with_dot(src)),
            Some(_) => {
                if smeta.is_dir() {
                    return Err(CliError::Usage(format!(
                        "cannot copy a directory to a file: {ctr}:{dst}"
                    )));
                }
                (parent_str(&dst_path), base_str(&dst_path), false)
            }
            None => {
                if ends_with_sep(&dst) && !smeta.is_dir() {
                    return Err(CliError::Usage(format!(
                        "destination directory \"{ctr}:{dst}\" must exist if it is a directory"
                    )));
                }
                (parent_str(&dst_path), base_str(&dst_path), false)
            }
        };
        let (ours, theirs) = tokio_pair()?;
        let src_owned = spath.to_path_buf();
        let follow = self.follow_link;
        let writer = std::thread::spawn(move || build_tar(theirs, &src_owned, &name, contents_only, follow));
        let r = self.put(c, ctr, &put_into, Body::Reader(Box::pin(ours))).await;
        let w = writer
            .join()
            .map_err(|_| CliError::Protocol("tar writer panicked".into()))?;
        r?;
        w?;
        self.done(src, &self.dest);
        Ok(())
    }

    async fn put(&self, c: &Client, ctr: &str, dir: &str, body: Body) -> Result<()> {
        let url = format!(
            "/containers/{}/archive?path={}&noOverwriteDirNonDir=true&copyUIDGID={}",
            q(ctr),
            q(dir),
            self.archive
        );
        c.call_raw(Method::PUT, &url, body, "application/x-tar").await?;
        Ok(())
    }

    fn done(&self, from: &str, to: &str) {
        if !self.quiet && rustix::termios::isatty(std::io::stderr()) {
            eprintln!("Successfully copied {from} to {to}");
        }
    }
}

fn tokio_pair() -> Result<(tokio::net::UnixStream, StdStream)> {
    let (a, b) = StdStream::pair()?;
    a.set_nonblocking(true)?;
    Ok((tokio::net::UnixStream::from_std(a)?, b))
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into())
}

fn parent_str(p: &str) -> String {
    let t = p.trim_end_matches('/');
    match t.rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((d, _)) => d.to_string(),
    }
}

fn base_str(p: &str) -> String {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or("").to_string()
}

/// Unpack the tar from the daemon into `into`, its top entry `top` renamed to `rename` (or its
/// children at the top); every name stays inside `into`.
fn extract(r: impl Read, into: &Path, top: &str, rename: Option<&str>, archive: bool) -> Result<()> {
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(archive);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    let root = into.canonicalize()?;
    for e in ar.entries()? {
        let mut e = e?;
        let name = e.path()?.into_owned();
        let Some(target) = rebase(&name, top, rename) else {
            continue;
        };
        if target.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(CliError::Protocol(format!("invalid tar entry {}", name.display())));
        }
        let dest = into.join(&target);
        // Directories first merge with what is there; anything else replaces it.
        if e.header().entry_type() != tar::EntryType::Directory {
            if let Ok(md) = std::fs::symlink_metadata(&dest) {
                if md.is_dir() {
                    return Err(CliError::Usage(format!(
                        "cannot overwrite directory \"{}\" with non-directory",
                        dest.display()
                    )));
                }
            }
        }
        // A symlink unpacked earlier must not carry a later entry outside `into`.
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
            if !parent.canonicalize()?.starts_with(&root) {
                return Err(CliError::Protocol(format!(
                    "invalid tar entry {}: outside the destination",
                    name.display()
                )));
            }
        }
        e.unpack(&dest)?;
    }
    Ok(())
}

/// Write `src` as a tar into `w`, its top entry named `name` (or, for `dir/.`, its children).
fn build_tar(w: impl Write, src: &Path, name: &str, contents_only: bool, follow: bool) -> Result<()> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    let md = if follow {
        std::fs::metadata(src)?
    } else {
        std::fs::symlink_metadata(src)?
    };
    if md.is_dir() {
        if contents_only {
            for e in std::fs::read_dir(src)? {
                let e = e?;
                let p = e.path();
                if e.file_type()?.is_dir() {
                    b.append_dir_all(e.file_name(), &p)?;
                } else {
                    b.append_path_with_name(&p, e.file_name())?;
                }
            }
        } else {
            b.append_dir_all(name, src)?;
        }
    } else if follow {
        let mut f = std::fs::File::open(src)?;
        b.append_file(name, &mut f)?;
    } else {
        b.append_path_with_name(src, name)?;
    }
    b.into_inner()?.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_names() {
        assert_eq!(split_spec("web:/etc/hosts"), (Some("web"), "/etc/hosts"));
        assert_eq!(split_spec("./a:b"), (None, "./a:b"));
        assert_eq!(split_spec("/x:y"), (None, "/x:y"));
        assert_eq!(split_spec("-"), (None, "-"));
        assert_eq!(parent_str("/a/b/"), "/a");
        assert_eq!(parent_str("/a"), "/");
        assert_eq!(base_str("/a/b/"), "b");
        assert_eq!(
            rebase(Path::new("dir/x/y"), "dir", Some("new")),
            Some(PathBuf::from("new/x/y"))
        );
        assert_eq!(rebase(Path::new("dir"), "dir", None), None);
        assert_eq!(rebase(Path::new("dir/x"), "dir", None), Some(PathBuf::from("x")));
        assert_eq!(rebase(Path::new("./x"), ".", None), Some(PathBuf::from("x")));
        assert_eq!(
            rebase(Path::new("x/y"), ".", Some("new")),
            Some(PathBuf::from("new/x/y"))
        );
    }
}
