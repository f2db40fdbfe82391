//! Bridges between hyper's async bodies and the blocking readers and writers the image
//! service uses: a request body becomes an [`io::Read`], and a writer feeds a chunked response.
//!
//! Every request body reaches the routes as a [`ReqBody`], fed by a task that owns hyper's
//! body ([`pump`]). When a route answers without reading the whole body (an error, a route
//! that does not exist), that task reads on and throws the rest away, up to [`DRAIN_LIMIT`],
//! so the client, still sending, gets the answer instead of a reset connection (`write:
//! broken pipe` on its side). Bodies read into memory are copied into one buffer as they
//! arrive ([`collect`]): a body sent in one-byte chunks costs its size, not a chunk record per
//! byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

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

/// How much of an unread request body is read and thrown away after the answer, so the
/// client can finish sending; past it the connection is closed.
pub const DRAIN_LIMIT: u64 = 16 << 20;

/// A request body as the routes see it: frames handed over by the task that reads hyper's
/// body (see the module's doc).
#[derive(Debug)]
pub struct ReqBody {
    rx: Option<mpsc::Receiver<Result<Frame<Bytes>, hyper::Error>>>,
}

impl ReqBody {
    /// A body with nothing in it.
    pub fn empty() -> ReqBody {
        ReqBody { rx: None }
    }
}

impl hyper::body::Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.rx {
            None => Poll::Ready(None),
            Some(rx) => rx.poll_recv(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rx.is_none()
    }
}

/// Frames of data smaller than this are gathered into one before they are handed over, as
/// long as more is already there or arrives within [`GATHER_WAIT`]: a body sent in small
/// chunks costs a copy, not a hand-over (a wake-up of the reading thread) per chunk. A 328 MB
/// `import` arrived in 25,800 hand-overs of 12.7 KB on average before the wait.
const GATHER: usize = 1 << 20;
/// A frame at least this large, with nothing gathered before it, is handed over as it is.
const UNCOPIED: usize = 64 << 10;
/// How long gathered data below [`GATHER`] waits for more before it is handed over.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Hand `body` to the routes through a task that keeps reading it (and discarding, up to
/// [`DRAIN_LIMIT`]) once the route has dropped its end.
pub fn pump(body: Incoming) -> ReqBody {
    use futures_util::FutureExt as _;
    use hyper::body::Body as _;
    if body.is_end_stream() {
        return ReqBody::empty();
    }
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut body = body;
        let mut drained: Option<u64> = None;
        let mut pending = bytes::BytesMut::new();
        loop {
            // What is ready now joins what came before. When nothing is, a little gathered
            // data waits a moment for more (a fast sender's next write is on its way), then
            // goes; a sender that pauses gets its data handed over within that moment.
            let next = match body.frame().now_or_never() {
                Some(f) => f,
                None if !pending.is_empty() => {
                    if pending.len() < GATHER {
                        if let Ok(f) = tokio::time::timeout(GATHER_WAIT, body.frame()).await {
                            match f {
                                Some(f) => {
                                    let more = f.map(|f| f.into_data().unwrap_or_default());
                                    match more {
                                        Ok(d) => pending.extend_from_slice(&d),
                                        Err(e) => {
                                            if drained.is_none() {
                                                let _ = tx.send(Err(e)).await;
                                            }
                                            return;
                                        }
                                    }
                                    if pending.len() < GATHER {
                                        continue;
                                    }
                                }
                                None => break,
                            }
                        }
                    }
                    let data = Ok(Frame::data(pending.split().freeze()));
                    if drained.is_none() && tx.send(data).await.is_err() {
                        drained = Some(0);
                    }
                    continue;
                }
                None => body.frame().await,
            };
            let Some(frame) = next else { break };
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    if drained.is_none() {
                        let _ = tx.send(Err(e)).await;
                    }
                    return;
                }
            };
            match (frame.into_data(), &mut drained) {
                (Ok(d), Some(n)) => {
                    *n += d.len() as u64;
                    if *n > DRAIN_LIMIT {
                        return;
                    }
                }
                (Ok(d), None) if pending.is_empty() && d.len() >= UNCOPIED => {
                    // Large frames go as they are, uncopied.
                    if tx.send(Ok(Frame::data(d))).await.is_err() {
                        drained = Some(0);
                    }
                }
                (Ok(d), None) => {
                    pending.extend_from_slice(&d);
                    if pending.len() >= GATHER && tx.send(Ok(Frame::data(pending.split().freeze()))).await.is_err() {
                        drained = Some(0);
                    }
                }
                // Trailers: nothing a route reads.
                (Err(_), _) => {}
            }
        }
        if drained.is_none() && !pending.is_empty() {
            let _ = tx.send(Ok(Frame::data(pending.freeze()))).await;
        }
    });
    ReqBody { rx: Some(rx) }
}

