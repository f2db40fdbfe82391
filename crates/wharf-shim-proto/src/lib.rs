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

use serde::{Deserialize, Serialize};

/// Stream number of stdout in a frame.
pub const STREAM_STDOUT: u8 = 1;
/// Stream number of stderr in a frame.
pub const STREAM_STDERR: u8 = 2;
/// The last frame of an exec stream: a 4-byte big-endian exit code.
pub const STREAM_EXIT: u8 = 255;

/// The file in a container's bundle on which a shim holds an exclusive `flock(2)` for its
/// whole life. A shim answers its waiters before it removes the container's cgroups and
/// runtime state, so the daemon takes this lock (and lets it go) before it starts the container
/// again or clears that state itself.
pub const LOCK_FILE: &str = "shim.lock";

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
        resources: serde_json::Value,
    },
    /// Start a process in the running container; the connection streams its stdio.
    Exec {
        /// The exec's ID.
        id: String,
        /// The OCI `process` object.
        process: serde_json::Value,
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

    /// A failure.
    pub fn err(msg: impl Into<String>) -> Self {
        Reply {
            error: Some(msg.into()),
            ..Self::default()
        }
    }

    /// The reply as one JSON line.
    pub fn line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("reply serialises");
        v.push(b'\n');
        v
    }
}

/// A stream frame: `[stream, 0, 0, 0, len u32 big-endian]` then the data, as Docker frames
/// non-TTY streams.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&[stream, 0, 0, 0]);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// Split one complete frame off the front of `buf`: `(stream, payload, bytes used)`.
pub fn parse_frame(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    if buf.len() < 8 {
        return None;
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if buf.len() < 8 + len {
        return None;
    }
    Some((buf[0], &buf[8..8 + len], 8 + len))
}

/// Docker's detach keys (`ctrl-p,ctrl-q` when `None`): `ctrl-<letter>` and the control
/// punctuation, or single characters, as the daemon and the CLI both read them.
pub fn detach_keys(spec: Option<&str>) -> Vec<u8> {
    spec.unwrap_or("ctrl-p,ctrl-q")
        .split(',')
        .filter_map(|k| {
            let k = k.trim();
            if let Some(c) = k.strip_prefix("ctrl-") {
                match c.bytes().next()? {
                    c @ b'a'..=b'z' => Some(c - b'a' + 1),
                    b'@' => Some(0),
                    b'[' => Some(27),
                    b'\\' => Some(28),
                    b']' => Some(29),
                    b'^' => Some(30),
                    b'_' => Some(31),
                    _ => None,
                }
            } else if k.len() == 1 {
                k.bytes().next()
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut b = frame(STREAM_STDERR, b"oops");
        b.extend(frame(STREAM_STDOUT, b""));
        let (s, p, n) = parse_frame(&b).unwrap();
        assert_eq!((s, p, n), (STREAM_STDERR, &b"oops"[..], 12));
        let (s, p, n2) = parse_frame(&b[n..]).unwrap();
        assert_eq!((s, p.len(), n2), (STREAM_STDOUT, 0, 8));
        assert!(parse_frame(&b[..7]).is_none());
        assert!(parse_frame(&b[..11]).is_none());
    }

    #[test]
    fn requests_are_tagged() {
        let r: Request = serde_json::from_str(r#"{"op":"kill","signal":9,"all":false}"#).unwrap();
        assert!(matches!(r, Request::Kill { signal: 9, all: false }));
        let line = serde_json::to_string(&Request::Wait).unwrap();
        assert_eq!(line, r#"{"op":"wait"}"#);
    }

    #[test]
    fn detach_key_specs() {
        assert_eq!(detach_keys(None), vec![16, 17]);
        assert_eq!(detach_keys(Some("ctrl-a,x")), vec![1, b'x']);
        assert_eq!(detach_keys(Some("ctrl-x,xy")), vec![24]);
    }
}
