//! Assembling the roles: `serve` = collector + bus + aggregator + SQL store (the embedded log
//! and SQLite by default); `collector` and `aggregator` run one side each and scale out with
//! Kafka (`kafka_brokers`); ClickHouse (`clickhouse_url`) is an extra sink and, optionally, the
//! source of the reports API.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use axum::routing::get;
use axum::Router;
use touchline_aggregator::{AggStats, Aggregator, CheckpointStore, FileCheckpoints, Sink, SqlCheckpoints};
use touchline_bus::{Bus, EmbeddedLog};
use touchline_collector::{AppState, KeyStore};
use touchline_kafka::{KafkaBus, SpillingBus};
use touchline_sql::{ResultReader, SqlSink};

use crate::accounts::{self, CatalogKeys, NewKeys};
use crate::config::{Config, ReportsSource};
use crate::reports;
use crate::telemetry::{self, MetricSources, Telemetry};

/// What a process runs; decides what [`App::build`] opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Collector and aggregator in one process (`touchline serve`).
    Serve,
    /// The HTTP collector alone (`touchline collector`); with Kafka it spills to local disk
    /// while the broker is unreachable.
    Collector,
    /// The aggregator alone (`touchline aggregator`, `touchline replay`).
    Aggregator,
}

/// Everything a role runs, built from a config.
pub struct App {
    pub config: Config,
    pub role: Role,
    /// The embedded log, or Kafka (behind the spill for collector roles).
    pub bus: Arc<dyn Bus>,
    /// The collector's spill when the bus is Kafka.
    pub spill: Option<Arc<SpillingBus>>,
    pub store: Arc<dyn touchline_sql::Store>,
    pub clickhouse: Option<touchline_clickhouse::ClickHouse>,
    /// Where reports read results (`reports_source`).
    pub results: Arc<dyn ResultReader>,
    pub catalog: Arc<touchline_sql::CatalogCache>,
    pub state: Arc<AppState>,
    pub keys: Arc<dyn KeyStore>,
    pub links: Arc<touchline_links::LinkState>,
    pub agg_stats: Arc<AggStats>,
    /// What `/metrics` exports, and the request latencies.
    pub telemetry: Arc<Telemetry>,
    pub new_keys: NewKeys,
}

impl App {
    pub async fn build(config: Config, role: Role) -> anyhow::Result<App> {
        let store = open_store(&config).await?;
        let new_keys = accounts::bootstrap(store.as_ref(), config.write_key.as_deref(), config.secret_key.as_deref()).await?;
        let catalog = touchline_sql::CatalogCache::load(store.clone(), std::time::Duration::from_secs(30)).await?;
        catalog.spawn_refresh(std::time::Duration::from_secs(2));
        let keys: Arc<dyn KeyStore> = Arc::new(CatalogKeys(catalog.clone()));
        let clickhouse = open_clickhouse(&config).await?;
        let results = results_reader(&config, &store, clickhouse.as_ref())?;
        let (bus, spill) = open_bus(&config, role).await?;
        let state = AppState::new(bus.clone(), keys.clone(), config.collector.clone());
        let link_deps = touchline_links::LinkDeps {
            catalog: catalog.clone(),
            store: store.clone(),
            results: results.clone(),
            collector: state.clone(),
            bus: bus.clone(),
        };
        let links = touchline_links::LinkState::new(link_deps, config.links.clone(), config.base_url());
        let agg_stats = Arc::new(AggStats::default());
        let telemetry = Telemetry::start(MetricSources {
            collector: state.clone(),
            aggregator: agg_stats.clone(),
            links: links.clone(),
            spill: spill.clone(),
        });
        Ok(App { config, role, bus, spill, store, clickhouse, results, catalog, state, keys, links, agg_stats, telemetry, new_keys })
    }

    /// `/metrics` over this app's counters.
    fn metrics_router(&self) -> Router {
        Router::new().route("/metrics", get(telemetry::metrics_page)).with_state(self.telemetry.clone())
    }

