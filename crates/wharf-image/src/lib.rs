//! Images: what an image is (a config whose digest is its ID, over a chain of layers), and
//! every local operation on them, in the formats Docker users already have (docker-archive,
//! OCI image layouts, plain and compressed filesystem tars).
//!
//! **Invariant:** this crate knows nothing about HTTP; the API edge turns its typed results
//! into Docker's JSON. **Invariant:** an image is visible only after the single metadata
//! transaction that registers it and all its layers.

#![forbid(unsafe_code)]

pub mod changes;
pub mod config;
pub mod service;

pub use config::ImageConfig;
pub use service::{CommitSpec, DeleteItem, HistoryRow, ImageError, ImageService, ImageView, ListFilter, UsageCheck};

/// The Docker engine version wharf reports itself compatible with.
pub const ENGINE_VERSION: &str = "28.2.2";
