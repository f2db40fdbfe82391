//! A container's root and the files it gets: the root mounted while it runs (overlay with an
//! init layer, or a vfs copy), image mounts and pinned volume subpaths, `/dev/shm` for
//! `--ipc shareable`, the hosts, hostname and resolv.conf files, and the sizes `ps -s` shows.

use super::*;
use crate::error::{ContainerError, Result};
use crate::mounts::{self};
use crate::netsetup;
use crate::record::Record;
use bollard_stubs::models as m;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use wharf_reference::Digest;
use wharf_store::Driver;

impl ContainerService {
    /// The host directories behind a starting container's mounts: volumes are mounted (driver
    /// options) and, while empty, filled with the image's files at their destination.
    pub(crate) fn prepare_mounts(&self, rec: &Record, rootfs: &Path) -> Result<Vec<Value>> {
        let mut mps = rec.mount_points.clone();
        mounts::sort_for_mounting(&mut mps);
        let mut out = Vec::new();
        for (i, mp) in mps.iter_mut().enumerate() {
            match mp.typ.as_str() {
                "volume" => {
                    let dir = self.volumes.mount(&mp.name, &rec.id).map_err(ContainerError::Volume)?;
                    if mp.copy_data {
                        crate::archive::copy_up(rootfs, &mp.destination, &dir)?;
                    }
                    mp.source = dir.to_string_lossy().into_owned();
                    if !mp.subpath.is_empty() {
                        let pin = self.container_dir(&rec.id).join(format!("mounts/subpath/{i}"));
                        mounts::pin_subpath(&dir, &mp.subpath, &pin)?;
                        mp.source = pin.to_string_lossy().into_owned();
                    }
                }
                "image" => mp.source = self.mount_image(rec, i, mp)?,
                "bind" if !Path::new(&mp.source).exists() => {
                    if mp.create_source {
                        fs::create_dir_all(&mp.source)?;
                    } else {
                        return Err(ContainerError::Invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            mp.source
                        )));
                    }
                }
                _ => {}
            }
            let is_dir = mp.typ == "tmpfs" || Path::new(&mp.source).is_dir();
            crate::archive::make_destination(rootfs, &mp.destination, is_dir)?;
            out.push(mp.to_spec());
        }
        Ok(out)
    }

    /// A stopped container's volumes are no longer needed by it.
    pub(crate) fn release_volumes(&self, id: &str) {
        let Some(e) = self.map.read().expect("map").get(id).cloned() else {
            return;
        };
        for mp in e.snapshot().mount_points.iter().filter(|m| m.typ == "volume") {
            self.volumes.unmount(&mp.name, id);
        }
    }

    /// The container's own files: `hosts`, `hostname`, `resolv.conf`, and its storage dirs.
    pub(crate) fn prepare_files(&self, rec: &Record) -> Result<()> {
        let dir = self.container_dir(&rec.id);
        let hostname = rec.config.hostname.clone().unwrap_or_default();
        fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        for h in rec.host_config.extra_hosts.iter().flatten() {
            if let Some((name, ip)) = h.split_once(':').or_else(|| h.split_once('=')) {
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
        }
        fs::write(dir.join("hosts"), hosts)?;
        fs::write(dir.join("resolv.conf"), resolv_conf(&rec.host_config, false))?;
        if self.images.driver() == Driver::Overlay2 {
            for d in ["rw/diff", "rw/work", "init", "merged"] {
                fs::create_dir_all(dir.join(d))?;
            }
            // The init layer: mount points for the files bind-mounted over it.
            let init = dir.join("init");
            for d in ["etc", "dev", "proc", "sys", "dev/pts", "dev/shm"] {
                fs::create_dir_all(init.join(d))?;
            }
            for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
                fs::write(init.join(f), "")?;
            }
        } else {
            fs::create_dir_all(dir.join("merged"))?;
        }
        Ok(())
    }

    /// Mount the container's root at `<dir>/merged` (idempotent).
    pub(crate) fn mount_root(&self, rec: &Record) -> Result<PathBuf> {
        let dir = self.container_dir(&rec.id);
        let merged = dir.join("merged");
        if is_mountpoint(&merged) {
            return Ok(merged);
        }
        let image: Digest = rec
            .image
            .parse()
            .map_err(|_| ContainerError::Internal(format!("bad image id {}", rec.image)))?;
        let (_, layers) = self.images.rootfs_of(&image)?;
        let store = self.images.layer_store();
        match store.driver() {
            Driver::Overlay2 => {
                let mut lowers = vec![dir.join("init")];
                lowers.extend(store.lower_dirs(&layers));
                let volatile = rec.host_config.auto_remove.unwrap_or(false);
                wharf_store::layer::mount_overlay(
                    &lowers,
                    &dir.join("rw/diff"),
                    &dir.join("rw/work"),
                    &merged,
                    volatile,
                )?;
            }
            Driver::Vfs => {
                let rootfs = dir.join("rootfs");
                if !rootfs.exists() {
                    match layers.last() {
                        Some(top) => store.copy_layer(top, &rootfs)?,
                        None => fs::create_dir_all(&rootfs)?,
                    }
                }
                rustix::mount::mount_bind(&rootfs, &merged)
                    .map_err(|e| ContainerError::Internal(format!("bind {}: {e}", merged.display())))?;
            }
        }
        Ok(merged)
    }

    pub(crate) fn unmount_root(&self, id: &str) {
        self.release_volumes(id);
        self.unmount_root_only(id);
    }

    /// `--mount type=image`: the image's layers read-only at `mounts/image/<n>` (and its
    /// subpath pinned beside it) while the container runs; the host path to bind.
    pub(crate) fn mount_image(&self, rec: &Record, i: usize, mp: &mounts::MountPoint) -> Result<String> {
        let image: Digest = mp
            .source
            .parse()
            .map_err(|_| ContainerError::Internal(format!("bad image id {}", mp.source)))?;
        let (_, layers) = self.images.rootfs_of(&image)?;
        let dir = self.container_dir(&rec.id).join("mounts/image");
        let at = dir.join(i.to_string());
        if !is_mountpoint(&at) {
            fs::create_dir_all(&at)?;
            self.images.layer_store().mount(&layers, &at, None)?;
        }
        if mp.subpath.is_empty() {
            return Ok(at.to_string_lossy().into_owned());
        }
        let pin = dir.join(format!("{i}-sub"));
        mounts::pin_subpath(&at, &mp.subpath, &pin)?;
        Ok(pin.to_string_lossy().into_owned())
    }

    /// Unmount the root (and with it anything bound inside it), the shareable `/dev/shm`, the
    /// pinned volume subpaths and the mounted images.
    pub(crate) fn unmount_root_only(&self, id: &str) {
        let dir = self.container_dir(id);
        let mut pins: Vec<PathBuf> = ["mounts/subpath", "mounts/image"]
            .iter()
            .flat_map(|d| fs::read_dir(dir.join(d)).into_iter().flatten().flatten())
            .map(|e| e.path())
            .collect();
        // A subpath of an image before the image it is in.
        pins.sort_by(|a, b| b.cmp(a));
        for m in [dir.join("merged"), dir.join("mounts/shm")].iter().chain(&pins) {
            // Mounts may be stacked (a copy or export mounted the root as the container
            // started): take them all off.
            for _ in 0..8 {
                if !is_mountpoint(m) {
                    break;
                }
                if let Err(e) = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH) {
                    tracing::warn!(%id, "unmount {}: {e}", m.display());
                    break;
                }
            }
        }
        // A pin is made again, as a file or a directory, at the next start.
        for p in pins.iter().filter(|p| !is_mountpoint(p)) {
            let _ = fs::remove_dir(p).or_else(|_| fs::remove_file(p));
        }
    }

    /// `ps -s` and `inspect --size`: the bytes in the container's read-write layer and in its
    /// whole root (image layers plus that layer), counting each hard-linked inode once.
    pub fn sizes(&self, name: &str) -> Result<(u64, u64)> {
        let rec = self.lookup(name)?.snapshot();
        let image: Digest = rec
            .image
            .parse()
            .map_err(|_| ContainerError::Internal(format!("bad image id {}", rec.image)))?;
        let image_size: u64 = self
            .images
            .rootfs_of(&image)
            .map(|(_, layers)| layers.iter().map(|l| l.size).sum())
            .unwrap_or(0);
        let dir = self.container_dir(&rec.id);
        let rw = match self.images.driver() {
            Driver::Overlay2 => dir_size(&dir.join("rw/diff")),
            Driver::Vfs => dir_size(&dir.join("rootfs")).saturating_sub(image_size),
        };
        Ok((rw, rw + image_size))
    }

    /// `--ipc shareable`: a tmpfs on the host that this container and its joiners mount at
    /// `/dev/shm`; it lives while the container runs.
    pub(crate) fn shareable_shm(&self, rec: &Record) -> Result<PathBuf> {
        let shm = self.container_dir(&rec.id).join("mounts/shm");
        if !is_mountpoint(&shm) {
            fs::create_dir_all(&shm)?;
            let size = rec.host_config.shm_size.filter(|s| *s > 0).unwrap_or(64 << 20);
            rustix::mount::mount(
                "shm",
                &shm,
                "tmpfs",
                rustix::mount::MountFlags::NOSUID
                    | rustix::mount::MountFlags::NODEV
                    | rustix::mount::MountFlags::NOEXEC,
                std::ffi::CString::new(format!("mode=1777,size={size}"))
                    .expect("no NUL")
                    .as_c_str(),
            )
            .map_err(|e| ContainerError::Internal(format!("mount {}: {e}", shm.display())))?;
        }
        Ok(shm)
    }

    /// `/etc/hosts` and `/etc/resolv.conf` for this start: its own address, its links, the
    /// network's DNS responder on user networks. Returns the legacy link environment
    /// variables (`DB_PORT=tcp://...`, `DB_ENV_X=...`) for the process.
    pub(crate) fn write_net_files(&self, rec: &Record, st: &netsetup::NetState) -> Result<Vec<String>> {
        let dir = self.container_dir(&rec.id);
        let gateway = self.net.get("bridge").ok().and_then(|n| n.pool.map(|p| p.gateway));
        let mut links = Vec::new();
        let mut link_env = Vec::new();
        // Legacy links (the default bridge's): /etc/hosts lines and variables. A user
        // network's links are aliases its DNS answers, for containers that may come later.
        let mut link_specs: Vec<String> = Vec::new();
        for l in rec
            .networks
            .iter()
            .filter(|(name, _)| name.as_str() == "bridge")
            .flat_map(|(_, n)| n.links.iter().chain(rec.host_config.links.iter().flatten()))
        {
            if !link_specs.contains(l) {
                link_specs.push(l.clone());
            }
        }
        for l in link_specs {
            let (name, alias) = l.split_once(':').unwrap_or((&l, &l));
            let name = name.trim_start_matches('/');
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            let other = self.lookup(name)?.snapshot();
            let ip = other
                .net
                .endpoints
                .first()
                .map(|e| e.ip)
                .filter(|_| other.state.is_running())
                .ok_or_else(|| {
                    ContainerError::Invalid(format!(
                        "Cannot link to a non running container: /{} AS /{}/{alias}",
                        other.name, rec.name
                    ))
                })?;
            if !links
                .iter()
                .any(|(a, _, _): &(String, String, std::net::Ipv4Addr)| a == alias)
            {
                links.push((alias.to_string(), other.name.clone(), ip));
                link_env.extend(netsetup::link_env(alias, &rec.name, ip, &other));
            }
        }
        fs::write(dir.join("hosts"), netsetup::hosts_file(rec, st, gateway, &links))?;
        fs::write(dir.join("resolv.conf"), resolv_conf(&rec.host_config, st.resolver))?;
        Ok(link_env)
    }
}

