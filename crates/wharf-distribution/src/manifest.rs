//! Manifests as registries serve them: Docker schema2 manifests and manifest lists, OCI
//! manifests and indexes; their media types, parsing with the checks Docker makes (a body's
//! `mediaType` must agree with the `Content-Type` it came with) and platform selection with
//! containerd's rules for variants.

use serde::{Deserialize, Serialize};
use wharf_reference::Digest;

use crate::DistError;

/// Docker schema2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign (non-distributable) gzip layer.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Schema 1, which Docker no longer pulls.
const SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Every manifest type wharf pulls, for the `Accept` header.
pub const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// Largest manifest read (Docker's limit is 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A content descriptor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    /// The media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// The content's digest.
    pub digest: String,
    /// The content's size in bytes.
    pub size: i64,
    /// Where a foreign layer may be fetched from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// The platform (in indexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// The parsed digest (sha256 only).
    pub fn digest(&self) -> Result<Digest, DistError> {
        self.digest
            .parse()
            .map_err(|e| DistError::BadManifest(format!("invalid digest {:?}: {e}", self.digest)))
    }

    /// The size, which must not be negative.
    pub fn size(&self) -> Result<u64, DistError> {
        u64::try_from(self.size).map_err(|_| DistError::BadManifest(format!("negative size for {}", self.digest)))
    }

    /// True for layers Docker neither pushes nor (when they carry URLs) fetches from the registry.
    pub fn is_foreign(&self) -> bool {
        self.media_type == DOCKER_FOREIGN_LAYER || self.media_type.contains(".nondistributable.")
    }
}

/// A platform as descriptors and `--platform` name it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Platform {
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `linux`.
    pub os: String,
    /// `v7`, `v8`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    /// The platform this host runs, normalised as containerd does.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "aarch64" => ("arm64", "v8"),
            "arm" => ("arm", "v7"),
            "x86" => ("386", ""),
            other => (other, ""),
        };
        Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.into(),
        }
    }

    /// Parse `os[/arch[/variant]]` (`linux/arm64/v8`, `linux/amd64`, `arm64`).
    pub fn parse(s: &str) -> Result<Platform, DistError> {
        let parts: Vec<&str> = s.split('/').map(str::trim).collect();
        let bad = || DistError::Invalid(format!("invalid platform {s:?}: use os/arch[/variant]"));
        if s.is_empty() || parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(bad());
        }
        let lower: Vec<String> = parts.iter().map(|p| p.to_ascii_lowercase()).collect();
        let mut p = match lower.len() {
            1 if lower[0] == "linux" => Platform::host(),
            1 => Platform {
                os: "linux".into(),
                architecture: lower[0].clone(),
                variant: String::new(),
            },
            _ => Platform {
                os: lower[0].clone(),
                architecture: lower[1].clone(),
                variant: lower.get(2).cloned().unwrap_or_default(),
            },
        };
        if p.os != "linux" && p.os != "windows" && p.os != "darwin" && p.os != "freebsd" {
            return Err(DistError::Invalid(format!(
                "{s:?}: unknown operating system {:?}",
                p.os
            )));
        }
        p.normalize();
        Ok(p)
    }

    /// containerd's normalisation: `x86_64` is `amd64`, `aarch64` is `arm64` (variant `v8`),
    /// `armhf` is `arm/v7`, `armel` is `arm/v6`.
    pub fn normalize(&mut self) {
        let (arch, variant): (&str, String) = match self.architecture.as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64", self.variant.clone()),
            "aarch64" | "arm64" => (
                "arm64",
                match self.variant.as_str() {
                    "" | "8" => "v8".into(),
                    v => v.into(),
                },
            ),
            "armhf" => ("arm", "v7".into()),
            "armel" => ("arm", "v6".into()),
            "arm" => (
                "arm",
                match self.variant.as_str() {
                    "" | "7" => "v7".into(),
                    "5" | "6" | "8" => format!("v{}", self.variant),
                    v => v.into(),
                },
            ),
            "i386" | "386" => ("386", self.variant.clone()),
            other => (other, self.variant.clone()),
        };
        self.architecture = arch.into();
        self.variant = variant;
    }

    /// `linux/amd64`, `linux/arm64/v8`.
    pub fn display(&self) -> String {
        if self.variant.is_empty() {
            format!("{}/{}", self.os, self.architecture)
        } else {
            format!("{}/{}/{}", self.os, self.architecture, self.variant)
        }
    }

    /// How well `candidate` serves this platform: `None` when it cannot run here; lower is
    /// better. An `arm/v7` host runs `v7`, then `v6`, then `v5`; an `amd64` host runs the
    /// baseline (no variant or `v1`) before the newer levels it was asked for.
    fn rank(&self, candidate: &Platform) -> Option<u32> {
        let mut c = candidate.clone();
        c.normalize();
        if c.os != self.os || c.architecture != self.architecture {
            return None;
        }
        if c.variant == self.variant {
            return Some(0);
        }
        let level = |v: &str| v.trim_start_matches('v').parse::<u32>().ok();
        match self.architecture.as_str() {
            "arm" => match (level(&self.variant), level(&c.variant)) {
                (Some(want), Some(have)) if have <= want => Some(want - have),
                _ => None,
            },
            "amd64" => {
                let want = if self.variant.is_empty() {
                    1
                } else {
                    level(&self.variant)?
                };
                let have = if c.variant.is_empty() { 1 } else { level(&c.variant)? };
                (have <= want).then(|| want - have)
            }
            "arm64" => (c.variant.is_empty()).then_some(1),
            _ => (self.variant.is_empty() || c.variant.is_empty()).then_some(1),
        }
    }
}

