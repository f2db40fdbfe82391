//! Checks of a create request that dockerd makes before anything exists, each refused as a
//! client error (400) with dockerd's words: environment entries without a name, negative CPU
//! shares, tmpfs destinations that are the root or relative, empty annotation keys, namespace
//! modes it does not know. And the one normalisation dockerd
//! applies: the working directory is cleaned as a path (`/tmp/` is `/tmp`).

use crate::error::{ContainerError, Result};

/// Everything in `cfg` and `hc` that dockerd refuses at create.
pub fn create(cfg: &crate::config::Config, hc: &crate::config::HostSpec) -> Result<()> {
    for e in cfg.env.iter().flatten() {
        let name = e.split_once('=').map_or(e.as_str(), |(n, _)| n);
        if name.is_empty() {
            return Err(ContainerError::Invalid(format!("invalid environment variable: {e}")));
        }
    }
    if let Some(s) = hc.resources.cpu_shares.filter(|s| *s < 0) {
        return Err(ContainerError::Invalid(format!(
            "invalid CPU shares ({s}): value must be a positive integer"
        )));
    }
    if hc.lifecycle.annotations.iter().flatten().any(|(k, _)| k.is_empty()) {
        return Err(ContainerError::Invalid(
            "invalid Annotations: the empty string is not permitted as an annotation key".into(),
        ));
    }
    for dest in hc.storage.tmpfs.iter().flatten().map(|(d, _)| d) {
        if !dest.starts_with('/') {
            return Err(ContainerError::Invalid(format!(
                "invalid mount path: '{dest}' mount path must be absolute"
            )));
        }
        if clean(dest) == "/" {
            return Err(ContainerError::Invalid(format!(
                "invalid tmpfs mount '{dest}': destination can't be '/'"
            )));
        }
    }
    Ok(())
}

/// Check the namespace modes as Docker does when a container is created.
pub fn modes(hc: &crate::config::HostSpec) -> Result<()> {
    let joins = |m: &str| m.strip_prefix("container:").is_some_and(|c| !c.is_empty());
    let pid = hc.namespaces.pid_mode.as_deref().unwrap_or("");
    if !(pid.is_empty() || pid == "host" || joins(pid)) {
        return Err(ContainerError::Invalid(format!("invalid PID mode: {pid}")));
    }
    let ipc = hc.namespaces.ipc_mode.as_deref().unwrap_or("");
    if !(["", "none", "private", "shareable", "host"].contains(&ipc) || joins(ipc)) {
        return Err(ContainerError::Invalid(format!("invalid IPC mode: {ipc}")));
    }
    let uts = hc.namespaces.uts_mode.as_deref().unwrap_or("");
    if !(uts.is_empty() || uts == "host") {
        return Err(ContainerError::Invalid(format!("invalid UTS mode: {uts}")));
    }
    // There is no user-namespace remapping in wharf, so every container is in the host's.
    let userns = hc.security.userns_mode.as_deref().unwrap_or("");
    if !(userns.is_empty() || userns == "host") {
        return Err(ContainerError::Invalid(format!("invalid USER mode: {userns}")));
    }
    Ok(())
}

/// A path cleaned lexically, as Go's `path.Clean`: repeated and trailing slashes go, `.` goes,
/// `..` takes the element before it (never above the root).
pub fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(env: &[&str], shares: Option<i64>, tmpfs: &[&str]) -> std::result::Result<(), String> {
        let cfg = crate::config::Config {
            env: Some(env.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let mut hc = crate::config::HostSpec::default();
        hc.resources.cpu_shares = shares;
        hc.storage.tmpfs = Some(tmpfs.iter().map(|d| (d.to_string(), String::new())).collect());
        create(&cfg, &hc).map_err(|e| e.to_string())
    }

    #[test]
    fn refuses_what_dockerd_refuses() {
        assert!(check(&["A=1", "B=", "C"], Some(512), &["/run", "/tmp/x"]).is_ok());
        assert_eq!(check(&["="], None, &[]).unwrap_err(), "invalid environment variable: =");
        assert_eq!(
            check(&["=x"], None, &[]).unwrap_err(),
            "invalid environment variable: =x"
        );
        assert!(check(&[], Some(-1), &[])
            .unwrap_err()
            .contains("invalid CPU shares (-1)"));
        assert!(check(&[], None, &["/"])
            .unwrap_err()
            .contains("destination can't be '/'"));
        assert!(check(&[], None, &["//"])
            .unwrap_err()
            .contains("destination can't be '/'"));
        assert!(check(&[], None, &["run"]).unwrap_err().contains("must be absolute"));
    }

    #[test]
    fn paths_clean_as_go_cleans_them() {
        for (a, b) in [
            ("/tmp/", "/tmp"),
            ("//a//b/./c/", "/a/b/c"),
            ("/a/../..", "/"),
            ("/", "/"),
            ("a/../../b", "../b"),
            ("", "."),
        ] {
            assert_eq!(clean(a), b, "{a}");
        }
    }
}
