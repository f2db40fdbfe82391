//! The OCI runtime spec of a container, built from its create-time config, its host config and
//! its image, with Docker's defaults: the capability set, masked and read-only paths, the
//! namespaces, the default device rules, `/dev/shm`, and the resource limits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    BoxBuilder, Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDevice, LinuxDeviceBuilder,
    LinuxDeviceType, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResources, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, Process, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use serde_json::{json, Value};
use std::collections::HashMap;

use crate::error::{ContainerError, Result};
use crate::resources::{device_numbers, device_rule, oci};
pub use crate::resources::{resources, validate_resources};

/// Docker's default capabilities (SECURITY.md).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability name the kernel knows, in number order.
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities in this process's bounding set: `--privileged` grants these, never more
/// (asking for one the daemon lacks makes the container fail).
pub fn bounding_caps() -> Vec<String> {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

fn normalize_cap(c: &str) -> Result<String> {
    let up = c.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(ContainerError::Invalid(format!("invalid capability: {c}")))
    }
}

/// The capability set from the defaults, `--privileged`, `--cap-add` and `--cap-drop`, in
/// Docker's order of application (drops first, then adds; `ALL` in either).
pub fn capabilities(hc: &crate::config::HostSpec) -> Result<Vec<String>> {
    let bounding = bounding_caps();
    if hc.security.privileged.unwrap_or(false) {
        return Ok(bounding);
    }
    let add: Vec<String> = hc
        .security
        .cap_add
        .iter()
        .flatten()
        .map(|c| normalize_cap(c))
        .collect::<Result<_>>()?;
    let drop: Vec<String> = hc
        .security
        .cap_drop
        .iter()
        .flatten()
        .map(|c| normalize_cap(c))
        .collect::<Result<_>>()?;
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if add.iter().any(|c| c == "ALL") {
        caps = bounding.clone();
    } else {
        for c in add {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    caps.retain(|c| bounding.contains(c));
    Ok(caps)
}

/// The user and groups a process runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// UID.
    pub uid: u32,
    /// GID.
    pub gid: u32,
    /// Supplementary groups.
    pub additional: Vec<u32>,
    /// The home directory from passwd, for `HOME`.
    pub home: String,
}

/// Resolve `-u` (`name`, `uid`, `name:group`, `uid:gid`) against the image's `/etc/passwd` and
/// `/etc/group` contents, as Docker does. `group_add` are `--group-add` entries.
pub fn resolve_user(spec: &str, passwd: &str, group: &str, group_add: &[String]) -> Result<User> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let mut out = User {
        home: "/".into(),
        ..User::default()
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = users
        .iter()
        .find(|f| f[0] == u)
        .or_else(|| users.iter().find(|f| f[2] == u));
    match (entry, u.parse::<u32>()) {
        (Some(f), _) => {
            out.uid = f[2]
                .parse()
                .map_err(|_| ContainerError::Invalid(format!("bad uid in /etc/passwd for {u}")))?;
            out.gid = f[3].parse().unwrap_or(0);
            out.home = f[5].to_string();
        }
        (None, Ok(n)) => {
            out.uid = n;
            out.gid = 0;
        }
        (None, Err(_)) => {
            return Err(ContainerError::Invalid(format!(
                "unable to find user {u}: no matching entries in passwd file"
            )))
        }
    }
    if u == "0" || u == "root" {
        out.home = entry.map(|f| f[5].to_string()).unwrap_or_else(|| "/root".into());
    }
    let find_group = |g: &str| -> Result<u32> {
        if let Some(f) = groups.iter().find(|f| f[0] == g) {
            return f[2]
                .parse()
                .map_err(|_| ContainerError::Invalid(format!("bad gid in /etc/group for {g}")));
        }
        g.parse::<u32>().map_err(|_| {
            ContainerError::Invalid(format!("unable to find group {g}: no matching entries in group file"))
        })
    };
    if let Some(g) = g {
        out.gid = find_group(g)?;
    }
    // Supplementary groups: every group listing the user by name, then --group-add.
    let name = entry.map(|f| f[0]).unwrap_or("");
    if g.is_none() && !name.is_empty() {
        for f in &groups {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(gid) = f[2].parse::<u32>() {
                    if gid != out.gid && !out.additional.contains(&gid) {
                        out.additional.push(gid);
                    }
                }
            }
        }
    }
    for g in group_add {
        let gid = find_group(g)?;
        if !out.additional.contains(&gid) {
            out.additional.push(gid);
        }
    }
    Ok(out)
}