    /// The public routes, each timed by its matched route; `/metrics` among them unless it has
    /// an address of its own.
    pub fn router(&self) -> Router {
        let router = touchline_collector::router(self.state.clone())
            .merge(reports::router(reports::ReportState {
                results: self.results.clone(),
                collector: self.state.clone(),
                data_driven: Arc::default(),
            }))
            .merge(touchline_links::router(self.links.clone(), self.config.short_domain));
        let router = if self.config.metrics_addr.is_some() { router } else { router.merge(self.metrics_router()) };
        router.layer(axum::middleware::from_fn_with_state(self.telemetry.clone(), telemetry::track_latency))
    }

    /// Serves `/healthz` and `/metrics` on `metrics_addr`, when set, until `stop` turns true.
    async fn serve_metrics(&self, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
        let Some(addr) = self.config.metrics_addr else { return Ok(()) };
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding metrics_addr {addr}"))?;
        let router = Router::new().route("/healthz", get(|| async { "ok" })).merge(self.metrics_router());
        tokio::spawn(touchline_collector::serve(router, listener, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
        Ok(())
    }

    /// The aggregator over this app's bus, writing to the SQL store and ClickHouse when
    /// configured. Checkpoints are files on the embedded log (one process owns every
    /// partition) and rows of the SQL store on Kafka (partitions move between instances).
    pub fn aggregator(&self) -> Arc<Aggregator> {
        let warehouse = self.config.warehouse_dir().map(touchline_warehouse::Warehouse::new);
        let raw_rows = warehouse.is_none() || self.config.warehouse.sqlite_raw_tables;
        let mut sinks = vec![Arc::new(SqlSink { store: self.store.clone(), raw_rows }) as Arc<dyn Sink>];
        if let Some(w) = warehouse {
            sinks.insert(0, Arc::new(touchline_warehouse::WarehouseSink::new(w)));
        }
        if let Some(ch) = &self.clickhouse {
            sinks.push(Arc::new(touchline_clickhouse::ClickHouseSink::new(ch.clone())));
        }
        let checkpoints: Arc<dyn CheckpointStore> = if self.config.kafka_brokers.is_some() {
            Arc::new(SqlCheckpoints { store: self.store.clone(), group: self.config.aggregator.group.clone() })
        } else {
            Arc::new(FileCheckpoints { dir: self.config.aggregator_state_dir() })
        };
        Arc::new(Aggregator {
            bus: self.bus.clone(),
            sinks,
            catalog: self.catalog.clone(),
            config: self.config.aggregator.clone(),
            checkpoints,
            stats: self.agg_stats.clone(),
        })
    }

    /// Serves HTTP and runs the aggregator until `shutdown` completes; the aggregator then
    /// flushes and checkpoints before this returns.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        if self.config.public_url.is_none() {
            if let Ok(addr) = listener.local_addr() {
                self.links.set_base_url(format!("http://{addr}"));
            }
        }
        let router = self.router();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        self.serve_metrics(stop_rx.clone()).await?;
        let agg_task = if self.role == Role::Serve {
            self.spawn_weights_schedule(stop_rx.clone());
            let agg = self.aggregator();
            tokio::spawn(agg.run(stop_rx, false))
        } else {
            tokio::spawn(async { Ok(()) })
        };
        let http = touchline_collector::serve_with(
            router,
            listener,
            async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            },
            self.state.serve_options(),
        );
        let http_result = http.await.context("HTTP server failed");
        self.flush_clicks().await;
        match agg_task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "aggregator stopped with an error"),
            Err(e) => tracing::error!(error = %e, "aggregator task failed"),
        }
        http_result
    }
}

