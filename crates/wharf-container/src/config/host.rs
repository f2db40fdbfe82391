//! [`HostSpec`]: how the host runs a container, grouped by what the engine does with each
//! part; stored flat, under Docker's `HostConfig` names.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the host runs a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSpec {
    /// cgroup limits, devices and rlimits.
    #[serde(flatten)]
    pub resources: Resources,
    /// Binds, mounts, volumes and the root's writability.
    #[serde(flatten)]
    pub storage: Storage,
    /// Network mode, published ports, links and name resolution.
    #[serde(flatten)]
    pub network: Networking,
    /// Privileges, capabilities, security options, groups.
    #[serde(flatten)]
    pub security: Security,
    /// Namespaces shared or private, and what lives in them.
    #[serde(flatten)]
    pub namespaces: Namespaces,
    /// Restart, removal, init, logging and the runtime.
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
}

/// cgroup limits, devices and rlimits (Docker's `Resources`, which `update` changes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resources {
    /// Relative CPU weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    /// Memory limit in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// The cgroup parent (the daemon's when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    /// Block IO weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio_weight: Option<u16>,
    /// Block IO weight per device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio_weight_device: Option<Vec<WeightDevice>>,
    /// Read bytes per second per device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio_device_read_bps: Option<Vec<ThrottleDevice>>,
    /// Write bytes per second per device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio_device_write_bps: Option<Vec<ThrottleDevice>>,
    /// Read operations per second per device.
    #[serde(rename = "BlkioDeviceReadIOps", skip_serializing_if = "Option::is_none")]
    pub blkio_device_read_iops: Option<Vec<ThrottleDevice>>,
    /// Write operations per second per device.
    #[serde(rename = "BlkioDeviceWriteIOps", skip_serializing_if = "Option::is_none")]
    pub blkio_device_write_iops: Option<Vec<ThrottleDevice>>,
    /// CFS period in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    /// CFS quota in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    /// Real-time period in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_realtime_period: Option<i64>,
    /// Real-time runtime in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_realtime_runtime: Option<i64>,
    /// CPUs allowed (`0-3`, `0,1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_mems: Option<String>,
    /// Host devices made available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<DeviceMapping>>,
    /// Device cgroup rules (`c 1:3 mr`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_cgroup_rules: Option<Vec<String>>,
    /// Requests for devices from a driver (GPUs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_requests: Option<Vec<DeviceRequest>>,
    /// Deprecated by the kernel; kept as given.
    #[serde(rename = "KernelMemoryTCP", skip_serializing_if = "Option::is_none")]
    pub kernel_memory_tcp: Option<i64>,
    /// Memory soft limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap (`-1`: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    /// 0 to 100 (`-1`: the host's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_swappiness: Option<i64>,
    /// CPUs in billionths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// The OOM killer leaves it alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_kill_disable: Option<bool>,
    /// Process limit (not above zero: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// rlimits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ulimits: Option<Vec<Ulimit>>,
    /// Windows only; kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<i64>,
    /// Windows only; kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<i64>,
    /// Windows only; kept as given.
    #[serde(rename = "IOMaximumIOps", skip_serializing_if = "Option::is_none")]
    pub io_maximum_iops: Option<i64>,
    /// Windows only; kept as given.
    #[serde(rename = "IOMaximumBandwidth", skip_serializing_if = "Option::is_none")]
    pub io_maximum_bandwidth: Option<i64>,
    /// The OOM score of its processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
}

/// Binds, mounts, volumes and the root's writability.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Storage {
    /// `-v src:dst[:opts]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binds: Option<Vec<String>>,
    /// `--mount`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    /// `--tmpfs target[:opts]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<BTreeMap<String, String>>,
    /// `--volumes-from container[:ro|rw]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes_from: Option<Vec<String>>,
    /// The driver of volumes made for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_driver: Option<String>,
    /// Storage driver options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_opt: Option<BTreeMap<String, String>>,
    /// The root is read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly_rootfs: Option<bool>,
}

/// Network mode, published ports, links and name resolution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Networking {
    /// `bridge`, `host`, `none`, `container:<id>`, or a network's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// `port/proto` to host bindings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_bindings: Option<PortMap>,
    /// `-P`: every exposed port to a free host port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_all_ports: Option<bool>,
    /// `name:alias` legacy links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<String>>,
    /// Name servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<Vec<String>>,
    /// Resolver options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_options: Option<Vec<String>>,
    /// Search domains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_search: Option<Vec<String>>,
    /// `host:ip` lines for `/etc/hosts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_hosts: Option<Vec<String>>,
}

/// Privileges, capabilities, security options, groups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Security {
    /// Every capability, every device, no confinement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Capabilities added to the default set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_add: Option<Vec<String>>,
    /// Capabilities taken from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_drop: Option<Vec<String>>,
    /// `seccomp=`, `no-new-privileges`, `apparmor=`, `label=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_opt: Option<Vec<String>>,
    /// Supplementary groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_add: Option<Vec<String>>,
    /// Paths masked in `/proc` and `/sys` (the default set when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked_paths: Option<Vec<String>>,
    /// Paths made read-only (the default set when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly_paths: Option<Vec<String>>,
    /// `host` to leave the daemon's user namespace remapping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
}

/// Namespaces shared or private, and what lives in them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Namespaces {
    /// `host` or `container:<id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    /// `private`, `shareable`, `host`, `none`, `container:<id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<String>,
    /// `host`.
    #[serde(rename = "UTSMode", skip_serializing_if = "Option::is_none")]
    pub uts_mode: Option<String>,
    /// A cgroup namespace of its own, or the host's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroupns_mode: Option<CgroupnsMode>,
    /// `container:<id>`: another container's cgroup (kept as given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Size of `/dev/shm` in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    /// Namespaced kernel parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysctls: Option<BTreeMap<String, String>>,
}

