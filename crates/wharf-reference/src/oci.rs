//! Content digests as the OCI image spec writes them, `<algorithm>:<encoded>`, for the two
//! algorithms the distribution spec names: sha256 (64 lowercase hex digits, the canonical one)
//! and sha512 (128). Anything else is refused at parsing, so a digest is always a safe path
//! component. The engine's own [`crate::Digest`] is sha256 only; the registry server, which
//! must take sha512 content too, names blobs with [`OciDigest`].

use std::fmt;

use sha2::Digest as _;

/// A digest's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the canonical algorithm.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The name in a digest string and in storage paths.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A verified-form digest: a known algorithm and its lowercase hex encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OciDigest {
    algorithm: Algorithm,
    hex: String,
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not `<algorithm>:<encoded>` at all.
    #[error("invalid digest format: {0:?}")]
    Format(String),
    /// A well-formed digest with an algorithm this registry does not support.
    #[error("unsupported digest algorithm: {0:?}")]
    Algorithm(String),
    /// The encoded part has the wrong length or characters for its algorithm.
    #[error("invalid {algorithm} digest encoding: {value:?}")]
    Encoding {
        /// The algorithm named.
        algorithm: &'static str,
        /// The whole digest string.
        value: String,
    },
}

impl OciDigest {
    /// Parses a digest string strictly.
    pub fn parse(s: &str) -> Result<OciDigest, DigestError> {
        let Some((alg, enc)) = s.split_once(':') else {
            return Err(DigestError::Format(s.to_string()));
        };
        let alg_ok = !alg.is_empty()
            && alg
                .split(['+', '.', '_', '-'])
                .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        let enc_ok = !enc.is_empty() && enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
        if !alg_ok || !enc_ok {
            return Err(DigestError::Format(s.to_string()));
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::Algorithm(other.to_string())),
        };
        if enc.len() != algorithm.hex_len() || !enc.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::Encoding {
                algorithm: algorithm.name(),
                value: s.to_string(),
            });
        }
        Ok(OciDigest {
            algorithm,
            hex: enc.to_string(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> OciDigest {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h.finish()
    }

    /// The digest's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex encoding (a safe file name).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for OciDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// A running hash of one algorithm.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hasher::Sha256(_) => "Hasher(sha256)",
            Hasher::Sha512(_) => "Hasher(sha512)",
        })
    }
}

impl Hasher {
    /// A new hash of `algorithm`.
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> OciDigest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        OciDigest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_algorithms_and_refuses_the_rest() {
        let d = OciDigest::sha256_of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(OciDigest::parse(&d.to_string()).unwrap(), d);
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        let d512 = h.finish();
        assert!(d512.hex().starts_with("ddaf35a193617aba"));
        assert_eq!(OciDigest::parse(&d512.to_string()).unwrap(), d512);
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:../../etc",
            "sha256:ABC",
            "SHA256:abc",
            "sha256:abc/def",
        ] {
            assert!(
                matches!(
                    OciDigest::parse(bad),
                    Err(DigestError::Format(_)) | Err(DigestError::Encoding { .. })
                ),
                "{bad}"
            );
        }
        let upper = format!("sha256:{}", d.hex().to_uppercase());
        assert!(matches!(OciDigest::parse(&upper), Err(DigestError::Encoding { .. })));
        assert!(matches!(
            OciDigest::parse("md5:d41d8cd98f00b204e9800998ecf8427e"),
            Err(DigestError::Algorithm(_))
        ));
        assert!(matches!(
            OciDigest::parse("sha256:abcd"),
            Err(DigestError::Encoding { .. })
        ));
    }
}
