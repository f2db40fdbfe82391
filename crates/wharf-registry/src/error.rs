//! The registry's one error type and its wire form: each kind is one of the distribution spec's
//! error codes, mapped to its HTTP status here and nowhere else, and answered as the spec's body
//! `{"errors":[{"code","message","detail"}]}`.

use wharf_reference::oci::DigestError;

/// What went wrong with a request, as the spec names it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The blob is not in the repository.
    #[error("blob unknown to registry")]
    BlobUnknown(String),
    /// An upload's content or range is not acceptable.
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// The upload session does not exist (finished, cancelled, purged or never started).
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown(String),
    /// A digest string is malformed, unsupported, or content does not hash to it.
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    /// A manifest names a blob or manifest the repository does not have.
    #[error("blob unknown to registry: {0}")]
    ManifestBlobUnknown(String),
    /// A manifest that cannot be accepted.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// No such manifest (or one of a type the client does not accept).
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// A repository name outside the grammar.
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    /// No such repository.
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    /// Content whose length is not what was declared, or over a limit.
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    /// Too large for the registry's limits (a manifest over 4 MiB, an upload over the limit).
    #[error("payload too large: {0}")]
    TooLarge(String),
    /// A tag outside the grammar.
    #[error("manifest tag did not match URI: {0}")]
    TagInvalid(String),
    /// Authentication required or failed; the challenge goes with it.
    #[error("authentication required")]
    Unauthorized(Challenge),
    /// Authenticated, but not allowed (or the registry is read-only, or over a quota).
    #[error("requested access to the resource is denied: {0}")]
    Denied(String),
    /// The operation is not supported here (deletes when disabled).
    #[error("The operation is unsupported.")]
    Unsupported(String),
    /// Too many requests.
    #[error("too many requests")]
    TooManyRequests,
    /// `n` or `last` of a list that cannot be used.
    #[error("invalid number of results requested: {0}")]
    PaginationInvalid(String),
    /// A chunk that does not start where the upload ends.
    #[error("invalid content range: {0}")]
    RangeInvalid(String),
    /// A remote registry (pull-through cache mode) cannot be reached.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A route that does not exist.
    #[error("not found")]
    NotFound,
    /// The storage failed.
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
}

/// The `WWW-Authenticate` challenge of a 401.
#[derive(Debug, Clone)]
pub struct Challenge(pub String);

impl From<DigestError> for RegistryError {
    fn from(e: DigestError) -> Self {
        RegistryError::DigestInvalid(e.to_string())
    }
}

impl RegistryError {
    /// The spec's code and the HTTP status: the one place kinds meet statuses.
    pub fn code_status(&self) -> (&'static str, u16) {
        use RegistryError::*;
        match self {
            BlobUnknown(_) => ("BLOB_UNKNOWN", 404),
            BlobUploadInvalid(_) => ("BLOB_UPLOAD_INVALID", 400),
            BlobUploadUnknown(_) => ("BLOB_UPLOAD_UNKNOWN", 404),
            DigestInvalid(_) => ("DIGEST_INVALID", 400),
            ManifestBlobUnknown(_) => ("MANIFEST_BLOB_UNKNOWN", 400),
            ManifestInvalid(_) => ("MANIFEST_INVALID", 400),
            ManifestUnknown(_) => ("MANIFEST_UNKNOWN", 404),
            NameInvalid(_) => ("NAME_INVALID", 400),
            NameUnknown(_) => ("NAME_UNKNOWN", 404),
            SizeInvalid(_) => ("SIZE_INVALID", 400),
            TooLarge(_) => ("SIZE_INVALID", 413),
            TagInvalid(_) => ("TAG_INVALID", 400),
            Unauthorized(_) => ("UNAUTHORIZED", 401),
            Denied(_) => ("DENIED", 403),
            Unsupported(_) => ("UNSUPPORTED", 405),
            TooManyRequests => ("TOOMANYREQUESTS", 429),
            PaginationInvalid(_) => ("PAGINATION_NUMBER_INVALID", 400),
            RangeInvalid(_) => ("RANGE_INVALID", 416),
            Unavailable(_) => ("UNAVAILABLE", 503),
            NotFound => ("NOT_FOUND", 404),
            Storage(_) => ("UNKNOWN", 500),
        }
    }

    /// The spec's error body.
    pub fn body(&self) -> Vec<u8> {
        use RegistryError::*;
        let (code, _) = self.code_status();
        let detail = match self {
            BlobUnknown(d)
            | BlobUploadUnknown(d)
            | DigestInvalid(d)
            | ManifestBlobUnknown(d)
            | ManifestUnknown(d)
            | NameInvalid(d)
            | NameUnknown(d)
            | TagInvalid(d) => serde_json::Value::String(d.clone()),
            _ => serde_json::Value::Null,
        };
        let message = match self {
            Storage(_) => "internal storage error".to_string(),
            other => other.to_string(),
        };
        serde_json::to_vec(&serde_json::json!({"errors": [{"code": code, "message": message, "detail": detail}]}))
            .unwrap_or_default()
    }
}

/// Results of registry operations.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
