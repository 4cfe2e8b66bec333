//! `/metrics`: the process's counters in Prometheus' text format, rendered by the `metrics`
//! crate's Prometheus exporter, and request latency per route.
//!
//! Each [`Telemetry`] owns a recorder of its own instead of installing the process-wide one:
//! tests start several apps in one process, and a global recorder would add up their requests
//! and let the first app's counters show in the second's page. Request latencies are recorded
//! into it through `metrics::with_local_recorder`.
//!
//! The counters the collector, the click pipeline and the aggregator keep stay the atomics they
//! are (a relaxed add on hot paths, read by those crates' own tests). At each scrape they are
//! copied into the recorder, each one named, described and read in a single call below, and the
//! exporter renders the page.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use touchline_aggregator::{AggStats, StageTimes};
use touchline_collector::{AppState, CollectorStats, ConnStats};
use touchline_kafka::{SpillStatus, SpillingBus};
use touchline_links::LinkState;

/// The request latency histogram, labelled by `route` (the matched route pattern, so link codes
/// and other path values do not each make a series) and `status`.
pub const REQUEST_DURATION: &str = "touchline_http_request_duration_seconds";

/// Upper bounds of the latency buckets, in seconds: sub-millisecond for the redirect and the
/// pixel, up to the seconds a report or a body timeout takes.
const LATENCY_BUCKETS: [f64; 14] = [0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The `route` label of requests no route matched.
const UNMATCHED_ROUTE: &str = "unmatched";

/// Histogram samples wait in the recorder until a scrape or an upkeep folds them into buckets;
/// without a scraper they would pile up, so they are folded at least this often.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Where the exported numbers come from.
pub struct MetricSources {
    pub collector: Arc<AppState>,
    pub aggregator: Arc<AggStats>,
    pub links: Arc<LinkState>,
    /// The collector's Kafka spill, when the bus is Kafka.
    pub spill: Option<Arc<SpillingBus>>,
}

/// One app's metrics: its recorder and the counters it exports.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    sources: MetricSources,
}

impl Telemetry {
    /// A recorder for these sources, with its upkeep running until the telemetry is dropped.
    pub fn start(sources: MetricSources) -> Arc<Telemetry> {
        // Fails only for an empty bucket list; without the override the exporter would render
        // the latencies as a summary, which cannot be aggregated across instances.
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), &LATENCY_BUCKETS)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "latency buckets refused; exporting latencies as a summary");
                PrometheusBuilder::new()
            });
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_histogram!(
                REQUEST_DURATION,
                metrics::Unit::Seconds,
                "Time from a request's arrival to its response's head, per matched route and status."
            );
        });
        let telemetry = Arc::new(Telemetry { recorder, handle, sources });
        tokio::spawn(upkeep(Arc::downgrade(&telemetry)));
        telemetry
    }

    /// Records one request of `route` (`None`: no route matched) that took `elapsed`.
    pub fn record_request(&self, route: Option<&str>, status: StatusCode, elapsed: Duration) {
        let route = route.unwrap_or(UNMATCHED_ROUTE).to_owned();
        metrics::with_local_recorder(&self.recorder, || {
            metrics::histogram!(REQUEST_DURATION, "route" => route, "status" => status.as_str().to_owned()).record(elapsed.as_secs_f64());
        });
    }

    /// The page `/metrics` answers.
    pub fn render(&self) -> String {
        metrics::with_local_recorder(&self.recorder, || self.sources.export());
        self.handle.render()
    }
}

async fn upkeep(telemetry: Weak<Telemetry>) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tick.tick().await;
        let Some(t) = telemetry.upgrade() else { return };
        t.handle.run_upkeep();
    }
}

/// The layer that times every request of a router by its matched route.
pub async fn track_latency(State(telemetry): State<Arc<Telemetry>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let resp = next.run(req).await;
    telemetry.record_request(route.as_ref().map(MatchedPath::as_str), resp.status(), started.elapsed());
    resp
}

/// `GET /metrics`.
pub async fn metrics_page(State(telemetry): State<Arc<Telemetry>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], telemetry.render())
}

fn counter(name: &'static str, help: &'static str, value: &AtomicU64) {
    counter_value(name, help, value.load(Ordering::Relaxed));
}

fn counter_value(name: &'static str, help: &'static str, value: u64) {
    metrics::describe_counter!(name, help);
    metrics::counter!(name).absolute(value);
}

