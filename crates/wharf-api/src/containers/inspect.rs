//! `GET /containers/{id}/json`: the record as dockerd renders it, with the nulls and zeros
//! clients expect for fields left unset.

use super::*;
use crate::query::Query;
use crate::routes::json_response as json_res;
use crate::routes::ApiVersion;
use crate::server::Daemon;
use hyper::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use wharf_container::record::ZERO_TIME;
use wharf_container::ContainerStatus;

/// `HostConfig` fields dockerd's inspect always shows, at their zero value when unset.
const HOST_CONFIG_ZEROS: &[(&str, Zero)] = &[
    ("ContainerIDFile", Zero::Str),
    ("AutoRemove", Zero::Bool),
    ("VolumeDriver", Zero::Str),
    ("ConsoleSize", Zero::Size),
    ("Cgroup", Zero::Str),
    ("IpcMode", Zero::Str),
    ("OomScoreAdj", Zero::Int),
    ("PidMode", Zero::Str),
    ("Privileged", Zero::Bool),
    ("PublishAllPorts", Zero::Bool),
    ("ReadonlyRootfs", Zero::Bool),
    ("UTSMode", Zero::Str),
    ("UsernsMode", Zero::Str),
    ("ShmSize", Zero::Int),
    ("Runtime", Zero::Str),
    ("Isolation", Zero::Str),
    ("CpuShares", Zero::Int),
    ("Memory", Zero::Int),
    ("NanoCpus", Zero::Int),
    ("CgroupParent", Zero::Str),
    ("BlkioWeight", Zero::Int),
    ("CpuPeriod", Zero::Int),
    ("CpuQuota", Zero::Int),
    ("CpuRealtimePeriod", Zero::Int),
    ("CpuRealtimeRuntime", Zero::Int),
    ("CpusetCpus", Zero::Str),
    ("CpusetMems", Zero::Str),
    ("MemoryReservation", Zero::Int),
    ("MemorySwap", Zero::Int),
    ("CpuCount", Zero::Int),
    ("CpuPercent", Zero::Int),
    ("IOMaximumIOps", Zero::Int),
    ("IOMaximumBandwidth", Zero::Int),
];

/// The zero value Go writes for a field that is not a pointer.
enum Zero {
    Str,
    Int,
    Bool,
    /// `[2]uint`.
    Size,
}

/// `HostConfig` fields dockerd's inspect shows as null when unset.
const HOST_CONFIG_NULLS: &[&str] = &[
    "Binds",
    "CapAdd",
    "CapDrop",
    "DeviceCgroupRules",
    "DeviceRequests",
    "ExtraHosts",
    "GroupAdd",
    "Links",
    "SecurityOpt",
    "VolumesFrom",
    "MemorySwappiness",
    "PidsLimit",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "Devices",
    "Ulimits",
    "OomKillDisable",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "PortBindings",
    "Tmpfs",
];

/// `Config` fields dockerd's inspect shows as null when unset.
const CONFIG_NULLS: &[&str] = &["Entrypoint", "OnBuild", "Volumes", "Cmd"];

pub(crate) fn inspect(d: &Arc<Daemon>, name: &str, q: &Query, version: ApiVersion) -> Res {
    let view = d.containers.view(name, q.bool("size"))?;
    let r = &view.record;
    let running = r.state.is_running();
    let dir = &view.files_dir;
    let (driver, data) = view.graph_driver.clone().unwrap_or_default();
    let graph = json!({"Name": driver, "Data": data});
    let mut v = json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.path,
        "Args": r.args,
        "State": {
            "Status": r.state.status,
            "Running": running,
            "Paused": r.state.status == ContainerStatus::Paused,
            "Restarting": r.state.status == ContainerStatus::Restarting,
            "OOMKilled": r.state.oom_killed,
            "Dead": r.state.status == ContainerStatus::Dead,
            "Pid": r.state.pid,
            "ExitCode": r.state.exit_code,
            "Error": r.state.error,
            "StartedAt": r.state.started_at,
            "FinishedAt": r.state.finished_at,
        },
        "Image": r.image,
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": view.log_path,
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "Driver": r.driver,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": if r.exec_ids.is_empty() { Value::Null } else { json!(r.exec_ids) },
        "HostConfig": crate::convert::host_config_view(&r.host_config),
        "GraphDriver": graph,
        "Mounts": r.mount_points.iter().map(|m| m.to_json()).collect::<Vec<_>>(),
        "Config": crate::convert::config_view(&r.config),
        "NetworkSettings": wharf_container::netsetup::settings_json(r),
    });
    if let Some(h) = &r.state.health {
        v["State"]["Health"] = json!(h);
    }
    if let Some(links) = r.host_config.network.links.as_ref().filter(|l| !l.is_empty()) {
        v["HostConfig"]["Links"] = json!(links.iter().map(|l| link_view(&r.name, l)).collect::<Vec<_>>());
    }
    // `host` and `none` are networks too: their IDs, as dockerd shows them. Before API 1.45
    // a user network's aliases included the short ID once the endpoint was made (the first
    // start): Compose v1 reads it there to tell whether it still has to connect the container
    // itself (with the link-local addresses its create left out).
    let short = r.id[..12].to_string();
    let started = r.state.started_at != ZERO_TIME;
    if let Some(nets) = v["NetworkSettings"]["Networks"].as_object_mut() {
        for (name, ep) in nets.iter_mut() {
            let user = !matches!(name.as_str(), "bridge" | "host" | "none");
            if version < ApiVersion(1, 45) && user && started {
                let mut aliases: Vec<Value> = ep["Aliases"].as_array().cloned().unwrap_or_default();
                if !aliases.iter().any(|a| a.as_str() == Some(short.as_str())) {
                    aliases.push(json!(short));
                }
                ep["Aliases"] = Value::Array(aliases);
            }
            if ep["NetworkID"].as_str().is_some_and(str::is_empty) {
                if let Ok(n) = d.containers.networks().get(name) {
                    ep["NetworkID"] = json!(n.id);
                }
            }
        }
    }
    // Fields dockerd leaves out when empty (`omitempty`).
    if let Some(o) = v["HostConfig"].as_object_mut() {
        for k in ["Mounts", "StorageOpt", "Sysctls", "Annotations"] {
            if o.get(k)
                .is_some_and(|x| x.is_null() || x.as_array().is_some_and(Vec::is_empty))
            {
                o.remove(k);
            }
        }
    }
    // Fields dockerd always writes, null when unset (the models leave them out), and the
    // ones Go writes as their zero value (clients read `HostConfig.Privileged` and friends
    // whatever the create body said).
    for (section, keys) in [("Config", CONFIG_NULLS), ("HostConfig", HOST_CONFIG_NULLS)] {
        if let Some(o) = v[section].as_object_mut() {
            for k in keys {
                o.entry(k.to_string()).or_insert(Value::Null);
            }
        }
    }
    if let Some(o) = v["HostConfig"].as_object_mut() {
        for (k, zero) in HOST_CONFIG_ZEROS {
            let zero = match zero {
                Zero::Str => json!(""),
                Zero::Int => json!(0),
                Zero::Bool => json!(false),
                Zero::Size => json!([0, 0]),
            };
            match o.get(*k) {
                None | Some(Value::Null) => {
                    o.insert(k.to_string(), zero);
                }
                Some(_) => {}
            }
        }
    }
    if let Some((rw, root)) = view.sizes {
        v["SizeRw"] = json!(rw);
        v["SizeRootFs"] = json!(root);
    }
    json_res(StatusCode::OK, &v)
}
