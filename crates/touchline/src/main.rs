use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use touchline::app::{App, Role};
use touchline::config::Config;
use touchline::tail::{self, TailArgs};

/// touchline: marketing analytics ingestion, attribution and daily campaign metrics.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; TOUCHLINE_* environment variables override it.
    #[arg(long, global = true, env = "TOUCHLINE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process: collector + bus + aggregator (the embedded log and SQLite
    /// unless Kafka, Postgres or ClickHouse are configured).
    Serve,
    /// Run the HTTP collector alone (scale out behind a load balancer; needs Kafka to share the
    /// bus with separate aggregators).
    Collector,
    /// Run the aggregator alone over the configured bus and stores (on Kafka, instances share
    /// the partitions as one consumer group).
    Aggregator {
        /// Stop once every partition has consumed everything and flushed (batch jobs, tests).
        #[arg(long)]
        exit_when_idle: bool,
    },
    /// Print the records of a topic of the embedded log as JSON lines.
    Tail {
        /// Topic to print, e.g. touchline.events, touchline.conversions.
        #[arg(long, default_value = "touchline.events")]
        topic: String,
        /// Print only the last N records of each partition.
        #[arg(long)]
        last: Option<usize>,
        /// Keep printing new records as they arrive.
        #[arg(long, short)]
        follow: bool,
        /// Wrap each record with its partition, offset and key.
        #[arg(long)]
        meta: bool,
        /// Stop after N records.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Run the whole pipeline on a fresh data directory with a generated marketing dataset,
    /// then print the daily campaign report and the attribution models side by side.
    Demo {
        /// Keep the demo's data in this directory (default: a temporary one, removed at exit).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Visitors of the main account (a third as many for the second account).
        #[arg(long, default_value_t = 300)]
        visitors: usize,
        /// Days of history to generate.
        #[arg(long, default_value_t = 6)]
        days: i64,
        /// Random seed (the same seed gives the same dataset shape).
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Write the demo's dataset (at any size) straight into the bus through the collector's
    /// decoders, without HTTP; then `touchline replay` measures the pipeline on it.
    Generate {
        /// Data directory to write into (default: the configured `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Visitors of the main account (a third as many for the second account); about 9
        /// records per visitor.
        #[arg(long, default_value_t = 6000)]
        visitors: usize,
        /// Days of history to generate (1 to 6, inside the default allowed lateness).
        #[arg(long, default_value_t = 6)]
        days: i64,
        /// Random seed (the same seed gives the same dataset shape).
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Rebuild every result from the log (clears the result tables and checkpoints first).
    Replay {
        /// `earliest` (default), an offset applied to every topic partition, or a date
        /// (YYYY-MM-DD, by append time): results then reflect the records from there on.
        #[arg(long, default_value = "earliest")]
        from: touchline::app::ReplayFrom,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Stop after this many seconds (with a last flush and checkpoint) and report the rate
        /// reached: for benchmarks on logs too large to finish. The results are then partial.
        #[arg(long)]
        time_limit: Option<f64>,
        /// Print the outcome as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Apply the migrations of the configured database and of ClickHouse, and create the Kafka
    /// topics (all idempotent; also done at start-up).
    Migrate,
    /// Print the effective configuration (keys redacted) and exit.
    Config,
    /// The data-driven channel weights Markov and Shapley split each conversion by: refresh
    /// them now, or show them.
    #[command(subcommand)]
    Weights(touchline::weights::WeightsCommand),
    /// Exchange rates into the accounts' reporting currencies: add one, show them, or set an
    /// account's reporting currency.
    #[command(subcommand)]
    Rates(touchline::rates::RatesCommand),
    /// Send HTTP load to a running server (keep-alive connections, as fast as it answers or at
    /// a fixed rate) and print throughput and latency percentiles.
    Loadgen(touchline::loadgen::LoadgenArgs),
}

/// mimalloc: the engine's allocation pattern (many small, short-lived strings and vectors)
/// spends a quarter of its time in glibc's free-list consolidation.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve => serve(config, Role::Serve).await,
        Command::Collector => serve(config, Role::Collector).await,
        Command::Aggregator { exit_when_idle } => touchline::app::run_aggregator(config, exit_when_idle, shutdown_signal()).await,
        Command::Tail { .. } if config.kafka_brokers.is_some() => {
            anyhow::bail!(
                "`touchline tail` reads the embedded log; with Kafka use any Kafka consumer (values are JSON), e.g. kafka-console-consumer"
            )
        }
        Command::Tail { topic, last, follow, meta, limit } => {
            let mut out = std::io::stdout();
            tail::run(&config.log_dir(), TailArgs { topic, last, follow, meta, limit }, &mut out).await?;
            Ok(())
        }
        Command::Demo { data_dir, visitors, days, seed } => {
            touchline::demo::run(config, touchline::demo::DemoArgs { data_dir, visitors, days: days.clamp(1, 6), seed }).await
        }
        Command::Generate { data_dir, visitors, days, seed, json, quiet } => {
            let args = touchline::generate::GenerateArgs { data_dir, visitors, days: days.clamp(1, 6), seed, progress: !quiet };
            let g = touchline::generate::run(config, args).await?;
            if json {
                println!("{}", serde_json::to_string(&g)?);
            } else {
                println!(
                    "generated {} records ({} visitors) in {:.1} s ({:.0} records/s) into {}\n  write key:  {}\n  secret key: {}",
                    g.records, g.visitors, g.seconds, g.records_per_sec, g.data_dir, g.write_key, g.secret_key
                );
            }
            Ok(())
        }
        Command::Replay { from, quiet, time_limit, json } => {
            let limit = match time_limit {
                Some(s) if s.is_finite() && s > 0.0 => Some(std::time::Duration::from_secs_f64(s)),
                Some(s) => anyhow::bail!("--time-limit must be a positive number of seconds, not {s}"),
                None => None,
            };
            let o = touchline::app::run_replay(config, from, !quiet, limit).await?;
            if json {
                println!("{}", serde_json::to_string(&o)?);
            } else {
                let partial = if o.complete { "" } else { " (stopped at the time limit: the results cover part of the log)" };
                println!(
                    "replayed {} records in {:.1} s ({:.0} records/s){partial}",
                    o.records,
                    o.seconds,
                    o.records as f64 / o.seconds.max(1e-9)
                );
                let stages = o.stage_seconds.iter().map(|(k, v)| format!("{k} {v:.1} s"));
                let sinks = o
                    .sink_seconds
                    .iter()
                    .flat_map(|(sink, by_rows)| by_rows.iter().map(move |(rows, v)| format!("{sink} {rows} {v:.1} s")));
                let stages: Vec<String> = stages.chain(sinks).collect();
                println!("time per stage, summed over partitions: {}", stages.join(", "));
            }
            Ok(())
        }
        Command::Migrate => {
            let url = config.database_url();
            touchline::app::open_store(&config).await?;
            println!("migrated {}", touchline::app::redact(&url));
            if let Some(ch) = touchline::app::open_clickhouse(&config).await? {
                println!("migrated ClickHouse {} (database {}, server {})", touchline::app::redact(ch.url()), ch.database(), ch.version());
            }
            if let Some(k) = config.kafka() {
                let report = touchline_kafka::ensure_topics(&k, &touchline_aggregator::ALL_TOPICS)
                    .await
                    .with_context(|| format!("creating the Kafka topics on {}", k.brokers))?;
                println!(
                    "kafka topics on {}: {} created, {} checked ({} partitions each)",
                    k.brokers,
                    report.created().len(),
                    touchline_aggregator::ALL_TOPICS.len(),
                    k.partitions
                );
            }
            Ok(())
        }
        Command::Loadgen(args) => {
            let json = args.json;
            let report = tokio::task::spawn_blocking(move || touchline::loadgen::run_blocking(args)).await??;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.text());
            }
            Ok(())
        }
        Command::Weights(command) => touchline::weights::cli(config, command).await,
        Command::Rates(command) => touchline::rates::cli(config, command).await,
        Command::Config => {
            println!("{}", serde_json::to_string_pretty(&touchline::app::redacted_config(&config))?);
            Ok(())
        }
    }
}

