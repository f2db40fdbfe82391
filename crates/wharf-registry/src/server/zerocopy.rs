//! Blobs leave by `sendfile(2)`: the file's pages go from the page cache to the socket without
//! passing through the registry's memory. A blob's answer is a read-only mapping of the file
//! (`Mapped`), registered with where it came from; hyper queues it untouched, and the plain
//! connection (`ZeroCopy`) recognises a registered mapping among the slices hyper writes and
//! sends that part with `sendfile` from the file instead, corked behind the headers with
//! `MSG_MORE`. The mapping's pages are never read on this path, so a pull costs neither a copy
//! nor resident memory; anything else that read the body would read the same bytes through the
//! mapping, so the answer is right either way (TLS connections are given the piece stream of
//! `blobs` instead, so that rustls does not make the file's pages resident).
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Where a registered mapping's bytes lie: its length, its file and the file offset of its start.
struct Region {
    len: usize,
    file: Arc<File>,
    offset: u64,
}

/// Every live mapping of a blob, by start address. An address is here only while its mapping
/// exists (a mapping leaves before it is unmapped), so heap memory never matches.
static REGIONS: Mutex<BTreeMap<usize, Region>> = Mutex::new(BTreeMap::new());

fn regions() -> std::sync::MutexGuard<'static, BTreeMap<usize, Region>> {
    REGIONS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A read-only mapping of `len` bytes of a blob file from `offset`, registered while it lives.
struct Mapped {
    map: memmap2::Mmap,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        regions().remove(&(self.map.as_ptr() as usize));
    }
}

/// `len` (> 0) bytes of `file` from `offset`, as bytes a [`ZeroCopy`] connection sends from
/// the file.
pub fn map(file: File, offset: u64, len: u64) -> io::Result<Bytes> {
    let len = usize::try_from(len).map_err(io::Error::other)?;
    // SAFETY: the file is a committed blob: written under a temporary name, verified, renamed
    // into place and never written, truncated or reopened for writing afterwards (GC unlinks,
    // which leaves the mapping's pages valid), so the mapped bytes cannot change or vanish
    // while the mapping lives.
    let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(&file)? };
    let start = map.as_ptr() as usize;
    regions().insert(
        start,
        Region {
            len,
            file: Arc::new(file),
            offset,
        },
    );
    Ok(Bytes::from_owner(Mapped { map }))
}

/// The file and file offset behind a slice that lies wholly in a registered mapping.
fn behind(s: &[u8]) -> Option<(Arc<File>, u64)> {
    if s.is_empty() {
        return None;
    }
    let addr = s.as_ptr() as usize;
    let all = regions();
    let (start, r) = all.range(..=addr).next_back()?;
    (addr + s.len() <= start + r.len).then(|| (r.file.clone(), r.offset + (addr - start) as u64))
}

/// A plain TCP connection that sends registered mappings with `sendfile`.
#[derive(Debug)]
pub struct ZeroCopy(pub TcpStream);

impl ZeroCopy {
    /// Sends up to `len` bytes of `file` from `offset`.
    fn poll_sendfile(&self, cx: &mut Context<'_>, file: &File, offset: u64, len: usize) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            let mut off = offset;
            match self.0.try_io(Interest::WRITABLE, || {
                Ok(rustix::fs::sendfile(self.0.as_fd(), file.as_fd(), Some(&mut off), len)?)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                out => return Poll::Ready(out),
            }
        }
    }

    /// Writes plain slices that a mapping follows, telling the kernel more is coming.
    fn poll_send_more(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_io(Interest::WRITABLE, || {
                let mut space = rustix::net::SendAncillaryBuffer::default();
                Ok(rustix::net::sendmsg(
                    self.0.as_fd(),
                    bufs,
                    &mut space,
                    rustix::net::SendFlags::MORE,
                )?)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                out => return Poll::Ready(out),
            }
        }
    }
}

impl AsyncRead for ZeroCopy {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopy {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().enumerate().find_map(|(i, b)| behind(b).map(|f| (i, f)));
        match first {
            None => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
            Some((i, (file, offset))) if bufs[..i].iter().all(|b| b.is_empty()) => {
                self.poll_sendfile(cx, &file, offset, bufs[i].len())
            }
            Some((i, _)) => self.poll_send_more(cx, &bufs[..i]),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn blob(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b");
        File::create(&p).unwrap().write_all(bytes).unwrap();
        (dir, File::open(&p).unwrap())
    }

    #[test]
    fn a_mapping_is_known_by_any_slice_of_it_while_it_lives() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let (_d, f) = blob(&data);
        let b = map(f, 4097, 10_000).unwrap();
        assert_eq!(&b[..], &data[4097..14_097], "the mapping holds the file's bytes");
        let (_, off) = behind(&b).expect("the whole mapping");
        assert_eq!(off, 4097);
        let (_, off) = behind(&b[123..456]).expect("a slice of it");
        assert_eq!(off, 4097 + 123);
        let past = b.as_ptr() as usize;
        let heap = vec![0u8; 64];
        assert!(behind(&heap).is_none(), "heap memory is never a mapping");
        drop(b);
        assert!(!regions().contains_key(&past), "a dropped mapping is forgotten");
    }

    #[tokio::test]
    async fn a_connection_sends_mapped_and_plain_bytes_in_order() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let (_d, f) = blob(&data);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut c = ZeroCopy(TcpStream::connect(addr).await.unwrap());
        let body = map(f, 5, 2_999_990).unwrap();
        let head = b"head\r\n".to_vec();
        let (mut a, mut b) = (&head[..], &body[..]);
        while !a.is_empty() || !b.is_empty() {
            let n = c.write_vectored(&[IoSlice::new(a), IoSlice::new(b)]).await.unwrap();
            let from_a = n.min(a.len());
            a = &a[from_a..];
            b = &b[n - from_a..];
        }
        c.write_all(b"tail").await.unwrap();
        c.shutdown().await.unwrap();
        let got = reader.await.unwrap();
        let mut want = head.clone();
        want.extend_from_slice(&data[5..2_999_995]);
        want.extend_from_slice(b"tail");
        assert!(got == want, "{} bytes received, {} expected", got.len(), want.len());
    }
}
