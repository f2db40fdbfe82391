//! A container's mounts: `-v` (`HostConfig.Binds`), `--mount` (`HostConfig.Mounts`),
//! `--volumes-from`, and the anonymous volumes of `-v /path` and the image's `VOLUME`s, parsed
//! once at create into [`MountPoint`]s that the record keeps, inspect shows, and every start
//! turns into OCI bind and tmpfs mounts.
//!
//! Invariants: a destination is absolute, clean, not `/` and not in `/proc`, and appears once;
//! destinations are only ever resolved inside the container's root (libcontainer's pathrs
//! `Root`, our `SafeRoot`), so a symlink in the image cannot aim a mount at the host.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{ContainerError, Result};

/// One mount of a container, as its record keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    pub typ: String,
    /// The volume's name (empty until an anonymous volume is created).
    pub name: String,
    /// The host path (a bind's source; a volume's `_data`).
    pub source: String,
    /// Where it appears in the container.
    pub destination: String,
    /// `local` for volumes.
    pub driver: String,
    /// Docker's `Mode` string as inspect shows it.
    pub mode: String,
    /// Writable.
    pub rw: bool,
    /// Bind propagation (`rprivate` by default for binds).
    pub propagation: String,
    /// Copy the image's files at the destination into the volume while it is empty.
    pub copy_data: bool,
    /// Created for this container alone: removed with `rm -v` and `--rm`.
    pub anonymous: bool,
    /// tmpfs size in bytes (0: the kernel's default).
    pub tmpfs_size: i64,
    /// tmpfs mode (0: 1777).
    pub tmpfs_mode: u32,
    /// `bind-nonrecursive`.
    pub non_recursive: bool,
    /// A `-v` bind whose source directory is created when missing (Docker's legacy rule).
    pub create_source: bool,
    /// `--mount type=volume,volume-opt=...`: driver options for a volume created here.
    #[serde(default)]
    pub volume_opts: HashMap<String, String>,
    /// `--mount type=volume,volume-label=...`.
    #[serde(default)]
    pub volume_labels: HashMap<String, String>,
    /// `volume-subpath=` (API 1.45): only this path inside the volume is mounted.
    #[serde(default)]
    pub subpath: String,
}

impl MountPoint {
    /// The entry in inspect's `Mounts`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.typ,
            "Source": self.source,
            "Destination": self.destination,
            "Mode": self.mode,
            "RW": self.rw,
            "Propagation": self.propagation,
        });
        if self.typ == "volume" {
            v["Name"] = json!(self.name);
            v["Driver"] = json!(self.driver);
        }
        v
    }

    /// The OCI mount for a start; `source` is the resolved host directory for binds and volumes.
    pub fn to_spec(&self) -> oci_spec::runtime::Mount {
        if self.typ == "tmpfs" {
            let mut o = vec!["nosuid".to_string(), "nodev".to_string(), "noexec".to_string()];
            if !self.rw {
                o.push("ro".into());
            }
            if self.tmpfs_size > 0 {
                o.push(format!("size={}", self.tmpfs_size));
            }
            o.push(format!(
                "mode={:o}",
                if self.tmpfs_mode == 0 { 0o1777 } else { self.tmpfs_mode }
            ));
            return crate::spec::mount(&self.destination, "tmpfs", "tmpfs", o);
        }
        let mut o = vec![if self.non_recursive { "bind" } else { "rbind" }.to_string()];
        o.push(if self.propagation.is_empty() {
            "rprivate".into()
        } else {
            self.propagation.clone()
        });
        if !self.rw {
            o.push("ro".into());
        }
        crate::spec::mount(&self.destination, "bind", &self.source, o)
    }
}

/// Clean an absolute container path; `what` names the mount type for Docker's messages.
fn destination(spec: &str, dst: &str, what: &str) -> Result<String> {
    let invalid = |why: String| {
        ContainerError::Invalid(if spec.is_empty() {
            format!("invalid mount config for type \"{what}\": {why}")
        } else {
            format!("invalid volume specification: '{spec}': invalid mount config for type \"{what}\": {why}")
        })
    };
    if !dst.starts_with('/') {
        return Err(invalid(format!(
            "invalid mount path: '{dst}' mount path must be absolute"
        )));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(dst).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err(invalid("invalid specification: destination can't be '/'".into()));
    }
    let clean = format!("/{}", parts.join("/"));
    if parts[0] == "proc" {
        return Err(invalid(format!(
            "{clean} is inside /proc: mounting over the container's /proc is not allowed"
        )));
    }
    Ok(clean)
}