/// Restart, removal, init, logging and the runtime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Lifecycle {
    /// When an exit brings a restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// Removed when it exits (`--rm`): the container is ephemeral.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_remove: Option<bool>,
    /// An init reaps its zombies and forwards signals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// Where its output goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_config: Option<LogConfig>,
    /// The OCI runtime's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The client's `--cidfile` (kept as given).
    #[serde(rename = "ContainerIDFile", skip_serializing_if = "Option::is_none")]
    pub container_id_file: Option<String>,
    /// Initial terminal size, `[height, width]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_size: Option<Vec<i32>>,
    /// OCI annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Windows only; kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
}

/// `port/proto` to the host addresses it is published on.
pub type PortMap = BTreeMap<String, Option<Vec<PortBinding>>>;

/// One host address a port is published on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    /// Host address (all when empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// Host port or range (a free one when empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<String>,
}

/// When an exit brings a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// The policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<RestartPolicyName>,
    /// `on-failure`'s limit (0: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_retry_count: Option<i64>,
}

/// A restart policy's name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicyName {
    /// Unset (as `no`).
    #[default]
    #[serde(rename = "")]
    Empty,
    /// Never.
    #[serde(rename = "no")]
    No,
    /// After every exit.
    #[serde(rename = "always")]
    Always,
    /// After every exit but one the user asked for.
    #[serde(rename = "unless-stopped")]
    UnlessStopped,
    /// After a non-zero exit.
    #[serde(rename = "on-failure")]
    OnFailure,
}

impl std::str::FromStr for RestartPolicyName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| format!("invalid restart policy {s:?}"))
    }
}

/// A cgroup namespace of its own, or the host's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupnsMode {
    /// Unset: the daemon's default.
    #[default]
    #[serde(rename = "")]
    Empty,
    /// Its own.
    #[serde(rename = "private")]
    Private,
    /// The host's.
    #[serde(rename = "host")]
    Host,
}

/// Where a container's output goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    /// The driver (`json-file`, `none`, ...).
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Its options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
}

/// A host device in the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    /// On the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_on_host: Option<String>,
    /// Inside (the host path when empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_in_container: Option<String>,
    /// `rwm` or part of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_permissions: Option<String>,
}

/// A request for devices from a driver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceRequest {
    /// The driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// How many (`-1`: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Which.
    #[serde(rename = "DeviceIDs", skip_serializing_if = "Option::is_none")]
    pub device_ids: Option<Vec<String>>,
    /// Alternatives of capability sets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<Vec<String>>>,
    /// Driver options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// One rlimit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    /// `nofile`, `nproc`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Soft limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft: Option<i64>,
    /// Hard limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hard: Option<i64>,
}

/// A rate limit on one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ThrottleDevice {
    /// The device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<i64>,
}

/// A block IO weight on one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WeightDevice {
    /// The device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<usize>,
}

/// One `--mount`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    /// Where inside.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The host path or volume name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What kind.
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub typ: Option<MountType>,
    /// Read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// macOS only; kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    /// A bind's options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<BindOptions>,
    /// A volume's options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    /// A tmpfs's options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
}

/// What kind of `--mount`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// Unset.
    #[default]
    #[serde(rename = "")]
    Empty,
    /// A host path.
    Bind,
    /// A named or anonymous volume.
    Volume,
    /// A fresh tmpfs.
    Tmpfs,
    /// Windows only.
    Npipe,
    /// Swarm only.
    Cluster,
}

/// A bind's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BindOptions {
    /// Mount propagation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<Propagation>,
    /// Not recursive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub non_recursive: Option<bool>,
    /// Make the source when missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_mountpoint: Option<bool>,
    /// Read-only, but not its submounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_non_recursive: Option<bool>,
    /// Read-only, submounts too, or fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_force_recursive: Option<bool>,
}

/// Mount propagation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    /// Unset.
    #[default]
    #[serde(rename = "")]
    Empty,
    /// `private`.
    Private,
    /// `rprivate`.
    Rprivate,
    /// `shared`.
    Shared,
    /// `rshared`.
    Rshared,
    /// `slave`.
    Slave,
    /// `rslave`.
    Rslave,
}

/// A volume's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeOptions {
    /// Do not copy the image's files into a new volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_copy: Option<bool>,
    /// Labels of a volume made for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The driver of a volume made for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_config: Option<DriverConfig>,
    /// A path inside the volume to mount instead of its root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

/// A volume driver and its options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DriverConfig {
    /// The driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// A tmpfs's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TmpfsOptions {
    /// Size limit in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// Mode of its root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<i64>,
    /// Further mount options, `[name]` or `[name, value]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<Vec<String>>>,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The name as stored and as Docker shows it (empty when unset).
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(RestartPolicyName { Empty => "", No => "no", Always => "always", UnlessStopped => "unless-stopped", OnFailure => "on-failure" });
names!(CgroupnsMode { Empty => "", Private => "private", Host => "host" });
names!(MountType { Empty => "", Bind => "bind", Volume => "volume", Tmpfs => "tmpfs", Npipe => "npipe", Cluster => "cluster" });
names!(Propagation { Empty => "", Private => "private", Rprivate => "rprivate", Shared => "shared", Rshared => "rshared", Slave => "slave", Rslave => "rslave" });
