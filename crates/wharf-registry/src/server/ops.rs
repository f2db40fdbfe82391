//! The registry's own endpoints: the token endpoint of Docker's token flow (`GET /token` with
//! Basic credentials or none, `scope` and `service` in the query), `/health` (storage
//! reachable), and `/metrics` in Prometheus' text format: requests by route, method and status,
//! bytes in and out by route, and latency histograms by route.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;

use super::{answer, full, header, Ctx, Registry, Resp};
use crate::error::{RegistryError, Result};

/// The latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default)]
struct Hist {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    n: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(&'static str, String, u16), u64>,
    bytes_in: BTreeMap<&'static str, u64>,
    bytes_out: BTreeMap<&'static str, u64>,
    latency: BTreeMap<&'static str, Hist>,
}

/// Request counters and latency histograms.
#[derive(Debug, Default)]
pub struct Metrics(Mutex<Inner>);

impl Metrics {
    /// Counts one answered request.
    pub fn observe(
        &self,
        route: &'static str,
        method: &str,
        status: u16,
        took: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *m.requests.entry((route, method.to_string(), status)).or_default() += 1;
        *m.bytes_in.entry(route).or_default() += bytes_in;
        *m.bytes_out.entry(route).or_default() += bytes_out;
        let h = m.latency.entry(route).or_default();
        let secs = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.n += 1;
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str("# HELP registry_http_requests_total Requests answered, by route, method and status.\n");
        out.push_str("# TYPE registry_http_requests_total counter\n");
        for ((r, meth, s), n) in &m.requests {
            out.push_str(&format!(
                "registry_http_requests_total{{route=\"{r}\",method=\"{meth}\",code=\"{s}\"}} {n}\n"
            ));
        }
        for (name, map, help) in [
            (
                "registry_http_request_bytes_total",
                &m.bytes_in,
                "Request body bytes declared, by route.",
            ),
            (
                "registry_http_response_bytes_total",
                &m.bytes_out,
                "Response body bytes declared, by route.",
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (r, n) in map {
                out.push_str(&format!("{name}{{route=\"{r}\"}} {n}\n"));
            }
        }
        out.push_str("# HELP registry_http_request_duration_seconds Time to the answer's head, by route.\n");
        out.push_str("# TYPE registry_http_request_duration_seconds histogram\n");
        for (r, h) in &m.latency {
            for (i, b) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "registry_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {}\n",
                    h.counts[i]
                ));
            }
            out.push_str(&format!(
                "registry_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}\n",
                h.n
            ));
            out.push_str(&format!(
                "registry_http_request_duration_seconds_sum{{route=\"{r}\"}} {}\n",
                h.sum
            ));
            out.push_str(&format!(
                "registry_http_request_duration_seconds_count{{route=\"{r}\"}} {}\n",
                h.n
            ));
        }
        out
    }
}

/// `GET /metrics`.
pub fn metrics(reg: &Registry) -> Resp {
    let body = reg.metrics.render();
    answer(
        200,
        &[
            ("content-type", "text/plain; version=0.0.4".into()),
            ("content-length", body.len().to_string()),
        ],
        full(body),
    )
}

/// `GET /health`.
pub fn health(reg: &Registry) -> Result<Resp> {
    reg.storage.list_uploads()?;
    Ok(answer(
        200,
        &[("content-type", "application/json".into())],
        full(r#"{"status":"ok"}"#),
    ))
}

/// `GET /token`.
pub fn token(reg: &Registry, ctx: &Ctx, req: &Request<Incoming>) -> Result<Resp> {
    let Some(auth) = reg.auth.as_ref().filter(|a| a.uses_tokens()) else {
        return Err(RegistryError::NotFound);
    };
    let account = match header(req, "authorization") {
        None => None,
        Some(v) => match auth.basic(v) {
            Some(a) => Some(a),
            None => {
                return Err(RegistryError::Unauthorized(crate::error::Challenge(
                    "Basic realm=\"wharf-registry token\"".into(),
                )))
            }
        },
    };
    let scopes: Vec<String> = ctx
        .params("scope")
        .iter()
        .flat_map(|s| s.split(' '))
        .map(str::to_string)
        .collect();
    let t = auth.issue(account.as_deref(), &scopes);
    let body = serde_json::to_vec(&t).unwrap_or_default();
    Ok(answer(
        200,
        &[
            ("content-type", "application/json".into()),
            ("content-length", body.len().to_string()),
        ],
        full(body),
    ))
}
