//! `/metrics` over real HTTP: every counter that dashboards and scripts read is there under its
//! name, requests show in the latency histogram by matched route and status, and two apps in
//! one process keep their numbers apart.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::json;
use touchline::app::App;
use touchline::config::Config;

const WRITE: &str = "tl_wk_metrics_write_key_0001";
const SECRET: &str = "tl_sk_metrics_secret_key_001";

/// Every exported name, as docs/api.md lists them.
const NAMES: [&str; 46] = [
    "touchline_http_requests_total",
    "touchline_records_accepted_total",
    "touchline_records_rejected_total",
    "touchline_bus_failures_total",
    "touchline_pixels_dropped_total",
    "touchline_rate_limited_total",
    "touchline_auth_failures_total",
    "touchline_auth_throttled_total",
    "touchline_negative_key_hits_total",
    "touchline_body_timeouts_total",
    "touchline_http_connections_open",
    "touchline_http_connections_accepted_total",
    "touchline_http_connections_refused_total",
    "touchline_http_header_timeouts_total",
    "touchline_http_idle_closed_total",
    "touchline_http_accept_errors_total",
    "touchline_link_redirects_total",
    "touchline_link_clicks_logged_total",
    "touchline_link_clicks_waited_total",
    "touchline_link_clicks_lost_total",
    "touchline_link_click_queue_bytes",
    "touchline_aggregator_records_total",
    "touchline_aggregator_flushes_total",
    "touchline_aggregator_sink_errors_total",
    "touchline_aggregator_sink_refused_rows_total",
    "touchline_aggregator_too_late_total",
    "touchline_aggregator_bad_records_total",
    "touchline_aggregator_duplicates_total",
    "touchline_aggregator_transfers_total",
    "touchline_aggregator_partition_failures_total",
    "touchline_aggregator_lag_records",
    "touchline_aggregator_state_bytes",
    "touchline_aggregator_snapshots_total",
    "touchline_aggregator_records_fed_again_total",
    "touchline_aggregator_attribution_sets_total",
    "touchline_aggregator_attribution_rows_total",
    "touchline_engine_records_waiting_for_rate",
    "touchline_aggregator_no_rate_total",
    "touchline_weights_refreshes_total",
    "touchline_weights_refresh_failures_total",
    "touchline_aggregator_stage_seconds_total",
    "touchline_aggregator_sink_seconds_total",
    "touchline_spill_backlog_records",
    "touchline_spill_backlog_bytes",
    "touchline_spill_records_total",
    "touchline_spill_drained_total",
];

struct Running {
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        Config { data_dir: dir.path().join("data"), write_key: Some(WRITE.into()), secret_key: Some(SECRET.into()), ..Config::default() };
    config.aggregator.flush_interval_ms = 100;
    let app = App::build(config, touchline::app::Role::Serve).await.unwrap();
    let (base, tx) = common::serve_on_loopback(app).await;
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    Running { base, http, _dir: dir, _stop: tx }
}

impl Running {
    async fn metrics(&self) -> String {
        let r = self.http.get(format!("{}/metrics", self.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        r.text().await.unwrap()
    }
}

/// The value of the series `series` (name and labels as rendered), if the page has it.
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn every_counter_keeps_its_name_and_type() {
    let t = start().await;
    let event = json!({"event_name": "page_view", "anonymous_id": "a1"});
    let r = t.http.post(format!("{}/v1/events", t.base)).bearer_auth(WRITE).json(&event).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Sink times have a series per sink once the aggregator has written to it.
    let started = std::time::Instant::now();
    let mut page = t.metrics().await;
    while !page.contains("touchline_aggregator_sink_seconds_total{") {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the aggregator never wrote to a sink:\n{page}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        page = t.metrics().await;
    }
    for name in NAMES {
        assert!(page.contains(&format!("# TYPE {name} ")), "{name} is missing:\n{page}");
        assert!(page.contains(&format!("# HELP {name} ")), "{name} has no help:\n{page}");
    }
    assert!(page.contains("# TYPE touchline_records_accepted_total counter\n"), "{page}");
    assert!(page.contains("# TYPE touchline_http_connections_open gauge\n"), "{page}");
    assert_eq!(value(&page, "touchline_http_requests_total"), Some(1.0), "{page}");
    assert!(page.contains("touchline_aggregator_sink_seconds_total{sink=\"warehouse\",rows=\"raw\"} "), "{page}");
    assert_eq!(value(&page, "touchline_records_accepted_total"), Some(1.0), "{page}");
    // Integers as integers: scripts parse these as whole numbers.
    assert!(page.contains("\ntouchline_spill_backlog_records 0\n"), "{page}");
    assert!(page.contains("touchline_aggregator_stage_seconds_total{stage=\"engine\"} "), "{page}");
}

#[tokio::test]
async fn requests_show_in_the_latency_histogram_by_route_and_status() {
    let t = start().await;
    let event = json!({"event_name": "page_view", "anonymous_id": "a1"});
    for _ in 0..3 {
        let r = t.http.post(format!("{}/v1/events", t.base)).bearer_auth(WRITE).json(&event).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = t.http.get(format!("{}/v1/reports/campaigns", t.base)).bearer_auth(WRITE).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = t.http.get(format!("{}/l/no-such-code", t.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = t.http.get(format!("{}/nowhere/at/all", t.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let page = t.metrics().await;
    let h = "touchline_http_request_duration_seconds";
    assert!(page.contains(&format!("# TYPE {h} histogram\n")), "{page}");
    assert_eq!(value(&page, &format!("{h}_count{{route=\"/v1/events\",status=\"200\"}}")), Some(3.0), "{page}");
    assert_eq!(value(&page, &format!("{h}_bucket{{route=\"/v1/events\",status=\"200\",le=\"+Inf\"}}")), Some(3.0), "{page}");
    assert!(value(&page, &format!("{h}_sum{{route=\"/v1/events\",status=\"200\"}}")).unwrap() > 0.0, "{page}");
    assert_eq!(value(&page, &format!("{h}_count{{route=\"/v1/reports/campaigns\",status=\"403\"}}")), Some(1.0), "{page}");
    // Path values do not make series of their own: the route is the pattern.
    assert_eq!(value(&page, &format!("{h}_count{{route=\"/l/{{code}}\",status=\"404\"}}")), Some(1.0), "{page}");
    assert!(!page.contains("no-such-code"), "{page}");
    assert_eq!(value(&page, &format!("{h}_count{{route=\"unmatched\",status=\"404\"}}")), Some(1.0), "{page}");
}

#[tokio::test]
async fn two_apps_in_one_process_keep_their_numbers_apart() {
    let (a, b) = (start().await, start().await);
    let event = json!({"event_name": "page_view", "anonymous_id": "a1"});
    for _ in 0..2 {
        let r = a.http.post(format!("{}/v1/events", a.base)).bearer_auth(WRITE).json(&event).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let page_b = b.metrics().await;
    assert_eq!(value(&page_b, "touchline_records_accepted_total"), Some(0.0), "{page_b}");
    assert!(!page_b.contains("route=\"/v1/events\""), "{page_b}");
    let page_a = a.metrics().await;
    assert_eq!(value(&page_a, "touchline_http_request_duration_seconds_count{route=\"/v1/events\",status=\"200\"}"), Some(2.0));
}
