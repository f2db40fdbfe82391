//! Healthchecks as Docker runs them: the container's `Healthcheck` merged over its image's,
//! checked at create, then probed by the daemon while the container runs (each probe an exec
//! in the container), with Docker's defaults, start period, failing streak and the last five
//! results kept in `State.Health`.
//!
//! This module holds the rules; the service runs the probes (see `ContainerService`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ContainerError;

/// Docker's defaults (moby `daemon/health.go`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Default probe timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default interval while the container starts.
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
/// Default failures before `unhealthy`.
pub const DEFAULT_RETRIES: i64 = 3;
/// Results kept in `State.Health.Log`.
pub const MAX_LOG_ENTRIES: usize = 5;
/// Bytes of a probe's output kept.
pub const MAX_OUTPUT: usize = 4096;

/// `State.Health` as Docker shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    #[serde(rename = "Status")]
    pub status: String,
    /// Consecutive failures counted.
    #[serde(rename = "FailingStreak")]
    pub failing_streak: i64,
    /// The last results, oldest first.
    #[serde(rename = "Log")]
    pub log: Vec<ProbeResult>,
}

impl Health {
    /// The state a start begins with.
    pub fn starting() -> Health {
        Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        }
    }
}

/// One probe's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeResult {
    /// RFC 3339 nanos.
    #[serde(rename = "Start")]
    pub start: String,
    /// RFC 3339 nanos.
    #[serde(rename = "End")]
    pub end: String,
    /// 0 healthy, 1 unhealthy, -1 when the probe could not run or timed out.
    #[serde(rename = "ExitCode")]
    pub exit_code: i64,
    /// What the probe wrote (at most [`MAX_OUTPUT`] bytes).
    #[serde(rename = "Output")]
    pub output: String,
}

/// A healthcheck ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The command line to exec.
    pub argv: Vec<String>,
    /// Between probes.
    pub interval: Duration,
    /// For one probe.
    pub timeout: Duration,
    /// Failures in it do not count while the container has not been healthy.
    pub start_period: Duration,
    /// Between probes during the start period.
    pub start_interval: Duration,
    /// Failures before `unhealthy`.
    pub retries: i64,
}