const PROPAGATIONS: [&str; 6] = ["shared", "rshared", "slave", "rslave", "private", "rprivate"];

/// `HostConfig.Binds` entry: `[source:]destination[:mode]`.
pub fn parse_bind(spec: &str) -> Result<MountPoint> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => {
            return Err(ContainerError::Invalid(format!(
                "invalid volume specification: '{spec}'"
            )))
        }
    };
    if parts.len() > 1 && src.is_empty() {
        return Err(ContainerError::Invalid(format!(
            "invalid volume specification: '{spec}'"
        )));
    }
    let bind = src.starts_with('/');
    let typ = if bind { "bind" } else { "volume" };
    let bad_mode = || ContainerError::Invalid(format!("invalid mode: {mode}"));
    let (mut rw, mut prop, mut nocopy) = (None, None, false);
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" | "rw" if rw.is_none() => rw = Some(m == "rw"),
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            p if PROPAGATIONS.contains(&p) && prop.is_none() && bind => prop = Some(p.to_string()),
            "nocopy" if !bind && !nocopy => nocopy = true,
            _ => return Err(bad_mode()),
        }
    }
    let dst = destination(spec, dst, typ)?;
    if !bind && !src.is_empty() && !wharf_volume::valid_name(src) {
        return Err(ContainerError::Invalid(
            wharf_volume::VolumeError::InvalidName(src.to_string()).to_string(),
        ));
    }
    Ok(MountPoint {
        typ: typ.into(),
        name: if bind { String::new() } else { src.to_string() },
        source: if bind { clean_host(src) } else { String::new() },
        destination: dst,
        driver: if bind { String::new() } else { "local".into() },
        // Docker shows `z` for a named volume given without a mode.
        mode: if mode.is_empty() && !bind && !src.is_empty() {
            "z".into()
        } else {
            mode.to_string()
        },
        rw: rw.unwrap_or(true),
        propagation: if bind {
            prop.unwrap_or_else(|| "rprivate".into())
        } else {
            String::new()
        },
        copy_data: !bind && !nocopy,
        anonymous: !bind && src.is_empty(),
        create_source: bind,
        ..Default::default()
    })
}

fn clean_host(p: &str) -> String {
    let pb: PathBuf = Path::new(p).components().collect();
    pb.to_string_lossy().into_owned()
}

