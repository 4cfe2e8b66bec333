//! `touchline demo`: runs the whole pipeline on a fresh data directory, sends a realistic
//! marketing dataset through the HTTP API, waits for the aggregator, and prints the daily
//! campaign report and the attribution models side by side.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{Duration as Days, Utc};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use rust_decimal::prelude::ToPrimitive;
use serde_json::{json, Value};
use touchline_collector::{generate_key, KeyKind};
use touchline_sql::Store;

use crate::app::{open_store, App};
use crate::config::Config;
use crate::dataset::{self, DatasetAccount, Item};

pub struct DemoArgs {
    /// Keep the demo's data here instead of a temporary directory.
    pub data_dir: Option<PathBuf>,
    pub visitors: usize,
    pub days: i64,
    pub seed: u64,
}

pub async fn run(mut config: Config, args: DemoArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    config.data_dir = args.data_dir.clone().unwrap_or_else(|| tmp.path().join("data"));
    config.database_url = None;
    config.http_addr = ([127, 0, 0, 1], 0).into();
    config.aggregator.flush_interval_ms = 300;
    let default_keys = (generate_key(KeyKind::Write), generate_key(KeyKind::Secret));
    config.write_key = Some(default_keys.0.clone());
    config.secret_key = Some(default_keys.1.clone());

    // The catalog: two accounts, campaigns in three time zones, two ads each, a short link each.
    let store = open_store(&config).await?;
    let mut accounts = dataset::accounts(default_keys, args.visitors);
    dataset::install_catalog(store.as_ref(), &mut accounts).await?;
    drop(store);

    let app = App::build(config, crate::app::Role::Serve).await?;
    let stats = app.agg_stats.clone();
    let collector_stats = app.state.clone();
    let store = app.store.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = stop_rx.await;
    }));
    println!(
        "touchline demo: server at {base}, data in {}",
        args.data_dir.as_ref().map_or_else(|| tmp.path().display().to_string(), |d| d.display().to_string())
    );

    let http = reqwest::Client::new();
    let now = Utc::now();
    let mut generator = dataset::Generator::new(args.seed, now, args.days);
    let mut sent_items = 0usize;
    for a in &accounts {
        let mut batch: Vec<Value> = Vec::new();
        for v in 0..a.visitors {
            for item in generator.visitor(a, v) {
                match item {
                    Item::Pixel(query) => sent_items += send_pixel(&http, &base, &query).await?,
                    Item::Json(value) => batch.push(value),
                }
            }
            if batch.len() >= 400 {
                sent_items += post_batch(&http, &base, &a.write_key, &mut batch).await?;
            }
        }
        batch.extend(generator.spend(a));
        sent_items += post_batch(&http, &base, &a.write_key, &mut batch).await?;
    }
    let accepted = collector_stats.stats.records_accepted.load(Ordering::Relaxed);
    println!("sent {sent_items} items ({accepted} records accepted); waiting for the aggregator…");

    // Wait until the aggregator has consumed and checkpointed everything, then one more flush.
    let start = Instant::now();
    loop {
        let done = stats.records.load(Ordering::Relaxed) >= accepted && stats.lag() == 0;
        if done {
            tokio::time::sleep(Duration::from_millis(800)).await;
            if stats.lag() == 0 {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("the aggregator did not catch up within 2 minutes (lag {})", stats.lag());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("aggregated in {:.1} s\n", start.elapsed().as_secs_f64());

    let from = (now - Days::days(args.days + 1)).date_naive();
    let to = (now + Days::days(1)).date_naive();
    for a in &accounts {
        print_report(store.as_ref(), a, from, to).await?;
    }
    println!(
        "Reports over HTTP while it runs: curl -H 'Authorization: Bearer {}' '{base}/v1/reports/campaigns?from={from}&to={to}'",
        accounts[0].secret_key
    );
    let _ = stop_tx.send(());
    let _ = server.await;
    if args.data_dir.is_some() {
        println!("data kept in {}", config_dir(&args));
    }
    Ok(())
}

fn config_dir(args: &DemoArgs) -> String {
    args.data_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default()
}

/// Sends one pixel; 1 when the collector stored it.
async fn send_pixel(http: &reqwest::Client, base: &str, query: &str) -> anyhow::Result<usize> {
    let r = http.get(format!("{base}/p.gif?{query}")).send().await?;
    Ok(usize::from(r.headers().get("x-touchline-status").is_some_and(|s| s == "stored")))
}

async fn post_batch(http: &reqwest::Client, base: &str, key: &str, batch: &mut Vec<Value>) -> anyhow::Result<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    let body = json!({ "batch": std::mem::take(batch) });
    let r = http.post(format!("{base}/v1/batch")).bearer_auth(key).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "the collector refused a demo batch: {status} {v}");
    if let Some(rej) = v["rejected"].as_array().filter(|r| !r.is_empty()) {
        anyhow::bail!("the collector rejected demo records: {}", Value::Array(rej.clone()));
    }
    Ok(v["accepted"].as_u64().unwrap_or(0) as usize)
}