fn gauge(name: &'static str, help: &'static str, value: u64) {
    metrics::describe_gauge!(name, help);
    metrics::gauge!(name).set(value as f64);
}

impl MetricSources {
    /// Copies every counter into the current recorder.
    fn export(&self) {
        export_collector(&self.collector.stats);
        export_connections(&self.collector.stats.connections);
        export_links(&self.links);
        export_aggregator(&self.aggregator);
        export_stage_seconds(&self.aggregator.stages);
        export_spill(self.spill.as_ref().map(|s| s.status()).as_ref());
        export_weights();
    }
}

fn export_weights() {
    counter(
        "touchline_weights_refreshes_total",
        "Accounts whose channel weights (per-conversion markov and shapley) this process refreshed on the schedule.",
        &crate::weights::REFRESHES,
    );
    counter(
        "touchline_weights_refresh_failures_total",
        "Scheduled weight refreshes that failed (the log says why); each is tried again at the next check.",
        &crate::weights::REFRESH_FAILURES,
    );
}

fn export_collector(s: &CollectorStats) {
    counter("touchline_http_requests_total", "Ingestion requests received (JSON routes, beacon and pixel).", &s.requests);
    counter("touchline_records_accepted_total", "Records durably appended to the bus.", &s.records_accepted);
    counter("touchline_records_rejected_total", "Records refused by validation (listed in the response).", &s.records_rejected);
    counter("touchline_bus_failures_total", "Appends the bus refused; the client got 503.", &s.bus_failures);
    counter(
        "touchline_pixels_dropped_total",
        "Pixel hits not stored (bad key, bad parameters, bus down); the GIF was still served.",
        &s.pixels_dropped,
    );
    counter("touchline_rate_limited_total", "Requests refused with 429 because the account was over its rate.", &s.rate_limited);
    counter(
        "touchline_auth_failures_total",
        "Requests with a missing, malformed or unknown key (counted per client address).",
        &s.auth_failures,
    );
    counter(
        "touchline_auth_throttled_total",
        "Requests refused with 429 because their address failed authentication too often.",
        &s.auth_throttled,
    );
    counter(
        "touchline_negative_key_hits_total",
        "Unknown keys answered from the negative cache, without a store lookup.",
        &s.negative_key_hits,
    );
    counter(
        "touchline_body_timeouts_total",
        "Request bodies that did not arrive within collector.body_read_timeout_ms (408).",
        &s.body_timeouts,
    );
}

fn export_connections(c: &ConnStats) {
    gauge("touchline_http_connections_open", "HTTP connections open now.", c.open.load(Ordering::Relaxed));
    counter("touchline_http_connections_accepted_total", "HTTP connections accepted.", &c.accepted);
    counter(
        "touchline_http_connections_refused_total",
        "HTTP connections closed at once because collector.max_connections were open.",
        &c.refused,
    );
    counter(
        "touchline_http_header_timeouts_total",
        "Connections closed for not sending a request head within collector.header_read_timeout_ms.",
        &c.header_timeouts,
    );
    counter(
        "touchline_http_idle_closed_total",
        "Connections closed after collector.idle_timeout_ms without a byte read or written.",
        &c.idle_closed,
    );
    counter("touchline_http_accept_errors_total", "Failed accepts (file descriptors exhausted, …).", &c.accept_errors);
}

fn export_links(links: &LinkState) {
    let c = &links.stats;
    counter("touchline_link_redirects_total", "Short-link redirects answered (302).", &c.redirects);
    counter("touchline_link_clicks_logged_total", "Link clicks appended to the bus.", &c.logged);
    counter(
        "touchline_link_clicks_waited_total",
        "Redirects that found the click queue's byte budget used up and waited for room (links.click_queue_bytes).",
        &c.waited,
    );
    counter(
        "touchline_link_clicks_lost_total",
        "Link clicks dropped because the click queue stayed full for links.click_queue_wait_ms (the bus is down or far behind).",
        &c.lost,
    );
    gauge("touchline_link_click_queue_bytes", "Bytes of link clicks queued for the bus.", links.clicks.queued_bytes() as u64);
}

