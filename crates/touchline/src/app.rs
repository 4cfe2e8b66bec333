//! Assembling the roles: `serve` = collector + embedded log (the aggregator and stores join in
//! their issues).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use touchline_bus::{Bus, EmbeddedLog};
use touchline_collector::{AppState, KeyStore};

use crate::accounts::{Accounts, NewKeys};
use crate::config::Config;

/// Everything `serve` runs, built from a config.
pub struct App {
    pub config: Config,
    pub log: Arc<EmbeddedLog>,
    pub state: Arc<AppState>,
    pub new_keys: NewKeys,
    pub default_account: Option<uuid::Uuid>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        for (what, v, issue) in [
            ("TOUCHLINE_KAFKA_BROKERS (kafka_brokers)", &config.kafka_brokers, "the Kafka bus"),
            ("TOUCHLINE_CLICKHOUSE_URL (clickhouse_url)", &config.clickhouse_url, "the ClickHouse sink"),
            ("TOUCHLINE_DATABASE_URL (database_url)", &config.database_url, "the SQL stores"),
        ] {
            if v.is_some() {
                bail!("{what} is set, but {issue} is not built yet in this version; unset it to run with the embedded defaults");
            }
        }
        let (accounts, new_keys) = Accounts::open(&config.data_dir, config.write_key.as_deref(), config.secret_key.as_deref())?;
        let keys: Arc<dyn KeyStore> = Arc::new(accounts.key_store());
        let log = EmbeddedLog::open(config.log_dir(), config.log.clone())
            .await
            .with_context(|| format!("opening the embedded log at {}", config.log_dir().display()))?;
        let state = AppState::new(log.clone() as Arc<dyn Bus>, keys, config.collector.clone());
        Ok(App { default_account: accounts.default_account().map(|a| a.id), config, log, state, new_keys })
    }

    pub fn router(&self) -> Router {
        touchline_collector::router(self.state.clone()).merge(Router::new().route("/metrics", get(metrics)).with_state(self.state.clone()))
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let router = self.router();
        touchline_collector::serve(router, listener, shutdown).await.context("HTTP server failed")
    }
}

/// Every metric, declared once: name, type, help.
const METRICS: [(&str, &str, &str); 6] = [
    ("touchline_http_requests_total", "counter", "Ingestion requests received (JSON routes, beacon and pixel)."),
    ("touchline_records_accepted_total", "counter", "Records durably appended to the bus."),
    ("touchline_records_rejected_total", "counter", "Records refused by validation (listed in the response)."),
    ("touchline_bus_failures_total", "counter", "Appends the bus refused; the client got 503."),
    ("touchline_pixels_dropped_total", "counter", "Pixel hits not stored (bad key, bad parameters, bus down); the GIF was still served."),
    ("touchline_rate_limited_total", "counter", "Requests refused with 429 because the account was over its rate."),
];

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let s = &state.stats;
    let values = [
        s.requests.load(Ordering::Relaxed),
        s.records_accepted.load(Ordering::Relaxed),
        s.records_rejected.load(Ordering::Relaxed),
        s.bus_failures.load(Ordering::Relaxed),
        s.pixels_dropped.load(Ordering::Relaxed),
        s.rate_limited.load(Ordering::Relaxed),
    ];
    let mut out = String::new();
    for ((name, kind, help), v) in METRICS.iter().zip(values) {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