fn f(d: Option<f64>, digits: usize) -> String {
    d.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

async fn print_report(store: &dyn Store, a: &DatasetAccount, from: chrono::NaiveDate, to: chrono::NaiveDate) -> anyhow::Result<()> {
    let rows = store.daily_metrics(a.id, from, to).await?;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "date", "campaign", "ad", "impr", "clicks", "reach", "freq", "eng", "sessions", "conv", "revenue", "cost", "ctr", "cpc", "cpa",
        "roas",
    ]);
    for r in &rows {
        t.add_row([
            r.metric_date.to_string(),
            r.campaign_id.clone(),
            if r.advertisement_id.is_empty() { "–".into() } else { r.advertisement_id.clone() },
            r.impressions.to_string(),
            r.clicks.to_string(),
            r.reach.to_string(),
            f(r.frequency, 2),
            r.engagements.to_string(),
            r.sessions.to_string(),
            f(r.conversions.to_f64(), 2),
            f(r.revenue.to_f64(), 2),
            f(r.cost.to_f64(), 2),
            r.ctr.map_or_else(|| "–".to_owned(), |c| format!("{:.1}%", c * 100.0)),
            f(r.cpc.and_then(|d| d.to_f64()), 2),
            f(r.cpa.and_then(|d| d.to_f64()), 2),
            f(r.roas, 2),
        ]);
    }
    let campaigns: Vec<&str> = a.campaigns.iter().map(|c| c.0).collect();
    println!(
        "Daily campaign report — account `{}` (days in each campaign's time zone: {})",
        a.name,
        a.campaigns.iter().map(|(c, tz)| format!("{c} {tz}")).collect::<Vec<_>>().join(", ")
    );
    println!("{t}\n");

    let models = ["first_touch", "last_touch", "last_non_direct", "linear", "time_decay", "position_based"];
    let mut by: BTreeMap<(String, &str), (f64, f64)> = BTreeMap::new();
    for m in models {
        for r in store.attributions(a.id, Some(m)).await? {
            let e = by.entry((r.campaign_id.unwrap_or_else(|| "(direct)".into()), m)).or_insert((0.0, 0.0));
            e.0 += r.weight;
            e.1 += r.attributed_revenue.to_f64().unwrap_or(0.0);
        }
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["campaign".to_owned()];
    header.extend(models.iter().map(|m| format!("{m}\nconv / revenue")));
    t.set_header(header);
    let mut names: Vec<String> = campaigns.iter().map(|c| (*c).to_owned()).collect();
    names.push("(direct)".into());
    for c in names {
        let mut row = vec![c.clone()];
        for m in models {
            let (conv, rev) = by.get(&(c.clone(), m)).copied().unwrap_or((0.0, 0.0));
            row.push(format!("{conv:.2} / {rev:.0}"));
        }
        t.add_row(row);
    }
    println!("Attribution models compared — account `{}` (conversions credited / revenue, all dates)", a.name);
    println!("{t}\n");
    Ok(())
}
