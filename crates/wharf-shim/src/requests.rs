//! The daemon's requests, one method each: start, kill, pause and resume, stats, update,
//! resize, wait, attach, close stdin, and exec (a process started in the container).

use crate::cgroups::{cgroup_stats, freeze, signal_all, update_resources};
use crate::enter::ExecIo;
use crate::stdio::{finish_tty, flush_stdin, make_stdio, resize};
use crate::*;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use std::fs;
use std::os::fd::AsFd;
use std::path::PathBuf;
use wharf_shim_proto::{FailureKind, Reply, Request};

impl Shim {
    pub(crate) fn request(&mut self, id: u64, req: Request) {
        match req {
            Request::Start => {
                let r = match &mut self.born {
                    Some(born) => born.start().map_err(|e| Reply::fail(crate::failure::kind_of(&e), e)),
                    None => self
                        .container()
                        .and_then(|mut c| c.start().map_err(|e| e.to_string()))
                        .map_err(Reply::err),
                };
                self.reply(id, r.map(|_| Reply::ok()).unwrap_or_else(|e| e), ClientKind::Closing);
            }
            Request::Kill { signal: sig, all } => {
                let r = match Signal::try_from(sig) {
                    Err(_) => Err(Reply::fail(FailureKind::BadRequest, format!("invalid signal {sig}"))),
                    Ok(s) if all => {
                        let r = self.manager().and_then(|m| signal_all(m, s)).map_err(Reply::err);
                        // Thawed after the signal (as libcontainer does).
                        self.paused = false;
                        r
                    }
                    Ok(s) if self.exit.is_none() => signal::kill(self.init, s).map_err(|e| Reply::err(e.to_string())),
                    Ok(_) => Err(not_running()),
                };
                self.reply(id, r.map(|_| Reply::ok()).unwrap_or_else(|e| e), ClientKind::Closing);
            }
            Request::Pause | Request::Resume => {
                let pause = matches!(req, Request::Pause);
                let r = if self.exit.is_some() {
                    Err("container is not running".to_string())
                } else {
                    self.manager().and_then(|m| freeze(m, pause))
                };
                if r.is_ok() {
                    self.paused = pause;
                }
                self.reply(
                    id,
                    r.map(|_| Reply::ok()).unwrap_or_else(Reply::err),
                    ClientKind::Closing,
                );
            }
            Request::Stats => {
                let reply = if self.exit.is_some() {
                    not_running()
                } else {
                    let path = self.cfg.cgroup_path.clone();
                    match self.manager().and_then(|m| cgroup_stats(m, &path)) {
                        Ok(v) => Reply {
                            stats: Some(v),
                            ..Reply::ok()
                        },
                        Err(e) => Reply::err(e),
                    }
                };
                self.reply(id, reply, ClientKind::Closing);
            }
            Request::Update { resources } => {
                let r = self.manager().and_then(|m| update_resources(m, &resources));
                self.reply(
                    id,
                    r.map(|_| Reply::ok()).unwrap_or_else(Reply::err),
                    ClientKind::Closing,
                );
            }
            Request::Resize { exec, height, width } => {
                let fd = match &exec {
                    None => self.stdio.tty.as_ref(),
                    Some(e) => self.execs.get(e).and_then(|x| x.stdio.tty.as_ref()),
                };
                let r = match fd {
                    Some(fd) => resize(fd.as_fd(), height, width),
                    None => Err("no terminal".to_string()),
                };
                self.reply(
                    id,
                    r.map(|_| Reply::ok()).unwrap_or_else(Reply::err),
                    ClientKind::Closing,
                );
            }
            Request::Wait => {
                if self.exit.is_some() && !self.stdio.open() {
                    let r = Reply {
                        exit: self.exit.clone(),
                        ..Reply::ok()
                    };
                    self.reply(id, r, ClientKind::Closing);
                } else if let Some(c) = self.clients.get_mut(&id) {
                    c.kind = ClientKind::Waiter;
                }
            }
            Request::Attach { stdin, stdout, stderr } => {
                let stdin = stdin && self.stdio.stdin.is_some();
                self.reply(id, Reply::ok(), ClientKind::Attach { stdin, stdout, stderr });
            }
            Request::CloseStdin { exec } => {
                let stdio = match &exec {
                    None => Some(&mut self.stdio),
                    Some(e) => self.execs.get_mut(e).map(|x| &mut x.stdio),
                };
                let r = match stdio {
                    Some(s) => {
                        s.stdin_close = true;
                        flush_stdin(s);
                        Reply::ok()
                    }
                    None => Reply::fail(FailureKind::BadRequest, "no such exec"),
                };
                self.reply(id, r, ClientKind::Closing);
            }
            Request::Exec { .. } if self.paused => {
                let r = Reply::fail(FailureKind::Paused, "container is paused");
                self.reply(id, r, ClientKind::Closing)
            }
            Request::Exec {
                id: exec_id,
                process,
                stdin,
            } => match self.exec(id, &exec_id, process, stdin) {
                Ok(pid) => {
                    let r = Reply {
                        pid: Some(pid.as_raw()),
                        ..Reply::ok()
                    };
                    self.reply(id, r, ClientKind::Exec(exec_id));
                }
                Err(e) => {
                    let kind = match self.exit {
                        Some(_) => FailureKind::NotRunning,
                        None => failure::kind_of(&e),
                    };
                    self.reply(id, Reply::fail(kind, e), ClientKind::Closing)
                }
            },
        }
    }

