//! [`RecordingRuntime`]: the fake runtime. It records every request and plays each container's
//! process as a shim would: `create` makes it (a PID, not yet running), `Start` runs it, a
//! `Kill` ends it with 128 + the signal unless the test said it ignores that signal, and
//! [`RecordingRuntime::exit`] ends it with a code; every end is told, as the shim's `Wait`
//! reply, to the connections waiting for it. The connections are real socket pairs, so the
//! engine reads them exactly as it reads a shim's.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

use tokio::io::BufReader;
use wharf_shim_proto::{ExitInfo, Reply, Request};

use super::{BoxFuture, Runtime};
use crate::error::{ContainerError, Result};
use crate::shim::ShimStream;

/// One container's process, as the fake plays it.
#[derive(Debug, Default)]
struct Proc {
    running: bool,
    /// The ends of the `Wait` connections still waiting.
    waiters: Vec<std::os::unix::net::UnixStream>,
    /// How it ended, for a `Wait` that comes after.
    exited: Option<ExitInfo>,
}

/// A fake runtime: records requests and plays processes (see the module's doc).
#[derive(Debug, Default)]
pub struct RecordingRuntime {
    /// Every request, with its container, in order.
    pub requests: Mutex<Vec<(String, Request)>>,
    /// Every `create`, by container, in order.
    pub created: Mutex<Vec<String>>,
    /// The runtime spec each container was last created with.
    pub specs: Mutex<HashMap<String, oci_spec::runtime::Spec>>,
    /// Replies to give to `call`s instead of playing them, in order.
    pub replies: Mutex<VecDeque<Result<Reply>>>,
    /// Signals the processes ignore (a process that does not stop on SIGTERM).
    pub ignores: Mutex<Vec<i32>>,
    /// `create` fails with this message (the command is not found, say).
    pub create_fails: Mutex<Option<String>>,
    procs: Mutex<HashMap<String, Proc>>,
    next_pid: AtomicI32,
}

impl RecordingRuntime {
    /// Ends container `id`'s process with `code`, as if it exited.
    pub fn exit(&self, id: &str, code: i32) {
        let mut procs = self.procs.lock().expect("procs");
        let p = procs.entry(id.to_string()).or_default();
        if !p.running {
            return;
        }
        p.running = false;
        let info = ExitInfo {
            exit_code: code,
            oom_killed: false,
            finished_at: String::new(),
        };
        let mut line = serde_json::to_vec(&Reply {
            exit: Some(info.clone()),
            ..Reply::ok()
        })
        .expect("reply serialises");
        line.push(b'\n');
        for mut w in p.waiters.drain(..) {
            let _ = w.write_all(&line);
        }
        p.exited = Some(info);
    }

    /// Takes over container `id`'s process as running (its shim outlived the daemon that
    /// started it); a container the fake never created or took over has no runtime to reach.
    pub fn adopt(&self, id: &str) {
        self.procs.lock().expect("procs").insert(
            id.to_string(),
            Proc {
                running: true,
                ..Proc::default()
            },
        );
    }

    /// Whether container `id`'s process runs.
    pub fn running(&self, id: &str) -> bool {
        self.procs.lock().expect("procs").get(id).is_some_and(|p| p.running)
    }

    /// The requests made of container `id`, in order.
    pub fn requests_of(&self, id: &str) -> Vec<Request> {
        self.requests
            .lock()
            .expect("requests")
            .iter()
            .filter(|(c, _)| c == id)
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn record(&self, id: &str, req: &Request) {
        self.requests
            .lock()
            .expect("requests")
            .push((id.to_string(), req.clone()));
    }

    /// A connection: the engine's end, and ours.
    fn pair() -> Result<(ShimStream, std::os::unix::net::UnixStream)> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        theirs.set_nonblocking(true)?;
        Ok((BufReader::new(tokio::net::UnixStream::from_std(theirs)?), ours))
    }

    fn unreachable(&self, id: &str) -> Result<()> {
        if !self.procs.lock().expect("procs").contains_key(id) {
            return Err(ContainerError::Internal(format!(
                "connecting to shim of {id}: No such file or directory (os error 2)"
            )));
        }
        Ok(())
    }
}

impl Runtime for RecordingRuntime {
    fn create<'a>(
        &'a self,
        id: &'a str,
        _bundle: &'a Path,
        spec: &'a oci_spec::runtime::Spec,
        _shim: &'a wharf_shim_proto::ShimConfig,
    ) -> BoxFuture<'a, Result<i32>> {
        self.created.lock().expect("created").push(id.to_string());
        self.specs.lock().expect("specs").insert(id.to_string(), spec.clone());
        let r = match self.create_fails.lock().expect("create_fails").clone() {
            Some(msg) => Err(ContainerError::Runtime {
                kind: wharf_shim_proto::FailureKind::NotFound,
                message: msg,
            }),
            None => {
                self.procs
                    .lock()
                    .expect("procs")
                    .insert(id.to_string(), Proc::default());
                Ok(1000 + self.next_pid.fetch_add(1, Ordering::SeqCst))
            }
        };
        Box::pin(async move { r })
    }

    fn call<'a>(&'a self, id: &'a str, req: Request) -> BoxFuture<'a, Result<Reply>> {
        self.record(id, &req);
        let scripted = self.replies.lock().expect("replies").pop_front();
        let r = match scripted {
            Some(r) => r,
            None => self.unreachable(id).map(|_| {
                match req {
                    Request::Start => {
                        if let Some(p) = self.procs.lock().expect("procs").get_mut(id) {
                            p.running = true;
                        }
                    }
                    Request::Kill { signal, .. } if !self.ignores.lock().expect("ignores").contains(&signal) => {
                        self.exit(id, 128 + signal);
                    }
                    _ => {}
                }
                Reply::ok()
            }),
        };
        Box::pin(async move { r })
    }

    fn open<'a>(&'a self, id: &'a str, req: Request) -> BoxFuture<'a, Result<(Reply, ShimStream)>> {
        self.record(id, &req);
        Box::pin(async move {
            self.unreachable(id)?;
            // The stream ends at once: the fake's processes write nothing.
            let (theirs, _ours) = Self::pair()?;
            Ok((Reply::ok(), theirs))
        })
    }

    fn send<'a>(&'a self, id: &'a str, req: Request) -> BoxFuture<'a, Result<ShimStream>> {
        self.record(id, &req);
        Box::pin(async move {
            self.unreachable(id)?;
            let (theirs, ours) = Self::pair()?;
            let mut procs = self.procs.lock().expect("procs");
            let p = procs.entry(id.to_string()).or_default();
            match (&p.exited, p.running) {
                (Some(_), false) if !matches!(req, Request::Wait) => {}
                (_, true) => p.waiters.push(ours),
                // Not running: a `Wait` is answered with how it ended, or at its next end.
                (Some(x), false) => {
                    let mut line = serde_json::to_vec(&Reply {
                        exit: Some(x.clone()),
                        ..Reply::ok()
                    })
                    .expect("reply serialises");
                    line.push(b'\n');
                    let mut ours = ours;
                    let _ = ours.write_all(&line);
                }
                (None, false) => p.waiters.push(ours),
            }
            Ok(theirs)
        })
    }

    fn released<'a>(&'a self, _id: &'a str, _bundle: &'a Path) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}
