//! Git sources of a build (a `git` context, `ADD <repo>.git`), checked out with the `git`
//! binary as Docker's builders do: `<url>#<ref>:<subdir>`, a shallow fetch of the ref (the
//! whole history when the transport cannot do shallow, as dumb HTTP cannot), then a checkout
//! of what was fetched. Hardened: no option can hide in a URL, no local `file://` or `ext::`
//! transport, no prompt for credentials, no hooks or config of the user's.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::DistError;

/// A git source: the repository, the ref (`None`: its default branch) and the subdirectory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    pub url: String,
    pub reference: Option<String>,
    pub subdir: Option<String>,
}

/// Whether `s` names a git repository as Docker reads one: `git://`, `git@`, `github.com/`,
/// or an http(s) URL whose path ends in `.git` (a `#ref:dir` may follow).
pub fn is_git_url(s: &str) -> bool {
    let base = s.split('#').next().unwrap_or(s);
    s.starts_with("git://")
        || s.starts_with("git@")
        || s.starts_with("github.com/")
        || ((s.starts_with("http://") || s.starts_with("https://")) && base.ends_with(".git"))
}

impl GitSource {
    /// `url#ref:subdir`.
    pub fn parse(s: &str) -> Result<GitSource, DistError> {
        let (url, frag) = s.split_once('#').unwrap_or((s, ""));
        if url.starts_with('-') || url.is_empty() {
            return Err(DistError::Invalid(format!("invalid git URL {s:?}")));
        }
        let url = if url.starts_with("github.com/") {
            format!("https://{url}")
        } else {
            url.to_string()
        };
        let (r, dir) = frag.split_once(':').unwrap_or((frag, ""));
        if r.starts_with('-') {
            return Err(DistError::Invalid(format!("invalid git ref {r:?}")));
        }
        let dir = dir.trim_matches('/');
        if dir.split('/').any(|c| c == "..") {
            return Err(DistError::Invalid(format!("invalid git subdirectory {dir:?}")));
        }
        Ok(GitSource {
            url,
            reference: (!r.is_empty()).then(|| r.to_string()),
            subdir: (!dir.is_empty()).then(|| dir.to_string()),
        })
    }

    /// The source's tree (its subdirectory, when it names one) as the directory `to`, which
    /// must not exist; returns the commit. `.git` is kept only when `keep_git_dir`.
    pub fn fetch_to(&self, to: &Path, keep_git_dir: bool) -> Result<String, DistError> {
        let Some(sub) = &self.subdir else {
            return self.checkout(to, keep_git_dir);
        };
        let work = to.with_extension("checkout");
        let r = (|| {
            let commit = self.checkout(&work, false)?;
            // Each component a directory of the checkout itself, never a link out of it.
            let mut p = work.clone();
            for c in sub.split('/').filter(|c| !c.is_empty() && *c != ".") {
                p.push(c);
                let dir = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
                if !dir {
                    return Err(DistError::NotFound(format!("{sub} is not a directory of {}", self.url)));
                }
            }
            std::fs::rename(&p, to).map_err(|e| DistError::Invalid(format!("{}: {e}", to.display())))?;
            Ok(commit)
        })();
        let _ = std::fs::remove_dir_all(&work);
        r
    }

    /// Checks the source out into `to` (made, empty); returns the commit. `.git` is kept only
    /// when `keep_git_dir`.
    pub fn checkout(&self, to: &Path, keep_git_dir: bool) -> Result<String, DistError> {
        std::fs::create_dir_all(to).map_err(|e| DistError::Invalid(format!("{}: {e}", to.display())))?;
        let want = self.reference.clone().unwrap_or_else(|| "HEAD".into());
        git(to, &["init", "-q"])?;
        git(to, &["remote", "add", "origin", "--", &self.url])?;
        if git(to, &["fetch", "-q", "--depth", "1", "origin", "--", &want]).is_err() {
            // Dumb HTTP and some servers cannot fetch shallow (or by commit): all of it.
            git(to, &["fetch", "-q", "--tags", "origin", "--", &want])
                .map_err(|e| DistError::NotFound(format!("unable to fetch {} of {}: {e}", want, self.url)))?;
        }
        git(to, &["checkout", "-q", "FETCH_HEAD"])?;
        let commit = git(to, &["rev-parse", "HEAD"])?.trim().to_string();
        if !keep_git_dir {
            std::fs::remove_dir_all(to.join(".git")).map_err(|e| DistError::Invalid(format!("removing .git: {e}")))?;
        }
        Ok(commit)
    }
}

/// One `git` command in `dir`; its output, or its error text.
fn git(dir: &Path, args: &[&str]) -> Result<String, DistError> {
    let out = Command::new("git")
        .args([
            "-c",
            "protocol.file.allow=never",
            "-c",
            "protocol.ext.allow=never",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| DistError::Unavailable(format!("running git: {e}")))?;
    if !out.status.success() {
        return Err(DistError::Unavailable(format!(
            "git {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_and_fragments_as_docker_reads_them() {
        assert!(is_git_url("https://h/r.git"));
        assert!(is_git_url("https://h/r.git#main:sub"));
        assert!(is_git_url("git@github.com:a/b"));
        assert!(is_git_url("github.com/a/b"));
        assert!(is_git_url("git://h/r"));
        assert!(!is_git_url("https://h/ctx.tar.gz"));
        let g = GitSource::parse("https://h/r.git#v1.0:docs/").unwrap();
        assert_eq!(
            g,
            GitSource {
                url: "https://h/r.git".into(),
                reference: Some("v1.0".into()),
                subdir: Some("docs".into())
            }
        );
        assert_eq!(
            GitSource::parse("github.com/a/b").unwrap().url,
            "https://github.com/a/b"
        );
        assert!(GitSource::parse("-uhttps://h/r.git").is_err());
        assert!(GitSource::parse("https://h/r.git#--upload-pack=x").is_err());
        assert!(GitSource::parse("https://h/r.git#main:../..").is_err());
    }

    #[test]
    fn a_local_repository_is_refused() {
        // file:// (and a bare path) is the host's, never a build's.
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let run = |args: &[&str]| {
            let ok = Command::new("git")
                .args(["-c", "user.email=t@t", "-c", "user.name=t"])
                .args(args)
                .current_dir(&repo)
                .output()
                .unwrap();
            assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        };
        run(&["init", "-q"]);
        std::fs::write(repo.join("f"), "x").unwrap();
        run(&["add", "f"]);
        run(&["commit", "-q", "-m", "one"]);
        let src = GitSource::parse(&format!("file://{}", repo.display())).unwrap();
        assert!(src.checkout(&d.path().join("out"), false).is_err());
    }
}
