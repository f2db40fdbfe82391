//! Output and exits: the container's and each exec's output read and sent on, children reaped,
//! and the end (the exit recorded and told, the cgroups and state removed).

use crate::cgroups::oom_kills;
use crate::stdio::drain;
use crate::*;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};
use wharf_shim_proto::{frame, ExitInfo, Reply, STREAM_EXIT, STREAM_STDERR, STREAM_STDOUT};

impl Shim {
    pub(crate) fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(st) => {
                    let Some((pid, code)) = status_code(st) else { continue };
                    if pid == self.init {
                        self.on_init_exit(code);
                    } else if let Some(e) = self.execs.values_mut().find(|e| e.pid == pid) {
                        e.exit = Some(code);
                        let id = e.client;
                        self.maybe_finish_exec(id);
                    }
                }
            }
        }
    }

    pub(crate) fn on_init_exit(&mut self, code: i32) {
        let oom = oom_kills(&self.cfg.cgroup_path) > 0;
        // The namespaces and cgroups stay held by nothing of the shim's.
        self.doors = None;
        self.exit = Some(ExitInfo {
            exit_code: code,
            oom_killed: oom,
            finished_at: log::now_nanos(),
        });
        self.exited_at = Some(Instant::now());
    }

    pub(crate) fn read_output(&mut self, i: usize) {
        let stream = if i == 0 { STREAM_STDOUT } else { STREAM_STDERR };
        let (log, clients) = (&mut self.log, &mut self.clients);
        drain(&mut self.stdio.out[i], |data| {
            if let Some(l) = log {
                l.write(stream, data);
            }
            let f = frame(stream, data);
            for c in clients.values_mut() {
                if let ClientKind::Attach { stdout, stderr, .. } = c.kind {
                    if (stream == STREAM_STDOUT && stdout) || (stream == STREAM_STDERR && stderr) {
                        c.send(&f);
                        c.flush();
                    }
                }
            }
        });
    }

    pub(crate) fn read_exec_output(&mut self, client: u64, i: usize) {
        let stream = if i == 0 { STREAM_STDOUT } else { STREAM_STDERR };
        let Some(e) = self.execs.values_mut().find(|e| e.client == client) else {
            return;
        };
        let clients = &mut self.clients;
        drain(&mut e.stdio.out[i], |data| {
            if let Some(c) = clients.get_mut(&client) {
                c.send(&frame(stream, data));
                c.flush();
            }
        });
        self.maybe_finish_exec(client);
    }

    /// An exec is over when it has exited and its output is drained: send its exit frame.
    pub(crate) fn maybe_finish_exec(&mut self, client: u64) {
        let Some((key, code)) = self
            .execs
            .iter()
            .find(|(_, e)| e.client == client)
            .and_then(|(k, e)| e.exit.filter(|_| !e.stdio.open()).map(|c| (k.clone(), c)))
        else {
            return;
        };
        self.execs.remove(&key);
        if let Some(c) = self.clients.get_mut(&client) {
            c.send(&frame(STREAM_EXIT, &code.to_be_bytes()));
            c.kind = ClientKind::Closing;
            c.flush();
        }
        self.close_if_done(client);
    }

    /// The init is gone and its output drained: record, tell, clean up, exit.
    ///
    /// Waiters hear of the exit before the cgroups (and libcontainer's state) are removed (that
    /// is off the path of `run --rm`); the daemon waits for this shim's lock before it starts
    /// the container again. Nothing here is synced to disk: the exit file only has to outlive
    /// the daemon, not the host (after a host crash every container is down anyway).
    pub(crate) fn finish(&mut self) {
        if let Some(l) = &mut self.log {
            l.flush();
        }
        let exit = self.exit.clone().unwrap_or_default();
        let tmp = format!("{}.tmp", self.cfg.exit_file);
        let body = serde_json::to_vec(&exit).expect("serialise");
        let written = fs::write(&tmp, &body).and_then(|_| fs::rename(&tmp, &self.cfg.exit_file));
        if let Err(e) = written {
            eprintln!("wharf-shim: exit file {}: {e}", self.cfg.exit_file);
        }
        // Processes exec'd into a container with a shared PID namespace may outlive it.
        for e in self.execs.values() {
            let _ = signal::kill(e.pid, Signal::SIGKILL);
        }
        // Before answering: the next run's shim binds the same path.
        let _ = fs::remove_file(&self.cfg.socket);
        let line = Reply {
            exit: Some(exit),
            ..Reply::ok()
        }
        .line();
        let deadline = Instant::now() + Duration::from_secs(2);
        for c in self.clients.values_mut() {
            if matches!(c.kind, ClientKind::Waiter) {
                c.send(&line);
            }
            let _ = c.sock.set_nonblocking(false);
            let _ = c.sock.set_write_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(10)),
            ));
            let (a, b) = c.out.as_slices();
            let _ = c.sock.write_all(a).and_then(|_| c.sock.write_all(b));
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
        }
        if let Some(b) = &self.born {
            if let Err(e) = crate::cgroups::remove(&b.manager) {
                eprintln!("wharf-shim: removing the cgroup: {e}");
            }
        } else if let Ok(mut c) = self.container() {
            if let Err(e) = c.delete(true) {
                eprintln!("wharf-shim: delete: {e}");
            }
        }
        named::leave(&self.systemd);
        named::remove(self.systemd.dir());
    }
}