/// `HostConfig.Mounts` entry (`--mount`).
pub fn parse_mount(mt: &crate::config::Mount) -> Result<MountPoint> {
    let typ = mt.typ.map(|t| t.to_string()).unwrap_or_default();
    let invalid = |why: &str| ContainerError::Invalid(format!("invalid mount config for type \"{typ}\": {why}"));
    let target = mt.target.clone().unwrap_or_default();
    if target.is_empty() {
        return Err(invalid("field Target must not be empty"));
    }
    let rw = !mt.read_only.unwrap_or(false);
    let src = mt.source.clone().unwrap_or_default();
    match typ.as_str() {
        "bind" => {
            if src.is_empty() {
                return Err(invalid("field Source must not be empty"));
            }
            if !src.starts_with('/') {
                return Err(invalid(&format!(
                    "invalid mount path: '{src}' mount path must be absolute"
                )));
            }
            if mt.volume_options.is_some() {
                return Err(invalid("field VolumeOptions must not be specified"));
            }
            let bo = mt.bind_options.clone().unwrap_or_default();
            let create = bo.create_mountpoint.unwrap_or(false);
            if !create && !Path::new(&src).exists() {
                return Err(invalid(&format!("bind source path does not exist: {src}")));
            }
            let prop = bo
                .propagation
                .map(|p| p.to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "rprivate".into());
            Ok(MountPoint {
                typ,
                source: clean_host(&src),
                destination: destination("", &target, "bind")?,
                rw,
                propagation: prop,
                non_recursive: bo.non_recursive.unwrap_or(false),
                create_source: create,
                ..Default::default()
            })
        }
        "volume" => {
            if mt.bind_options.is_some() {
                return Err(invalid("field BindOptions must not be specified"));
            }
            if !src.is_empty() && !wharf_volume::valid_name(&src) {
                return Err(ContainerError::Invalid(
                    wharf_volume::VolumeError::InvalidName(src).to_string(),
                ));
            }
            let vo = mt.volume_options.clone().unwrap_or_default();
            let subpath = vo.subpath.clone().unwrap_or_default();
            if !subpath.is_empty() && !local_path(&subpath) {
                return Err(invalid(&format!(
                    "subpath must be a relative path within the volume: {subpath}"
                )));
            }
            let dc = vo.driver_config.unwrap_or_default();
            if let Some(d) = dc.name.filter(|d| !d.is_empty() && d != "local") {
                return Err(ContainerError::Invalid(
                    wharf_volume::VolumeError::NoDriver { name: src, driver: d }.to_string(),
                ));
            }
            Ok(MountPoint {
                typ,
                anonymous: src.is_empty(),
                name: src,
                destination: destination("", &target, "volume")?,
                driver: "local".into(),
                rw,
                volume_opts: dc.options.unwrap_or_default().into_iter().collect(),
                volume_labels: vo.labels.unwrap_or_default().into_iter().collect(),
                // Only part of the volume is seen: the image's files are not copied into it.
                copy_data: !vo.no_copy.unwrap_or(false) && subpath.is_empty(),
                subpath,
                ..Default::default()
            })
        }
        "tmpfs" => {
            if !src.is_empty() {
                return Err(invalid("field Source must not be specified"));
            }
            if mt.bind_options.is_some() || mt.volume_options.is_some() {
                return Err(invalid("only TmpfsOptions may be specified"));
            }
            let to = mt.tmpfs_options.clone().unwrap_or_default();
            let size = to.size_bytes.unwrap_or(0);
            if size < 0 {
                return Err(invalid("invalid tmpfs size"));
            }
            Ok(MountPoint {
                typ,
                destination: destination("", &target, "tmpfs")?,
                rw,
                tmpfs_size: size,
                tmpfs_mode: to.mode.unwrap_or(0).clamp(0, 0o7777) as u32,
                ..Default::default()
            })
        }
        "" => Err(ContainerError::Invalid(
            "invalid mount config: mount type unknown".into(),
        )),
        other => Err(ContainerError::Invalid(format!(
            "invalid mount config: mount type unknown: \"{other}\""
        ))),
    }
}

/// `--mount type=image` (API 1.48), as the API edge reads it (the edge's models predate it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageMount {
    /// The image (a reference or an ID).
    pub source: String,
    /// Where it appears in the container.
    pub target: String,
    /// `image-subpath=`: only this path of the image.
    pub subpath: String,
}

/// An image mount as the record keeps it (the image's ID resolved at create, read-only).
pub fn image_mount_point(im: &ImageMount, image_id: &str) -> Result<MountPoint> {
    let invalid = |why: String| ContainerError::Invalid(format!("invalid mount config for type \"image\": {why}"));
    if im.source.is_empty() {
        return Err(invalid("field Source must not be empty".into()));
    }
    if im.target.is_empty() {
        return Err(invalid("field Target must not be empty".into()));
    }
    if !im.subpath.is_empty() && !local_path(&im.subpath) {
        return Err(invalid(format!(
            "subpath must be a relative path within the image: {}",
            im.subpath
        )));
    }
    Ok(MountPoint {
        typ: "image".into(),
        name: im.source.clone(),
        source: image_id.to_string(),
        destination: destination("", &im.target, "image")?,
        rw: false,
        propagation: "rprivate".into(),
        subpath: im.subpath.clone(),
        ..Default::default()
    })
}

