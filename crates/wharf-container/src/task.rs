//! A process of a container as its callers see it: typed output, a stdin, and for an exec its
//! exit. Attach, exec, the health probe (and later the builder's steps and the CRI's
//! `ExecSync`) all read processes through a [`Task`]; only this module reads the shim's
//! stream frames.
//!
//! A reader task owns the shim connection's read side. It hands output on in order through a
//! bounded channel (a slow reader slows the process, as a pipe does), and for an exec it
//! records the exit the shim sends at the end before the output ends, so whoever sees the end
//! finds the exit code already recorded. When the caller stops reading, an exec's output is
//! still read (and dropped) until its exit, which has to be recorded; an attach's connection
//! is closed at once (its output goes on to the container's log).

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use wharf_shim_proto::{parse_frame, STREAM_EXIT, STREAM_STDERR};

use crate::shim::ShimStream;

/// A chunk a process wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// To stdout (everything, for a process with a terminal).
    Stdout(Bytes),
    /// To stderr.
    Stderr(Bytes),
}

/// What becomes of a task whose output nobody reads any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unread {
    /// Keep reading until the exit (an exec: its exit must be recorded).
    Drain,
    /// Close the connection (an attach).
    Close,
}

/// A process's stdin.
pub struct TaskStdin(WriteHalf<ShimStream>);

impl TaskStdin {
    /// Writes `data` to the process.
    pub async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.write_all(data).await
    }
}

/// A running process of a container.
pub struct Task {
    /// Its output, in order; ends when the process's output ends.
    pub output: mpsc::Receiver<Output>,
    /// Its stdin.
    pub stdin: TaskStdin,
    exit: oneshot::Receiver<Option<i32>>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").finish_non_exhaustive()
    }
}

impl Task {
    /// Takes over a shim stream; `on_exit` is told the exit code the shim sends (or `None` if
    /// the stream ends without one) before the output ends.
    pub(crate) fn spawn(
        stream: ShimStream,
        unread: Unread,
        on_exit: impl FnOnce(Option<i32>) + Send + 'static,
    ) -> Task {
        let (r, w) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel(16);
        let (exit_tx, exit_rx) = oneshot::channel();
        tokio::spawn(async move {
            let code = read(r, tx, unread).await;
            on_exit(code);
            let _ = exit_tx.send(code);
        });
        Task {
            output: rx,
            stdin: TaskStdin(w),
            exit: exit_rx,
        }
    }

    /// The exit code, once the process has ended (`None`: the stream ended without one, as
    /// an attach's does, or the shim went away).
    pub async fn wait(self) -> Option<i32> {
        drop(self.output);
        self.exit.await.ok().flatten()
    }
}

/// Reads frames until the stream ends: output to `tx` while someone listens; the exit code
/// if the shim sent one.
async fn read(mut r: ReadHalf<ShimStream>, tx: mpsc::Sender<Output>, unread: Unread) -> Option<i32> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 32 * 1024];
    let mut tx = Some(tx);
    let mut code = None;
    loop {
        while let Some((stream, payload, used)) = parse_frame(&buf) {
            if stream == STREAM_EXIT {
                if let Ok(b) = <[u8; 4]>::try_from(payload) {
                    code = Some(i32::from_be_bytes(b));
                }
            } else if let Some(t) = &tx {
                let data = Bytes::copy_from_slice(payload);
                let out = if stream == STREAM_STDERR {
                    Output::Stderr(data)
                } else {
                    Output::Stdout(data)
                };
                if t.send(out).await.is_err() {
                    tx = None;
                    if unread == Unread::Close {
                        return code;
                    }
                }
            }
            buf.drain(..used);
        }
        let n = match &tx {
            // Nobody listens: only the end matters, and a close from the listener's side.
            Some(t) => tokio::select! {
                n = r.read(&mut chunk) => n,
                _ = t.closed() => {
                    tx = None;
                    if unread == Unread::Close {
                        return code;
                    }
                    continue;
                }
            },
            None => r.read(&mut chunk).await,
        };
        match n {
            Ok(0) | Err(_) => return code,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
