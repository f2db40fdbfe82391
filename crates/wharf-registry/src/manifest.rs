//! What the registry must know of a manifest it is given: its media type (the body's
//! `mediaType` must agree with the `Content-Type` it came with), the blobs and manifests it
//! names (each must be in the repository before it is accepted), its `subject` (for the
//! referrers API) and what a referrers list shows of it (`artifactType`, annotations).

use serde::Deserialize;

use crate::error::{RegistryError, Result};
use wharf_reference::oci::{Hasher, OciDigest};

/// Docker schema2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The largest manifest accepted (distribution's and Docker's limit).
pub const MAX_MANIFEST: usize = 4 << 20;

/// A descriptor as a manifest writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Its media type.
    #[serde(default)]
    pub media_type: String,
    /// Its digest string.
    pub digest: String,
    /// Its size.
    pub size: i64,
    /// External locations (foreign, non-distributable layers).
    #[serde(default)]
    pub urls: Vec<String>,
    /// Its artifact type.
    #[serde(default)]
    pub artifact_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A manifest accepted for storage.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The media type it is served with.
    pub media_type: String,
    /// Blobs it names that must be in the repository (config and layers; foreign layers left out).
    pub blobs: Vec<OciDigest>,
    /// Manifests it names (an index's entries) that must be in the repository.
    pub manifests: Vec<OciDigest>,
    /// Its subject, if it has one.
    pub subject: Option<OciDigest>,
    /// Its artifact type as a referrers list shows it (`artifactType`, else the config's type).
    pub artifact_type: Option<String>,
    /// Its annotations.
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

fn is_index(mt: &str) -> bool {
    mt == DOCKER_LIST || mt == OCI_INDEX
}

fn digest_of(d: &Descriptor) -> Result<OciDigest> {
    if d.size < 0 {
        return Err(RegistryError::ManifestInvalid(format!(
            "descriptor {} has a negative size",
            d.digest
        )));
    }
    OciDigest::parse(&d.digest).map_err(|e| RegistryError::ManifestInvalid(e.to_string()))
}

/// Parses and checks a manifest given with `content_type`.
pub fn parse(body: &[u8], content_type: &str) -> Result<Parsed> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| RegistryError::ManifestInvalid(format!("not a manifest: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(RegistryError::ManifestInvalid(
            "schemaVersion must be 2 (schema 1 is not supported)".into(),
        ));
    }
    let media_type = match (&raw.media_type, ct) {
        (Some(m), ct) if !ct.is_empty() && m != ct => {
            return Err(RegistryError::ManifestInvalid(format!(
                "mediaType {m:?} does not match Content-Type {ct:?}"
            )))
        }
        (Some(m), _) => m.clone(),
        (None, ct) if !ct.is_empty() => ct.to_string(),
        (None, _) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, _) => OCI_MANIFEST.to_string(),
    };
    if ![DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX].contains(&media_type.as_str()) {
        return Err(RegistryError::ManifestInvalid(format!(
            "unsupported manifest media type {media_type:?}"
        )));
    }
    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    let mut artifact_type = raw.artifact_type.clone();
    if is_index(&media_type) {
        if raw.config.is_some() || raw.layers.is_some() {
            return Err(RegistryError::ManifestInvalid(
                "an index has no config or layers".into(),
            ));
        }
        for m in raw.manifests.as_deref().unwrap_or_default() {
            manifests.push(digest_of(m)?);
        }
    } else {
        let config = raw
            .config
            .as_ref()
            .ok_or_else(|| RegistryError::ManifestInvalid("no config".into()))?;
        if raw.manifests.is_some() {
            return Err(RegistryError::ManifestInvalid(
                "an image manifest has no manifests".into(),
            ));
        }
        blobs.push(digest_of(config)?);
        if artifact_type.is_none() && media_type == OCI_MANIFEST {
            artifact_type = Some(config.media_type.clone());
        }
        for l in raw.layers.as_deref().unwrap_or_default() {
            let d = digest_of(l)?;
            if l.urls.is_empty() {
                blobs.push(d);
            }
        }
    }
    let subject = raw.subject.as_ref().map(digest_of).transpose()?;
    Ok(Parsed {
        media_type,
        blobs,
        manifests,
        subject,
        artifact_type,
        annotations: raw.annotations,
    })
}

