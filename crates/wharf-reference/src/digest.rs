//! Content digests. Only `sha256` is accepted: it is the one algorithm Docker images use in
//! practice, and refusing the rest keeps hostile names such as `sha256:../../x` or
//! `md5:...` from ever reaching a path.

use std::fmt;
use std::io;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// The algorithm part is not `sha256`.
    #[error("unsupported digest algorithm: {0:?}")]
    UnsupportedAlgorithm(String),
    /// The string has no `algorithm:` prefix.
    #[error("invalid digest {0:?}: missing algorithm")]
    MissingAlgorithm(String),
    /// The encoded part is not 64 lowercase hex characters.
    #[error("invalid checksum digest format: {0:?}")]
    BadEncoding(String),
}

/// A `sha256:<64 lowercase hex>` digest, stored as its 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest(Sha256::digest(data).into())
    }

    /// Parse a bare 64-hex string (an image ID without its `sha256:` prefix).
    pub fn from_hex(s: &str) -> Result<Self, DigestError> {
        if s.len() != 64 || !crate::is_hex_prefix(s) {
            return Err(DigestError::BadEncoding(s.to_string()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestError::BadEncoding(s.to_string()))?;
        Ok(Digest(out))
    }

    /// The 64 hex characters, without the algorithm.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The 12-character short form Docker prints.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        let Some((alg, enc)) = s.split_once(':') else {
            return Err(DigestError::MissingAlgorithm(s.to_string()));
        };
        if alg != "sha256" {
            return Err(DigestError::UnsupportedAlgorithm(alg.to_string()));
        }
        Digest::from_hex(enc)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes and counts everything written through it.
#[derive(Default)]
pub struct Sha256Writer {
    hasher: Sha256,
    len: u64,
}

impl Sha256Writer {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }
    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The digest of everything written.
    pub fn finish(self) -> Digest {
        Digest(self.hasher.finalize().into())
    }
    /// Feed bytes.
    pub fn update(&mut self, buf: &[u8]) {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
    }
}

impl io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A SHA-256 computed on a thread of its own once a stream is large, so a stream that must be
/// hashed (a layer being extracted, rebuilt or spooled) is not held up by the hashing: bytes
/// are gathered into batches and handed over, and [`finish`](BackgroundSha256::finish) waits
/// for the digest. Hashing one stream cannot be split, but it can run beside the reading,
/// copying and writing of the same bytes on another core. The first [`INLINE`] bytes are
/// hashed in place (small blobs never start a thread), and so is everything when no thread
/// can be started.
pub struct BackgroundSha256 {
    /// Hashing in place: before the stream is large, or when no thread could be started.
    inline: Option<Sha256Writer>,
    /// No thread could be started: stay in place.
    no_thread: bool,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    back: Option<std::sync::mpsc::Receiver<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<Sha256Writer>>,
    /// The thread went away with bytes it was given: the digest cannot be trusted.
    lost: bool,
    pending: Vec<u8>,
    len: u64,
}

/// Bytes hashed in place before the thread starts.
pub const INLINE: u64 = 4 << 20;
/// Bytes gathered before a batch is handed to the hashing thread.
const BATCH: usize = 1 << 20;