impl App {
    /// Refreshes the data-driven channel weights on their schedule (see [`crate::weights`])
    /// until `stop` turns true. Roles that aggregate run it.
    fn spawn_weights_schedule(&self, stop: tokio::sync::watch::Receiver<bool>) {
        tokio::spawn(crate::weights::run_schedule(
            self.catalog.clone(),
            self.store.clone(),
            self.results.clone(),
            self.config.weights.clone(),
            self.config.aggregator.allowed_lateness_secs,
            stop,
        ));
    }
}

/// How long a shutdown waits for answered redirects' clicks to reach the bus.
const CLICK_FLUSH_BOUND: Duration = Duration::from_secs(30);

impl App {
    /// Puts every click a redirect has answered on the bus before the process exits: the
    /// redirects have stopped by now, so the queue only shrinks.
    async fn flush_clicks(&self) {
        let queued = self.links.clicks.queued_bytes();
        if !self.links.clicks.flush(CLICK_FLUSH_BOUND).await {
            tracing::error!(
                queued_bytes = self.links.clicks.queued_bytes(),
                "link clicks still queued after {CLICK_FLUSH_BOUND:?}: the bus did not take them; they are lost"
            );
        } else if queued > 0 {
            tracing::info!(queued_bytes = queued, "queued link clicks appended before shutdown");
        }
    }
}

/// Runs the aggregator alone (`touchline aggregator`): until a signal, or until idle.
pub async fn run_aggregator(
    config: Config,
    exit_when_idle: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = App::build(config, Role::Aggregator).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    app.serve_metrics(stop_rx.clone()).await?;
    if !exit_when_idle {
        app.spawn_weights_schedule(stop_rx.clone());
    }
    app.aggregator().run(stop_rx, exit_when_idle).await.context("aggregator failed")
}

/// Where `touchline replay` starts reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The first record the log still holds.
    Earliest,
    /// This offset of every topic partition (or its first retained one, if later).
    Offset(u64),
    /// The first record appended on or after this UTC date.
    Date(chrono::NaiveDate),
}

impl std::str::FromStr for ReplayFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "earliest" {
            return Ok(ReplayFrom::Earliest);
        }
        if let Ok(o) = s.parse::<u64>() {
            return Ok(ReplayFrom::Offset(o));
        }
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(ReplayFrom::Date)
            .map_err(|_| format!("{s:?} is not `earliest`, an offset or a date (YYYY-MM-DD)"))
    }
}

/// How a replay went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplayOutcome {
    /// Records the aggregator consumed (re-key records it sent itself included).
    pub records: u64,
    pub seconds: f64,
    /// False when the time limit stopped the replay before the log was consumed: the results
    /// then cover only part of it.
    pub complete: bool,
    /// Seconds per aggregator stage, summed over the partitions (which run side by side).
    pub stage_seconds: BTreeMap<String, f64>,
    /// Seconds per sink, apart for raw rows and results, summed over the partitions.
    pub sink_seconds: BTreeMap<String, BTreeMap<String, f64>>,
    /// Bytes of the engine state (compressed snapshots) at the end, over the partitions.
    pub state_bytes: u64,
}

/// Seconds per sink, then per kind of rows (`raw`, `results`).
fn sink_seconds_by_name(stages: &touchline_aggregator::StageTimes) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (sink, rows, secs) in stages.sink_seconds() {
        out.entry(sink).or_default().insert(rows.name().to_owned(), secs);
    }
    out
}

