//! Restart policies (`--restart`) as dockerd applies them: whether an exit is followed by a
//! start, and the delay before it (100 ms, doubling to a minute; back to 100 ms after a run of
//! ten seconds). Pure: the monitor asks, and the tests ask without a container.

use std::time::Duration;

/// A container's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `no` (the default).
    No,
    /// `always`.
    Always,
    /// `unless-stopped`: as `always`; only a user's stop (remembered across daemon restarts)
    /// keeps it down.
    UnlessStopped,
    /// `on-failure[:max]`: after a non-zero exit, at most `max` times (0: no limit).
    OnFailure {
        /// The most restarts (0: no limit).
        max_retries: i64,
    },
}

impl Policy {
    /// The policy a host config names.
    pub fn of(hc: &crate::config::HostSpec) -> Policy {
        let p = hc.lifecycle.restart_policy.clone().unwrap_or_default();
        match p.name.map(|n| n.to_string()).unwrap_or_default().as_str() {
            "always" => Policy::Always,
            "unless-stopped" => Policy::UnlessStopped,
            "on-failure" => Policy::OnFailure {
                max_retries: p.maximum_retry_count.unwrap_or(0),
            },
            _ => Policy::No,
        }
    }
}

/// What the monitor knows at an exit.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// The exit code.
    pub code: i32,
    /// Restarts done so far.
    pub restarts: i64,
    /// The user stopped or killed it.
    pub manually_stopped: bool,
    /// `--rm`: removed at its exit, never restarted.
    pub auto_remove: bool,
}

/// Whether `policy` starts the container again after `exit`.
pub fn restarts(policy: Policy, exit: Exit) -> bool {
    if exit.auto_remove || exit.manually_stopped {
        return false;
    }
    match policy {
        Policy::No => false,
        Policy::Always | Policy::UnlessStopped => true,
        Policy::OnFailure { max_retries } => exit.code != 0 && (max_retries == 0 || exit.restarts < max_retries),
    }
}

/// Docker's backoff between restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

/// The first delay, and the one after a run long enough to count as a success.
const FIRST: Duration = Duration::from_millis(100);
/// The longest delay.
const MAX: Duration = Duration::from_secs(60);
/// A run this long resets the delay.
const RESET_AFTER: Duration = Duration::from_secs(10);

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// The delay before the start that follows a run of `ran`.
    pub fn delay(&mut self, ran: Duration) -> Duration {
        if ran >= RESET_AFTER {
            self.next = FIRST;
        }
        let cur = self.next;
        self.next = (self.next * 2).min(MAX);
        cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32, restarts: i64) -> Exit {
        Exit {
            code,
            restarts,
            manually_stopped: false,
            auto_remove: false,
        }
    }

    #[test]
    fn policies_decide_as_dockerd() {
        let on_failure = |max_retries| Policy::OnFailure { max_retries };
        for (policy, e, want) in [
            (Policy::No, exit(1, 0), false),
            (Policy::Always, exit(0, 0), true),
            (Policy::Always, exit(137, 99), true),
            (Policy::UnlessStopped, exit(0, 3), true),
            (on_failure(0), exit(0, 0), false),
            (on_failure(0), exit(1, 500), true),
            (on_failure(3), exit(1, 2), true),
            (on_failure(3), exit(1, 3), false),
            (
                Policy::Always,
                Exit {
                    manually_stopped: true,
                    ..exit(1, 0)
                },
                false,
            ),
            (
                Policy::UnlessStopped,
                Exit {
                    manually_stopped: true,
                    ..exit(0, 0)
                },
                false,
            ),
            (
                on_failure(0),
                Exit {
                    auto_remove: true,
                    ..exit(1, 0)
                },
                false,
            ),
        ] {
            assert_eq!(restarts(policy, e), want, "{policy:?} {e:?}");
        }
    }

    #[test]
    fn policies_are_read_from_the_host_config() {
        let hc = |name: &str, max: i64| {
            let mut h = crate::config::HostSpec::default();
            h.lifecycle.restart_policy = Some(crate::config::RestartPolicy {
                name: Some(name.parse().unwrap()),
                maximum_retry_count: Some(max),
            });
            h
        };
        assert_eq!(Policy::of(&crate::config::HostSpec::default()), Policy::No);
        assert_eq!(Policy::of(&hc("no", 0)), Policy::No);
        assert_eq!(Policy::of(&hc("always", 0)), Policy::Always);
        assert_eq!(Policy::of(&hc("unless-stopped", 0)), Policy::UnlessStopped);
        assert_eq!(Policy::of(&hc("on-failure", 5)), Policy::OnFailure { max_retries: 5 });
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_ten_seconds() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(50);
        let delays: Vec<u64> = (0..12).map(|_| b.delay(quick).as_millis() as u64).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000]
        );
        assert_eq!(b.delay(Duration::from_secs(10)), FIRST, "a long run starts over");
        assert_eq!(b.delay(quick), Duration::from_millis(200));
    }
}
