//! The local terminal for `-t`: raw mode while attached (restored on every way out), and the
//! window size sent to the daemon at start and on SIGWINCH.

use rustix::termios::{self, Termios};

/// Puts stdin into raw mode; restores the saved mode when dropped.
pub struct RawGuard {
    saved: Option<Termios>,
}

impl RawGuard {
    /// Raw mode if stdin is a terminal; a no-op otherwise.
    pub fn new() -> RawGuard {
        let stdin = std::io::stdin();
        if !termios::isatty(&stdin) {
            return RawGuard { saved: None };
        }
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawGuard { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = termios::tcsetattr(&stdin, termios::OptionalActions::Now, &raw);
        RawGuard { saved: Some(saved) }
    }
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), termios::OptionalActions::Now, t);
        }
    }
}

/// The terminal's (rows, columns), if stdout is a terminal.
pub fn size() -> Option<(u16, u16)> {
    let out = std::io::stdout();
    if !termios::isatty(&out) {
        return None;
    }
    termios::tcgetwinsize(&out).ok().map(|w| (w.ws_row, w.ws_col))
}