/// Rebuilds every result from the log: clears the derived tables and the aggregator's
/// checkpoints, points the consumer group at the start, and runs the aggregator until it has
/// consumed everything, with a progress bar. Results then reflect the records from `from` on.
/// With `time_limit` the replay stops (after a last flush and checkpoint) once that much time
/// has passed, so a benchmark can measure a rate on a log too large to finish.
pub async fn run_replay(
    config: Config,
    from: ReplayFrom,
    progress: bool,
    time_limit: Option<std::time::Duration>,
) -> anyhow::Result<ReplayOutcome> {
    let app = App::build(config, Role::Aggregator).await?;
    let bus = app.bus.clone();
    let group = app.config.aggregator.group.clone();
    let mut total = 0u64;
    for t in touchline_aggregator::INPUT_TOPICS {
        for p in 0..bus.partitions() {
            let first = bus.start_offset(t, p).await?;
            let end = bus.end_offset(t, p).await?;
            let start = match &from {
                ReplayFrom::Earliest => first,
                ReplayFrom::Offset(o) => (*o).clamp(first, end),
                ReplayFrom::Date(d) => {
                    let cutoff = d.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp_millis());
                    first_offset_at(bus.as_ref(), t, p, first, end, cutoff).await?
                }
            };
            bus.commit(&group, t, p, start).await?;
            total += end - start;
        }
    }
    let aggregator = app.aggregator();
    aggregator.checkpoints.clear().await.map_err(anyhow::Error::msg).context("clearing aggregator checkpoints")?;
    let cleared = app.store.clear_results().await?;
    if let Some(ch) = &app.clickhouse {
        touchline_clickhouse::ClickHouseStore::new(ch.clone()).clear_results().await.context("clearing ClickHouse results")?;
    }
    tracing::info!(cleared, total, "replaying");
    let stats = app.agg_stats.clone();
    let bar = if progress { indicatif::ProgressBar::new(total) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} replay [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let ticker = {
        let bar = bar.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(stats.records.load(Ordering::Relaxed).min(total));
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        })
    };
    // The sender lives until the replay returns: a dropped sender would make every wait on the
    // stop signal return at once and the aggregator's idle loops spin.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let started = std::time::Instant::now();
    let limiter = time_limit.map(|limit| {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            let _ = stop_tx.send(true);
        })
    });
    let result = aggregator.run(stop_rx, true).await;
    let seconds = started.elapsed().as_secs_f64();
    let complete = limiter.as_ref().is_none_or(|l| !l.is_finished());
    if let Some(l) = limiter {
        l.abort();
    }
    ticker.abort();
    bar.set_position(stats.records.load(Ordering::Relaxed).min(total));
    bar.finish();
    match result {
        Ok(()) => {}
        // Stopped by the limit while a flush was still retrying: the results were partial
        // anyway, and the rate is what the limit was for.
        Err(e) if !complete => tracing::warn!(error = %e, "the replay stopped at its time limit during a flush"),
        Err(e) => return Err(anyhow::Error::new(e).context("replay failed")),
    }
    drop(stop_tx);
    Ok(ReplayOutcome {
        records: stats.records.load(Ordering::Relaxed),
        seconds,
        complete,
        stage_seconds: stats.stages.seconds().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        sink_seconds: sink_seconds_by_name(&stats.stages),
        state_bytes: stats.state_bytes(),
    })
}

/// The first offset of a partition whose record was appended at or after `cutoff_ms`.
async fn first_offset_at(bus: &dyn Bus, topic: &str, p: u32, first: u64, end: u64, cutoff_ms: i64) -> anyhow::Result<u64> {
    let mut next = first;
    while next < end {
        let batch = bus.read(topic, p, next, 10_000, std::time::Duration::ZERO).await?;
        let Some(last) = batch.last() else { break };
        if let Some(r) = batch.iter().find(|r| r.timestamp_ms >= cutoff_ms) {
            return Ok(r.offset);
        }
        next = last.offset + 1;
    }
    Ok(end)
}

