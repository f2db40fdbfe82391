//! A container's root and the files it gets: the root mounted while it runs (overlay with an
//! init layer, or a vfs copy), image mounts and pinned volume subpaths, `/dev/shm` for
//! `--ipc shareable`, the hosts, hostname and resolv.conf files, and the sizes `ps -s` shows.

use super::*;
use crate::error::{ContainerError, Result};
use crate::mounts::{self};
use crate::netsetup;
use crate::record::Record;
use std::fs;
use std::path::{Path, PathBuf};
use wharf_reference::Digest;

impl ContainerService {
    /// The host directories behind a starting container's mounts: volumes are mounted (driver
    /// options) and, while empty, filled with the image's files at their destination.
    pub(crate) fn prepare_mounts(&self, rec: &Record, rootfs: &Path) -> Result<Vec<oci_spec::runtime::Mount>> {
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
        for h in rec.host_config.network.extra_hosts.iter().flatten() {
            if let Some((name, ip)) = h.split_once(':').or_else(|| h.split_once('=')) {
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
        }
        fs::write(dir.join("hosts"), hosts)?;
        fs::write(dir.join("resolv.conf"), resolv_conf(&rec.host_config, false))?;
        fs::create_dir_all(dir.join("merged"))?;
        Ok(())
    }

    /// Mount the container's root at `<dir>/merged` (idempotent): its snapshot, never synced
    /// for a container removed with its exit (`--rm`).
    pub(crate) fn mount_root(&self, rec: &Record) -> Result<PathBuf> {
        let merged = self.container_dir(&rec.id).join("merged");
        if is_mountpoint(&merged) {
            return Ok(merged);
        }
        let volatile = rec.host_config.lifecycle.auto_remove.unwrap_or(false);
        for m in self.snapshots.mounts(&rec.id)? {
            let m = if volatile { m.volatile() } else { m };
            m.mount(&merged)
                .map_err(|e| ContainerError::Internal(format!("mount {}: {e}", merged.display())))?;
        }
        Ok(merged)
    }

    /// The key of the init snapshot of `image` (made the first time): the image's layers with
    /// the mount points of the files and file systems every container gets (Docker's init
    /// layer), so that they are never a container's own changes. Containers of one image share
    /// it.
    pub(crate) fn init_snapshot(&self, image: &Digest) -> Result<String> {
        let (_, layers) = self.images.rootfs_of(image)?;
        let top = layers.last().map(|l| l.chain_id.to_string());
        let key = format!(
            "init-{}",
            top.as_deref().map_or("scratch", |t| t.trim_start_matches("sha256:"))
        );
        let _held = self.init_lock.lock().expect("init lock");
        if self.snapshots.stat(&key).is_ok() {
            return Ok(key);
        }
        let prep = format!("{key}-prep");
        let _ = self.snapshots.remove(&prep);
        self.snapshots.prepare(&prep, top.as_deref())?;
        let made = self
            .snapshots
            .apply(&prep, &mut &init_layer()?[..])
            .map_err(ContainerError::from)
            .and_then(|_| Ok(self.snapshots.commit(&key, &prep)?));
        if let Err(e) = made {
            let _ = self.snapshots.remove(&prep);
            return Err(e);
        }
        Ok(key)
    }

    /// The container's root: an active snapshot over its image's init snapshot.
    pub(crate) fn prepare_root(&self, rec: &Record) -> Result<()> {
        if let Some(parent) = &rec.snapshot {
            self.snapshots.prepare(&rec.id, Some(parent))?;
            return Ok(());
        }
        let image = image_of(rec)?;
        // The image's last container may be removing the init snapshot just as this one is
        // made: then it is made again.
        for _ in 0..3 {
            let init = self.init_snapshot(&image)?;
            match self.snapshots.prepare(&rec.id, Some(&init)) {
                Err(wharf_store::snapshot::SnapshotError::NotFound(k)) if k == init => continue,
                r => return r.map(|_| ()).map_err(Into::into),
            }
        }
        Err(ContainerError::Internal(format!(
            "container {}: its image's init snapshot kept going away",
            rec.id
        )))
    }

    /// Removes the container's snapshot (and its image's init snapshot, once no container
    /// stacks on it); the files go in the background.
    pub(crate) fn remove_root(&self, rec: &Record) -> Result<()> {
        match self.snapshots.remove(&rec.id) {
            Ok(()) | Err(wharf_store::snapshot::SnapshotError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // Its image's init snapshot goes once no container stacks on it (a container on a
        // snapshot of its own has none).
        if let (None, Ok(image)) = (&rec.snapshot, image_of(rec)) {
            if let Ok((_, layers)) = self.images.rootfs_of(&image) {
                let top = layers.last().map(|l| l.chain_id.to_string());
                let key = format!(
                    "init-{}",
                    top.as_deref().map_or("scratch", |t| t.trim_start_matches("sha256:"))
                );
                let _held = self.init_lock.lock().expect("init lock");
                let _ = self.snapshots.remove(&key);
            }
        }
        let snapshots = self.snapshots.clone();
        std::thread::spawn(move || {
            if let Err(e) = snapshots.cleanup() {
                tracing::warn!("removing snapshot files: {e}");
            }
        });
        Ok(())
    }

    /// A container of a data root from before container roots were snapshots: its read-write
    /// layer (overlay2's `rw/diff`, vfs's `rootfs`) becomes its snapshot's own directory, over
    /// its image's init snapshot. (The old `init` directory stays until the container goes:
    /// a running container's root still stacks on it.)
    pub(crate) fn adopt_root(&self, rec: &Record) -> Result<()> {
        if self.snapshots.stat(&rec.id).is_ok() {
            return Ok(());
        }
        let dir = self.container_dir(&rec.id);
        let old = ["rw/diff", "rootfs"].iter().map(|d| dir.join(d)).find(|d| d.is_dir());
        self.prepare_root(rec)?;
        let Some(old) = old else {
            return Ok(());
        };
        let swap = || -> Result<()> {
            let mounts = self.snapshots.mounts(&rec.id)?;
            let Some(own) = mounts.iter().find_map(|m| m.writable_dir()) else {
                return Err(ContainerError::Internal("a snapshot with no writable directory".into()));
            };
            // (vfs copied the image into it: the old root replaces that copy.)
            fs::remove_dir_all(own)?;
            fs::rename(&old, own)?;
            Ok(())
        };
        if let Err(e) = swap() {
            // The next start tries again; the old layer is where it was.
            let _ = self.snapshots.remove(&rec.id);
            return Err(e);
        }
        tracing::info!(id = %rec.id, "root moved to a snapshot");
        Ok(())
    }

    /// `GraphDriver` of inspect: the driver and, for overlay2, its directories.
    pub fn graph_driver(&self, rec: &Record) -> (String, Option<std::collections::BTreeMap<String, String>>) {
        let data = match self.snapshots.mounts(&rec.id).ok().as_deref() {
            Some(
                [wharf_store::snapshot::Mount::Overlay {
                    lowers,
                    upper: Some((upper, work)),
                    ..
                }],
            ) => {
                let s = |p: &Path| p.display().to_string();
                let lower: Vec<String> = lowers.iter().map(|p| s(p)).collect();
                Some(
                    [
                        ("LowerDir", lower.join(":")),
                        ("MergedDir", s(&self.container_dir(&rec.id).join("merged"))),
                        ("UpperDir", s(upper)),
                        ("WorkDir", s(work)),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                )
            }
            _ => None,
        };
        (rec.driver.clone(), data)
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
        let rw = self.snapshots.usage(&rec.id).map(|u| u.size).unwrap_or(0);
        Ok((rw, rw + image_size))
    }

    /// `--ipc shareable`: a tmpfs on the host that this container and its joiners mount at
    /// `/dev/shm`; it lives while the container runs.
    pub(crate) fn shareable_shm(&self, rec: &Record) -> Result<PathBuf> {
        let shm = self.container_dir(&rec.id).join("mounts/shm");
        if !is_mountpoint(&shm) {
            fs::create_dir_all(&shm)?;
            let size = rec
                .host_config
                .namespaces
                .shm_size
                .filter(|s| *s > 0)
                .unwrap_or(64 << 20);
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
            .flat_map(|(_, n)| n.links.iter().chain(rec.host_config.network.links.iter().flatten()))
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

/// The host's resolver config with loopback nameservers removed (they mean nothing inside a
/// network namespace), or `--dns`/`--dns-search`/`--dns-option` when given. A container on a
/// user-defined network (`embedded`) has the resolver at 127.0.0.11 as its one nameserver
/// (it forwards to `--dns` or the host's), with `ndots:0` unless options say otherwise, and
/// the comments Docker writes.
pub(crate) fn resolv_conf(hc: &crate::config::HostSpec, embedded: bool) -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let dns = hc.network.dns.clone().unwrap_or_default();
    let search = hc.network.dns_search.clone().unwrap_or_default();
    let opts = hc.network.dns_options.clone().unwrap_or_default();
    let mut out = String::new();
    if hc.network.network_mode.as_deref() == Some("host") && dns.is_empty() {
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

/// The image of a container.
fn image_of(rec: &Record) -> Result<Digest> {
    rec.image
        .parse()
        .map_err(|_| ContainerError::Internal(format!("bad image id {}", rec.image)))
}

/// Docker's init layer as a tar: the mount points of `/proc`, `/sys`, `/dev` and its
/// `pts` and `shm`, and of the hosts, hostname and resolv.conf files.
fn init_layer() -> Result<Vec<u8>> {
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, dir: bool| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_size(0);
        h.set_mtime(mtime);
        b.append_data(&mut h, path, std::io::empty())
    };
    for d in ["etc", "dev", "proc", "sys", "dev/pts", "dev/shm"] {
        add(d, true)?;
    }
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        add(f, false)?;
    }
    Ok(b.into_inner()?)
}
