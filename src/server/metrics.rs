//! Prometheus metrics (`GET /metrics`, OpenMetrics text format) with the prometheus-client crate,
//! the Prometheus project's own Rust client: it gets the exposition format (names, escaping,
//! `# EOF`) right, and costs three small dependencies besides its derive macro.

use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use axum::extract::{MatchedPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Content-Type of the OpenMetrics text exposition format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Route label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

/// Labels of one request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route template, e.g. `/media/{track_id}/{*path}`, so ids do not explode the series.
    route: &'static str,
    /// The response status code.
    status: u16,
}

/// Labels of bytes sent.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

/// Labels of disk cache events.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiskCacheLabels {
    event: &'static str,
}

/// Labels of control-channel errors.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

/// Labels of bucket requests.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketLabels {
    op: &'static str,
    outcome: &'static str,
}

/// Labels of bus events.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BusLabels {
    event: &'static str,
}

/// Every metric of the server.
pub struct Metrics {
    bus_up: Gauge,
    bus_events: Family<BusLabels, Counter>,
    bucket_requests: Family<BucketLabels, Counter>,
    bucket_bytes: Family<BucketLabels, Counter>,
    bucket_seconds: Family<BucketLabels, Histogram>,
    disk_cache: Family<DiskCacheLabels, Counter>,
    bucket_up: Gauge,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    body_bytes: Family<RouteLabels, Counter>,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_bytes: Gauge,
    open_connections: Gauge,
    connections: Counter,
    refused_connections: Counter,
    control_connections: Gauge,
    control_messages: Counter,
    control_errors: Family<CodeLabels, Counter>,
    zero_copy_bytes: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, all at zero.
    pub fn new() -> Self {
        let (requests, body_bytes) = (Family::default(), Family::default());
        let (cache_hits, cache_misses, connections) = <(Counter, Counter, Counter)>::default();
        let (cache_bytes, open_connections) = <(Gauge, Gauge)>::default();
        let mut registry = Registry::default();
        let r = &mut registry;
        let help = "HTTP requests by route template and status";
        r.register("segue_http_requests", help, requests.clone());
        let help = "Response body bytes sent, by route template";
        r.register("segue_http_response_body_bytes", help, body_bytes.clone());
        let help = "Media file reads served from the in-memory cache";
        r.register("segue_cache_hits", help, cache_hits.clone());
        let help = "Media file reads that went to the disk";
        r.register("segue_cache_misses", help, cache_misses.clone());
        let help = "Approximate bytes held by the in-memory cache";
        r.register("segue_cache_bytes", help, cache_bytes.clone());
        let help = "TCP connections currently open";
        r.register("segue_open_connections", help, open_connections.clone());
        r.register(
            "segue_connections",
            "TCP connections accepted",
            connections.clone(),
        );
        let refused_connections = Counter::default();
        let help = "TCP connections refused with 503 because of the connection cap";
        r.register(
            "segue_refused_connections",
            help,
            refused_connections.clone(),
        );
        let control_connections = Gauge::default();
        let control_messages = Counter::default();
        let control_errors = Family::default();
        let help = "WebSocket control connections currently open";
        r.register(
            "segue_control_connections",
            help,
            control_connections.clone(),
        );
        let help = "Control messages received";
        r.register("segue_control_messages", help, control_messages.clone());
        let help = "Control messages answered with an error, by error code";
        r.register("segue_control_errors", help, control_errors.clone());
        let bucket_requests = Family::default();
        let bucket_bytes = Family::default();
        let bucket_seconds = Family::<BucketLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let help = "Requests to the library's bucket, by operation and outcome";
        r.register("segue_bucket_requests", help, bucket_requests.clone());
        let help = "Object bytes moved to or from the bucket, by operation and outcome";
        r.register("segue_bucket_bytes", help, bucket_bytes.clone());
        let help = "Latency of bucket requests in seconds, by operation and outcome";
        r.register("segue_bucket_request_seconds", help, bucket_seconds.clone());
        let bucket_up = Gauge::default();
        let help = "1 while the last bucket request was answered, 0 after a failure";
        r.register("segue_bucket_up", help, bucket_up.clone());
        let disk_cache = Family::default();
        let help = "Disk cache lookups and repairs, by event (hit, miss, corrupt)";
        r.register("segue_disk_cache_events", help, disk_cache.clone());
        let zero_copy_bytes = Counter::default();
        let help = "Response body bytes sent from files with sendfile, without a copy";
        r.register("segue_zero_copy_bytes", help, zero_copy_bytes.clone());
        let (bus_up, bus_events) = (Gauge::default(), Family::default());
        let help = "1 while control sessions are shared through the bus (--bus), 0 when local";
        r.register("segue_bus_up", help, bus_up.clone());
        let help = "Bus events: notice, conflict, repaired, rewritten, rejected, degraded, recovered, disconnected";
        r.register("segue_bus_events", help, bus_events.clone());
        Metrics {
            bus_up,
            bus_events,
            bucket_requests,
            bucket_bytes,
            bucket_seconds,
            disk_cache,
            bucket_up,
            zero_copy_bytes,
            refused_connections,
            control_connections,
            control_messages,
            control_errors,
            registry,
            requests,
            body_bytes,
            cache_hits,
            cache_misses,
            cache_bytes,
            open_connections,
            connections,
        }
    }

