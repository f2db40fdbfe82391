//! The network service's one error enum, with the kinds the API edge maps to HTTP status.

use wharf_reference::ErrorKind;

/// What can go wrong with a network operation. Messages are Docker's where clients match.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// `network X not found`.
    #[error("network {0} not found")]
    NotFound(String),
    /// A name, address or port already taken, or a network in use (409, or 403 for the
    /// predefined networks, which Docker reports as forbidden).
    #[error("{0}")]
    Conflict(String),
    /// The predefined networks cannot be removed or changed.
    #[error("{0}")]
    Forbidden(String),
    /// Bad input (400).
    #[error("{0}")]
    Invalid(String),
    /// netlink, nftables or the filesystem failed.
    #[error("{0}")]
    System(String),
}

impl NetworkError {
    /// The kind, for the API's one status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::NotFound(_) => ErrorKind::NotFound,
            NetworkError::Conflict(_) => ErrorKind::Conflict,
            NetworkError::Forbidden(_) => ErrorKind::Forbidden,
            NetworkError::Invalid(_) => ErrorKind::InvalidArgument,
            NetworkError::System(_) => ErrorKind::Internal,
        }
    }
}

impl From<std::io::Error> for NetworkError {
    fn from(e: std::io::Error) -> Self {
        NetworkError::System(e.to_string())
    }
}

/// Results of this crate.
pub type Result<T, E = NetworkError> = std::result::Result<T, E>;