/// A blocking reader over a request body's frames as the pump hands them over, or over chunks
/// a task sends.
pub struct BodyReader {
    src: Source,
    cur: Bytes,
}

enum Source {
    /// The pump's channel, read straight from the blocking thread (no task in between).
    Frames(Option<mpsc::Receiver<Result<Frame<Bytes>, hyper::Error>>>),
    Chunks(mpsc::Receiver<io::Result<Bytes>>),
}

impl BodyReader {
    /// The next piece of data; `None` at the end.
    fn next(&mut self) -> io::Result<Option<Bytes>> {
        match &mut self.src {
            Source::Chunks(rx) => rx.blocking_recv().transpose(),
            Source::Frames(None) => Ok(None),
            Source::Frames(Some(rx)) => loop {
                match rx.blocking_recv() {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(io::Error::other(e)),
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            return Ok(Some(d));
                        }
                    }
                }
            },
        }
    }
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.next()? {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Turn an incoming body into a blocking reader. It must be read on a blocking thread (its
/// reads wait on the pump's channel).
pub fn reader(body: ReqBody) -> BodyReader {
    BodyReader {
        src: Source::Frames(body.rx),
        cur: Bytes::new(),
    }
}

/// A blocking reader over chunks that a task sends (a download for `import`).
pub fn reader_from(rx: mpsc::Receiver<io::Result<Bytes>>) -> BodyReader {
    BodyReader {
        src: Source::Chunks(rx),
        cur: Bytes::new(),
    }
}

/// Read a whole request body into memory, refusing more than `limit` bytes. Each frame is
/// copied into one growing buffer and let go at once (see the module's doc).
pub async fn collect(mut body: ReqBody, limit: usize) -> Result<Bytes, crate::error::ApiError> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| crate::error::ApiError::invalid(format!("reading request body: {e}")))?;
        if let Ok(d) = frame.into_data() {
            if out.len() + d.len() > limit {
                return Err(crate::error::ApiError::new(
                    wharf_reference::ErrorKind::TooLarge,
                    format!("request body is larger than {limit} bytes"),
                ));
            }
            out.extend_from_slice(&d);
        }
    }
    Ok(out.freeze())
}

/// [`collect`] for the routes that take JSON: as dockerd, a body must say it is JSON
/// (`Content-Type: application/json`, parameters allowed); only an empty body may say nothing.
pub async fn collect_json(req: hyper::Request<ReqBody>, limit: usize) -> Result<Bytes, crate::error::ApiError> {
    let ct = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let empty = hyper::body::Body::is_end_stream(req.body());
    let mime = ct.split(';').next().unwrap_or("").trim();
    let acceptable = mime.eq_ignore_ascii_case("application/json") || (ct.is_empty() && empty);
    if !acceptable {
        return Err(crate::error::ApiError::invalid(format!(
            "unsupported Content-Type header ({ct}): must be 'application/json'"
        )));
    }
    collect(req.into_body(), limit).await
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