/// Bytes in the regular files below `root` (not following symlinks, hard links once).
pub(crate) fn dir_size(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for ent in rd.flatten() {
            let Ok(md) = ent.metadata() else { continue };
            if md.is_dir() {
                stack.push(ent.path());
            } else if md.is_file() && (md.nlink() == 1 || seen.insert((md.dev(), md.ino()))) {
                total += md.len();
            }
        }
    }
    total
}

/// The host's resolver config with loopback nameservers removed (they mean nothing inside a
/// network namespace), or `--dns`/`--dns-search`/`--dns-option` when given. A container on a
/// user-defined network (`embedded`) has the resolver at 127.0.0.11 as its one nameserver
/// (it forwards to `--dns` or the host's), with `ndots:0` unless options say otherwise, and
/// the comments Docker writes.
pub(crate) fn resolv_conf(hc: &m::HostConfig, embedded: bool) -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let dns = hc.dns.clone().unwrap_or_default();
    let search = hc.dns_search.clone().unwrap_or_default();
    let opts = hc.dns_options.clone().unwrap_or_default();
    let mut out = String::new();
    if hc.network_mode.as_deref() == Some("host") && dns.is_empty() {
        return host;
    }
    if search.is_empty() {
        for l in host
            .lines()
            .filter(|l| l.starts_with("search ") || l.starts_with("domain "))
        {
            out.push_str(l);
            out.push('\n');
        }
    } else {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if embedded {
        out.push_str(&format!("nameserver {}\n", wharf_network::resolver::ADDRESS));
    } else if dns.is_empty() {
        let mut any = false;
        for l in host.lines().filter(|l| l.starts_with("nameserver")) {
            let ip = l.split_whitespace().nth(1).unwrap_or("");
            if ip.starts_with("127.") || ip == "::1" {
                continue;
            }
            out.push_str(l);
            out.push('\n');
            any = true;
        }
        if !any {
            out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        }
    } else {
        for d in &dns {
            out.push_str(&format!("nameserver {d}\n"));
        }
    }
    let mut options: Vec<String> = if opts.is_empty() {
        host.lines()
            .filter_map(|l| l.strip_prefix("options "))
            .flat_map(|l| l.split_whitespace().map(String::from))
            .collect()
    } else {
        opts
    };
    if embedded && !options.iter().any(|o| o.starts_with("ndots:")) {
        // Docker's: a name without dots goes to the resolver as it is first.
        options.push("ndots:0".into());
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    if embedded {
        let ext: Vec<String> = if dns.is_empty() {
            wharf_network::dns::servers(&host)
                .iter()
                .map(|a| format!("host({})", a.ip()))
                .collect()
        } else {
            dns
        };
        out.push_str(&format!(
            "\n# Based on host file: '/etc/resolv.conf' (internal resolver)\n# ExtServers: [{}]\n",
            ext.join(" ")
        ));
    }
    out
}
