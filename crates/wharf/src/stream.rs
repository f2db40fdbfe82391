//! Copying a hijacked attach or exec connection to and from the local terminal: Docker's
//! 8-byte frames split into stdout and stderr (raw bytes with a tty), stdin forwarded with a
//! half-close at its end, and the detach keys (ctrl-p ctrl-q) noticed on the way.

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
pub use wharf_units::stdcopy::detach_keys;
use wharf_units::stdcopy::{parse_frame, STREAM_STDERR};

use crate::client::Hijacked;
use crate::error::Result;

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The output ended (the process exited or the daemon closed).
    Eof,
    /// The user typed the detach keys.
    Detached,
}

/// Writes output frames (or raw bytes) to stdout/stderr as they come.
struct Demux {
    tty: bool,
    buf: Vec<u8>,
}

impl Demux {
    fn feed(&mut self, data: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        if self.tty {
            let mut o = std::io::stdout().lock();
            o.write_all(data)?;
            return o.flush();
        }
        self.buf.extend_from_slice(data);
        let mut off = 0;
        while let Some((stream, payload, used)) = parse_frame(&self.buf[off..]) {
            if stream == STREAM_STDERR {
                let mut e = std::io::stderr().lock();
                e.write_all(payload)?;
                e.flush()?;
            } else if stream < 3 {
                let mut o = std::io::stdout().lock();
                o.write_all(payload)?;
                o.flush()?;
            }
            off += used;
        }
        self.buf.drain(..off);
        Ok(())
    }
}

/// Pump the connection until the output ends or the user detaches.
pub async fn pump(h: Hijacked, tty: bool, stdin: bool, keys: &[u8]) -> Result<End> {
    let mut demux = Demux { tty, buf: Vec::new() };
    match h {
        Hijacked::Body(mut body) => {
            while let Some(f) = body.frame().await {
                if let Ok(d) = f?.into_data() {
                    demux.feed(&d)?;
                }
            }
            Ok(End::Eof)
        }
        Hijacked::Upgraded(io) => {
            let (mut rd, mut wr) = tokio::io::split(io);
            let keys = keys.to_vec();
            let input = async move {
                if !stdin {
                    return std::future::pending::<End>().await;
                }
                let mut inp = tokio::io::stdin();
                let mut buf = vec![0u8; 32 * 1024];
                let mut matched = 0usize;
                loop {
                    let n = match inp.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            // EOF: half-close so the process sees the end of its input.
                            let _ = wr.shutdown().await;
                            return std::future::pending::<End>().await;
                        }
                        Ok(n) => n,
                    };
                    if tty && !keys.is_empty() {
                        for &b in &buf[..n] {
                            if b == keys[matched] {
                                matched += 1;
                                if matched == keys.len() {
                                    let _ = wr.write_all(&buf[..n]).await;
                                    return End::Detached;
                                }
                            } else {
                                matched = usize::from(b == keys[0]);
                            }
                        }
                    }
                    if wr.write_all(&buf[..n]).await.is_err() {
                        return std::future::pending::<End>().await;
                    }
                }
            };
            let output = async {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => return Ok::<End, std::io::Error>(End::Eof),
                        Ok(n) => demux.feed(&buf[..n])?,
                    }
                }
            };
            tokio::select! {
                r = output => Ok(r?),
                d = input => Ok(d),
            }
        }
    }
}
