//! The daemon's connections: accepted, read line by line until a request, then answered and
//! turned into what the request made them (a waiter, an attach or exec stream, or closed).

use crate::stdio::flush_stdin;
use crate::*;
use std::collections::VecDeque;
use std::io::{self, Read};
use wharf_shim_proto::{FailureKind, Reply, Request};

impl Shim {
    pub(crate) fn close_if_done(&mut self, id: u64) {
        if let Some(c) = self.clients.get(&id) {
            if matches!(c.kind, ClientKind::Closing) && c.out.is_empty() {
                self.clients.remove(&id);
            }
        }
    }

    pub(crate) fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    let _ = sock.set_nonblocking(true);
                    self.next_client += 1;
                    self.clients.insert(
                        self.next_client,
                        Client {
                            sock,
                            inbuf: Vec::new(),
                            out: VecDeque::new(),
                            kind: ClientKind::Request,
                            read_closed: false,
                            dead: false,
                        },
                    );
                }
                Err(_) => return,
            }
        }
    }

    pub(crate) fn read_client(&mut self, id: u64) {
        let mut buf = [0u8; 32 * 1024];
        loop {
            let Some(c) = self.clients.get_mut(&id) else { return };
            if c.read_closed {
                return;
            }
            match c.sock.read(&mut buf) {
                Ok(0) => {
                    c.read_closed = true;
                    self.on_client_eof(id);
                    return;
                }
                Ok(n) => {
                    c.inbuf.extend_from_slice(&buf[..n]);
                    self.process_input(id);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    c.dead = true;
                    return;
                }
            }
        }
    }

    pub(crate) fn on_client_eof(&mut self, id: u64) {
        let Some(c) = self.clients.get(&id) else { return };
        // Stdin is closed only by an explicit request: a client that goes away has detached.
        if let ClientKind::Request = &c.kind {
            self.clients.remove(&id);
        }
    }

    pub(crate) fn process_input(&mut self, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        match &c.kind {
            ClientKind::Request => {
                let Some(nl) = c.inbuf.iter().position(|&b| b == b'\n') else {
                    if c.inbuf.len() > 1 << 20 {
                        c.dead = true;
                    }
                    return;
                };
                let line: Vec<u8> = c.inbuf.drain(..=nl).collect();
                let req = serde_json::from_slice::<Request>(&line);
                match req {
                    Ok(r) => self.request(id, r),
                    Err(e) => self.reply(
                        id,
                        Reply::fail(FailureKind::BadRequest, format!("bad request: {e}")),
                        ClientKind::Closing,
                    ),
                }
                // Whatever followed the request line is stdin for attach/exec.
                if self.clients.get(&id).is_some_and(|c| !c.inbuf.is_empty()) {
                    self.process_input(id);
                }
            }
            ClientKind::Attach { stdin: true, .. } => {
                let data = std::mem::take(&mut c.inbuf);
                self.stdio.stdin_pending.extend(data);
                flush_stdin(&mut self.stdio);
            }
            ClientKind::Exec(e) => {
                let data = std::mem::take(&mut c.inbuf);
                if let Some(x) = self.execs.get_mut(e) {
                    x.stdio.stdin_pending.extend(data);
                    flush_stdin(&mut x.stdio);
                }
            }
            _ => c.inbuf.clear(),
        }
    }

    pub(crate) fn reply(&mut self, id: u64, r: Reply, next: ClientKind) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.send(&r.line());
            c.kind = next;
            c.flush();
        }
        self.close_if_done(id);
    }
}