    pub(crate) fn exec(
        &mut self,
        client: u64,
        exec_id: &str,
        process: Box<oci_spec::runtime::Process>,
        stdin: bool,
    ) -> Result<Pid, String> {
        if self.exit.is_some() {
            return Err("container is not running".into());
        }
        if self.execs.contains_key(exec_id) || exec_id.is_empty() || exec_id.contains('/') {
            return Err(format!("bad exec id {exec_id}"));
        }
        let tty = process.terminal().unwrap_or(false);
        if crate::enter::direct(&process) {
            return self.exec_direct(client, exec_id, &process, stdin);
        }
        let bundle = PathBuf::from(&self.cfg.bundle);
        let proc_path = bundle.join(format!("exec-{exec_id}.json"));
        fs::write(&proc_path, serde_json::to_vec(&process).map_err(|e| e.to_string())?)
            .map_err(|e| format!("write {}: {e}", proc_path.display()))?;
        let console = bundle.join(format!("e{}.sock", &exec_id[..exec_id.len().min(12)]));
        let (mut stdio, child, console_l) = make_stdio(tty, stdin, &console)?;
        let builder = builder_with_stdio(
            &self.cfg.id,
            &self.cfg.state_root,
            tty,
            &console,
            child,
            &self.filter,
            false,
        )?;
        // SIGCHLD stays blocked through the spawn (the new process unblocks it for itself), so
        // an exit during it, the init's included, waits in the signalfd whichever way this ends.
        let r = builder
            .as_tenant()
            .with_process(Some(&proc_path))
            .with_detach(true)
            .build();
        let _ = fs::remove_file(&proc_path);
        let pid = r.map_err(|e| e.to_string())?;
        if let Err(e) = finish_tty(&mut stdio, console_l, &console) {
            let _ = signal::kill(pid, Signal::SIGKILL);
            return Err(e);
        }
        if !stdin && tty {
            // A terminal always has an input side; without -i nobody writes to it.
            stdio.stdin_close = false;
        }
        self.track_exec(exec_id, pid, stdio, client);
        Ok(pid)
    }

    /// Keep a started exec: its output is read and its exit sent to `client`.
    fn track_exec(&mut self, exec_id: &str, pid: Pid, stdio: Stdio, client: u64) {
        let exec = Exec {
            pid,
            stdio,
            exit: None,
            client,
        };
        self.execs.insert(exec_id.to_string(), exec);
    }

    /// An exec without a terminal, started by the shim itself (`enter`).
    fn exec_direct(
        &mut self,
        client: u64,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        stdin: bool,
    ) -> Result<Pid, String> {
        if self.doors.is_none() {
            self.doors = Some(crate::enter::Doors::open(self.init, &self.cfg.cgroup_path)?);
        }
        let doors = self.doors.as_ref().expect("opened above");
        let filter = self.filter.as_deref();
        // SIGCHLD stays blocked through the spawn, as for libcontainer's (see `exec`).
        let (pid, stdio) = if process.terminal().unwrap_or(false) {
            let size = process.console_size().as_ref().map(|b| {
                let c = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
                (c(b.height()), c(b.width()))
            });
            let (pid, master) = crate::enter::spawn(doors, process, ExecIo::Terminal(size), filter)?;
            let master = master.ok_or("the exec's terminal was not handed over")?;
            (pid, crate::stdio::tty_stdio(master)?)
        } else {
            let (stdio, child, _) = make_stdio(false, stdin, Path::new(""))?;
            let (pid, _) = crate::enter::spawn(doors, process, ExecIo::Pipes(&child), filter)?;
            (pid, stdio)
        };
        self.track_exec(exec_id, pid, stdio, client);
        Ok(pid)
    }
}
