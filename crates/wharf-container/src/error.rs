//! The container service's one error enum, with the kinds the API edge maps to HTTP status.

use wharf_image::ImageError;
use wharf_reference::ErrorKind;
use wharf_shim_proto::FailureKind;

/// What can go wrong with a container operation. Messages are Docker's where clients match.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// `No such container: X`.
    #[error("No such container: {0}")]
    NotFound(String),
    /// `No such exec instance: X`.
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    /// `network X not found` (404).
    #[error("{0}")]
    NetworkNotFound(String),
    /// A path inside a container that does not exist (404).
    #[error("{0}")]
    PathNotFound(String),
    /// A name or state conflict (409).
    #[error("{0}")]
    Conflict(String),
    /// Bad input (400).
    #[error("{0}")]
    Invalid(String),
    /// Nothing to do (304): start when started, stop when stopped.
    #[error("")]
    NotModified,
    /// The image side failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The runtime refused to start the process (Docker's wording is kept in the message); the
    /// kind is the shim's.
    #[error("{message}")]
    Runtime {
        /// What kind of failure, as the shim reported it.
        kind: wharf_shim_proto::FailureKind,
        /// What it said.
        message: String,
    },
    /// A volume operation failed.
    #[error(transparent)]
    Volume(#[from] wharf_volume::VolumeError),
    /// The container's root (its snapshot) failed.
    #[error(transparent)]
    Snapshot(#[from] wharf_store::snapshot::SnapshotError),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl ContainerError {
    /// The kind, for the API's one status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ContainerError::NotFound(_)
            | ContainerError::NoSuchExec(_)
            | ContainerError::PathNotFound(_)
            | ContainerError::NetworkNotFound(_) => ErrorKind::NotFound,
            ContainerError::Conflict(_) => ErrorKind::Conflict,
            ContainerError::Invalid(_) => ErrorKind::InvalidArgument,
            ContainerError::NotModified => ErrorKind::NotModified,
            ContainerError::Image(e) => e.kind(),
            ContainerError::Volume(e) => e.kind(),
            ContainerError::Runtime { kind, .. } => match kind {
                FailureKind::NotFound | FailureKind::CannotExecute => ErrorKind::InvalidArgument,
                FailureKind::NotRunning | FailureKind::Paused => ErrorKind::Conflict,
                FailureKind::BadRequest => ErrorKind::InvalidArgument,
                FailureKind::Internal => ErrorKind::Internal,
            },
            ContainerError::Internal(_) | ContainerError::Snapshot(_) => ErrorKind::Internal,
        }
    }
}

impl ContainerError {
    /// A failure the shim reported in `reply`, if it reported one.
    pub fn from_reply(reply: &wharf_shim_proto::Reply) -> Option<ContainerError> {
        reply.failure().map(|(kind, message)| ContainerError::Runtime {
            kind,
            message: message.to_string(),
        })
    }
}

impl From<std::io::Error> for ContainerError {
    fn from(e: std::io::Error) -> Self {
        ContainerError::Internal(e.to_string())
    }
}

impl From<rustix::io::Errno> for ContainerError {
    fn from(e: rustix::io::Errno) -> Self {
        ContainerError::Internal(std::io::Error::from(e).to_string())
    }
}

impl From<wharf_store::LayerError> for ContainerError {
    fn from(e: wharf_store::LayerError) -> Self {
        ContainerError::Internal(e.to_string())
    }
}

/// Results of this crate.
pub type Result<T, E = ContainerError> = std::result::Result<T, E>;