impl BackgroundSha256 {
    /// A hasher; its thread starts once the stream passes [`INLINE`] bytes.
    pub fn new() -> Self {
        BackgroundSha256 {
            inline: Some(Sha256Writer::new()),
            no_thread: false,
            tx: None,
            back: None,
            worker: None,
            lost: false,
            pending: Vec::new(),
            len: 0,
        }
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start the thread and move the in-place state to it; nothing moves when none starts.
    fn start(&mut self) -> bool {
        let (state_tx, state_rx) = std::sync::mpsc::sync_channel::<Sha256Writer>(1);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        // Emptied batches come back to be filled again: no allocation per batch.
        let (give_back, back) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
        let spawned = std::thread::Builder::new().name("sha256".into()).spawn(move || {
            let mut h = state_rx.recv().unwrap_or_default();
            for mut b in rx {
                h.update(&b);
                b.clear();
                let _ = give_back.try_send(b);
            }
            h
        });
        let Ok(worker) = spawned else { return false };
        if state_tx.send(self.inline.take().unwrap_or_default()).is_err() {
            self.lost = true;
        }
        self.worker = Some(worker);
        self.tx = Some(tx);
        self.back = Some(back);
        self.pending = Vec::with_capacity(BATCH);
        true
    }

    /// Feed bytes.
    pub fn update(&mut self, mut buf: &[u8]) {
        self.len += buf.len() as u64;
        if self.inline.is_some() && self.len > INLINE && !self.no_thread && !self.start() {
            self.no_thread = true;
        }
        if let Some(h) = &mut self.inline {
            h.update(buf);
            return;
        }
        while !buf.is_empty() {
            let n = buf.len().min(BATCH - self.pending.len());
            self.pending.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.pending.len() == BATCH {
                self.hand_over();
            }
        }
    }

    fn hand_over(&mut self) {
        let next = self
            .back
            .as_ref()
            .and_then(|b| b.try_recv().ok())
            .unwrap_or_else(|| Vec::with_capacity(BATCH));
        let full = std::mem::replace(&mut self.pending, next);
        if self.tx.as_ref().is_some_and(|tx| tx.send(full).is_err()) {
            self.tx = None;
            self.lost = true;
        }
    }

    /// The digest of everything fed, once the thread has hashed it all; an error if the
    /// thread died on the way (the bytes it had are gone).
    pub fn finish(mut self) -> io::Result<Digest> {
        if let Some(h) = self.inline.take() {
            return Ok(h.finish());
        }
        if !self.pending.is_empty() {
            self.hand_over();
        }
        self.tx = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(h)) if !self.lost => Ok(h.finish()),
            _ => Err(io::Error::other("the hashing thread died")),
        }
    }
}

impl Default for BackgroundSha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl io::Write for BackgroundSha256 {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Docker's chain IDs: `chain[0] = diff[0]`, `chain[n] = sha256(chain[n-1] + " " + diff[n])`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => *d,
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, ok: bool) {
        assert_eq!(input.parse::<Digest>().is_ok(), ok, "{input}");
    }

    #[test]
    fn background_hashing_matches_inline_hashing() {
        // Several batches, a partial one, odd-sized writes crossing batch boundaries.
        let data: Vec<u8> = (0..(INLINE as usize + 3 * BATCH + 12_345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for step in [7usize, 4096, 777_777, BATCH, data.len()] {
            let mut b = BackgroundSha256::new();
            for c in data.chunks(step) {
                b.update(c);
            }
            assert_eq!(b.len(), data.len() as u64);
            assert!(b.worker.is_some() && b.inline.is_none(), "writes of {step}: no thread");
            assert_eq!(b.finish().unwrap(), Digest::of(&data), "writes of {step}");
        }
        assert_eq!(BackgroundSha256::new().finish().unwrap(), Digest::of(b""));
        // Small streams never leave the caller's thread.
        let mut small = BackgroundSha256::new();
        small.update(b"abc");
        assert!(small.worker.is_none());
        assert_eq!(small.finish().unwrap(), Digest::of(b"abc"));
    }

    #[test]
    fn parse_cases() {
        let hex = "a".repeat(64);
        check(&format!("sha256:{hex}"), true);
        check(&format!("sha256:{}", "A".repeat(64)), false);
        check(&format!("sha512:{hex}"), false);
        check("sha256:../../x", false);
        check(&format!("sha256:{}", "a".repeat(63)), false);
        check(&hex, false);
        check("", false);
    }

    #[test]
    fn empty_sha256() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn chain_id_matches_docker() {
        // Docker's layer package test vector (layer/layer_test.go, TestChainID-style):
        // chain of one layer is the diff ID itself.
        let a: Digest = format!("sha256:{}", "1".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "2".repeat(64)).parse().unwrap();
        let c = chain_ids(&[a, b]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::of(format!("{a} {b}").as_bytes()));
    }
}