/// An image manifest (Docker schema2 or OCI).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageManifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The manifest's media type (optional in OCI).
    #[serde(rename = "mediaType", default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
}

/// What a manifest request returned.
#[derive(Clone, Debug)]
pub enum Manifest {
    /// One image.
    Image(ImageManifest),
    /// A manifest list or OCI index.
    Index(Vec<Descriptor>),
}

/// Parse a manifest body served with `content_type`, as Docker does: the body's own
/// `mediaType`, when present, must match the header; schema 1 is refused.
pub fn parse(body: &[u8], content_type: &str) -> Result<Manifest, DistError> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(rename = "schemaVersion", default)]
        schema_version: u32,
        #[serde(rename = "mediaType", default)]
        media_type: String,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    let ct = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if SCHEMA1.contains(&ct.as_str()) {
        return Err(DistError::Unsupported(
            "this image uses a schema 1 manifest, which Docker and wharf no longer pull".into(),
        ));
    }
    let head: Head =
        serde_json::from_slice(body).map_err(|e| DistError::BadManifest(format!("invalid manifest JSON: {e}")))?;
    if head.schema_version == 1 {
        return Err(DistError::Unsupported(
            "this image uses a schema 1 manifest, which Docker and wharf no longer pull".into(),
        ));
    }
    if head.schema_version != 2 {
        return Err(DistError::BadManifest(format!(
            "unsupported manifest schemaVersion {}",
            head.schema_version
        )));
    }
    if !head.media_type.is_empty() && !ct.is_empty() && head.media_type != ct && ct != "application/json" {
        return Err(DistError::BadManifest(format!(
            "manifest media type {} disagrees with its Content-Type {ct}",
            head.media_type
        )));
    }
    let kind = if !head.media_type.is_empty() {
        head.media_type.clone()
    } else if matches!(ct.as_str(), DOCKER_MANIFEST | DOCKER_LIST | OCI_MANIFEST | OCI_INDEX) {
        ct.clone()
    } else if head.manifests.is_some() {
        OCI_INDEX.into()
    } else if head.config.is_some() {
        OCI_MANIFEST.into()
    } else {
        return Err(DistError::BadManifest(
            "the manifest has neither layers nor manifests".into(),
        ));
    };
    match kind.as_str() {
        DOCKER_LIST | OCI_INDEX => {
            #[derive(Deserialize)]
            struct Index {
                manifests: Vec<Descriptor>,
            }
            let i: Index =
                serde_json::from_slice(body).map_err(|e| DistError::BadManifest(format!("invalid index: {e}")))?;
            Ok(Manifest::Index(i.manifests))
        }
        DOCKER_MANIFEST | OCI_MANIFEST => {
            let m: ImageManifest =
                serde_json::from_slice(body).map_err(|e| DistError::BadManifest(format!("invalid manifest: {e}")))?;
            m.config.digest()?;
            for l in &m.layers {
                l.digest()?;
                l.size()?;
            }
            Ok(Manifest::Image(m))
        }
        other => Err(DistError::Unsupported(format!(
            "unsupported manifest media type {other}"
        ))),
    }
}

