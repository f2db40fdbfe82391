//! Daemon settings from flags and the config file, with dockerd's names: a setting may come
//! from either, and naming one in both is an error (as dockerd says it).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Deserialize;

/// Command-line flags, named as dockerd names them.
#[derive(Parser, Debug)]
#[command(name = "wharfd", version, about = "The wharf container engine daemon")]
pub struct Flags {
    /// Daemon socket(s) to listen on: unix://PATH, tcp://HOST:PORT, fd://.
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// Root directory of persistent state.
    #[arg(long = "data-root")]
    pub data_root: Option<PathBuf>,
    /// Root directory for execution state files.
    #[arg(long = "exec-root")]
    pub exec_root: Option<PathBuf>,
    /// Path to use for the daemon PID file.
    #[arg(short = 'p', long)]
    pub pidfile: Option<PathBuf>,
    /// Daemon configuration file.
    #[arg(long = "config-file", default_value = "/etc/wharf/daemon.json")]
    pub config_file: PathBuf,
    /// Storage driver to use: overlay2 or vfs.
    #[arg(short = 's', long = "storage-driver")]
    pub storage_driver: Option<String>,
    /// Logging level: debug, info, warn, error, fatal.
    #[arg(short = 'l', long = "log-level")]
    pub log_level: Option<String>,
    /// Enable debug mode (same as --log-level=debug).
    #[arg(short = 'D', long)]
    pub debug: bool,
    /// Use TLS; implied by --tlsverify. Plain TCP listening requires an explicit --tls=false.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tls: Option<bool>,
    /// Use TLS and let in only clients whose certificate the CA (--tlscacert) signed.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tlsverify: Option<bool>,
    /// Trust certs signed only by this CA (default `$DOCKER_CERT_PATH/ca.pem`, or
    /// `~/.docker/ca.pem`).
    #[arg(long)]
    pub tlscacert: Option<PathBuf>,
    /// Path to the TLS certificate file (default `$DOCKER_CERT_PATH/cert.pem`).
    #[arg(long)]
    pub tlscert: Option<PathBuf>,
    /// Path to the TLS key file (default `$DOCKER_CERT_PATH/key.pem`).
    #[arg(long)]
    pub tlskey: Option<PathBuf>,
    /// Parent cgroup for containers that name none (default `wharf`).
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Run an init inside containers to forward signals and reap processes.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub init: Option<bool>,
    /// Path to the init binary (default: `docker-init` or `tini-static` from PATH).
    #[arg(long = "init-path")]
    pub init_path: Option<PathBuf>,
    /// The default bridge's interface (default `wharf0`; `none`: no default bridge network).
    #[arg(short = 'b', long)]
    pub bridge: Option<String>,
    /// The default bridge's address and prefix, e.g. 10.20.0.1/24.
    #[arg(long)]
    pub bip: Option<String>,
    /// Default address pools for new networks: base=172.30.0.0/16,size=24.
    #[arg(long = "default-address-pool")]
    pub default_address_pool: Vec<String>,
    /// MTU of the containers' interfaces.
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Manage the daemon's nftables table (NAT, published ports, isolation).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub iptables: Option<bool>,
    /// With `--iptables=false`, serve published ports from the daemon (dockerd's docker-proxy);
    /// with nftables on, DNAT serves them, from the host's loopback too, and this changes
    /// nothing.
    #[arg(long = "userland-proxy", num_args = 0..=1, default_missing_value = "true")]
    pub userland_proxy: Option<bool>,
    /// Registries reached over plain HTTP or unverified TLS (`host:port` or a CIDR).
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Preferred Docker Hub mirrors (URLs).
    #[arg(long = "registry-mirror")]
    pub registry_mirrors: Vec<String>,
    /// Maximum concurrent layer downloads per pull (default 3).
    #[arg(long = "max-concurrent-downloads")]
    pub max_concurrent_downloads: Option<usize>,
    /// Maximum concurrent layer uploads per push (default 5).
    #[arg(long = "max-concurrent-uploads")]
    pub max_concurrent_uploads: Option<usize>,
    /// wharf's own directory of registry certificates in Docker's `certs.d` layout
    /// (`<host:port>/ca.crt`, `client.cert`, `client.key`), read besides /etc/docker/certs.d
    /// (default /etc/wharf/certs.d).
    #[arg(long = "certs-dir")]
    pub certs_dir: Option<PathBuf>,
}

