//! wharf's registry server: the OCI distribution spec v1.1 and Docker's Registry HTTP API v2
//! over a content-addressed store. `storage` keeps blobs, sessions and repositories behind the
//! `Storage` trait (a file system implementation and the conformance suite any other must pass);
//! `server` is the HTTP edge (routes, handlers, TLS, graceful shutdown); `manifest` is what the
//! registry must know of a manifest; `auth` is htpasswd accounts, rules and bearer tokens;
//! `gc` collects unreferenced blobs and stale sessions; `config` is the TOML file. It shares
//! nothing with the engine's crates but `wharf-reference`, so its binary stays small and static
//! enough to be an image of its own.

// Unsafe only where `server::zerocopy` maps a blob file and `storage::writeback` starts
// writeback; nowhere else.
#![deny(unsafe_code)]

pub mod auth;
pub mod config;
pub mod error;
pub mod gc;
pub mod manifest;
pub mod names;
pub mod server;
pub mod storage;
pub mod tls;