/// Merge environment lists: later entries replace earlier ones with the same key.
pub fn merge_env(lists: &[&[String]]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in lists {
        for e in *l {
            let key = e.split('=').next().unwrap_or("");
            if let Some(pos) = out.iter().position(|o| o.split('=').next() == Some(key)) {
                out[pos] = e.clone();
            } else {
                out.push(e.clone());
            }
        }
    }
    out
}

/// Docker's default `PATH`.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What `build` needs besides the container's own config.
#[derive(Debug)]
pub struct SpecInput<'a> {
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    /// The container's directory holding `hosts`, `hostname`, `resolv.conf`.
    pub files: &'a Path,
    /// The cgroup path (relative to each hierarchy root).
    pub cgroup_path: String,
    /// The resolved user.
    pub user: User,
    /// The full argv.
    pub argv: Vec<String>,
    /// The final environment.
    pub env: Vec<String>,
    /// The seccomp profile left to the runtime (`None`: unconfined, or compiled by the
    /// daemon and handed to the shim).
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// Number of CPUs on the host (for `--cpus`).
    pub ncpu: usize,
    /// `--init`: the host's init binary, bind-mounted read-only at [`INIT_PATH`].
    pub init: Option<PathBuf>,
    /// `--pid container:`: the namespace file to join.
    pub pid_ns: Option<String>,
    /// `--ipc container:`: the namespace file to join.
    pub ipc_ns: Option<String>,
    /// What `/dev/shm` is.
    pub shm: Shm,
    /// Volumes, binds and `--mount` tmpfs, parents first (see `mounts`).
    pub user_mounts: Vec<Mount>,
    /// The network namespace to join (a pinned one, or another container's); `None`: a new one.
    pub net_ns: Option<String>,
}

/// Where the init binary appears inside a container, as in Docker.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// The container's `/dev/shm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shm {
    /// A tmpfs of its own (`--ipc private`, the default).
    Private,
    /// A bind mount of a host directory (`shareable`, `container:`, `host`).
    Bind(PathBuf),
    /// No `/dev/shm` at all (`--ipc none`).
    None,
}

fn ns(kind: LinuxNamespaceType, path: Option<String>) -> LinuxNamespace {
    let mut n = LinuxNamespaceBuilder::default()
        .typ(kind)
        .build()
        .expect("a namespace has its type");
    n.set_path(path.map(PathBuf::from));
    n
}

/// One OCI mount.
pub fn mount(destination: impl Into<PathBuf>, typ: &str, source: impl Into<PathBuf>, options: Vec<String>) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options)
        .build()
        .expect("a mount has its destination")
}

/// Is `/sys/fs/cgroup` the unified (v2) hierarchy?
pub fn cgroup_v2() -> bool {
    rustix::fs::statfs("/sys/fs/cgroup")
        .map(|s| s.f_type == 0x6367_7270)
        .unwrap_or(false)
}

/// Whether the container gets its own cgroup namespace: `--cgroupns`, else dockerd's default
/// (private on a cgroup v2 host, the host's on v1 and hybrid ones).
fn cgroupns_private(hc: &crate::config::HostSpec) -> bool {
    match hc.namespaces.cgroupns_mode.map(|m| m.to_string()).as_deref() {
        Some("private") => true,
        Some("host") => false,
        _ => cgroup_v2(),
    }
}

