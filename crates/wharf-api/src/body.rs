//! Bridges between hyper's async bodies and the blocking readers and writers the image
//! service uses: a request body becomes an [`io::Read`], and a writer feeds a chunked response.

use std::io;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

/// The response body type every route returns.
pub type Body = BoxBody<Bytes, io::Error>;

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// A blocking reader over a request body. Reading stops with an error once more than `limit`
/// bytes arrived (`None`: no limit).
pub struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Turn an incoming body into a blocking reader (pumped by a task).
pub fn reader(body: Incoming) -> BodyReader {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let item = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => Ok(d),
                    Err(_) => continue,
                },
                Err(e) => Err(io::Error::other(e)),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    BodyReader { rx, cur: Bytes::new() }
}

/// A blocking reader over chunks that a task sends (a download for `import`).
pub fn reader_from(rx: mpsc::Receiver<io::Result<Bytes>>) -> BodyReader {
    BodyReader { rx, cur: Bytes::new() }
}

/// Read a whole request body into memory, refusing more than `limit` bytes.
pub async fn collect(body: Incoming, limit: usize) -> Result<Bytes, crate::error::ApiError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(crate::error::ApiError::new(
                    wharf_reference::ErrorKind::TooLarge,
                    format!("request body is larger than {limit} bytes"),
                ))
            } else {
                Err(crate::error::ApiError::invalid(format!("reading request body: {e}")))
            }
        }
    }
}

/// A blocking writer whose bytes become a chunked response body.
pub struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    /// Send an error to the client mid-stream (it sees a truncated body).
    pub fn fail(&mut self, e: io::Error) {
        let _ = self.tx.blocking_send(Err(e));
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 256 << 10 {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = io::Write::flush(self);
    }
}

/// A writer and the streaming body it feeds.
pub fn channel() -> (ChannelWriter, Body) {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let stream = tokio_stream(rx).map(|r| r.map(Frame::data));
    (
        ChannelWriter { tx, buf: Vec::new() },
        BodyExt::boxed(StreamBody::new(stream)),
    )
}

fn tokio_stream(mut rx: mpsc::Receiver<io::Result<Bytes>>) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A streaming body fed by a channel of chunks.
pub fn from_receiver(rx: mpsc::Receiver<io::Result<Bytes>>) -> Body {
    let stream = tokio_stream(rx).map(|r| r.map(Frame::data));
    BodyExt::boxed(StreamBody::new(stream))
}
