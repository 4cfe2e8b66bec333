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


use crate::accounts::{self, CatalogKeys, NewKeys};
use crate::config::Config;

/// Everything `serve` runs, built from a config.
pub struct App {
    pub config: Config,
    pub log: Arc<EmbeddedLog>,
    pub store: Arc<dyn touchline_sql::Store>,
    pub catalog: Arc<touchline_sql::CatalogCache>,
    pub state: Arc<AppState>,
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
        let state = AppState::new(log.clone() as Arc<dyn Bus>, keys, config.collector.clone());
        Ok(App { config, log, store, catalog, state, new_keys })
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
