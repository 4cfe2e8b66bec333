//! Assembling the roles: `serve` = collector + embedded log + aggregator + SQL store (SQLite by
//! default); `aggregator` runs the aggregator alone over the same log and store.

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


use touchline_aggregator::{AggStats, Aggregator, Sink, SqlSink};

use crate::accounts::{self, CatalogKeys, NewKeys};
use crate::reports;
use crate::config::Config;

/// Everything `serve` runs, built from a config.
pub struct App {
    pub config: Config,
    pub log: Arc<EmbeddedLog>,
    pub store: Arc<dyn touchline_sql::Store>,
    pub catalog: Arc<touchline_sql::CatalogCache>,
    pub state: Arc<AppState>,
    pub keys: Arc<dyn KeyStore>,
    pub agg_stats: Arc<AggStats>,
    pub new_keys: NewKeys,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        for (what, v, issue) in [
            ("TOUCHLINE_KAFKA_BROKERS (kafka_brokers)", &config.kafka_brokers, "the Kafka bus"),
            ("TOUCHLINE_CLICKHOUSE_URL (clickhouse_url)", &config.clickhouse_url, "the ClickHouse sink"),
        ] {
            if v.is_some() {
                bail!("{what} is set, but {issue} is not built yet in this version; unset it to run with the embedded defaults");
            }
        }
        let store = open_store(&config).await?;
        let new_keys = accounts::bootstrap(store.as_ref(), config.write_key.as_deref(), config.secret_key.as_deref()).await?;
        let catalog = touchline_sql::CatalogCache::load(store.clone(), std::time::Duration::from_secs(30)).await?;
        catalog.spawn_refresh(std::time::Duration::from_secs(2));
        let keys: Arc<dyn KeyStore> = Arc::new(CatalogKeys(catalog.clone()));
        let log = EmbeddedLog::open(config.log_dir(), config.log.clone())
            .await
            .with_context(|| format!("opening the embedded log at {}", config.log_dir().display()))?;
        let state = AppState::new(log.clone() as Arc<dyn Bus>, keys.clone(), config.collector.clone());
        Ok(App { config, log, store, catalog, state, keys, agg_stats: Arc::new(AggStats::default()), new_keys })
    }

    pub fn router(&self) -> Router {
        let metrics_state = Arc::new(MetricsState { collector: self.state.clone(), aggregator: self.agg_stats.clone() });
        touchline_collector::router(self.state.clone())
            .merge(Router::new().route("/metrics", get(metrics)).with_state(metrics_state))
            .merge(reports::router(Arc::new(reports::ReportState { store: self.store.clone(), keys: self.keys.clone() })))
    }

    /// The aggregator over this app's log and store.
    pub fn aggregator(&self) -> Arc<Aggregator> {
        Arc::new(Aggregator {
            bus: self.log.clone() as Arc<dyn Bus>,
            sinks: vec![Arc::new(SqlSink { store: self.store.clone() }) as Arc<dyn Sink>],
            catalog: self.catalog.clone(),
            config: self.config.aggregator.clone(),
            state_dir: self.config.aggregator_state_dir(),
            stats: self.agg_stats.clone(),
        })
    }

    /// Serves HTTP and runs the aggregator until `shutdown` completes; the aggregator then
    /// flushes and checkpoints before this returns.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let router = self.router();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let agg = self.aggregator();
        let agg_task = tokio::spawn(agg.run(stop_rx, false));
        let http = touchline_collector::serve(router, listener, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let http_result = http.await.context("HTTP server failed");
        match agg_task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "aggregator stopped with an error"),
            Err(e) => tracing::error!(error = %e, "aggregator task failed"),
        }
        http_result
    }
}

/// Runs the aggregator alone (`touchline aggregator`): until a signal, or until idle.
pub async fn run_aggregator(config: Config, exit_when_idle: bool, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    app.aggregator().run(stop_rx, exit_when_idle).await.context("aggregator failed")
}

/// Connects to the configured database (SQLite under the data dir by default) and migrates it.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn touchline_sql::Store>> {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    }
    let store = touchline_sql::connect(&url).await.with_context(|| format!("connecting to {}", redact(&url)))?;
    store.migrate().await.with_context(|| format!("migrating {}", redact(&url)))?;
    Ok(store)
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..s], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

pub struct MetricsState {
    pub collector: Arc<AppState>,
    pub aggregator: Arc<AggStats>,
}

/// Every metric, declared once: name, type, help.
const METRICS: [(&str, &str, &str); 14] = [
    ("touchline_http_requests_total", "counter", "Ingestion requests received (JSON routes, beacon and pixel)."),
    ("touchline_records_accepted_total", "counter", "Records durably appended to the bus."),
    ("touchline_records_rejected_total", "counter", "Records refused by validation (listed in the response)."),
    ("touchline_bus_failures_total", "counter", "Appends the bus refused; the client got 503."),
    ("touchline_pixels_dropped_total", "counter", "Pixel hits not stored (bad key, bad parameters, bus down); the GIF was still served."),
    ("touchline_rate_limited_total", "counter", "Requests refused with 429 because the account was over its rate."),
    ("touchline_aggregator_records_total", "counter", "Records the aggregator consumed."),
    ("touchline_aggregator_flushes_total", "counter", "Flushes (sink writes followed by a checkpoint)."),
    ("touchline_aggregator_sink_errors_total", "counter", "Failed sink writes (retried; consumption pauses meanwhile)."),
    ("touchline_aggregator_too_late_total", "counter", "Records older than the allowed lateness, kept in touchline.dlq."),
    ("touchline_aggregator_bad_records_total", "counter", "Unreadable records, kept in touchline.dlq."),
    ("touchline_aggregator_duplicates_total", "counter", "Records that repeated an earlier record id (counted once)."),
    ("touchline_aggregator_transfers_total", "counter", "Identity re-key records sent to touchline.identities."),
    ("touchline_aggregator_lag_records", "gauge", "Records on the bus not yet checkpointed by this aggregator."),
];

async fn metrics(State(state): State<Arc<MetricsState>>) -> impl IntoResponse {
    let s = &state.collector.stats;
    let a = &state.aggregator;
    let values = [
        s.requests.load(Ordering::Relaxed),
        s.records_accepted.load(Ordering::Relaxed),
        s.records_rejected.load(Ordering::Relaxed),
        s.bus_failures.load(Ordering::Relaxed),
        s.pixels_dropped.load(Ordering::Relaxed),
        s.rate_limited.load(Ordering::Relaxed),
        a.records.load(Ordering::Relaxed),
        a.flushes.load(Ordering::Relaxed),
        a.sink_errors.load(Ordering::Relaxed),
        a.too_late.load(Ordering::Relaxed),
        a.bad_records.load(Ordering::Relaxed),
        a.duplicates.load(Ordering::Relaxed),
        a.transfers_out.load(Ordering::Relaxed),
        a.lag(),
    ];
    let mut out = String::new();
    for ((name, kind, help), v) in METRICS.iter().zip(values) {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
