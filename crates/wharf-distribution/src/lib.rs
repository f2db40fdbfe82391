//! The distribution client: `pull`, `push`, `login` and `search` against registries that speak
//! the Distribution API v2 / OCI distribution spec.
//!
//! A pull resolves the manifest (choosing the host's platform from a list or index), fetches
//! and verifies the config, then downloads the missing layers concurrently (at most
//! `max-concurrent-downloads`), each into `<data-root>/distribution/partial/` with resumable,
//! retried range requests, verified against its digest and size before it is renamed into
//! `distribution/blobs/`. Every verified layer is extracted as soon as its download ends: on
//! overlay2 in parallel and in any order (a layer needs only its parent's chain ID), on vfs in
//! order. The image becomes visible in one metadata transaction at the end.
//!
//! **Invariants:** no byte from a registry is used before its digest and size are verified;
//! credentials never leave for another host (see [`auth`]); a `kill -9` mid-pull leaves no
//! visible image, and the next pull reuses the verified blobs still in `distribution/blobs/`.

#![forbid(unsafe_code)]

pub mod auth;
pub mod git;
pub mod manifest;
pub mod progress;
pub mod registry;
mod service;

pub use auth::AuthConfig;
pub use manifest::Platform;
pub use progress::Progress;
pub use registry::RegistryConfig;
pub use service::{Distribution, SearchResult};

use wharf_image::ImageError;
use wharf_reference::ErrorKind;

/// Distribution failures.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// Bad input from the caller (a reference, a platform, a setting).
    #[error("{0}")]
    Invalid(String),
    /// No such repository, tag, manifest or blob; or access denied to it.
    #[error("{0}")]
    NotFound(String),
    /// The registry refused the credentials, or there were none (during a pull or push:
    /// dockerd answers those with 500, and the docker CLI does not prompt for a login).
    #[error("{0}")]
    Unauthorized(String),
    /// `login` with credentials the registry refused (401).
    #[error("{0}")]
    LoginFailed(String),
    /// Something valid that wharf does not pull (schema 1, unknown media types).
    #[error("{0}")]
    Unsupported(String),
    /// A malformed manifest or descriptor.
    #[error("{0}")]
    BadManifest(String),
    /// Bytes that do not match their digest or size.
    #[error("{0}")]
    DigestMismatch(String),
    /// The registry cannot be reached or answered with a server error.
    #[error("{0}")]
    Unavailable(String),
    /// A transfer broke off; worth another try (internal to the download loop).
    #[error("{0}")]
    Retry(String),
    /// Storing the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Filesystem failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl DistError {
    /// The kind, for the API edge (Docker answers registry trouble with 500).
    pub fn kind(&self) -> ErrorKind {
        match self {
            DistError::Invalid(_) | DistError::Unsupported(_) => ErrorKind::InvalidArgument,
            DistError::NotFound(_) => ErrorKind::NotFound,
            DistError::LoginFailed(_) => ErrorKind::Unauthorized,
            DistError::Image(e) => e.kind(),
            _ => ErrorKind::Internal,
        }
    }
}
