//! What the server counts for its operators, and `/metrics`, which serves
//! it in the Prometheus / OpenMetrics text format on a listener of its own
//! (`valised run --metrics-listen 127.0.0.1:9464`).
//!
//! ```text
//! handlers ─ atomic adds ─▶ Metrics ◀─ scrape: gauges read from the writer,
//!                                       the directory, then encoded
//! ```
//!
//! Counting is on the request path, so it costs atomics only: the letter
//! counters are handles taken once at start, never looked up per letter.
//! A request's latency goes to its route's histogram (one uncontended lock
//! per request, inside the client library; none per letter). Values that
//! exist elsewhere already (queue depth, directory epoch) are read at
//! scrape time, not kept in step on the hot path.
//!
//! The listener is plain HTTP and refuses to bind anything but loopback
//! ([`crate::config`]): the numbers say how busy the server is and when,
//! which is not for the network to read.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::time::Instant;
use valise_proto::wire::Outcome;

/// The content type of the OpenMetrics text format, which Prometheus reads.
const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A letter's outcome, as a label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LetterLabels {
    /// `accepted`, `duplicate`, `stale_epoch`, `skipped`, or the error code
    /// of a refusal (`payload_too_large`, `storage_full`, ...).
    outcome: &'static str,
}

/// A request, as labels: the route's pattern (never the path itself, whose
/// user names and conversation ids would make a series each), the method
/// and the status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

type Latencies = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// A server alert's kind, as a label (`crate::rules::AlertKind`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub kind: &'static str,
}

/// Alerts raised, by kind: counted by the audit writer, which raises them.
pub type AlertCounts = Family<AlertLabels, Counter>;

/// Every metric of a running server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    letters: Family<LetterLabels, Counter>,
    /// Handles into `letters`, taken once so that counting a letter is one
    /// atomic add.
    accepted: Counter,
    duplicate: Counter,
    stale_epoch: Counter,
    skipped: Counter,
    deliveries: Counter,
    connections: Gauge,
    queue_bytes: Gauge,
    queue_requests: Gauge,
    directory_epoch: Gauge,
    audit_size: Gauge,
    checkpoint_age: Gauge,
    requests: Latencies,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Latency buckets: 1 ms to about 33 s (a long poll waits up to 30 s).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(AlertCounts::default())
    }
}

