//! `kill`: signals by name or number, delivered by the shim; SIGKILL returns once the
//! container is gone.

use super::*;
use crate::error::{ContainerError, Result};
use std::time::Duration;
use wharf_shim_proto::Request;

impl ContainerService {
    /// Signal number from a name (`HUP`, `SIGHUP`) or a number.
    pub fn parse_signal(s: &str) -> Result<i32> {
        let up = s.trim().to_ascii_uppercase();
        let name = up.strip_prefix("SIG").unwrap_or(&up);
        if let Ok(n) = name.parse::<i32>() {
            if (1..=64).contains(&n) {
                return Ok(n);
            }
        }
        let n = match name {
            "HUP" => 1,
            "INT" => 2,
            "QUIT" => 3,
            "ILL" => 4,
            "TRAP" => 5,
            "ABRT" | "IOT" => 6,
            "BUS" => 7,
            "FPE" => 8,
            "KILL" => 9,
            "USR1" => 10,
            "SEGV" => 11,
            "USR2" => 12,
            "PIPE" => 13,
            "ALRM" => 14,
            "TERM" => 15,
            "STKFLT" => 16,
            "CHLD" => 17,
            "CONT" => 18,
            "STOP" => 19,
            "TSTP" => 20,
            "TTIN" => 21,
            "TTOU" => 22,
            "URG" => 23,
            "XCPU" => 24,
            "XFSZ" => 25,
            "VTALRM" => 26,
            "PROF" => 27,
            "WINCH" => 28,
            "IO" | "POLL" => 29,
            "PWR" => 30,
            "SYS" => 31,
            _ => return Err(ContainerError::Invalid(format!("Invalid signal: {s}"))),
        };
        Ok(n)
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        let e = self.lookup(name)?;
        let sig = Self::parse_signal(if signal.is_empty() { "KILL" } else { signal })?;
        let rec = e.snapshot();
        if !rec.state.is_running() {
            return Err(ContainerError::Conflict(format!(
                "cannot kill container: {name}: container {} is not running",
                rec.id
            )));
        }
        // A kill with a stopping signal, the container's own StopSignal included, is a stop the
        // user asked for: restart policies leave it down.
        let own_stop = rec
            .config
            .stop_signal
            .as_deref()
            .and_then(|s| Self::parse_signal(s).ok());
        if sig == 9 || sig == 15 || sig == 2 || own_stop == Some(sig) {
            e.rec.lock().expect("record lock").manually_stopped = true;
        }
        let seen = e.gen.borrow().exits;
        self.runtime
            .call(
                &rec.id,
                Request::Kill {
                    signal: sig,
                    all: false,
                },
            )
            .await?;
        self.emit(&rec, "kill", &[("signal", &sig.to_string())]);
        // As dockerd: a SIGKILL returns once the container has exited (up to 10 s), so an
        // inspect that follows sees it stopped with its exit code.
        if sig == 9 {
            Self::wait_exit(&e, seen, Some(Duration::from_secs(10))).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(ContainerService::parse_signal("HUP").unwrap(), 1);
        assert_eq!(ContainerService::parse_signal("sigterm").unwrap(), 15);
        assert_eq!(ContainerService::parse_signal("9").unwrap(), 9);
        assert!(ContainerService::parse_signal("NOPE").is_err());
        assert!(ContainerService::parse_signal("0").is_err());
    }
}
