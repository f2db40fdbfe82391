//! The daemon's side of the shim protocol: starting a shim and talking to its socket.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use wharf_shim_proto::{Reply, Request};

use crate::error::{ContainerError, Result};

/// A connection whose request has been answered; for attach and exec it carries the stream.
pub type ShimStream = BufReader<UnixStream>;

/// Start `wharf-shim` for a container and wait for its first line: the init's PID, or why the
/// container could not be created. The shim detaches into its own session.
pub async fn spawn(shim: &Path, config: &Path, log: &Path) -> Result<i32> {
    let errlog = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut child = tokio::process::Command::new(shim)
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(errlog))
        .spawn()
        .map_err(|e| ContainerError::Internal(format!("starting {}: {e}", shim.display())))?;
    let out = child.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).await?;
    let reply: Reply = serde_json::from_str(line.trim()).map_err(|_| {
        let detail = std::fs::read_to_string(log).unwrap_or_default();
        ContainerError::Internal(format!("shim failed: {}", detail.trim()))
    })?;
    // The shim lives on after its parent forgets it; tokio reaps it when it exits.
    drop(child);
    if let Some(e) = ContainerError::from_reply(&reply) {
        return Err(e);
    }
    reply
        .pid
        .ok_or_else(|| ContainerError::Internal("shim reported no pid".into()))
}

/// Wait until no shim holds the lock in `bundle` (see [`wharf_shim_proto::LOCK_FILE`]): the
/// previous shim of a container has finished removing its cgroups and runtime state. Gives up,
/// with a warning, after ten seconds.
pub async fn wait_gone(bundle: &Path) {
    use rustix::fs::{flock, FlockOperation};
    let path = bundle.join(wharf_shim_proto::LOCK_FILE);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let Ok(f) = std::fs::File::open(&path) else { return };
        match flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Err(rustix::io::Errno::WOULDBLOCK) if tokio::time::Instant::now() < deadline => {
                drop(f);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                tracing::warn!(path = %path.display(), "a shim still holds its lock after 10 s");
                return;
            }
            _ => return,
        }
    }
}

/// Send `req` on a fresh connection without waiting for the reply (`wait` answers only at the
/// container's exit).
pub async fn send(socket: &Path, req: &Request) -> Result<ShimStream> {
    let mut s = UnixStream::connect(socket)
        .await
        .map_err(|e| ContainerError::Internal(format!("connecting to shim {}: {e}", socket.display())))?;
    let mut line = serde_json::to_vec(req).expect("request serialises");
    line.push(b'\n');
    s.write_all(&line).await?;
    Ok(BufReader::new(s))
}

/// Send `req` on a fresh connection and read the reply line; the connection stays usable for
/// the stream that follows attach and exec.
pub async fn open(socket: &Path, req: &Request) -> Result<(Reply, ShimStream)> {
    let mut r = send(socket, req).await?;
    let mut reply = String::new();
    let n = r.read_line(&mut reply).await?;
    if n == 0 {
        return Err(ContainerError::Internal("shim closed the connection".into()));
    }
    let reply: Reply =
        serde_json::from_str(reply.trim()).map_err(|e| ContainerError::Internal(format!("shim reply: {e}")))?;
    Ok((reply, r))
}

/// A request whose reply is all there is.
pub async fn call(socket: &Path, req: &Request) -> Result<Reply> {
    let (reply, _) = open(socket, req).await?;
    match ContainerError::from_reply(&reply) {
        // A failure of no particular kind is the daemon's to explain, as before kinds.
        Some(ContainerError::Runtime {
            kind: wharf_shim_proto::FailureKind::Internal,
            message,
        }) => Err(ContainerError::Internal(message)),
        Some(e) => Err(e),
        None => Ok(reply),
    }
}
