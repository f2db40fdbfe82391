//! The image config (the JSON whose digest is the image ID), read as a typed view. The raw bytes
//! stay in the content store untouched: re-serialising would change the ID.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wharf_reference::Digest;

/// The parts of an image config wharf reads. Unknown fields are kept in `rest`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    /// CPU architecture (`amd64`).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// CPU variant (`v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Commit message or import comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Engine version that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    /// The container config (`Cmd`, `Env`, ...), kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// Legacy container config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_config: Option<Value>,
    /// Layer diff IDs.
    pub rootfs: RootFs,
    /// Build history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Anything else.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

/// `rootfs` of a config.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layer tars, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// One history entry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when this step made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// Largest config accepted: real ones are a few KiB; this keeps a hostile one from eating memory.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;
/// Most layers accepted in one image (Docker's limit is the overlay lower-dir limit, ~128).
pub const MAX_LAYERS: usize = 512;

impl ImageConfig {
    /// Parse config bytes, with the limits above.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(format!("image config is {} bytes, over the limit", bytes.len()));
        }
        let c: ImageConfig = serde_json::from_slice(bytes).map_err(|e| format!("invalid image config: {e}"))?;
        if c.rootfs.kind != "layers" {
            return Err(format!("invalid image config: rootfs type {:?}", c.rootfs.kind));
        }
        if c.rootfs.diff_ids.len() > MAX_LAYERS {
            return Err(format!(
                "invalid image config: {} layers, more than {MAX_LAYERS}",
                c.rootfs.diff_ids.len()
            ));
        }
        Ok(c)
    }

    /// `config.Labels`, if any.
    pub fn labels(&self) -> serde_json::Map<String, Value> {
        self.config
            .as_ref()
            .and_then(|c| c.get("Labels"))
            .and_then(|l| l.as_object())
            .cloned()
            .unwrap_or_default()
    }

    /// Unix seconds of `created`, or 0.
    pub fn created_unix(&self) -> i64 {
        self.created.as_deref().map(parse_rfc3339).unwrap_or(0)
    }
}

/// Unix seconds of an RFC 3339 time, or 0.
pub fn parse_rfc3339(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .unwrap_or(0)
}

/// `secs` since 1970 as RFC 3339, UTC (`1970-01-01T00:00:00Z` when out of range).
pub fn rfc3339_at(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Now as RFC 3339 with nanoseconds, UTC, as Go prints it.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