fn export_aggregator(a: &AggStats) {
    counter("touchline_aggregator_records_total", "Records the aggregator consumed.", &a.records);
    counter("touchline_aggregator_flushes_total", "Flushes (checkpoint, then the results delivered to the sinks).", &a.flushes);
    counter("touchline_aggregator_sink_errors_total", "Failed sink writes (retried; consumption pauses meanwhile).", &a.sink_errors);
    counter(
        "touchline_aggregator_sink_refused_rows_total",
        "Rows a sink refused as invalid, kept in touchline.dlq with the reason.",
        &a.sink_refused_rows,
    );
    counter("touchline_aggregator_too_late_total", "Records older than the allowed lateness, kept in touchline.dlq.", &a.too_late);
    counter(
        "touchline_aggregator_bad_records_total",
        "Unreadable records and records no store could hold (written past the decoder), kept in touchline.dlq.",
        &a.bad_records,
    );
    counter("touchline_aggregator_duplicates_total", "Records that repeated an earlier record id (counted once).", &a.duplicates);
    counter("touchline_aggregator_transfers_total", "Identity re-key records sent to touchline.identities.", &a.transfers_out);
    counter(
        "touchline_aggregator_partition_failures_total",
        "Partition tasks that failed (broker, sink or checkpoint error, fenced save) and restarted from their checkpoint.",
        &a.partition_failures,
    );
    gauge("touchline_aggregator_lag_records", "Records on the bus not yet checkpointed by this aggregator.", a.lag());
    gauge(
        "touchline_aggregator_state_bytes",
        "Bytes of the engine state (compressed snapshot) at the last snapshot, over the partitions this aggregator owns.",
        a.state_bytes(),
    );
    counter(
        "touchline_aggregator_snapshots_total",
        "Snapshots of a whole partition state written (checkpoints in between hold only their offsets).",
        &a.snapshots,
    );
    counter(
        "touchline_aggregator_records_fed_again_total",
        "Records fed to an engine again on restore, to rebuild a state between two snapshots.",
        &a.records_fed_again,
    );
    counter(
        "touchline_aggregator_attribution_sets_total",
        "Attribution sets (one conversion, one model) the flushes produced; each replaces the conversion's earlier set for that model.",
        &a.attribution_sets,
    );
    counter("touchline_aggregator_attribution_rows_total", "Attribution rows (credited touches) in those sets.", &a.attribution_rows);
    gauge(
        "touchline_engine_records_waiting_for_rate",
        "Conversions and spend reports in a currency with no exchange rate to their account's reporting currency yet, held by the partitions this aggregator owns until a rate comes.",
        a.waiting_for_rate(),
    );
    counter(
        "touchline_aggregator_no_rate_total",
        "Records given up for want of an exchange rate (waiting list full, or still waiting past the allowed lateness), kept in touchline.dlq.",
        &a.no_rate,
    );
}

/// The aggregator's time per stage and per sink. They only grow, but in fractional seconds, and
/// the `metrics` crate's counters are integers: they are exported as gauges.
fn export_stage_seconds(stages: &StageTimes) {
    const STAGE: &str = "touchline_aggregator_stage_seconds_total";
    const SINK: &str = "touchline_aggregator_sink_seconds_total";
    metrics::describe_gauge!(
        STAGE,
        "Seconds the aggregator spent per stage (read, decode, engine, snapshot, checkpoint, sinks, append), summed over partitions."
    );
    for (stage, secs) in stages.seconds() {
        metrics::gauge!(STAGE, "stage" => stage).set(secs);
    }
    metrics::describe_gauge!(
        SINK,
        "Seconds the aggregator spent writing to each sink, raw rows and results apart (retries included), summed over partitions."
    );
    for (sink, rows, secs) in stages.sink_seconds() {
        metrics::gauge!(SINK, "sink" => sink, "rows" => rows.name()).set(secs);
    }
}

/// The Kafka spill's backlog and totals; zeros when the bus is not Kafka.
fn export_spill(status: Option<&SpillStatus>) {
    let of = |f: fn(&SpillStatus) -> u64| status.map_or(0, f);
    gauge(
        "touchline_spill_backlog_records",
        "Acknowledged records in the collector's spill, not yet produced to Kafka.",
        of(|s| s.backlog_records),
    );
    gauge(
        "touchline_spill_backlog_bytes",
        "Bytes (keys and values) in the collector's spill, not yet produced to Kafka.",
        of(|s| s.backlog_bytes),
    );
    counter_value(
        "touchline_spill_records_total",
        "Records acknowledged from the spill because Kafka was unreachable.",
        of(|s| s.spilled_total),
    );
    counter_value("touchline_spill_drained_total", "Spilled records produced to Kafka once it answered.", of(|s| s.drained_total));
}
