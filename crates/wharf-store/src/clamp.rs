//! Reproducible layers: a writer that passes a tar stream through with every time clamped to
//! an epoch (`SOURCE_DATE_EPOCH`), as BuildKit's `rewrite-timestamp` does: a modification time
//! after the epoch becomes the epoch, and a GNU header's access and change times (which say
//! when the build ran, not what it made) become the entry's modification time. Names, modes,
//! owners and contents pass unchanged, so a layer's digest depends on what is in it and the
//! epoch only.

use std::io::{self, Write};

/// A tar stream's writer that clamps times to `epoch` on the way to `inner`.
pub struct ClampTimes<W: Write> {
    inner: W,
    epoch: u64,
    /// A block not yet whole.
    block: Vec<u8>,
    /// Data bytes (whole blocks) still to pass before the next header.
    data: u64,
}

impl<W: Write> ClampTimes<W> {
    /// Clamps what is written to `inner` to `epoch` (seconds since 1970).
    pub fn new(inner: W, epoch: u64) -> ClampTimes<W> {
        ClampTimes {
            inner,
            epoch,
            block: Vec::with_capacity(512),
            data: 0,
        }
    }

    /// The writer, once the stream is done (ending inside an entry is an error: no tar ends so).
    pub fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() || self.data > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a tar stream ended inside an entry",
            ));
        }
        self.inner.flush()?;
        Ok(self.inner)
    }

    fn header(&mut self) -> io::Result<()> {
        let mut h = tar::Header::new_old();
        h.as_mut_bytes().copy_from_slice(&self.block);
        if self.block.iter().all(|b| *b == 0) {
            return self.inner.write_all(&self.block);
        }
        let size = h.entry_size()?;
        self.data = size.div_ceil(512) * 512;
        let mtime = h.mtime()?.min(self.epoch);
        h.set_mtime(mtime);
        if let Some(g) = h.as_gnu_mut() {
            if g.atime().is_ok_and(|t| t != 0) {
                g.set_atime(mtime);
            }
            if g.ctime().is_ok_and(|t| t != 0) {
                g.set_ctime(mtime);
            }
        }
        h.set_cksum();
        self.inner.write_all(h.as_bytes())
    }
}

impl<W: Write> Write for ClampTimes<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            if self.data > 0 && self.block.is_empty() {
                // Contents pass as they are.
                let take = (self.data.min(buf.len() as u64)) as usize;
                self.inner.write_all(&buf[..take])?;
                self.data -= take as u64;
                buf = &buf[take..];
                continue;
            }
            let take = (512 - self.block.len()).min(buf.len());
            self.block.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.block.len() == 512 {
                self.header()?;
                self.block.clear();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(b: &mut tar::Builder<Vec<u8>>, name: &str, mtime: u64, body: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o640);
        h.set_mtime(mtime);
        h.as_gnu_mut().unwrap().set_atime(mtime + 5);
        h.as_gnu_mut().unwrap().set_ctime(mtime + 7);
        b.append_data(&mut h, name, body).unwrap();
    }

    #[test]
    fn times_after_the_epoch_clamp_and_nothing_else_changes() {
        let mut b = tar::Builder::new(Vec::new());
        entry(&mut b, "old", 100, b"kept");
        entry(&mut b, &format!("{}/new", "d".repeat(150)), 2_000_000_000, &[7u8; 1000]);
        let raw = b.into_inner().unwrap();
        // Written in awkward pieces, as a diff's writer may.
        let mut c = ClampTimes::new(Vec::new(), 1_000);
        for piece in raw.chunks(77) {
            c.write_all(piece).unwrap();
        }
        let out = c.finish().unwrap();
        assert_eq!(out.len(), raw.len());
        let mut ar = tar::Archive::new(out.as_slice());
        let got: Vec<(String, u64, u64, Vec<u8>)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut body = Vec::new();
                io::Read::read_to_end(&mut e, &mut body).unwrap();
                let atime = h.as_gnu().unwrap().atime().unwrap();
                (e.path().unwrap().display().to_string(), h.mtime().unwrap(), atime, body)
            })
            .collect();
        assert_eq!(got[0], ("old".into(), 100, 100, b"kept".to_vec()));
        assert_eq!(got[1].0, format!("{}/new", "d".repeat(150)));
        assert_eq!((got[1].1, got[1].2), (1_000, 1_000));
        assert_eq!(got[1].3, vec![7u8; 1000]);
        // A stream cut inside a block is an error, never a quiet short layer.
        let mut c = ClampTimes::new(Vec::new(), 1_000);
        c.write_all(&raw[..700]).unwrap();
        assert!(c.finish().is_err());
    }
}