/// `daemon.json` keys wharf reads (Docker's spelling).
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "kebab-case")]
struct FileConfig {
    hosts: Option<Vec<String>>,
    data_root: Option<PathBuf>,
    exec_root: Option<PathBuf>,
    pidfile: Option<PathBuf>,
    storage_driver: Option<String>,
    log_level: Option<String>,
    debug: Option<bool>,
    tls: Option<bool>,
    tlsverify: Option<bool>,
    tlscacert: Option<PathBuf>,
    tlscert: Option<PathBuf>,
    tlskey: Option<PathBuf>,
    cgroup_parent: Option<String>,
    init: Option<bool>,
    init_path: Option<PathBuf>,
    bridge: Option<String>,
    bip: Option<String>,
    default_address_pools: Option<Vec<PoolSpec>>,
    mtu: Option<u32>,
    iptables: Option<bool>,
    userland_proxy: Option<bool>,
    insecure_registries: Option<Vec<String>>,
    registry_mirrors: Option<Vec<String>>,
    max_concurrent_downloads: Option<usize>,
    max_concurrent_uploads: Option<usize>,
    certs_dir: Option<PathBuf>,
    builder: Option<BuilderFile>,
    #[serde(flatten)]
    _other: serde_json::Map<String, serde_json::Value>,
}

/// `builder` in daemon.json (dockerd's spelling: camel case inside it).
#[derive(Deserialize, Debug, Default)]
struct BuilderFile {
    gc: Option<GcFile>,
}

/// `builder.gc`: collection after each build, by rules or one default size.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct GcFile {
    enabled: Option<bool>,
    default_keep_storage: Option<String>,
    policy: Option<Vec<GcRuleFile>>,
}

/// One `builder.gc.policy` rule.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct GcRuleFile {
    keep_storage: Option<String>,
    filter: Option<Vec<String>>,
    all: Option<bool>,
}

/// A size as dockerd reads `keepStorage` (`10GB`, `512MB`, or bytes).
fn keep_storage(s: &str) -> Result<u64> {
    wharf_units::ram_in_bytes(s)
        .and_then(|n| u64::try_from(n).ok())
        .with_context(|| format!("invalid builder.gc keepStorage {s:?}"))
}

/// The collection rules of `builder.gc` (none when it is absent or disabled).
fn gc_policy(b: Option<BuilderFile>) -> Result<wharf_builder::gc::GcPolicy> {
    use wharf_builder::gc::{GcPolicy, PruneOptions};
    let Some(gc) = b.and_then(|b| b.gc) else {
        return Ok(GcPolicy::default());
    };
    if gc.enabled == Some(false) {
        return Ok(GcPolicy::default());
    }
    let default = gc.default_keep_storage.as_deref().map(keep_storage).transpose()?;
    let mut rules = Vec::new();
    for r in gc.policy.unwrap_or_default() {
        let mut o = PruneOptions {
            all: r.all.unwrap_or(false),
            keep_storage: r
                .keep_storage
                .as_deref()
                .map(keep_storage)
                .transpose()?
                .or(default)
                .unwrap_or(0),
            unused_for: None,
        };
        for f in r.filter.unwrap_or_default() {
            match f.split_once('=') {
                Some(("unused-for" | "until", v)) => {
                    o.unused_for = Some(
                        wharf_units::parse_go_duration(v)
                            .with_context(|| format!("invalid builder.gc filter {f:?}"))?,
                    )
                }
                _ => bail!("invalid builder.gc filter {f:?}: unused-for=<duration> is what wharf keeps by"),
            }
        }
        rules.push(o);
    }
    if rules.is_empty() {
        if let Some(k) = default {
            rules.push(PruneOptions {
                keep_storage: k,
                ..Default::default()
            });
        }
    }
    Ok(GcPolicy { rules })
}

/// A `default-address-pools` entry of daemon.json.
#[derive(Deserialize, Debug, Clone)]
struct PoolSpec {
    base: String,
    size: u8,
}

