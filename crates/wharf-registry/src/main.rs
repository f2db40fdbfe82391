//! `wharf-registry`: `serve` runs the registry (a TOML file, flags over it); `garbage-collect`
//! collects a stopped registry's storage; `hash-password` prints an htpasswd line with a bcrypt
//! hash (so an image of the registry needs no `htpasswd` binary).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use wharf_registry::config::{Config, TlsConfig};
use wharf_registry::server::{serve, Registry};
use wharf_registry::storage::fs::FsStorage;

#[derive(Parser)]
#[command(
    name = "wharf-registry",
    version,
    about = "wharf's registry server (OCI distribution spec v1.1)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Common {
    /// The TOML configuration file.
    #[arg(short, long, env = "WHARF_REGISTRY_CONFIG")]
    config: Option<PathBuf>,
    /// The storage root.
    #[arg(long)]
    root: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the registry.
    Serve {
        #[command(flatten)]
        common: Common,
        /// The address to listen on (host:port).
        #[arg(long)]
        addr: Option<String>,
        /// Refuse every write.
        #[arg(long)]
        read_only: bool,
        /// Allow deleting manifests, tags and blobs.
        #[arg(long)]
        delete: bool,
        /// An htpasswd file (bcrypt) of accounts.
        #[arg(long)]
        htpasswd: Option<PathBuf>,
        /// Bearer tokens from the built-in token endpoint instead of Basic auth.
        #[arg(long)]
        token: bool,
        /// The TLS certificate chain (PEM).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The TLS key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The largest blob an upload may reach, in bytes.
        #[arg(long)]
        max_upload_bytes: Option<u64>,
        /// JSON lines of pushes, pulls and deletes.
        #[arg(long)]
        audit_log: Option<PathBuf>,
        /// Write the address actually bound here once listening (for --addr with port 0).
        #[arg(long)]
        addr_file: Option<PathBuf>,
        /// Log as JSON lines.
        #[arg(long)]
        log_json: bool,
    },
    /// Delete blobs no manifest names and stale upload sessions.
    GarbageCollect {
        #[command(flatten)]
        common: Common,
        /// Report only.
        #[arg(long)]
        dry_run: bool,
        /// Spare unreferenced blobs younger than this many seconds.
        #[arg(long, default_value_t = 0)]
        min_age: u64,
    },
    /// Print `user:<bcrypt hash>` for an htpasswd file (the password is read from stdin).
    HashPassword {
        /// The account name.
        user: String,
    },
}

fn load(common: &Common) -> Result<Config, String> {
    let mut cfg = match &common.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(r) = &common.root {
        cfg.root = r.clone();
    }
    Ok(cfg)
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Serve {
            common,
            addr,
            read_only,
            delete,
            htpasswd,
            token,
            tls_cert,
            tls_key,
            max_upload_bytes,
            audit_log,
            addr_file,
            log_json,
        } => {
            let mut cfg = load(&common)?;
            cfg.addr = addr.unwrap_or(cfg.addr);
            cfg.read_only |= read_only;
            cfg.delete |= delete;
            cfg.auth.htpasswd = htpasswd.or(cfg.auth.htpasswd);
            cfg.auth.token |= token;
            if let (Some(certificate), Some(key)) = (tls_cert, tls_key) {
                cfg.tls = Some(TlsConfig { certificate, key });
            }
            cfg.max_upload_bytes = max_upload_bytes.unwrap_or(cfg.max_upload_bytes);
            cfg.audit_log = audit_log.or(cfg.audit_log);
            cfg.addr_file = addr_file.or(cfg.addr_file);
            cfg.check().map_err(|e| e.to_string())?;
            let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_REGISTRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
            if log_json {
                tracing_subscriber::fmt()
                    .json()
                    .with_env_filter(filter)
                    .with_writer(std::io::stderr)
                    .init();
            } else {
                tracing_subscriber::fmt()
                    .with_env_filter(filter)
                    .with_writer(std::io::stderr)
                    .init();
            }
            let storage = FsStorage::open(&cfg.root).map_err(|e| format!("{}: {e}", cfg.root.display()))?;
            let reg = Arc::new(Registry::new(Arc::new(storage), cfg)?);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(serve(reg)).map_err(|e| e.to_string())
        }
        Cmd::GarbageCollect {
            common,
            dry_run,
            min_age,
        } => {
            let cfg = load(&common)?;
            let storage = FsStorage::open(&cfg.root).map_err(|e| format!("{}: {e}", cfg.root.display()))?;
            let o = wharf_registry::gc::GcOptions {
                min_age: std::time::Duration::from_secs(min_age),
                upload_max_age: std::time::Duration::from_secs(cfg.upload_max_age),
                dry_run,
            };
            let r = wharf_registry::gc::collect(&storage, &o, &Default::default()).map_err(|e| e.to_string())?;
            for d in &r.deleted {
                println!("{} {d}", if dry_run { "would delete" } else { "deleted" });
            }
            println!(
                "{} blobs marked, {} deleted ({} bytes), {} upload sessions purged",
                r.marked,
                r.deleted.len(),
                r.freed,
                r.uploads_purged
            );
            Ok(())
        }
        Cmd::HashPassword { user } => {
            let mut pw = String::new();
            std::io::stdin().read_line(&mut pw).map_err(|e| e.to_string())?;
            let h = bcrypt::hash(pw.trim_end_matches(['\n', '\r']), bcrypt::DEFAULT_COST).map_err(|e| e.to_string())?;
            println!("{user}:{h}");
            Ok(())
        }
    }
}

/// Raises the open-file limit to its hard maximum, as Go's runtime does for distribution: each
/// client connection is a descriptor, and a registry serves thousands.
fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

fn main() -> ExitCode {
    raise_nofile();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf-registry: {e}");
            ExitCode::FAILURE
        }
    }
}