/// What `HostConfig` shows for the defaults dockerd fills in at create: the masked and
/// read-only paths (not for `--privileged`), the cgroup namespace mode.
pub fn fill_host_defaults(hc: &mut crate::config::HostSpec) {
    if !hc.security.privileged.unwrap_or(false) {
        hc.security.masked_paths.get_or_insert_with(|| strings(MASKED));
        hc.security.readonly_paths.get_or_insert_with(|| strings(READONLY));
    }
    if hc.namespaces.cgroupns_mode.is_none_or(|m| m.to_string().is_empty()) {
        hc.namespaces.cgroupns_mode = Some(if cgroup_v2() {
            crate::config::CgroupnsMode::Private
        } else {
            crate::config::CgroupnsMode::Host
        });
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// `--ulimit` names to OCI rlimit types.
fn rlimit_type(name: &str) -> Result<String> {
    const NAMES: &[&str] = &[
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    if NAMES.contains(&name) {
        Ok(format!("RLIMIT_{}", name.to_ascii_uppercase()))
    } else {
        Err(ContainerError::Invalid(format!("invalid ulimit type: {name}")))
    }
}

/// Build the whole spec with oci-spec's builders; every field Docker leaves unset is set to
/// none here, never to oci-spec's own defaults (runc's example spec).
pub fn build(cfg: &crate::config::Config, hc: &crate::config::HostSpec, input: SpecInput<'_>) -> Result<Spec> {
    let privileged = hc.security.privileged.unwrap_or(false);
    let ro = hc.storage.readonly_rootfs.unwrap_or(false);
    let process = process(cfg, hc, &input)?;
    let mounts = mounts(hc, &input);
    let (namespaces, uts_mode, net_mode) = namespaces(hc, &input);
    let sysctl = sysctls(hc, &net_mode);
    let (devices, resources) = devices(hc)?;
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(input.cgroup_path.clone())
        .resources(resources)
        .devices(devices)
        .build()
        .map_err(oci)?;
    if privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        linux.set_masked_paths(Some(
            hc.security.masked_paths.clone().unwrap_or_else(|| strings(MASKED)),
        ));
        linux.set_readonly_paths(Some(
            hc.security.readonly_paths.clone().unwrap_or_else(|| strings(READONLY)),
        ));
    }
    linux.set_sysctl(Some(sysctl.into_iter().collect()).filter(|s: &HashMap<_, _>| !s.is_empty()));
    // `seccomp::for_container` already left Docker's default out for `--privileged`; a
    // profile given explicitly applies even then (Docker 25+).
    linux.set_seccomp(input.seccomp.clone());
    let root = RootBuilder::default()
        .path(input.rootfs)
        .readonly(ro)
        .build()
        .map_err(oci)?;
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .process(process)
        .root(root)
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(oci)?;
    spec.set_annotations(
        hc.lifecycle
            .annotations
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
    );
    spec.set_hostname(None);
    spec.set_domainname(None);
    if uts_mode != "host" {
        spec.set_hostname(Some(cfg.hostname.clone().unwrap_or_default()));
        spec.set_domainname(cfg.domainname.clone().filter(|d| !d.is_empty()));
    }
    Ok(spec)
}

/// A resolved user as the spec's `process.user`.
pub fn oci_user(u: &User) -> Result<oci_spec::runtime::User> {
    UserBuilder::default()
        .uid(u.uid)
        .gid(u.gid)
        .additional_gids(u.additional.clone())
        .build()
        .map_err(oci)
}

/// `caps` as the bounding, effective and permitted sets, with empty inheritable and ambient
/// sets (Docker's shape).
pub fn capability_sets(caps: &[String]) -> Result<oci_spec::runtime::LinuxCapabilities> {
    let caps = cap_set(caps)?;
    LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .map_err(oci)
}

/// A capability set as the spec holds it.
fn cap_set(names: &[String]) -> Result<Capabilities> {
    names
        .iter()
        .map(|c| {
            serde_json::from_value::<Capability>(Value::String(c.clone()))
                .map_err(|_| ContainerError::Invalid(format!("unknown capability: {c:?}")))
        })
        .collect()
}

/// The spec's `process`: argv (behind the init with `--init`), env, user, cwd, capabilities,
/// rlimits, and the few process flags Docker sets.
fn process(cfg: &crate::config::Config, hc: &crate::config::HostSpec, input: &SpecInput<'_>) -> Result<Process> {
    let caps = capabilities(hc)?;
    let tty = cfg.tty.unwrap_or(false);
    let cwd = cfg
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(ContainerError::Invalid(format!(
            "the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )));
    }
    let mut rlimits = Vec::new();
    for u in hc.resources.ulimits.iter().flatten() {
        let name = u.name.clone().unwrap_or_default();
        let typ: PosixRlimitType = serde_json::from_value(json!(rlimit_type(&name)?))
            .map_err(|_| ContainerError::Invalid(format!("invalid ulimit type: {name}")))?;
        rlimits.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(u.soft.unwrap_or(0) as u64)
                .hard(u.hard.unwrap_or(0) as u64)
                .build()
                .map_err(oci)?,
        );
    }
    let no_new_privs = hc
        .security
        .security_opt
        .iter()
        .flatten()
        .any(|o| o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true");
    let mut args = Vec::new();
    if input.init.is_some() {
        args.extend([INIT_PATH.to_string(), "--".to_string()]);
    }
    args.extend(input.argv.iter().cloned());
    let user = oci_user(&input.user)?;
    let capabilities = capability_sets(&caps)?;
    let mut process = ProcessBuilder::default()
        .terminal(tty)
        .user(user)
        .args(args)
        .env(input.env.clone())
        .cwd(cwd)
        .capabilities(capabilities)
        .build()
        .map_err(oci)?;
    // Only when set: libcontainer loads seccomp late (after dropping capabilities) whenever the
    // field is present, which needs no_new_privs to be true.
    process.set_no_new_privileges(Some(true).filter(|_| no_new_privs));
    process.set_rlimits(Some(rlimits).filter(|r| !r.is_empty()));
    process.set_oom_score_adj(hc.resources.oom_score_adj.filter(|v| *v != 0).map(|v| v as i32));
    let size = hc.lifecycle.console_size.as_ref().filter(|s| s.len() == 2 && s[0] > 0);
    process.set_console_size(
        size.map(|s| BoxBuilder::default().height(s[0] as u64).width(s[1] as u64).build())
            .transpose()
            .map_err(oci)?,
    );
    Ok(process)
}

/// The spec's `mounts`: Docker's standard set, `/dev/shm`, the init, the hosts, hostname and
/// resolv.conf files (unless a user's mount is there), `--tmpfs`, then the user's mounts.
fn mounts(hc: &crate::config::HostSpec, input: &SpecInput<'_>) -> Vec<Mount> {
    let privileged = hc.security.privileged.unwrap_or(false);
    let shm = hc.namespaces.shm_size.filter(|s| *s > 0).unwrap_or(64 << 20);
    let files = input.files;
    let o = |v: &[&str]| strings(v);
    let rw = if privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", o(&["nosuid", "noexec", "nodev"])),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            o(&["nosuid", "strictatime", "mode=755", "size=65536k"]),
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            o(&["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        ),
        mount("/sys", "sysfs", "sysfs", o(&["nosuid", "noexec", "nodev", rw])),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            o(&["nosuid", "noexec", "nodev", "relatime", rw]),
        ),
        mount("/dev/mqueue", "mqueue", "mqueue", o(&["nosuid", "noexec", "nodev"])),
    ];
    match &input.shm {
        Shm::Private => mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            vec![
                "nosuid".into(),
                "noexec".into(),
                "nodev".into(),
                "mode=1777".into(),
                format!("size={shm}"),
            ],
        )),
        Shm::Bind(src) => mounts.push(mount(
            "/dev/shm",
            "bind",
            src,
            o(&["rbind", "rprivate", "nosuid", "noexec", "nodev"]),
        )),
        Shm::None => {}
    }
    if let Some(init) = &input.init {
        mounts.push(mount(INIT_PATH, "bind", init, o(&["bind", "ro", "nosuid", "nodev"])));
    }
    let ro = hc.storage.readonly_rootfs.unwrap_or(false);
    for (name, dest) in [
        ("resolv.conf", "/etc/resolv.conf"),
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
    ] {
        // A user's mount at the same place wins, as in Docker.
        if input.user_mounts.iter().any(|m| m.destination() == Path::new(dest)) {
            continue;
        }
        let mut opts = o(&["rbind", "rprivate"]);
        if ro {
            opts.push("ro".into());
        }
        mounts.push(mount(dest, "bind", files.join(name), opts));
    }
    for (dest, opts) in hc.storage.tmpfs.iter().flatten() {
        let mut o = o(&["nosuid", "nodev", "noexec"]);
        for x in opts.split(',').filter(|x| !x.is_empty()) {
            if let Some(sz) = x.strip_prefix("size=") {
                o.push(format!("size={}", wharf_units::ram_in_bytes(sz).unwrap_or(0)));
            } else if x == "exec" {
                o.retain(|y| y != "noexec");
            } else {
                o.push(x.to_string());
            }
        }
        mounts.push(mount(dest, "tmpfs", "tmpfs", o));
    }
    mounts.extend(input.user_mounts.iter().cloned());
    mounts
}

/// The namespaces a container gets or joins, with its UTS and network modes.
fn namespaces(hc: &crate::config::HostSpec, input: &SpecInput<'_>) -> (Vec<LinuxNamespace>, String, String) {
    let mode = |v: &Option<String>| v.clone().unwrap_or_default();
    let pid_mode = mode(&hc.namespaces.pid_mode);
    let ipc_mode = mode(&hc.namespaces.ipc_mode);
    let uts_mode = mode(&hc.namespaces.uts_mode);
    let net_mode = mode(&hc.network.network_mode);
    let mut namespaces = vec![ns(LinuxNamespaceType::Mount, None)];
    if pid_mode != "host" {
        namespaces.push(ns(LinuxNamespaceType::Pid, input.pid_ns.clone()));
    }
    if ipc_mode != "host" {
        namespaces.push(ns(LinuxNamespaceType::Ipc, input.ipc_ns.clone()));
    }
    if uts_mode != "host" {
        namespaces.push(ns(LinuxNamespaceType::Uts, None));
    }
    if net_mode != "host" {
        namespaces.push(ns(LinuxNamespaceType::Network, input.net_ns.clone()));
    }
    if cgroupns_private(hc) {
        namespaces.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    (namespaces, uts_mode, net_mode)
}

/// `--sysctl`, over Docker's defaults in a network namespace of the container's own.
fn sysctls(hc: &crate::config::HostSpec, net_mode: &str) -> BTreeMap<String, String> {
    let mut sysctl = BTreeMap::new();
    for (k, v) in hc.namespaces.sysctls.iter().flatten() {
        sysctl.insert(k.clone(), v.clone());
    }
    // Docker's defaults in a network namespace of the container's own: unprivileged ping and
    // low ports, as on any host where the container were the machine.
    if net_mode != "host" && !net_mode.starts_with("container:") {
        let ours = [
            ("net.ipv4.ping_group_range", "0 2147483647"),
            ("net.ipv4.ip_unprivileged_port_start", "0"),
        ];
        for (k, v) in ours {
            sysctl.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }
    sysctl
}

/// `--device`s (and the host's with `--privileged`), and the resources with their cgroup rules.
fn devices(hc: &crate::config::HostSpec) -> Result<(Vec<LinuxDevice>, LinuxResources)> {
    let privileged = hc.security.privileged.unwrap_or(false);
    let mut devices: Vec<LinuxDevice> = Vec::new();
    for d in hc.resources.devices.iter().flatten() {
        let host = d.path_on_host.clone().unwrap_or_default();
        let (major, minor) = device_numbers(&host)?;
        let st = rustix::fs::stat(host.as_str()).map_err(|e| ContainerError::Invalid(format!("{host}: {e}")))?;
        let kind = if st.st_mode & 0o170000 == 0o020000 {
            LinuxDeviceType::C
        } else {
            LinuxDeviceType::B
        };
        let dest = d
            .path_in_container
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| host.clone());
        devices.push(
            LinuxDeviceBuilder::default()
                .path(dest)
                .typ(kind)
                .major(major as i64)
                .minor(minor as i64)
                .file_mode(st.st_mode & 0o777)
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(oci)?,
        );
    }
    if privileged {
        // The host's devices, as Docker gives them; a `--device` of the same path wins.
        for d in crate::devices::host_devices(std::path::Path::new("/dev")) {
            if !devices.iter().any(|x| x.path() == d.path()) {
                devices.push(d);
            }
        }
    }
    let mut resources = resources(hc)?;
    // `--privileged` allows every device already.
    let mut rules = resources.devices().clone().unwrap_or_default();
    for d in devices.iter().filter(|_| !privileged) {
        let perms = hc
            .resources
            .devices
            .iter()
            .flatten()
            .find(|x| {
                Path::new(
                    x.path_in_container
                        .as_deref()
                        .unwrap_or(x.path_on_host.as_deref().unwrap_or("")),
                ) == d.path()
            })
            .and_then(|x| x.cgroup_permissions.clone())
            .unwrap_or_else(|| "rwm".into());
        rules.push(device_rule(
            true,
            Some(d.typ()),
            Some(d.major()),
            Some(d.minor()),
            &perms,
        ));
    }
    resources.set_devices(Some(rules));
    Ok((devices, resources))
}

/// `Entrypoint` and `Cmd` merged with the image's exactly as Docker does; returns the argv.
pub fn merge_command(
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    image: &Value,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let list = |k: &str| -> Option<Vec<String>> {
        image
            .get(k)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
    };
    // `--entrypoint ""` arrives as [""]: an explicit, empty entrypoint.
    let entrypoint = entrypoint.map(|e| if e.len() == 1 && e[0].is_empty() { Vec::new() } else { e });
    let mut ep = entrypoint.clone();
    let mut c = cmd.clone();
    if entrypoint.as_ref().is_none_or(|e| e.is_empty()) {
        if cmd.as_ref().is_none_or(|c| c.is_empty()) {
            c = list("Cmd");
        }
        if entrypoint.is_none() {
            ep = list("Entrypoint");
        }
    }
    (ep, c)
}

#[cfg(test)]
mod tests;
