//! The registry's own endpoints: the token endpoint of Docker's token flow (`GET /token` with
//! Basic credentials or none, `scope` and `service` in the query), `/health` (storage
//! reachable), and `/metrics` in the OpenMetrics text format Prometheus scrapes (written by
//! `prometheus-client`): requests by route, method and status,
//! bytes in and out by route, and latency histograms by route.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as PromRegistry;

use hyper::body::Incoming;
use hyper::Request;

use super::{answer, full, header, Ctx, Registry, Resp};
use crate::error::{RegistryError, Result};

/// The latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Request counters and latency histograms, kept by `prometheus-client`.
#[derive(Debug)]
pub struct Metrics {
    registry: PromRegistry,
    requests: Family<RequestLabels, Counter>,
    bytes_in: Family<Route, Counter>,
    bytes_out: Family<Route, Counter>,
    latency: Family<Route, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = PromRegistry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let bytes_in = Family::<Route, Counter>::default();
        let bytes_out = Family::<Route, Counter>::default();
        let latency =
            Family::<Route, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "registry_http_requests",
            "Requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "registry_http_request_bytes",
            "Request body bytes declared, by route",
            bytes_in.clone(),
        );
        registry.register(
            "registry_http_response_bytes",
            "Response body bytes declared, by route",
            bytes_out.clone(),
        );
        registry.register(
            "registry_http_request_duration_seconds",
            "Time to the answer's head, by route",
            latency.clone(),
        );
        Metrics {
            registry,
            requests,
            bytes_in,
            bytes_out,
            latency,
        }
    }
}

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
        let r = Route { route };
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method: method.to_string(),
                code: status,
            })
            .inc();
        self.bytes_in.get_or_create(&r).inc_by(bytes_in);
        self.bytes_out.get_or_create(&r).inc_by(bytes_out);
        self.latency.get_or_create(&r).observe(took.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
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
            (
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
            ),
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
