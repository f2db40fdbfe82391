//! Containers on the daemon side. `service` owns the lifecycle (create, start through a
//! `wharf-shim`, stop, kill, pause, remove, wait, restart policies, exec, attach); `spec`
//! turns a container's config into an OCI runtime spec with Docker's defaults; `seccomp` holds
//! Docker's default profile and `bpf` compiles profiles for the shim to load; `record` is the on-disk record; `logs` reads json-file logs;
//! `shim` speaks the shim protocol; `names` makes and checks names; `mounts` parses and
//! applies volumes, binds and tmpfs mounts; `archive` serves `docker cp`; `netsetup` joins a container to its networks; `stats` shapes resource readings; `cgroup`
//! finds and kills what a container's cgroups hold when its shim is gone; `devices` lists the
//! host's devices for `--privileged`; `validate` refuses what dockerd refuses at create.

#![forbid(unsafe_code)]

pub mod archive;
pub mod bpf;
pub mod cgroup;
pub mod config;
pub mod devices;
pub mod error;
pub mod events;
pub mod exec;
pub mod health;
pub mod logs;
pub mod mounts;
pub mod names;
pub mod netsetup;
pub mod record;
pub mod resources;
pub mod restart;
pub mod runtime;
pub mod seccomp;
pub mod service;
pub mod shim;
pub mod spec;
pub mod stats;
pub mod task;
pub mod validate;
pub mod view;

pub use config::ContainerSpec;
pub use error::ContainerError;
pub use exec::{ExecEntry, ExecSpec};
pub use record::{ContainerStatus, Record, State};
pub use service::{CommitOptions, ContainerService, ServiceConfig, UpdateBody, WaitCondition};
pub use task::{Output, Task};
pub use view::ContainerView;