/// Choose the entry of an index for `want`, or Docker's error when there is none.
pub fn select<'a>(entries: &'a [Descriptor], want: &Platform) -> Result<&'a Descriptor, DistError> {
    entries
        .iter()
        .filter(|d| matches!(d.media_type.as_str(), DOCKER_MANIFEST | OCI_MANIFEST | ""))
        .filter_map(|d| d.platform.as_ref().and_then(|p| want.rank(p)).map(|r| (r, d)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, d)| d)
        .ok_or_else(|| {
            DistError::NotFound(format!(
                "no matching manifest for {} in the manifest list entries",
                want.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(arch: &str, variant: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 1,
            urls: vec![],
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.into(),
            }),
        }
    }

    #[test]
    fn platforms_parse_and_normalise() {
        let p = Platform::parse("linux/aarch64").unwrap();
        assert_eq!(p.display(), "linux/arm64/v8");
        assert_eq!(Platform::parse("linux/arm").unwrap().display(), "linux/arm/v7");
        assert_eq!(Platform::parse("linux/x86_64").unwrap().display(), "linux/amd64");
        assert!(Platform::parse("linux//v7").is_err());
        assert!(Platform::parse("plan9/amd64").is_err());
    }

    #[test]
    fn selection_follows_variant_rules() {
        let list = vec![
            d("arm", "v6"),
            d("arm", "v7"),
            d("arm64", ""),
            d("amd64", ""),
            d("amd64", "v3"),
        ];
        let pick = |s: &str| select(&list, &Platform::parse(s).unwrap()).map(|d| d.platform.clone().unwrap());
        assert_eq!(pick("linux/arm/v7").unwrap().variant, "v7");
        assert_eq!(pick("linux/arm/v6").unwrap().variant, "v6");
        assert!(pick("linux/arm/v5").is_err());
        assert_eq!(pick("linux/arm64").unwrap().architecture, "arm64");
        assert_eq!(pick("linux/amd64").unwrap().variant, "");
        assert_eq!(pick("linux/amd64/v3").unwrap().variant, "v3");
        let e = pick("linux/s390x").unwrap_err().to_string();
        assert_eq!(e, "no matching manifest for linux/s390x in the manifest list entries");
    }

    #[test]
    fn media_type_must_match_content_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"sha256:{}","size":2}},"layers":[]}}"#,
            "b".repeat(64)
        );
        assert!(matches!(
            parse(body.as_bytes(), DOCKER_MANIFEST),
            Ok(Manifest::Image(_))
        ));
        let e = parse(body.as_bytes(), OCI_INDEX).unwrap_err().to_string();
        assert!(e.contains("disagrees with its Content-Type"), "{e}");
        let e = parse(br#"{"schemaVersion":1,"name":"x"}"#, "application/json").unwrap_err();
        assert!(e.to_string().contains("schema 1"));
        let neg = body.replace(
            "\"layers\":[]",
            &format!(r#""layers":[{{"digest":"sha256:{}","size":-1}}]"#, "c".repeat(64)),
        );
        assert!(parse(neg.as_bytes(), DOCKER_MANIFEST).is_err());
    }
}
