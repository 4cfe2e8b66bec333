//! `touchline generate`: writes the demo's marketing dataset straight into the bus, through the
//! collector's own decoders but without HTTP, so the pipeline can be measured on millions of
//! records (`touchline replay` afterwards) without waiting for an HTTP client to send them.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use touchline_bus::{Bus, OutRecord};
use touchline_collector::{generate_key, KeyKind};
use touchline_model::{DecodeOptions, Expect, Record, RequestCtx};

use crate::app::{open_bus, open_store, Role};
use crate::config::Config;
use crate::dataset::{self, DatasetAccount, Item};

pub struct GenerateArgs {
    pub data_dir: Option<PathBuf>,
    pub visitors: usize,
    pub days: i64,
    pub seed: u64,
    pub progress: bool,
}

/// What was written.
#[derive(Debug, Serialize)]
pub struct Generated {
    pub records: u64,
    pub visitors: usize,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub data_dir: String,
    pub write_key: String,
    pub secret_key: String,
}

/// Records appended to the bus per append call: large enough that each partition's group
/// commit covers thousands of records.
const APPEND_RECORDS: usize = 20_000;
/// JSON items decoded per call of the batch decoder (the collector's own limit per request).
const DECODE_ITEMS: usize = 2_500;

pub async fn run(mut config: Config, args: GenerateArgs) -> anyhow::Result<Generated> {
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    let keys = (
        config.write_key.clone().unwrap_or_else(|| generate_key(KeyKind::Write)),
        config.secret_key.clone().unwrap_or_else(|| generate_key(KeyKind::Secret)),
    );
    let store = open_store(&config).await?;
    let mut accounts = dataset::accounts(keys.clone(), args.visitors);
    dataset::install_catalog(store.as_ref(), &mut accounts).await?;
    drop(store);
    let (bus, _spill) = open_bus(&config, Role::Collector).await?;

    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<Vec<OutRecord>>(4);
    let appender = tokio::spawn(append_all(bus, rx));
    let decode = config.collector.decode_options();
    let (days, seed, progress) = (args.days, args.seed, args.progress);
    let produced = tokio::task::spawn_blocking(move || produce(&accounts, decode, days, seed, progress, &tx)).await;
    // The appender's error explains a producer that stopped because the appender did.
    let records = appender.await.context("the append task failed")??;
    produced.context("the generator thread failed")??;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Generated {
        records,
        visitors: args.visitors,
        seconds,
        records_per_sec: records as f64 / seconds.max(1e-9),
        data_dir: config.data_dir.display().to_string(),
        write_key: keys.0,
        secret_key: keys.1,
    })
}

async fn append_all(bus: std::sync::Arc<dyn Bus>, mut rx: mpsc::Receiver<Vec<OutRecord>>) -> anyhow::Result<u64> {
    let mut appended = 0u64;
    while let Some(chunk) = rx.recv().await {
        let n = chunk.len() as u64;
        bus.append(chunk).await.context("appending generated records to the bus")?;
        appended += n;
    }
    Ok(appended)
}

/// Draws every account's visitors and spend, decodes them as the collector would and hands
/// the bus records to the appender in chunks.
fn produce(
    accounts: &[DatasetAccount],
    decode: DecodeOptions,
    days: i64,
    seed: u64,
    progress: bool,
    tx: &mpsc::Sender<Vec<OutRecord>>,
) -> anyhow::Result<()> {
    let bar = if progress {
        indicatif::ProgressBar::new(accounts.iter().map(|a| a.visitors as u64).sum())
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} generate [{bar:40}] {pos}/{len} visitors ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut generator = dataset::Generator::new(seed, Utc::now(), days);
    let mut sink = Chunker { tx, out: Vec::with_capacity(APPEND_RECORDS), json: Vec::with_capacity(DECODE_ITEMS), decode };
    for a in accounts {
        let ctx = RequestCtx { account_id: a.id, received_at: Utc::now(), ip: Some("127.0.0.1".into()), user_agent: None };
        for v in 0..a.visitors {
            for item in generator.visitor(a, v) {
                match item {
                    Item::Pixel(query) => sink.pixel(&query, &ctx)?,
                    Item::Json(value) => sink.json(value, &ctx)?,
                }
            }
            bar.inc(1);
        }
        for row in generator.spend(a) {
            sink.json(row, &ctx)?;
        }
        sink.flush_json(&ctx)?;
    }
    sink.flush_out()?;
    bar.finish_and_clear();
    Ok(())
}

/// Gathers JSON items into collector-sized batches and decoded records into append chunks.
struct Chunker<'a> {
    tx: &'a mpsc::Sender<Vec<OutRecord>>,
    out: Vec<OutRecord>,
    json: Vec<Value>,
    decode: DecodeOptions,
}

impl Chunker<'_> {
    fn pixel(&mut self, query: &str, ctx: &RequestCtx) -> anyhow::Result<()> {
        let (_, result) = touchline_model::decode_pixel(query, None, ctx, &self.decode);
        let records = result.map_err(|e| anyhow::anyhow!("a generated pixel was refused: {e:?}"))?;
        self.records(&records)
    }

    fn json(&mut self, value: Value, ctx: &RequestCtx) -> anyhow::Result<()> {
        self.json.push(value);
        if self.json.len() >= DECODE_ITEMS {
            self.flush_json(ctx)?;
        }
        Ok(())
    }

    fn flush_json(&mut self, ctx: &RequestCtx) -> anyhow::Result<()> {
        if self.json.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(&Value::Array(std::mem::take(&mut self.json)))?;
        let parsed = touchline_model::parse_body(&body, &self.decode).map_err(|e| anyhow::anyhow!("a generated batch was refused: {e}"))?;
        let decoded = touchline_model::decode_items(&parsed, ctx, Expect::Any, &self.decode);
        anyhow::ensure!(decoded.rejected.is_empty(), "generated records were refused: {:?}", decoded.rejected);
        self.records(&decoded.records)
    }

    fn records(&mut self, records: &[Record]) -> anyhow::Result<()> {
        self.out.extend(touchline_collector::to_out(records));
        if self.out.len() >= APPEND_RECORDS {
            self.flush_out()?;
        }
        Ok(())
    }

    fn flush_out(&mut self) -> anyhow::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.out, Vec::with_capacity(APPEND_RECORDS));
        self.tx.blocking_send(chunk).map_err(|_| anyhow::anyhow!("the appender stopped (see its error)"))
    }
}