impl Metrics {
    /// The metrics, with the audit writer's count of `alerts`.
    pub fn new(alerts: AlertCounts) -> Self {
        let mut registry = Registry::with_prefix("valise");
        let letters = Family::<LetterLabels, Counter>::default();
        let handle = |outcome| letters.get_or_create_owned(&LetterLabels { outcome });
        let (accepted, duplicate, stale_epoch, skipped) = (
            handle("accepted"),
            handle("duplicate"),
            handle("stale_epoch"),
            handle("skipped"),
        );
        registry.register(
            "letters",
            "Letters sent to this server, by outcome (accepted, duplicate, stale_epoch, skipped, or the refusal's error code)",
            letters.clone(),
        );
        let deliveries = Counter::default();
        registry.register(
            "deliveries",
            "Inbox entries (letters, commits, welcomes) served to devices; an entry read again counts again",
            deliveries.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections_open",
            "HTTPS connections open now",
            connections.clone(),
        );
        let queue_bytes = Gauge::default();
        registry.register_with_unit(
            "writer_queue",
            "Letters and commits waiting for the delivery writer, rounded up to KiB each",
            Unit::Bytes,
            queue_bytes.clone(),
        );
        let queue_requests = Gauge::default();
        registry.register(
            "writer_queue_requests",
            "Writes (batches of letters, commits, acknowledgements) waiting for the delivery writer or being written",
            queue_requests.clone(),
        );
        let directory_epoch = Gauge::default();
        registry.register(
            "directory_epoch",
            "The key directory's latest published epoch",
            directory_epoch.clone(),
        );
        registry.register(
            "alerts",
            "Server alerts raised since the server started, by kind (docs/OPERATIONS.md, Server alerts)",
            alerts,
        );
        let audit_size = Gauge::default();
        registry.register(
            "audit_tree_size",
            "Entries in the audit log",
            audit_size.clone(),
        );
        let checkpoint_age = Gauge::default();
        registry.register_with_unit(
            "audit_checkpoint_age",
            "Time since the audit log's newest checkpoint was signed",
            Unit::Seconds,
            checkpoint_age.clone(),
        );
        let requests: Latencies = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival to its response, by route pattern, method and status (long polls included)",
            Unit::Seconds,
            requests.clone(),
        );
        Self {
            registry,
            letters,
            accepted,
            duplicate,
            stale_epoch,
            skipped,
            deliveries,
            connections,
            queue_bytes,
            queue_requests,
            directory_epoch,
            audit_size,
            checkpoint_age,
            requests,
        }
    }

    /// Counts the outcomes of one batch of letters.
    pub fn letters(&self, outcomes: &[Outcome]) {
        for o in outcomes {
            match o {
                Outcome::Accepted { .. } => self.accepted.inc(),
                Outcome::Duplicate { .. } => self.duplicate.inc(),
                Outcome::StaleEpoch { .. } => self.stale_epoch.inc(),
                Outcome::Skipped => self.skipped.inc(),
                // Rare: the family's lookup is fine here.
                Outcome::Refused { code, .. } => self
                    .letters
                    .get_or_create(&LetterLabels {
                        outcome: code.as_str(),
                    })
                    .inc(),
            };
        }
    }

    /// Counts inbox entries served to a device.
    pub fn delivered(&self, entries: usize) {
        self.deliveries
            .inc_by(u64::try_from(entries).unwrap_or(u64::MAX));
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections.inc();
        OpenConnection(self.connections.clone())
    }

    /// The text a scrape answers, with the values read at scrape time
    /// brought up to date first.
    pub fn render(&self, state: &AppState) -> Result<String, std::fmt::Error> {
        let (kib, requests) = state.delivery.queued();
        self.queue_bytes
            .set(i64::try_from(kib.saturating_mul(1024)).unwrap_or(i64::MAX));
        self.queue_requests
            .set(i64::try_from(requests).unwrap_or(i64::MAX));
        self.directory_epoch
            .set(i64::try_from(state.directory.epoch()).unwrap_or(i64::MAX));
        let log = &state.evidence.status;
        self.audit_size.set(
            i64::try_from(log.size.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(i64::MAX),
        );
        let signed = log
            .checkpoint_at_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        self.checkpoint_age
            .set(crate::now_ms().saturating_sub(signed).max(0) / 1000);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Layer of the API router: times each request under its route's pattern.
pub async fn time_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// # GET /metrics (on the metrics listener only)
async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .render(&state)
        .map_err(|_| ApiError::internal("metrics could not be encoded"))?;
    Ok(([(CONTENT_TYPE, CONTENT)], text).into_response())
}

/// Serves `/metrics` on `listener` until the server stops. Plain HTTP:
/// the caller has checked that it is a loopback address.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    mut stop: crate::background::StopSignal,
) {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.stopped().await })
        .await
    {
        tracing::error!(error = %e, "metrics listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use valise_proto::ErrorCode;

    fn count(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn letters_are_counted_by_outcome() {
        let m = Metrics::default();
        m.letters(&[
            Outcome::Accepted {
                recipients: 2,
                seq: 1,
            },
            Outcome::Accepted {
                recipients: 2,
                seq: 2,
            },
            Outcome::Skipped,
            Outcome::Refused {
                code: ErrorCode::PayloadTooLarge,
                message: String::new(),
            },
        ]);
        m.delivered(3);
        let open = m.connection_opened();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).unwrap();
        assert_eq!(
            count(&text, "valise_letters_total{outcome=\"accepted\"}"),
            2.0
        );
        assert_eq!(
            count(&text, "valise_letters_total{outcome=\"skipped\"}"),
            1.0
        );
        assert_eq!(
            count(&text, "valise_letters_total{outcome=\"duplicate\"}"),
            0.0
        );
        assert_eq!(
            count(&text, "valise_letters_total{outcome=\"payload_too_large\"}"),
            1.0
        );
        assert_eq!(count(&text, "valise_deliveries_total"), 3.0);
        assert_eq!(count(&text, "valise_connections_open"), 1.0);
        drop(open);
        assert_eq!(m.connections.get(), 0);
        assert!(text.ends_with("# EOF\n"));
    }
}