async fn serve(config: Config, role: Role) -> anyhow::Result<()> {
    let addr = config.http_addr;
    let app = App::build(config, role).await?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let base = app
        .config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default()));
    print_banner(&app, &base);
    app.serve(listener, shutdown_signal()).await
}

fn print_banner(app: &App, base: &str) {
    let mut s = String::new();
    s.push_str(&format!("touchline {} listening on {base}\n", env!("CARGO_PKG_VERSION")));
    match &app.config.kafka_brokers {
        Some(b) => s.push_str(&format!("  bus: Kafka at {b} (spill under {})\n", app.config.data_dir.join("spill").display())),
        None => s.push_str(&format!("  data dir: {} (embedded log)\n", app.config.data_dir.display())),
    }
    if let Some(ch) = &app.clickhouse {
        s.push_str(&format!("  clickhouse: {} (database {}, server {})\n", touchline::app::redact(ch.url()), ch.database(), ch.version()));
    }
    if app.role == Role::Collector {
        s.push_str("  role: collector only (run `touchline aggregator` for results)\n");
    }
    s.push_str(&format!("  store: {} ({})\n", touchline::app::redact(&app.config.database_url()), app.store.backend()));
    if let Some(id) = app.new_keys.account_id {
        s.push_str(&format!("  account `default`: {id}\n"));
    }
    let nk = &app.new_keys;
    if nk.write.is_some() || nk.secret.is_some() {
        s.push_str("  new keys (shown once; stored hashed):\n");
        if let Some(k) = &nk.write {
            s.push_str(&format!("    write key:  {k}\n"));
        }
        if let Some(k) = &nk.secret {
            s.push_str(&format!("    secret key: {k}\n"));
        }
    }
    let key = nk.write.clone().or_else(|| app.config.write_key.clone()).unwrap_or_else(|| "<your write key>".into());
    s.push_str("Send an event:\n");
    s.push_str(&format!(
        "  curl -s {base}/v1/events -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n    -d '{{\"event_name\":\"page_view\",\"anonymous_id\":\"visitor-1\",\"context\":{{\"page_url\":\"https://shop.example/?utm_source=newsletter\"}}}}'\n"
    ));
    s.push_str("See it land:\n  touchline tail --topic touchline.events\n");
    println!("{s}");
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