    /// Counts body bytes sent from a file without a copy.
    pub fn zero_copy_sent(&self, bytes: usize) {
        self.zero_copy_bytes.inc_by(bytes as u64);
    }

    /// Counts one bucket request.
    pub fn bucket_request(
        &self,
        op: &'static str,
        outcome: &'static str,
        bytes: u64,
        seconds: f64,
    ) {
        let labels = BucketLabels { op, outcome };
        self.bucket_requests.get_or_create(&labels).inc();
        self.bucket_bytes.get_or_create(&labels).inc_by(bytes);
        self.bucket_seconds.get_or_create(&labels).observe(seconds);
    }

    /// Sets whether the bucket answers.
    pub fn set_bucket_up(&self, up: bool) {
        self.bucket_up.set(i64::from(up));
    }

    /// Sets whether the bus carries the sessions.
    pub fn set_bus_up(&self, up: bool) {
        self.bus_up.set(i64::from(up));
    }

    /// Counts a bus event.
    pub fn bus_event(&self, event: &'static str) {
        self.bus_events.get_or_create(&BusLabels { event }).inc();
    }

    /// Counts one disk cache event (`hit`, `miss`, `corrupt`).
    pub fn disk_cache_event(&self, event: &'static str) {
        self.disk_cache
            .get_or_create(&DiskCacheLabels { event })
            .inc();
    }

    /// Counts a connection refused at the cap.
    pub fn connection_refused(&self) {
        self.refused_connections.inc();
    }

    /// Counts a control connection opening (`+1`) or closing (`-1`).
    pub fn control_connection(&self, delta: i64) {
        self.control_connections.inc_by(delta);
    }

    /// Counts one control message received.
    pub fn control_message(&self) {
        self.control_messages.inc();
    }

    /// Counts one control error sent, by code.
    pub fn control_error(&self, code: &'static str) {
        self.control_errors
            .get_or_create(&CodeLabels { code })
            .inc();
    }

    /// Counts one cache hit.
    pub fn cache_hit(&self) {
        self.cache_hits.inc();
    }

    /// Counts one cache miss.
    pub fn cache_miss(&self) {
        self.cache_misses.inc();
    }

