//! Names for content: [`Digest`] (`sha256:<64 hex>`), [`oci::OciDigest`] (sha256 or sha512, as
//! the distribution spec allows), [`Reference`] (Docker's
//! `registry/repository:tag@digest`, normalised so that `busybox` is
//! `docker.io/library/busybox:latest`), and the chain-ID arithmetic Docker uses for layers.
//!
//! This crate does no IO and cannot fail except by rejecting input: every string that names
//! content is parsed here once, at the boundary, and passed around typed afterwards.

#![forbid(unsafe_code)]

mod digest;
pub mod oci;
mod reference;

pub use digest::{chain_ids, BackgroundSha256, Digest, DigestError, Sha256Writer};
pub use reference::{Reference, ReferenceError, DEFAULT_DOMAIN, DEFAULT_TAG, OFFICIAL_REPO_PREFIX};

/// Docker's rule for container and object names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_object_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= 255
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// True when `s` is 1..=64 lowercase hex characters: the shape of an ID or an ID prefix.
pub fn is_hex_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// What kind of failure an error is, independent of where it happened. The API edge maps each
/// kind to one HTTP status in exactly one function; nothing else chooses a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object does not exist (404).
    NotFound,
    /// The request conflicts with current state (409).
    Conflict,
    /// The request is malformed (400).
    InvalidArgument,
    /// The caller may not do this (401/403).
    Unauthorized,
    /// The operation is not allowed on this object (403).
    Forbidden,
    /// The operation was already done (304).
    NotModified,
    /// The body is over the size cap (413).
    TooLarge,
    /// A dependency is down (503).
    Unavailable,
    /// The engine does not do this at all (501).
    NotImplemented,
    /// Everything else (500).
    Internal,
}
