//! `create`: resolve the image, merge its config into the container's as Docker does, fill
//! dockerd's defaults, validate, plan the mounts and networks, reserve the name, and write the
//! record and the container's directory.

use super::*;
use crate::config::ContainerSpec;
use crate::error::{ContainerError, Result};
use crate::health;
use crate::mounts::{self, MountPoint};
use crate::record::{Record, State};
use crate::{netsetup, spec};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

impl ContainerService {
    /// `POST /containers/create`.
    pub fn create(&self, name: Option<&str>, body: ContainerSpec) -> Result<(String, Vec<String>)> {
        let mut cfg = body.config;
        let mut hc = body.host;
        // The request is judged before anything is looked up.
        crate::validate::create(&cfg, &hc)?;
        let image_name =
            cfg.image.clone().filter(|i| !i.is_empty()).ok_or_else(|| {
                ContainerError::Invalid("config cannot be empty in order to create a container".into())
            })?;
        let image_id = self.images.resolve(&image_name).map_err(|e| match e.kind() {
            wharf_reference::ErrorKind::NotFound => {
                ContainerError::Image(wharf_image::ImageError::NotFound(image_name.clone()))
            }
            _ => ContainerError::Image(e),
        })?;
        let (img, _) = self.images.rootfs_of(&image_id)?;
        let ic = img.config.clone().unwrap_or(Value::Null);
        let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        spec::validate_resources(&hc, ncpu)?;
        spec::capabilities(&hc)?;
        let warnings = host_limits(&mut hc)?;
        let argv = merge_image_config(&mut cfg, &ic)?;
        cfg.image = Some(image_name);
        let id = hex::encode(random_bytes(32));
        if cfg.hostname.as_deref().unwrap_or("").is_empty() {
            cfg.hostname = Some(id[..12].to_string());
        }
        host_defaults(&mut hc)?;
        let mut networks = netsetup::endpoint_configs(&self.net, &hc, body.networks.as_ref())?;
        container_mac(&cfg, &hc, &mut networks)?;
        if hc.network.network_mode.as_deref() == Some("host") {
            // Docker: published ports are discarded in host mode.
            hc.network.port_bindings = None;
            hc.network.publish_all_ports = Some(false);
        }
        self.check_references(&hc)?;
        if let Some(k) = &body.snapshot {
            let info = self.snapshots.stat(k)?;
            if info.kind != wharf_store::snapshot::Kind::Committed {
                return Err(ContainerError::Invalid(format!("snapshot {k} is not committed")));
            }
        }
        let mut mount_points = self.plan_mounts(&hc, &cfg, &body.image_mounts)?;
        let name = self.reserve_name(name, &id)?;
        let mut created_anon: Vec<String> = Vec::new();
        if let Err(e) = self.create_mount_sources(&mut mount_points, &mut created_anon) {
            self.names.lock().expect("names").remove(&name);
            for v in created_anon {
                let _ = self.volumes.remove(&v, true);
            }
            return Err(e);
        }
        let rec = Record {
            id: id.clone(),
            name: name.clone(),
            created: now_nanos(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            image: image_id.to_string(),
            config: cfg,
            host_config: hc,
            state: State::default(),
            restart_count: 0,
            manually_stopped: false,
            driver: self.images.driver().name().to_string(),
            exec_ids: Vec::new(),
            mount_points,
            networks,
            net: Default::default(),
            snapshot: body.snapshot.clone(),
        };
        let r = (|| -> Result<()> {
            let dir = self.container_dir(&id);
            fs::create_dir(&dir)?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o710))?;
            self.prepare_files(&rec)?;
            self.prepare_root(&rec)?;
            rec.save(&dir)?;
            Ok(())
        })();
        if let Err(e) = r {
            let _ = self.remove_root(&rec);
            let _ = fs::remove_dir_all(self.container_dir(&id));
            self.names.lock().expect("names").remove(&name);
            for v in created_anon {
                let _ = self.volumes.remove(&v, true);
            }
            return Err(e);
        }
        self.emit(&rec, "create", &[]);
        self.insert(rec);
        Ok((id, warnings))
    }

    /// The container's mount points: volumes, binds, tmpfs, `--volumes-from`, the image's
    /// `VOLUME`s, and image mounts.
    fn plan_mounts(
        &self,
        hc: &crate::config::HostSpec,
        cfg: &crate::config::Config,
        image_mounts: &[mounts::ImageMount],
    ) -> Result<Vec<MountPoint>> {
        let mut mount_points = mounts::collect(hc, cfg.volumes.as_ref(), &|c| {
            Ok(self.lookup(c)?.snapshot().mount_points)
        })?;
        for im in image_mounts {
            let image = self.images.resolve(&im.source).map_err(|e| match e.kind() {
                wharf_reference::ErrorKind::NotFound => {
                    ContainerError::Image(wharf_image::ImageError::NotFound(im.source.clone()))
                }
                _ => ContainerError::Image(e),
            })?;
            let mp = mounts::image_mount_point(im, &image.to_string())?;
            if mount_points.iter().any(|m| m.destination == mp.destination) {
                return Err(ContainerError::Invalid(format!(
                    "Duplicate mount point: {}",
                    mp.destination
                )));
            }
            mount_points.push(mp);
        }
        Ok(mount_points)
    }

    /// The containers a new one names (`--link` on the default bridge, `--volumes-from`,
    /// `--pid`/`--ipc container:`) must exist: naming a missing one is the client's error
    /// (400), in dockerd's words. (A link on a user network is an alias that may resolve later.)
    pub(crate) fn check_references(&self, hc: &crate::config::HostSpec) -> Result<()> {
        let missing = |n: &str| self.lookup(n).is_err();
        let net = hc.network.network_mode.as_deref().unwrap_or("");
        if matches!(net, "" | "default" | "bridge") {
            for l in hc.network.links.iter().flatten() {
                let name = l.split(':').next().unwrap_or("").trim_start_matches('/');
                if missing(name) {
                    return Err(ContainerError::Invalid(format!(
                        "could not get container for {name}: No such container: {name}"
                    )));
                }
            }
        }
        for vf in hc.storage.volumes_from.iter().flatten() {
            let (c, _) = mounts::parse_volumes_from(vf)?;
            if missing(&c) {
                return Err(ContainerError::Invalid(format!("No such container: {c}")));
            }
        }
        for mode in [&hc.namespaces.pid_mode, &hc.namespaces.ipc_mode] {
            if let Some(c) = mode.as_deref().and_then(|m| m.strip_prefix("container:")) {
                if missing(c) {
                    return Err(ContainerError::Invalid(format!("No such container: {c}")));
                }
            }
        }
        Ok(())
    }

    /// Create the volumes a new container names (anonymous ones with fresh names) and the
    /// missing source directories of its `-v` binds, as Docker does at create.
    pub(crate) fn create_mount_sources(&self, mps: &mut [MountPoint], created: &mut Vec<String>) -> Result<()> {
        for mp in mps.iter_mut() {
            match mp.typ.as_str() {
                "volume" => {
                    let existed = !mp.name.is_empty() && self.volumes.get(&mp.name).is_ok();
                    let v = self
                        .volumes
                        .create(
                            wharf_volume::CreateOptions {
                                name: Some(mp.name.clone()).filter(|n| !n.is_empty()),
                                driver: Some(mp.driver.clone()),
                                driver_opts: Some(mp.volume_opts.clone().into_iter().collect()),
                                labels: Some(mp.volume_labels.clone().into_iter().collect())
                                    .filter(|l: &std::collections::BTreeMap<_, _>| !l.is_empty()),
                            },
                            mp.anonymous,
                        )
                        .map_err(ContainerError::Volume)?;
                    if mp.anonymous && !existed {
                        created.push(v.name.clone());
                    }
                    mp.source = self.volumes.path(&v.name).to_string_lossy().into_owned();
                    mp.name = v.name;
                }
                "bind" if mp.create_source && !Path::new(&mp.source).exists() => {
                    fs::create_dir_all(&mp.source).map_err(|e| {
                        ContainerError::Invalid(format!("error while creating mount source path '{}': {e}", mp.source))
                    })?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Check a container's log driver and options as dockerd does at create: `json-file` (with
/// its options) and `none` are wharf's; Docker's other built-in drivers are named as not
/// supported, anything else is a plugin that is not there.
pub(crate) fn validate_log_config(log: &crate::config::LogConfig) -> Result<()> {
    const BUILTIN: &[&str] = &[
        "local",
        "syslog",
        "journald",
        "gelf",
        "fluentd",
        "awslogs",
        "splunk",
        "etwlogs",
        "gcplogs",
        "logentries",
    ];
    let driver = log.typ.as_deref().unwrap_or("json-file");
    let opts = log.config.as_ref();
    match driver {
        "json-file" => {
            const KNOWN: &[&str] = &[
                "max-file",
                "max-size",
                "compress",
                "labels",
                "labels-regex",
                "env",
                "env-regex",
                "tag",
            ];
            for k in opts.into_iter().flat_map(|o| o.keys()) {
                if !KNOWN.contains(&k.as_str()) {
                    return Err(ContainerError::Invalid(format!(
                        "unknown log opt '{k}' for json-file log driver"
                    )));
                }
            }
            Ok(())
        }
        "none" => match opts.and_then(|o| o.keys().next()) {
            Some(k) => Err(ContainerError::Invalid(format!(
                "unknown log opt '{k}' for none log driver"
            ))),
            None => Ok(()),
        },
        d if BUILTIN.contains(&d) => Err(ContainerError::Invalid(format!(
            "logging driver \"{d}\" is not supported by wharf (json-file and none are)"
        ))),
        d => Err(ContainerError::Invalid(format!(
            "error looking up logging plugin {d}: plugin \"{d}\" not found"
        ))),
    }
}

/// Limits the host cannot honour, and dockerd's rules on them: the warnings `create` returns.
fn host_limits(hc: &mut crate::config::HostSpec) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    if spec::cgroup_v2() {
        // dockerd on a v2 host: neither exists there; both are dropped with a warning.
        if hc.resources.memory_swappiness.take().is_some_and(|v| v != -1) {
            warnings.push("Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.".to_string());
        }
        if hc.resources.oom_kill_disable.take() == Some(true) {
            warnings.push("Your kernel does not support OomKillDisable. OomKillDisable discarded.".to_string());
        }
    }
    // Docker: an unset swap limit is twice the memory limit, and inspect says so.
    if hc.resources.memory.unwrap_or(0) > 0 && hc.resources.memory_swap.unwrap_or(0) == 0 {
        hc.resources.memory_swap = hc.resources.memory.map(|m| m * 2);
    }
    if let Some(r) = &hc.lifecycle.restart_policy {
        let n = r.name.map(|n| n.to_string()).unwrap_or_default();
        if hc.lifecycle.auto_remove.unwrap_or(false) && !n.is_empty() && n != "no" {
            return Err(ContainerError::Invalid(
                "can't create 'AutoRemove' container with restart policy".into(),
            ));
        }
        if r.maximum_retry_count.unwrap_or(0) > 0 && n != "on-failure" {
            return Err(ContainerError::Invalid(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'".into(),
            ));
        }
    }
    Ok(warnings)
}

/// Merges the image's config into the container's as Docker stores it (entrypoint and command,
/// env, working dir, user, stop signal, healthcheck, labels, ports, volumes): the argv to run.
fn merge_image_config(cfg: &mut crate::config::Config, ic: &Value) -> Result<Vec<String>> {
    let (ep, cmd) = spec::merge_command(cfg.entrypoint.clone(), cfg.cmd.clone(), ic);
    let argv: Vec<String> = ep
        .clone()
        .unwrap_or_default()
        .into_iter()
        .chain(cmd.clone().unwrap_or_default())
        .collect();
    if argv.is_empty() {
        return Err(ContainerError::Invalid("No command specified".into()));
    }
    // Merge with the image's config as Docker stores it.
    let strs = |k: &str| -> Vec<String> {
        ic.get(k)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let img_env = strs("Env");
    cfg.env = Some(spec::merge_env(&[&img_env, cfg.env.as_deref().unwrap_or(&[])]));
    cfg.entrypoint = ep;
    cfg.cmd = cmd;
    if cfg.working_dir.as_deref().unwrap_or("").is_empty() {
        cfg.working_dir = ic.get("WorkingDir").and_then(|v| v.as_str()).map(String::from);
    }
    if let Some(w) = cfg.working_dir.as_deref().filter(|w| !w.is_empty()) {
        if !w.starts_with('/') {
            return Err(ContainerError::Invalid(format!(
                "the working directory '{w}' is invalid, it needs to be an absolute path"
            )));
        }
        // As dockerd shows it: cleaned (`/tmp/` is `/tmp`).
        cfg.working_dir = Some(crate::validate::clean(w));
    }
    if cfg.user.as_deref().unwrap_or("").is_empty() {
        cfg.user = ic.get("User").and_then(|v| v.as_str()).map(String::from);
    }
    if cfg.stop_signal.is_none() {
        cfg.stop_signal = ic.get("StopSignal").and_then(|v| v.as_str()).map(String::from);
    }
    cfg.healthcheck = health::merge(cfg.healthcheck.take(), ic.get("Healthcheck"));
    if let Some(h) = &cfg.healthcheck {
        health::validate(h)?;
    }
    let mut labels: std::collections::BTreeMap<String, String> = ic
        .get("Labels")
        .and_then(|v| v.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    labels.extend(cfg.labels.take().unwrap_or_default());
    cfg.labels = Some(labels);
    if cfg.exposed_ports.is_none() {
        if let Some(p) = ic
            .get("ExposedPorts")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
        {
            cfg.exposed_ports = Some(p);
        }
    }
    // The image's VOLUMEs join the container's own (Docker merges the two sets).
    if let Some(p) = ic
        .get("Volumes")
        .and_then(|v| serde_json::from_value::<crate::config::StringSet>(v.clone()).ok())
    {
        cfg.volumes.get_or_insert_with(Default::default).extend(p);
    }
    Ok(argv)
}

/// dockerd's defaults for what the request left unset, and the runtime and log driver checked.
fn host_defaults(hc: &mut crate::config::HostSpec) -> Result<()> {
    if hc.network.network_mode.as_deref().unwrap_or("").is_empty() {
        hc.network.network_mode = Some("bridge".into());
    }
    if hc.network.network_mode.as_deref() == Some("default") {
        hc.network.network_mode = Some("bridge".into());
    }
    crate::validate::modes(hc)?;
    if hc.namespaces.ipc_mode.as_deref().unwrap_or("").is_empty() {
        hc.namespaces.ipc_mode = Some("private".into());
    }
    // As dockerd: "unlimited" and "unset" are shown as null, the defaults as their values.
    if hc.resources.memory_swappiness == Some(-1) {
        hc.resources.memory_swappiness = None;
    }
    // As dockerd: any limit not above zero is "unlimited", shown as 0.
    if hc.resources.pids_limit.is_some_and(|p| p <= 0) {
        hc.resources.pids_limit = Some(0);
    }
    if hc.namespaces.shm_size.unwrap_or(0) <= 0 {
        hc.namespaces.shm_size = Some(64 << 20);
    }
    spec::fill_host_defaults(hc);
    // wharf-shim is the one runtime; it answers to dockerd's default name.
    match hc.lifecycle.runtime.as_deref().unwrap_or("") {
        "" | "runc" => hc.lifecycle.runtime = Some("runc".into()),
        other => {
            return Err(ContainerError::Invalid(format!(
                "unknown or invalid runtime name: {other}"
            )));
        }
    }
    let log = hc.lifecycle.log_config.get_or_insert_with(Default::default);
    if log.typ.as_deref().unwrap_or("").is_empty() {
        log.typ = Some("json-file".into());
    }
    log.config.get_or_insert_with(Default::default);
    validate_log_config(log)?;
    Ok(())
}

/// The container-wide MacAddress (deprecated in API 1.44) is the network mode's endpoint's,
/// unless that endpoint names its own.
fn container_mac(
    cfg: &crate::config::Config,
    hc: &crate::config::HostSpec,
    networks: &mut std::collections::BTreeMap<String, netsetup::EndpointConfig>,
) -> Result<()> {
    if let Some(mac) = cfg.mac_address.as_deref().filter(|m| !m.is_empty()) {
        if wharf_network::link::parse_mac(mac).is_none() {
            return Err(ContainerError::Invalid(format!("invalid MAC address: {mac}")));
        }
        let mode = hc.network.network_mode.clone().unwrap_or_default();
        let only = networks.len() == 1;
        let ec = networks.iter_mut().find(|(k, _)| **k == mode || only).map(|(_, ec)| ec);
        match ec {
            Some(ec) if ec.mac.is_none() => ec.mac = Some(mac.to_string()),
            Some(_) => {}
            None => {
                return Err(ContainerError::Invalid(
                    "conflicting options: mac-address and the network mode".into(),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_configs_checked_like_dockerd() {
        let lc = |t: &str, opts: &[(&str, &str)]| crate::config::LogConfig {
            typ: Some(t.into()),
            config: Some(opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        };
        assert!(validate_log_config(&lc("json-file", &[("max-size", "1m"), ("max-file", "3")])).is_ok());
        assert!(validate_log_config(&lc("none", &[])).is_ok());
        let err = |c| validate_log_config(&c).unwrap_err().to_string();
        assert_eq!(
            err(lc("asdf", &[])),
            "error looking up logging plugin asdf: plugin \"asdf\" not found"
        );
        assert_eq!(
            err(lc("json-file", &[("bogus", "1")])),
            "unknown log opt 'bogus' for json-file log driver"
        );
        assert!(err(lc("syslog", &[])).contains("not supported"));
    }
}