/// Pin `subpath` of the volume at `volume` to `pin` (a bind mount of exactly what it resolved
/// to, made through the descriptor: nothing in the volume, such as another container swapping
/// a directory for a symlink, can aim the container's mount elsewhere afterwards). Resolved
/// inside the volume, as Docker resolves it; a missing path is the client's error.
pub fn pin_subpath(volume: &Path, subpath: &str, pin: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let missing = |e: std::io::Error| {
        ContainerError::Invalid(format!("cannot access path {}: {e}", volume.join(subpath).display()))
    };
    let root = wharf_store::saferoot::SafeRoot::open(volume)?;
    let comps = wharf_store::saferoot::clean_relative(Path::new(subpath))
        .map_err(|e| ContainerError::Invalid(format!("volume subpath {subpath}: {e}")))?;
    let fd = root.open_in_root(&comps, rustix::fs::OFlags::PATH).map_err(missing)?;
    let dir = wharf_store::saferoot::is_dir(&rustix::fs::fstat(&fd).map_err(std::io::Error::from)?);
    if wharf_store::saferoot::is_mount_point(pin) {
        let _ = rustix::mount::unmount(pin, rustix::mount::UnmountFlags::DETACH);
    }
    if let Some(parent) = pin.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if dir {
        std::fs::create_dir_all(pin)?;
    } else {
        std::fs::File::create(pin)?;
    }
    rustix::mount::mount_bind(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(), pin)
        .map_err(|e| ContainerError::Internal(format!("pinning the volume subpath {subpath}: {e}")))
}