fn nanos(v: Option<i64>, default: Duration) -> Duration {
    match v {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// The container's healthcheck over the image's, as dockerd merges them: no healthcheck of
/// its own takes the image's; an empty test takes the image's test; unset numbers take the
/// image's.
pub fn merge(own: Option<crate::config::HealthConfig>, image: Option<&Value>) -> Option<crate::config::HealthConfig> {
    let image: Option<crate::config::HealthConfig> = image
        .filter(|v| !v.is_null())
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let Some(mut own) = own else { return image };
    let Some(image) = image else { return Some(own) };
    if own.test.as_ref().is_none_or(|t| t.is_empty()) {
        own.test = image.test;
    }
    let fill = |mine: &mut Option<i64>, theirs: Option<i64>| {
        if mine.unwrap_or(0) == 0 {
            *mine = theirs;
        }
    };
    fill(&mut own.interval, image.interval);
    fill(&mut own.timeout, image.timeout);
    fill(&mut own.start_period, image.start_period);
    fill(&mut own.start_interval, image.start_interval);
    fill(&mut own.retries, image.retries);
    Some(own)
}

/// Refuse what dockerd refuses at create.
pub fn validate(h: &crate::config::HealthConfig) -> Result<(), ContainerError> {
    let min = 1_000_000; // 1 ms
    for (name, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if let Some(v) = v.filter(|v| *v != 0) {
            if v < min {
                return Err(ContainerError::Invalid(format!(
                    "{name} in Healthcheck cannot be less than 1ms"
                )));
            }
        }
    }
    if h.retries.is_some_and(|r| r < 0) {
        return Err(ContainerError::Invalid(
            "Retries in Healthcheck cannot be negative".into(),
        ));
    }
    // A test whose first word is none of NONE, CMD, CMD-SHELL (a bare `["true"]`) is accepted,
    // as dockerd accepts it, and never probed ([`probe`] has none for it; dockerd logs a
    // warning and runs none either).
    Ok(())
}

/// The probe a container's config asks for, if any (`NONE` and an empty test have none).
pub fn probe(cfg: &crate::config::Config) -> Option<Probe> {
    let h = cfg.healthcheck.as_ref()?;
    let test = h.test.as_ref()?;
    let argv = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => {
            let shell = cfg
                .shell
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            shell.into_iter().chain([test[1..].join(" ")]).collect()
        }
        _ => return None,
    };
    if argv.is_empty() {
        return None;
    }
    Some(Probe {
        argv,
        interval: nanos(h.interval, DEFAULT_INTERVAL),
        timeout: nanos(h.timeout, DEFAULT_TIMEOUT),
        start_period: nanos(h.start_period, Duration::ZERO),
        start_interval: nanos(h.start_interval, DEFAULT_START_INTERVAL),
        retries: match h.retries {
            Some(r) if r > 0 => r,
            _ => DEFAULT_RETRIES,
        },
    })
}

impl Probe {
    /// The wait before the next probe: the start interval while the container is starting
    /// within its start period, else the interval.
    pub fn next_interval(&self, since_start: Duration, status: &str) -> Duration {
        if since_start < self.start_period && status == "starting" {
            self.start_interval
        } else {
            self.interval
        }
    }
}

/// Record `r` (a probe begun `since_start` after the container started) in `h`, as dockerd
/// does. Returns the new status when it changed.
pub fn record(h: &mut Health, p: &Probe, r: ProbeResult, since_start: Duration) -> Option<String> {
    let before = h.status.clone();
    if r.exit_code == 0 {
        h.failing_streak = 0;
        h.status = "healthy".into();
    } else {
        // While starting (never healthy yet), failures within the start period do not count.
        let counts = !(h.status == "starting" && since_start < p.start_period);
        if counts {
            h.failing_streak += 1;
            if h.failing_streak >= p.retries {
                h.status = "unhealthy".into();
            }
        }
    }
    h.log.push(r);
    if h.log.len() > MAX_LOG_ENTRIES {
        let extra = h.log.len() - MAX_LOG_ENTRIES;
        h.log.drain(..extra);
    }
    (h.status != before).then(|| h.status.clone())
}

/// Keep at most [`MAX_OUTPUT`] bytes of a probe's output, cut at a character boundary.
pub fn clip_output(out: &[u8]) -> String {
    let s = String::from_utf8_lossy(&out[..out.len().min(MAX_OUTPUT)]).into_owned();
    s.trim_end_matches('\u{FFFD}').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(test: &[&str]) -> crate::config::HealthConfig {
        crate::config::HealthConfig {
            test: Some(test.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn shell_and_exec_forms() {
        let mut cfg = crate::config::Config {
            healthcheck: Some(hc(&["CMD-SHELL", "echo hi"])),
            ..Default::default()
        };
        let p = probe(&cfg).unwrap();
        assert_eq!(p.argv, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(
            (p.interval, p.timeout, p.retries),
            (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, 3)
        );
        cfg.shell = Some(vec!["/bin/ash".into(), "-ec".into()]);
        assert_eq!(probe(&cfg).unwrap().argv, ["/bin/ash", "-ec", "echo hi"]);
        cfg.healthcheck = Some(hc(&["CMD", "true", "x"]));
        assert_eq!(probe(&cfg).unwrap().argv, ["true", "x"]);
        cfg.healthcheck = Some(hc(&["NONE"]));
        assert!(probe(&cfg).is_none());
        cfg.healthcheck = Some(hc(&[]));
        assert!(probe(&cfg).is_none());
    }

    #[test]
    fn merged_over_the_image() {
        let image = serde_json::json!({"Test": ["CMD", "img"], "Interval": 5_000_000_000i64, "Retries": 7});
        let own = crate::config::HealthConfig {
            test: Some(vec![]),
            interval: Some(1_000_000_000),
            ..Default::default()
        };
        let h = merge(Some(own), Some(&image)).unwrap();
        assert_eq!(h.test.unwrap(), ["CMD", "img"]);
        assert_eq!(h.interval, Some(1_000_000_000));
        assert_eq!(h.retries, Some(7));
        assert_eq!(merge(None, Some(&image)).unwrap().retries, Some(7));
        assert!(merge(None, None).is_none());
    }

    #[test]
    fn refused_like_dockerd() {
        let mut h = hc(&["CMD", "x"]);
        h.interval = Some(10);
        assert_eq!(
            validate(&h).unwrap_err().to_string(),
            "Interval in Healthcheck cannot be less than 1ms"
        );
        h.interval = None;
        h.retries = Some(-1);
        assert!(validate(&h).unwrap_err().to_string().contains("Retries"));
        // dockerd's getProbe: an unknown first word is accepted and never probed.
        assert!(validate(&hc(&["true"])).is_ok());
        let cfg = crate::config::Config {
            healthcheck: Some(hc(&["true"])),
            ..Default::default()
        };
        assert!(probe(&cfg).is_none());
    }

    fn result(code: i64) -> ProbeResult {
        ProbeResult {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn streaks_and_start_period() {
        let p = Probe {
            argv: vec!["x".into()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            start_period: Duration::from_secs(3),
            start_interval: Duration::from_millis(500),
            retries: 2,
        };
        let mut h = Health::starting();
        // Failures in the start period do not count.
        assert_eq!(record(&mut h, &p, result(1), Duration::from_secs(1)), None);
        assert_eq!(h.failing_streak, 0);
        assert_eq!(
            p.next_interval(Duration::from_secs(1), &h.status),
            Duration::from_millis(500)
        );
        assert_eq!(record(&mut h, &p, result(1), Duration::from_secs(4)), None);
        assert_eq!(h.failing_streak, 1);
        assert_eq!(
            record(&mut h, &p, result(1), Duration::from_secs(5)).as_deref(),
            Some("unhealthy")
        );
        assert_eq!(
            record(&mut h, &p, result(0), Duration::from_secs(6)).as_deref(),
            Some("healthy")
        );
        assert_eq!(h.failing_streak, 0);
        for _ in 0..10 {
            record(&mut h, &p, result(0), Duration::from_secs(7));
        }
        assert_eq!(h.log.len(), MAX_LOG_ENTRIES);
        assert_eq!(clip_output(&vec![b'a'; 10_000]).len(), MAX_OUTPUT);
    }
}