/// The digest a manifest is stored under: `want`'s, which the bytes must hash to (by its
/// algorithm), or sha256 for a manifest given by tag.
pub fn stored_digest(body: &[u8], want: Option<&OciDigest>) -> Result<OciDigest> {
    let Some(want) = want else {
        return Ok(OciDigest::sha256_of(body));
    };
    let mut h = Hasher::new(want.algorithm());
    h.update(body);
    let got = h.finish();
    if &got != want {
        return Err(RegistryError::DigestInvalid(format!(
            "the manifest is {got}, not {want}"
        )));
    }
    Ok(got)
}

/// Whether a client's `Accept` values allow `media_type` (no `Accept` at all allows anything,
/// as distribution answers clients that send none).
pub fn accepted(accept: &[String], media_type: &str) -> bool {
    let listed: Vec<&str> = accept
        .iter()
        .flat_map(|a| a.split(','))
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .filter(|v| !v.is_empty())
        .collect();
    listed.is_empty()
        || listed
            .iter()
            .any(|v| *v == media_type || *v == "*/*" || *v == "application/*")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(d: &OciDigest, mt: &str) -> serde_json::Value {
        serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": 3})
    }

    #[test]
    fn image_manifests_name_their_blobs_and_subject() {
        let (c, l, s) = (
            OciDigest::sha256_of(b"c"),
            OciDigest::sha256_of(b"l"),
            OciDigest::sha256_of(b"s"),
        );
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc(&c, "application/vnd.example+json"), "layers": [desc(&l, "x"),
            {"mediaType": "f", "digest": OciDigest::sha256_of(b"f").to_string(), "size": 1, "urls": ["http://x"]}],
            "subject": desc(&s, OCI_MANIFEST)});
        let p = parse(m.to_string().as_bytes(), OCI_MANIFEST).unwrap();
        assert_eq!(p.blobs, vec![c, l]);
        assert_eq!(p.subject, Some(s));
        assert_eq!(p.artifact_type.as_deref(), Some("application/vnd.example+json"));
        // The media type must agree with the Content-Type.
        assert!(parse(m.to_string().as_bytes(), DOCKER_MANIFEST).is_err());
        // An index names manifests; its type may come from the Content-Type alone.
        let i = serde_json::json!({"schemaVersion": 2, "manifests": [desc(&OciDigest::sha256_of(b"m"), OCI_MANIFEST)]});
        let p = parse(i.to_string().as_bytes(), OCI_INDEX).unwrap();
        assert_eq!((p.media_type.as_str(), p.manifests.len()), (OCI_INDEX, 1));
    }

    #[test]
    fn bad_manifests_are_refused() {
        for (body, ct) in [
            ("not json", OCI_MANIFEST),
            (r#"{"schemaVersion": 1}"#, OCI_MANIFEST),
            (
                r#"{"schemaVersion": 2, "mediaType": "text/plain", "config": {"digest": "sha256:x", "size": 1}}"#,
                "text/plain",
            ),
            (
                r#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}"#,
                OCI_MANIFEST,
            ),
            (
                r#"{"schemaVersion": 2, "config": {"digest": "sha256:../x", "size": 1}}"#,
                OCI_MANIFEST,
            ),
            (
                r#"{"schemaVersion": 2, "config": {"digest": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "size": -1}}"#,
                OCI_MANIFEST,
            ),
        ] {
            assert!(
                matches!(parse(body.as_bytes(), ct), Err(RegistryError::ManifestInvalid(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepted(&[], OCI_INDEX));
        assert!(accepted(&[format!("{DOCKER_MANIFEST}, {OCI_MANIFEST}")], OCI_MANIFEST));
        assert!(!accepted(&[DOCKER_MANIFEST.to_string()], OCI_INDEX));
        assert!(accepted(&["*/*".to_string()], OCI_INDEX));
    }
}