/// Go's `filepath.IsLocal`: relative, not empty, and never above its start.
fn local_path(p: &str) -> bool {
    if p.is_empty() || p.starts_with('/') {
        return false;
    }
    let mut depth = 0i32;
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

/// `--volumes-from name[:ro|rw]`: the container name and whether the copies are writable
/// (`None`: as in the donor).
pub fn parse_volumes_from(spec: &str) -> Result<(String, Option<bool>)> {
    match spec.split_once(':') {
        None => Ok((spec.to_string(), None)),
        Some((c, "ro")) => Ok((c.to_string(), Some(false))),
        Some((c, "rw")) => Ok((c.to_string(), Some(true))),
        Some((_, m)) => Err(ContainerError::Invalid(format!("invalid mode for volumes-from: {m}"))),
    }
}

/// Every mount of a new container, in Docker's order of precedence: `--volumes-from` first,
/// then `-v` and `--mount` (which replace an inherited mount at the same place), then the
/// anonymous volumes of `-v /path` and the image's `VOLUME`s where nothing else is mounted.
/// `donor` returns the mount points of a `--volumes-from` container.
pub fn collect(
    hc: &crate::config::HostSpec,
    volumes: Option<&crate::config::StringSet>,
    donor: &dyn Fn(&str) -> Result<Vec<MountPoint>>,
) -> Result<Vec<MountPoint>> {
    let mut out: Vec<MountPoint> = Vec::new();
    for vf in hc.storage.volumes_from.iter().flatten() {
        let (c, rw) = parse_volumes_from(vf)?;
        for mut mp in donor(&c)? {
            if mp.typ == "tmpfs" {
                continue;
            }
            if let Some(rw) = rw {
                mp.rw = mp.rw && rw;
                mp.mode = if rw { "rw".into() } else { "ro".into() };
            }
            mp.copy_data = false;
            mp.anonymous = false; // the donor owns it
            out.retain(|o| o.destination != mp.destination);
            out.push(mp);
        }
    }
    let mut own: HashSet<String> = HashSet::new();
    let mut add = |out: &mut Vec<MountPoint>, mp: MountPoint| -> Result<()> {
        if !own.insert(mp.destination.clone()) {
            return Err(ContainerError::Invalid(format!(
                "Duplicate mount point: {}",
                mp.destination
            )));
        }
        out.retain(|o| o.destination != mp.destination);
        out.push(mp);
        Ok(())
    };
    for b in hc.storage.binds.iter().flatten() {
        add(&mut out, parse_bind(b)?)?;
    }
    for mt in hc.storage.mounts.iter().flatten() {
        add(&mut out, parse_mount(mt)?)?;
    }
    let tmpfs: HashSet<String> = hc.storage.tmpfs.iter().flatten().map(|(d, _)| d.clone()).collect();
    let mut anon: Vec<&String> = volumes.map(|v| v.keys().collect()).unwrap_or_default();
    anon.sort();
    for d in anon {
        let dst = destination("", d, "volume")?;
        if out.iter().any(|o| o.destination == dst) || tmpfs.contains(&dst) {
            continue;
        }
        out.push(MountPoint {
            typ: "volume".into(),
            destination: dst,
            driver: "local".into(),
            rw: true,
            copy_data: true,
            anonymous: true,
            ..Default::default()
        });
    }
    Ok(out)
}

/// Parents before children, as the kernel needs them.
pub fn sort_for_mounting(mps: &mut [MountPoint]) {
    mps.sort_by_key(|m| m.destination.matches('/').count());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_like_dockers() {
        let b = parse_bind("/srv/data:/data:ro").unwrap();
        assert_eq!(
            (b.typ.as_str(), b.source.as_str(), b.destination.as_str()),
            ("bind", "/srv/data", "/data")
        );
        assert!(!b.rw);
        assert_eq!(b.mode, "ro");
        assert_eq!(b.propagation, "rprivate");
        let v = parse_bind("cache:/var/cache/").unwrap();
        assert_eq!(
            (v.typ.as_str(), v.name.as_str(), v.destination.as_str()),
            ("volume", "cache", "/var/cache")
        );
        assert_eq!(v.mode, "z");
        assert!(v.copy_data && !v.anonymous);
        let a = parse_bind("/scratch").unwrap();
        assert!(a.anonymous && a.name.is_empty());
        assert!(!parse_bind("data:/d:nocopy").unwrap().copy_data);
        assert_eq!(parse_bind("/a:/b:rslave").unwrap().propagation, "rslave");
    }

    #[test]
    fn bad_binds_get_dockers_errors() {
        let e = |s: &str| parse_bind(s).unwrap_err().to_string();
        assert_eq!(e("/a:/b:xyz"), "invalid mode: xyz");
        assert_eq!(e("/a:/b:ro,rw"), "invalid mode: ro,rw");
        assert_eq!(e("data:/b:shared"), "invalid mode: shared");
        assert!(e("/a:rel").contains("mount path must be absolute"), "{}", e("/a:rel"));
        assert!(e("/a:/").contains("destination can't be '/'"));
        assert!(e("/a:/proc").contains("inside /proc"));
        assert!(e("/a:/x/../proc/sys").contains("inside /proc"));
        assert!(e("a/b:/x").contains("includes invalid characters"));
        assert!(e("a:b:c:d").contains("invalid volume specification"));
    }

    #[test]
    fn precedence_and_duplicates() {
        let donor_mp = parse_bind("shared:/data").unwrap();
        let donor = |n: &str| -> Result<Vec<MountPoint>> {
            assert_eq!(n, "db");
            Ok(vec![donor_mp.clone()])
        };
        let mut vols = crate::config::StringSet::new();
        vols.insert("/data".to_string(), Default::default());
        vols.insert("/logs".to_string(), Default::default());
        let mut hc = crate::config::HostSpec::default();
        hc.storage.volumes_from = Some(vec!["db:ro".into()]);
        hc.storage.binds = Some(vec!["/srv:/srv".into()]);
        let mps = collect(&hc, Some(&vols), &donor).unwrap();
        let dests: Vec<&str> = mps.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(dests, ["/data", "/srv", "/logs"]);
        assert!(!mps[0].rw, "volumes-from :ro");
        assert!(mps[2].anonymous);
        let mut hc = crate::config::HostSpec::default();
        hc.storage.binds = Some(vec!["/a:/x".into(), "b1:/x".into()]);
        let e = collect(&hc, None, &donor).unwrap_err().to_string();
        assert_eq!(e, "Duplicate mount point: /x");
    }

    #[test]
    fn mount_flag_checks() {
        let mt = crate::config::Mount {
            typ: Some(crate::config::MountType::Bind),
            source: Some("/nonexistent/wharf/x".into()),
            target: Some("/x".into()),
            ..Default::default()
        };
        assert_eq!(
            parse_mount(&mt).unwrap_err().to_string(),
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent/wharf/x"
        );
        let mt = crate::config::Mount {
            typ: Some(crate::config::MountType::Tmpfs),
            target: Some("/t".into()),
            tmpfs_options: Some(crate::config::TmpfsOptions {
                size_bytes: Some(1 << 20),
                mode: Some(0o700),
                options: None,
            }),
            ..Default::default()
        };
        let t = parse_mount(&mt).unwrap();
        let spec = serde_json::to_value(t.to_spec()).unwrap();
        let opts: Vec<&str> = spec["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(opts.contains(&"size=1048576") && opts.contains(&"mode=700"), "{opts:?}");
    }
}