/// The bus of a role: the embedded log, or Kafka — behind a local spill for roles that
/// collect, so an outage of the broker loses nothing and blocks nobody until the spill fills.
pub async fn open_bus(config: &Config, role: Role) -> anyhow::Result<(Arc<dyn Bus>, Option<Arc<SpillingBus>>)> {
    let Some(k) = config.kafka() else {
        let log = EmbeddedLog::open(config.log_dir(), config.log.clone())
            .await
            .with_context(|| format!("opening the embedded log at {}", config.log_dir().display()))?;
        return Ok((log, None));
    };
    let kafka = KafkaBus::connect(k.clone()).with_context(|| format!("configuring the Kafka client for {}", k.brokers))?;
    match touchline_kafka::ensure_topics(&k, &touchline_aggregator::ALL_TOPICS).await {
        Ok(report) => tracing::info!(created = ?report.created(), "kafka topics checked"),
        // A collector starts without the broker (it spills); an aggregator cannot work.
        Err(e) if role == Role::Collector => {
            tracing::warn!(error = %e, "kafka topics could not be checked; spilling until the broker answers")
        }
        Err(e) => return Err(e).with_context(|| format!("checking the Kafka topics on {}", k.brokers)),
    }
    if role == Role::Aggregator {
        return Ok((kafka, None));
    }
    let dir = k.spill.dir.clone().unwrap_or_else(|| config.data_dir.join("spill"));
    let spill = SpillingBus::open(kafka, &dir).await.with_context(|| format!("opening the Kafka spill at {}", dir.display()))?;
    Ok((spill.clone(), Some(spill)))
}

/// Connects to ClickHouse when configured and applies its migrations.
/// Where reports (and the channel weights) read results: the SQL store, or ClickHouse when
/// `reports_source` says so.
pub fn results_reader(
    config: &Config,
    store: &Arc<dyn touchline_sql::Store>,
    clickhouse: Option<&touchline_clickhouse::ClickHouse>,
) -> anyhow::Result<Arc<dyn ResultReader>> {
    Ok(match (config.reports_source, clickhouse) {
        (ReportsSource::Clickhouse, Some(ch)) => Arc::new(touchline_clickhouse::ClickHouseStore::new(ch.clone())),
        (ReportsSource::Clickhouse, None) => bail!("reports_source = clickhouse needs clickhouse_url"),
        (ReportsSource::Sql, _) => store.clone(),
    })
}

pub async fn open_clickhouse(config: &Config) -> anyhow::Result<Option<touchline_clickhouse::ClickHouse>> {
    let Some(c) = config.clickhouse() else { return Ok(None) };
    let ch = touchline_clickhouse::connect(&c).await.with_context(|| format!("connecting to ClickHouse at {}", redact(&c.url)))?;
    let applied = touchline_clickhouse::migrate(&ch).await.context("applying the ClickHouse migrations")?;
    if !applied.is_empty() {
        tracing::info!(?applied, "clickhouse migrations applied");
    }
    Ok(Some(ch))
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

/// A URL without its password (in the user info or a `password`/`secret`/`token`/`key` query
/// parameter), for messages and `touchline config`.
pub fn redact(url: &str) -> String {
    let without_userinfo = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..s], &url[at + 1..])
        }
        _ => url.to_owned(),
    };
    let Some((base, query)) = without_userinfo.split_once('?') else { return without_userinfo };
    let pairs: Vec<String> = query
        .split('&')
        .map(|kv| {
            let name = kv.split('=').next().unwrap_or("");
            if is_secret_name(name) && kv.contains('=') {
                format!("{name}=***")
            } else {
                kv.to_owned()
            }
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// Names of settings whose values are credentials.
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "key"].iter().any(|s| n.contains(s))
}

/// The configuration as `touchline config` prints it: keys, passwords and credentials in URLs
/// and client properties replaced, so the output can be pasted into a ticket.
pub fn redacted_config(config: &Config) -> Config {
    let mut c = config.clone();
    let hide = |v: &mut Option<String>| {
        if v.is_some() {
            *v = Some("<redacted>".into());
        }
    };
    hide(&mut c.write_key);
    hide(&mut c.secret_key);
    hide(&mut c.clickhouse.password);
    for url in [&mut c.database_url, &mut c.clickhouse_url, &mut c.kafka_brokers] {
        if let Some(u) = url.as_mut() {
            *u = redact(u);
        }
    }
    for (name, value) in c.kafka.properties.iter_mut() {
        if is_secret_name(name) {
            *value = "<redacted>".into();
        }
    }
    c
}
