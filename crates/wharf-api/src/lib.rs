//! The Docker Engine API edge: HTTP over unix and TCP sockets, version negotiation, Docker's
//! headers and error bodies, and the routes that turn requests into calls on the engine's
//! services and their typed results into Docker's JSON (bollard-stubs models).
//!
//! **Invariant:** this is the only crate that knows HTTP, and [`error::status_of`] is the only
//! place an HTTP status is chosen for an error. **Invariant:** blocking work (tar streams,
//! extraction, database writes) runs on the blocking pool, never on the async workers.

#![forbid(unsafe_code)]

pub mod body;
pub mod build;
pub mod containers;
pub mod convert;
pub mod distribution;
pub mod error;
pub mod gojson;
pub mod mounts;
pub mod networks;
pub mod platform;
pub mod plugins;
pub mod query;
pub mod routes;
pub mod server;
pub mod tls;
pub mod volumes;

pub use server::{serve, Daemon, DaemonInfo, Listener};

/// Newest API version served.
pub const API_VERSION: &str = "1.50";
/// Oldest API version served.
pub const MIN_API_VERSION: &str = "1.24";

/// The API version this build serves, for log lines.
pub fn server_api_version() -> &'static str {
    API_VERSION
}
