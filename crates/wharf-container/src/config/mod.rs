//! What a container is asked to be, in the engine's own types: [`ContainerSpec`] (the image
//! or snapshot it runs on, its process [`Config`] and its [`HostSpec`]), as the API, the
//! builder and the CRI hand it to `create`, and as the record keeps it.
//!
//! The types are the engine's; no wire model reaches them. Their stored names are the ones
//! Docker's own data root uses (`Config` and `HostConfig` in PascalCase), so a data root
//! written by an earlier wharf, or read by tools that know Docker's layout, opens unchanged.
//! The host side is grouped by what the engine does with it (resources, storage, networking,
//! security, namespaces, lifecycle); its stored form stays one flat object.

mod host;

pub use host::*;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A set stored as Docker stores it: keys of an object whose values are `{}`.
pub type StringSet = BTreeMap<String, Empty>;

/// The `{}` of a [`StringSet`] entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// What to make a container from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    /// The process and its environment (`Config.Image` names the image).
    pub config: Config,
    /// How the host runs it.
    pub host: HostSpec,
    /// `NetworkingConfig`: the networks it joins, each with its endpoint settings, as given
    /// (checked and planned by `netsetup`).
    pub networks: Option<serde_json::Value>,
    /// Mounts of type `image` (an image's root, read-only, at a path).
    pub image_mounts: Vec<crate::mounts::ImageMount>,
    /// Run on this committed snapshot instead of the image's root (the image still gives the
    /// config): what a builder step or a client of the snapshotter prepared. Not part of
    /// Docker's API.
    pub snapshot: Option<String>,
}

/// The process a container runs and what the image contributes to it (Docker's container
/// `Config`): merged with the image's config at create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    /// Host name inside (12 hex of the ID when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Domain name inside.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    /// `user[:group]`, by name or number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The client attaches stdin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach_stdin: Option<bool>,
    /// The client attaches stdout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach_stdout: Option<bool>,
    /// The client attaches stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach_stderr: Option<bool>,
    /// `port/proto` keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<StringSet>,
    /// A terminal is allocated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    /// Stdin stays open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_stdin: Option<bool>,
    /// Stdin closes after the first attach ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin_once: Option<bool>,
    /// `KEY=value` entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// The command (after the entrypoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// The health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// Windows only; kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// The image as the user named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Anonymous volumes' targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<StringSet>,
    /// The working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The entrypoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// No networking at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_disabled: Option<bool>,
    /// The MAC address of the first endpoint (API < 1.44).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// `ONBUILD` triggers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// Labels (the image's, then the container's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The signal `stop` sends first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    /// The shell of shell-form commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

/// A health check: the command and its timing (nanoseconds; zero means the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", ...]`, `["CMD-SHELL", "..."]`, or empty (inherit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// Between probes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// One probe's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Failures in a row that make it unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    /// Failures in this time after start do not count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// Between probes during the start period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
}