    /// Sets the cache size gauge, in bytes.
    pub fn set_cache_bytes(&self, bytes: u64) {
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Counts a new connection (open until [`Metrics::connection_closed`]).
    pub fn connection_opened(&self) {
        self.connections.inc();
        self.open_connections.inc();
    }

    /// Counts a connection closed.
    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    /// The exposition text.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The route label of a request: its route template, as a `&'static str` so that counting a
/// request allocates nothing. The templates are the router's few fixed strings; each is leaked
/// once, the first time it is seen.
pub fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    static SEEN: RwLock<Vec<&'static str>> = RwLock::new(Vec::new());
    let Some(route) = matched.map(MatchedPath::as_str) else {
        return UNMATCHED;
    };
    let known = |seen: &[&'static str]| seen.iter().copied().find(|s| *s == route);
    // A poisoned lock only means a panic elsewhere while holding it; the list is still valid.
    if let Some(label) = known(&SEEN.read().unwrap_or_else(PoisonError::into_inner)) {
        return label;
    }
    let mut seen = SEEN.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(label) = known(&seen) {
        return label;
    }
    let label: &'static str = Box::leak(route.into());
    seen.push(label);
    label
}

impl Metrics {
    /// Counts one response by route and status, and its body bytes (none for HEAD).
    pub fn record_request(&self, route: &'static str, response: &Response, head: bool) {
        count_response(
            response,
            head,
            |status| {
                self.requests
                    .get_or_create(&RequestLabels { route, status })
                    .inc();
            },
            |bytes| {
                self.body_bytes
                    .get_or_create(&RouteLabels { route })
                    .inc_by(bytes);
            },
        );
    }
}

/// What counting `response` takes: its status, and its body's size unless it answers a HEAD.
/// Every body here is a complete buffer, so its exact size is known up front.
fn count_response(
    response: &Response,
    head: bool,
    status: impl FnOnce(u16),
    body_bytes: impl FnOnce(u64),
) {
    status(response.status().as_u16());
    if let (Some(bytes), false) = (
        axum::body::HttpBody::size_hint(response.body()).exact(),
        head,
    ) {
        body_bytes(bytes);
    }
}

/// The request metrics of one route, with the counters of the usual statuses looked up once:
/// counting a request is then an atomic add, not a look-up in the label map.
#[derive(Debug)]
pub struct RouteMetrics {
    metrics: Arc<Metrics>,
    route: &'static str,
    /// The counters of [`FREQUENT`]'s statuses, made on first use (so a series exists only
    /// once a request had its status).
    frequent: [OnceLock<Counter>; FREQUENT.len()],
    body_bytes: OnceLock<Counter>,
}

/// The statuses of media responses whose counters [`RouteMetrics`] keeps at hand.
const FREQUENT: [u16; 3] = [200, 206, 304];

impl RouteMetrics {
    /// The metrics of `route` (a route template) in `metrics`.
    pub fn new(metrics: Arc<Metrics>, route: &'static str) -> Self {
        RouteMetrics {
            metrics,
            route,
            frequent: Default::default(),
            body_bytes: OnceLock::new(),
        }
    }

    /// Counts a response to a GET: as [`Metrics::record_request`] does.
    pub fn record(&self, response: &Response) {
        let route = self.route;
        count_response(
            response,
            false,
            |status| {
                let counter = || {
                    let labels = RequestLabels { route, status };
                    self.metrics.requests.get_or_create(&labels).clone()
                };
                match FREQUENT.iter().position(|s| *s == status) {
                    Some(i) => self.frequent[i].get_or_init(counter).inc(),
                    None => counter().inc(),
                };
            },
            |bytes| {
                self.body_bytes
                    .get_or_init(|| {
                        let labels = RouteLabels { route };
                        self.metrics.body_bytes.get_or_create(&labels).clone()
                    })
                    .inc_by(bytes);
            },
        );
    }
}

/// `GET /metrics`.
pub async fn render(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.render() {
        Ok(text) => {
            let mut response = text.into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics encoding failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let m = Metrics::new();
        m.cache_hit();
        m.connection_opened();
        m.requests
            .get_or_create(&RequestLabels {
                route: "/healthz",
                status: 200,
            })
            .inc();
        let text = m.render().unwrap();
        for line in [
            "segue_http_requests_total{route=\"/healthz\",status=\"200\"} 1",
            "segue_cache_hits_total 1",
            "segue_cache_misses_total 0",
            "segue_open_connections 1",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