/// The settings in force.
#[derive(Debug)]
pub struct Settings {
    pub hosts: Vec<String>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: Option<PathBuf>,
    pub storage_driver: Option<String>,
    pub log_level: String,
    pub tls: Option<bool>,
    /// TLS for TCP listeners, when `--tls` or `--tlsverify` asks for it.
    pub tls_files: Option<TlsFiles>,
    pub cgroup_parent: String,
    pub init: bool,
    pub init_path: Option<PathBuf>,
    pub net: NetSettings,
    pub registry: wharf_distribution::RegistryConfig,
    /// `builder.gc`.
    pub builder_gc: wharf_builder::gc::GcPolicy,
}

/// The certificate, key and (with `--tlsverify`) client CA of TCP listeners.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Only clients with a certificate this CA signed get in (`--tlsverify`).
    pub client_ca: Option<PathBuf>,
}

/// Where dockerd looks for its TLS files when none is named: `$DOCKER_CERT_PATH`, else
/// `~/.docker`.
fn cert_dir() -> PathBuf {
    std::env::var_os("DOCKER_CERT_PATH")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/root".into())
                .join(".docker")
        })
}

/// Networking settings.
#[derive(Debug)]
pub struct NetSettings {
    pub bridge: String,
    pub bip: Option<(std::net::Ipv4Addr, u8)>,
    pub pools: Vec<(String, u8)>,
    pub mtu: Option<u32>,
    pub iptables: bool,
    pub userland_proxy: bool,
}

fn parse_pool(s: &str) -> Result<(String, u8)> {
    let mut base = None;
    let mut size = None;
    for kv in s.split(',') {
        match kv.split_once('=') {
            Some(("base", v)) => base = Some(v.to_string()),
            Some(("size", v)) => size = Some(v.parse::<u8>().with_context(|| format!("invalid size in {s}"))?),
            _ => bail!("invalid default-address-pool {s}: use base=CIDR,size=N"),
        }
    }
    match (base, size) {
        (Some(b), Some(n)) => Ok((b, n)),
        _ => bail!("invalid default-address-pool {s}: use base=CIDR,size=N"),
    }
}

