//! The `platform` query parameter of create, image inspect, save, load and import, as Docker
//! 28 answers it: an invalid platform is the client's error (400) before a byte of the body is
//! read or anything is looked up, and an image whose own platform is another is not found
//! (404), never used for the wrong architecture. wharf keeps one platform per image (its
//! config's `os`, `architecture` and `variant`).

use wharf_distribution::manifest::Platform;
use wharf_image::config::ImageConfig;

use crate::error::ApiError;
use crate::query::Query;

/// The request's `platform`, parsed and normalised (`None` when absent or empty).
pub fn requested(q: &Query) -> Result<Option<Platform>, ApiError> {
    match q.get("platform").filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) => Platform::parse(p)
            .map(Some)
            .map_err(|e| ApiError::invalid(format!("invalid platform: {e}"))),
    }
}

/// An image's own platform, normalised.
pub fn of_image(c: &ImageConfig) -> Platform {
    let mut p = Platform {
        os: if c.os.is_empty() { "linux".into() } else { c.os.clone() },
        architecture: c.architecture.clone(),
        variant: c.variant.clone().unwrap_or_default(),
    };
    p.normalize();
    p
}

/// Does an image of platform `have` serve a request for `want`? The same OS and architecture,
/// and the variant asked for when the image names one.
pub fn matches(have: &Platform, want: &Platform) -> bool {
    have.os == want.os
        && have.architecture == want.architecture
        && (want.variant.is_empty() || have.variant.is_empty() || have.variant == want.variant)
}

/// 404 unless the image named `reference` (with config `c`) is of the platform `want`.
pub fn check(reference: &str, c: &ImageConfig, want: Option<&Platform>) -> Result<(), ApiError> {
    let Some(want) = want else { return Ok(()) };
    let have = of_image(c);
    if matches(&have, want) {
        return Ok(());
    }
    Err(ApiError::not_found(format!(
        "image with reference {reference} was found but its platform ({}) does not match the specified platform ({})",
        have.display(),
        want.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_match_as_docker_matches_them() {
        let p = |s: &str| Platform::parse(s).unwrap();
        assert!(matches(&p("linux/amd64"), &p("linux/x86_64")));
        assert!(matches(&p("linux/arm64"), &p("linux/arm64/v8")));
        assert!(!matches(&p("linux/amd64"), &p("linux/arm64")));
        assert!(!matches(&p("linux/arm/v6"), &p("linux/arm/v7")));
        assert!(!matches(&p("linux/amd64"), &p("windows/amd64")));
    }
}
