//! The wire protocol between `wharfd` and `wharf-shim`.
//!
//! The daemon starts one shim per container with the path of a [`ShimConfig`] file. The shim
//! prints one [`Reply`] line on its stdout once the container exists (its init waits for
//! `start`), then serves a unix socket. Every connection to that socket begins with one
//! [`Request`] as a JSON line and gets one [`Reply`] line back. `wait` replies when the
//! container has exited. `attach` and `exec` then turn the connection into a stream: the shim
//! sends [`frame`]s (stdout, stderr, and for exec a final [`STREAM_EXIT`] frame carrying the
//! exit code), the daemon sends raw stdin bytes; closing stdin is an explicit `close_stdin` request, so a
//! detaching client never closes it.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

pub use wharf_units::stdcopy::{detach_keys, frame, parse_frame, STREAM_STDERR, STREAM_STDOUT};
/// The last frame of an exec stream: a 4-byte big-endian exit code.
pub const STREAM_EXIT: u8 = 255;

/// The file in a container's bundle on which a shim holds an exclusive `flock(2)` for its
/// whole life. A shim answers its waiters before it removes the container's cgroups and
/// runtime state, so the daemon takes this lock (and lets it go) before it starts the container
/// again or clears that state itself.
pub const LOCK_FILE: &str = "shim.lock";

/// What kind of failure a shim reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The program to run does not exist (a process that never ran: exit 127, as a shell's).
    NotFound,
    /// The program exists but cannot be run: a directory, no permission (exit 126).
    CannotExecute,
    /// The container's process has ended.
    NotRunning,
    /// The container is frozen (paused, or for a commit): nothing may start in it until it
    /// is thawed (a process joining a frozen cgroup would freeze before it ran).
    Paused,
    /// The request was malformed (a bad signal, an unknown exec).
    BadRequest,
    /// Anything else.
    Internal,
}

impl FailureKind {
    /// The exit code of a process that failed to start this way, as Docker 25 records it (127
    /// as a shell's "command not found", 126 for "cannot execute"); `None` for other kinds.
    pub fn exit_code(self) -> Option<i32> {
        match self {
            FailureKind::NotFound => Some(127),
            FailureKind::CannotExecute => Some(126),
            _ => None,
        }
    }
}

/// What the daemon tells a shim when it starts it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimConfig {
    /// Container ID (also libcontainer's ID).
    pub id: String,
    /// The OCI bundle: holds `config.json`.
    pub bundle: String,
    /// libcontainer's state root (one per daemon).
    pub state_root: String,
    /// The control socket to serve.
    pub socket: String,
    /// Where the exit record is written, atomically, before the shim exits.
    pub exit_file: String,
    /// The json-file log; empty for `--log-driver none`.
    pub log_path: String,
    /// `--log-opt max-size` in bytes; 0 means unlimited.
    pub log_max_size: u64,
    /// `--log-opt max-file`.
    pub log_max_file: u32,
    /// `-t`: a pseudo-terminal instead of pipes.
    pub tty: bool,
    /// `-i`: keep a stdin pipe.
    pub open_stdin: bool,
    /// The container's cgroup path relative to each hierarchy's root (for OOM accounting).
    pub cgroup_path: String,
    /// The container's seccomp filter, compiled by the daemon: loaded by the shim right before
    /// the init and every exec'd process run. `None`: unconfined, or libcontainer loads it.
    #[serde(default)]
    pub seccomp: Option<SeccompFilter>,
}

/// A compiled seccomp filter handed to the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompFilter {
    /// A file of `struct sock_filter` records in host byte order, as libseccomp exports them.
    pub program: String,
    /// seccomp(2) `SECCOMP_FILTER_FLAG_*` bits to load it with.
    pub flags: u32,
}

/// One request on a fresh connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Let the created init run the user's process.
    Start,
    /// Send a signal to init, or to every process of the container with `all`.
    Kill {
        /// Signal number.
        signal: i32,
        /// Every process in the container's cgroup.
        all: bool,
    },
    /// Freeze the container's cgroup.
    Pause,
    /// Thaw it.
    Resume,
    /// Resize the container's (or an exec's) terminal.
    Resize {
        /// The exec, or `None` for the container.
        exec: Option<String>,
        /// Rows.
        height: u16,
        /// Columns.
        width: u16,
    },
    /// Reply once the container has exited.
    Wait,
    /// Stream the container's output (and take stdin) from now on.
    Attach {
        /// Forward bytes from the connection to the container's stdin.
        stdin: bool,
        /// Send stdout frames.
        stdout: bool,
        /// Send stderr frames.
        stderr: bool,
    },
    /// Close the stdin of the container (`StdinOnce` after the client's EOF) or of an exec.
    CloseStdin {
        /// The exec, or `None` for the container.
        exec: Option<String>,
    },
    /// Read the container's cgroup figures now.
    Stats,
    /// Apply new resource limits to the running container's cgroup.
    Update {
        /// The OCI `linux.resources` object, whole (not a difference).
        resources: Box<oci_spec::runtime::LinuxResources>,
    },
    /// Start a process in the running container; the connection streams its stdio.
    Exec {
        /// The exec's ID.
        id: String,
        /// The OCI `process` object.
        process: Box<oci_spec::runtime::Process>,
        /// Keep a stdin pipe.
        stdin: bool,
    },
}

/// The end of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit status, or 128 + signal.
    pub exit_code: i32,
    /// The kernel's OOM killer acted in the container's cgroup.
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds.
    pub finished_at: String,
}

/// The answer to a request (and the shim's first line on stdout).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    /// Set on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure `error` is, decided by the shim where it arose (so the daemon
    /// never reads the message to decide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FailureKind>,
    /// The container's (or exec's) process ID on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// For `wait`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitInfo>,
    /// For `stats`: the cgroup's figures as libcgroups reads them (CPU, memory, pids, block IO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<serde_json::Value>,
}

impl Reply {
    /// A success with nothing to say.
    pub fn ok() -> Self {
        Self::default()
    }

    /// A failure of no particular kind.
    pub fn err(msg: impl Into<String>) -> Self {
        Self::fail(FailureKind::Internal, msg)
    }

    /// A failure of the given kind.
    pub fn fail(kind: FailureKind, msg: impl Into<String>) -> Self {
        Reply {
            error: Some(msg.into()),
            kind: Some(kind),
            ..Self::default()
        }
    }

    /// The kind of this reply's failure (`Internal` when an older shim did not say).
    pub fn failure(&self) -> Option<(FailureKind, &str)> {
        self.error
            .as_deref()
            .map(|e| (self.kind.unwrap_or(FailureKind::Internal), e))
    }

    /// The reply as one JSON line.
    pub fn line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("reply serialises");
        v.push(b'\n');
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged() {
        let r: Request = serde_json::from_str(r#"{"op":"kill","signal":9,"all":false}"#).unwrap();
        assert!(matches!(r, Request::Kill { signal: 9, all: false }));
        let line = serde_json::to_string(&Request::Wait).unwrap();
        assert_eq!(line, r#"{"op":"wait"}"#);
    }
}