impl Settings {
    /// Merge flags over the config file.
    pub fn resolve(f: Flags) -> Result<Settings> {
        let file: FileConfig = match std::fs::read(&f.config_file) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("invalid config file {}", f.config_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", f.config_file.display())),
        };
        let mut both = Vec::new();
        macro_rules! pick {
            ($flag:expr, $file:expr, $name:literal) => {{
                match ($flag, $file) {
                    (Some(a), Some(b)) => {
                        both.push(format!("{}: (from flag: {:?}, from file: {:?})", $name, a, b));
                        Some(a)
                    }
                    (a, b) => a.or(b),
                }
            }};
        }
        let hosts = pick!((!f.hosts.is_empty()).then_some(f.hosts), file.hosts, "hosts");
        let data_root = pick!(f.data_root, file.data_root, "data-root");
        let exec_root = pick!(f.exec_root, file.exec_root, "exec-root");
        let pidfile = pick!(f.pidfile, file.pidfile, "pidfile");
        let storage_driver = pick!(f.storage_driver, file.storage_driver, "storage-driver");
        let log_level = pick!(f.log_level, file.log_level, "log-level");
        let tls = pick!(f.tls, file.tls, "tls");
        let tlsverify = pick!(f.tlsverify, file.tlsverify, "tlsverify");
        let tlscacert = pick!(f.tlscacert, file.tlscacert, "tlscacert");
        let tlscert = pick!(f.tlscert, file.tlscert, "tlscert");
        let tlskey = pick!(f.tlskey, file.tlskey, "tlskey");
        let cgroup_parent = pick!(f.cgroup_parent, file.cgroup_parent, "cgroup-parent");
        let init = pick!(f.init, file.init, "init");
        let init_path = pick!(f.init_path, file.init_path, "init-path");
        let bridge = pick!(f.bridge, file.bridge, "bridge");
        let bip = pick!(f.bip, file.bip, "bip");
        let mtu = pick!(f.mtu, file.mtu, "mtu");
        let iptables = pick!(f.iptables, file.iptables, "iptables");
        let userland_proxy = pick!(f.userland_proxy, file.userland_proxy, "userland-proxy");
        let insecure = pick!(
            (!f.insecure_registries.is_empty()).then_some(f.insecure_registries),
            file.insecure_registries,
            "insecure-registries"
        );
        let mirrors = pick!(
            (!f.registry_mirrors.is_empty()).then_some(f.registry_mirrors),
            file.registry_mirrors,
            "registry-mirrors"
        );
        let max_dl = pick!(
            f.max_concurrent_downloads,
            file.max_concurrent_downloads,
            "max-concurrent-downloads"
        );
        let max_ul = pick!(
            f.max_concurrent_uploads,
            file.max_concurrent_uploads,
            "max-concurrent-uploads"
        );
        let certs_dir = pick!(f.certs_dir, file.certs_dir, "certs-dir");
        let file_pools: Option<Vec<(String, u8)>> = file
            .default_address_pools
            .map(|v| v.into_iter().map(|p| (p.base, p.size)).collect());
        let flag_pools: Option<Vec<(String, u8)>> = if f.default_address_pool.is_empty() {
            None
        } else {
            Some(
                f.default_address_pool
                    .iter()
                    .map(|s| parse_pool(s))
                    .collect::<Result<_>>()?,
            )
        };
        let pools = pick!(flag_pools, file_pools, "default-address-pools");
        if !both.is_empty() {
            bail!(
                "unable to configure the daemon with file {}: the following directives are specified both as a flag and in the configuration file: {}",
                f.config_file.display(),
                both.join(", ")
            );
        }
        // As dockerd: --tlsverify implies --tls, and --tls=false with --tlsverify is a mistake.
        let verify = tlsverify.unwrap_or(false);
        if verify && tls == Some(false) {
            bail!("--tlsverify needs TLS: it cannot be combined with --tls=false");
        }
        let tls_files = (verify || tls == Some(true)).then(|| TlsFiles {
            cert: tlscert.unwrap_or_else(|| cert_dir().join("cert.pem")),
            key: tlskey.unwrap_or_else(|| cert_dir().join("key.pem")),
            client_ca: verify.then(|| tlscacert.unwrap_or_else(|| cert_dir().join("ca.pem"))),
        });
        let log_level = checked_log_level(f.debug || file.debug.unwrap_or(false), log_level)?;
        let builder_gc = gc_policy(file.builder)?;
        Ok(Settings {
            builder_gc,
            hosts: hosts.unwrap_or_else(|| vec!["unix:///run/wharf/wharf.sock".into()]),
            data_root: data_root.unwrap_or_else(|| "/var/lib/wharf".into()),
            pidfile: pidfile.or_else(|| {
                Some(
                    exec_root
                        .clone()
                        .unwrap_or_else(|| "/run/wharf".into())
                        .join("wharfd.pid"),
                )
            }),
            exec_root: exec_root.unwrap_or_else(|| "/run/wharf".into()),
            storage_driver,
            log_level,
            tls,
            tls_files,
            cgroup_parent: cgroup_parent.unwrap_or_else(|| "wharf".into()),
            init: init.unwrap_or(false),
            init_path: init_path.or_else(find_init),
            net: NetSettings {
                bridge: bridge.unwrap_or_else(|| "wharf0".into()),
                bip: bip.as_deref().map(parse_bip).transpose()?,
                pools: pools.unwrap_or_default(),
                mtu,
                iptables: iptables.unwrap_or(true),
                userland_proxy: userland_proxy.unwrap_or(true),
            },
            registry: {
                let d = wharf_distribution::RegistryConfig::default();
                let registry = wharf_distribution::RegistryConfig {
                    insecure: insecure.unwrap_or_default(),
                    mirrors: mirrors.unwrap_or_default(),
                    cert_dirs: vec![
                        "/etc/docker/certs.d".into(),
                        certs_dir.unwrap_or_else(|| "/etc/wharf/certs.d".into()),
                    ],
                    max_downloads: max_dl.unwrap_or(d.max_downloads),
                    max_uploads: max_ul.unwrap_or(d.max_uploads),
                };
                registry.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
                registry
            },
        })
    }
}

/// `--bip ADDRESS/PREFIX`.
fn parse_bip(b: &str) -> Result<(std::net::Ipv4Addr, u8)> {
    let (ip, p) = b
        .split_once('/')
        .with_context(|| format!("invalid bip {b}: use ADDRESS/PREFIX"))?;
    Ok((
        ip.parse().with_context(|| format!("invalid bip {b}"))?,
        p.parse().with_context(|| format!("invalid bip {b}"))?,
    ))
}

/// `--log-level` (`debug` with `--debug`), one of dockerd's names.
fn checked_log_level(debug: bool, level: Option<String>) -> Result<String> {
    let level = if debug {
        "debug".to_string()
    } else {
        level.unwrap_or_else(|| "info".into())
    };
    if !matches!(level.as_str(), "debug" | "info" | "warn" | "error" | "fatal") {
        bail!("unable to parse logging level: {level}");
    }
    Ok(level)
}

/// The init binary from PATH, as dockerd finds `docker-init`; Debian's static tini otherwise.
fn find_init() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    ["docker-init", "tini-static"]
        .iter()
        .find_map(|name| std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str], file: &str) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("daemon.json");
        std::fs::write(&cfg, file).unwrap();
        let mut argv = vec!["wharfd", "--config-file", cfg.to_str().unwrap()];
        argv.extend_from_slice(args);
        Settings::resolve(Flags::parse_from(argv))
    }

    #[test]
    fn tls_settings_as_dockerd_takes_them() {
        // daemon.json keys.
        let s = resolve(
            &[],
            r#"{"tlsverify": true, "tlscacert": "/c/ca.pem", "tlscert": "/c/cert.pem", "tlskey": "/c/key.pem"}"#,
        )
        .unwrap();
        let t = s.tls_files.unwrap();
        assert_eq!(
            (t.cert, t.key, t.client_ca),
            ("/c/cert.pem".into(), "/c/key.pem".into(), Some("/c/ca.pem".into()))
        );
        // Flags; --tls alone verifies no client.
        let s = resolve(&["--tls", "--tlscert", "/x/c.pem", "--tlskey", "/x/k.pem"], "{}").unwrap();
        let t = s.tls_files.unwrap();
        assert_eq!((t.cert.to_str(), t.client_ca), (Some("/x/c.pem"), None));
        // No TLS asked: none.
        assert!(resolve(&[], "{}").unwrap().tls_files.is_none());
        // Contradictions are refused; a key named twice too.
        assert!(resolve(&["--tlsverify", "--tls=false"], "{}").is_err());
        assert!(resolve(&["--tlskey", "/a"], r#"{"tlskey": "/b"}"#).is_err());
    }

    #[test]
    fn builder_gc_as_dockerd_reads_it() {
        use wharf_builder::gc::PruneOptions;
        let s = resolve(
            &[],
            r#"{"builder": {"gc": {"enabled": true, "defaultKeepStorage": "10GB",
                "policy": [{"keepStorage": "512MB", "filter": ["unused-for=48h"]}, {"all": true}]}}}"#,
        )
        .unwrap();
        assert_eq!(
            s.builder_gc.rules,
            [
                PruneOptions {
                    all: false,
                    keep_storage: 512 << 20,
                    unused_for: Some(std::time::Duration::from_secs(48 * 3600)),
                },
                PruneOptions {
                    all: true,
                    keep_storage: 10 << 30,
                    unused_for: None,
                },
            ]
        );
        let s = resolve(&[], r#"{"builder": {"gc": {"defaultKeepStorage": "1MB"}}}"#).unwrap();
        assert_eq!(s.builder_gc.rules.len(), 1);
        let off = resolve(
            &[],
            r#"{"builder": {"gc": {"enabled": false, "defaultKeepStorage": "1MB"}}}"#,
        );
        assert!(off.unwrap().builder_gc.rules.is_empty());
        assert!(resolve(&[], "{}").unwrap().builder_gc.rules.is_empty());
        assert!(resolve(&[], r#"{"builder": {"gc": {"defaultKeepStorage": "lots"}}}"#).is_err());
        assert!(resolve(&[], r#"{"builder": {"gc": {"policy": [{"filter": ["type=x"]}]}}}"#).is_err());
    }
}
