//! The aggregator runtime: consume → engine → flush → checkpoint → commit.
//!
//! One task per owned bus partition reads every entity topic of that partition, feeds one
//! [`Engine`], and every `flush_interval` (or `flush_records` records) writes the engine's
//! output to every [`Sink`], appends identity re-key records to `touchline.identities`, and
//! checkpoints.
//!
//! # Exactly-once effect
//!
//! The checkpoint of a partition holds the engine snapshot, the next offset of every topic and
//! the *outbox* (the output of the flush that produced the state), saved atomically together
//! (a file replaced by rename, or one SQL row when instances share checkpoints, see
//! [`checkpoint`]; between two snapshots the checkpoint holds the offsets that rebuild the
//! state and its outbox instead, see `replay.rs`). On start the runtime restores it, delivers
//! its outbox again, tells the
//! sinks where it resumes ([`Sink::resume`]: a sink that cannot ignore a row written twice,
//! the Parquet warehouse, drops what it holds at or past those offsets) and resumes from its
//! offsets, so state, position and sinks never disagree. A flush writes raw rows
//! (insert-or-ignore by record id, or files the next start cleans) and DLQ entries first,
//! then saves the checkpoint, then delivers the outbox: results to the sinks (partial
//! metrics, link clicks and journeys are absolute values per partition, attribution sets
//! replace older versions) and re-key records to the bus. Results never reach a sink before the state they come from is
//! checkpointed: otherwise a crash between the two would leave absolute values that the
//! replay, which batches records differently, need not recompute (found by
//! `tests/partitions_sim.rs`). Attribution versions written to sinks are
//! `epoch << 32 | engine version`, where the epoch is bumped and fsynced at every start, so
//! rows written after a restart always supersede rows written before it (whose engine versions
//! the restored state may reuse).
//!
//! # Partition ownership
//!
//! The runtime asks the bus which partitions it owns ([`Bus::join`]): all of them on the
//! embedded log; on Kafka the consumer group assigns them and moves them when instances come
//! and go. A partition that leaves is stopped, flushed and checkpointed before it is released
//! to the group, and the next owner bumps its epoch, so its writes supersede the previous
//! owner's and the previous owner can no longer save a checkpoint.
//!
//! # Backpressure
//!
//! A sink that fails is retried with backoff while the partition stops consuming; memory stays
//! bounded by one flush batch. Nothing is dropped; lag shows in [`AggStats`].

pub mod checkpoint;
mod replay;
pub mod stages;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use touchline_bus::{Bus, Membership, OutRecord, StaticMembership, StoredRecord};
use touchline_engine::{AccountSettings, ChannelWeights, Engine, EngineConfig, Flush, Ingest, Model, RateRow};
use touchline_model::{check_stored, topics, Currency, Record};

pub use checkpoint::{CheckpointStore, FileCheckpoints, Replay, SqlCheckpoints};
pub use stages::{SinkRows, Stage, StageTimes};
pub use touchline_store::sink;
pub use touchline_store::sink::{RefusedRow, Sink, SinkBatch, SinkError};

/// Every topic touchline uses: the inputs and the dead-letter topic.
pub const ALL_TOPICS: [&str; 8] = [
    topics::EVENTS,
    topics::SESSIONS,
    topics::TOUCHPOINTS,
    topics::LINK_CLICKS,
    topics::CONVERSIONS,
    topics::SPEND,
    topics::IDENTITIES,
    topics::DLQ,
];

/// The entity topics the aggregator consumes.
pub const INPUT_TOPICS: [&str; 7] =
    [topics::EVENTS, topics::SESSIONS, topics::TOUCHPOINTS, topics::LINK_CLICKS, topics::CONVERSIONS, topics::SPEND, topics::IDENTITIES];

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Consumer group (offsets committed to the bus for lag; the checkpoint is authoritative).
    pub group: String,
    /// Flush at least this often while records arrive.
    pub flush_interval_ms: u64,
    /// Flush after this many records, whichever comes first.
    pub flush_records: usize,
    /// Records read per topic per poll.
    pub read_batch: usize,
    /// Bus bytes of consumed records a partition holds for the raw sinks before it writes
    /// them, flush or not: bounds the memory of a flush cycle by bytes rather than by
    /// `flush_records`. Raw rows are idempotent and written before the checkpoint that covers
    /// them either way.
    pub raw_buffer_bytes: usize,
    /// Records older than the watermark (newest server time seen) minus this are too late:
    /// kept in the DLQ, counted, not applied.
    pub allowed_lateness_secs: i64,
    /// Partitions this instance owns; when empty, the bus decides (every partition on the
    /// embedded log, the consumer group's assignment on Kafka).
    pub partitions: Vec<u32>,
    /// Where checkpoints live on the embedded log (default `{data_dir}/aggregator`; on Kafka
    /// they are rows of the SQL store, shared by the instances).
    pub state_dir: Option<std::path::PathBuf>,
    /// Records a partition consumes between two snapshots of its whole state, which the
    /// checkpoint store keeps apart (as files on the embedded log, as rows of the SQL store
    /// on Kafka); the checkpoints in between hold
    /// only their offsets, and a restart feeds up to this many records again. 0: a snapshot at
    /// every flush.
    pub snapshot_records: u64,
    /// A new snapshot is also due once the last is this old, so that the log's retention
    /// never reaches records a restart would feed again.
    pub snapshot_max_age_secs: u64,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            group: "touchline-aggregator".into(),
            flush_interval_ms: 5_000,
            flush_records: 50_000,
            read_batch: 5_000,
            raw_buffer_bytes: 4 << 20,
            allowed_lateness_secs: 7 * 86_400,
            partitions: Vec::new(),
            state_dir: None,
            snapshot_records: 250_000,
            snapshot_max_age_secs: 3_600,
        }
    }
}

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct AggStats {
    pub records: AtomicU64,
    pub flushes: AtomicU64,
    pub sink_errors: AtomicU64,
    /// Rows a sink refused as invalid (sent to the DLQ instead).
    pub sink_refused_rows: AtomicU64,
    pub too_late: AtomicU64,
    pub bad_records: AtomicU64,
    pub duplicates: AtomicU64,
    pub transfers_out: AtomicU64,
    /// Partition tasks that failed and were restarted from their checkpoint.
    pub partition_failures: AtomicU64,
    /// Records on the bus not yet checkpointed, per owned partition (all topics).
    pub lag_by_partition: std::sync::Mutex<BTreeMap<u32, u64>>,
    /// Where the time goes, per stage and per sink.
    pub stages: StageTimes,
    /// Bytes of each owned partition's last snapshot of its whole engine state (compressed):
    /// what a snapshot costs to write, and how the state grows.
    pub state_bytes_by_partition: std::sync::Mutex<BTreeMap<u32, u64>>,
    /// Snapshots of a whole partition state written (at every checkpoint when the store keeps
    /// no base snapshots).
    pub snapshots: AtomicU64,
    /// Records fed to an engine again to rebuild a state between two snapshots on restore.
    pub records_fed_again: AtomicU64,
    /// Attribution sets (one conversion, one model) the flushes produced, and their rows. A set
    /// replaces the conversion's earlier one for that model, so sets beyond conversions ×
    /// models are rewrites.
    pub attribution_sets: AtomicU64,
    pub attribution_rows: AtomicU64,
    /// Records given up for want of an exchange rate (kept in the DLQ).
    pub no_rate: AtomicU64,
    /// Records waiting for an exchange rate, per owned partition.
    pub waiting_for_rate_by_partition: std::sync::Mutex<BTreeMap<u32, u64>>,
}

impl AggStats {
    /// Records on the bus not yet checkpointed, over all owned partitions.
    pub fn lag(&self) -> u64 {
        self.lag_by_partition.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    /// Records waiting for an exchange rate, over all owned partitions.
    pub fn waiting_for_rate(&self) -> u64 {
        self.waiting_for_rate_by_partition.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    /// Bytes of the last checkpointed engine states, over all owned partitions.
    pub fn state_bytes(&self) -> u64 {
        self.state_bytes_by_partition.lock().map(|m| m.values().sum()).unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AggError {
    #[error("bus: {0}")]
    Bus(#[from] touchline_bus::BusError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("engine: {0}")]
    Engine(String),
    #[error("sink: {0}")]
    Sink(String),
}

/// Builds the engine configuration of a partition from the SQL catalog: account settings and
/// reporting currencies, campaign time zones, the data-driven channel weights and the
/// exchange rates.
pub fn engine_config(snap: &touchline_store::cache::Snapshot, partition: u32, partitions: u32, lateness: i64) -> EngineConfig {
    let mut cfg = EngineConfig { partition, partitions, allowed_lateness_secs: lateness, ..EngineConfig::default() };
    for a in snap.accounts.values() {
        let settings = AccountSettings {
            session_timeout_secs: i64::from(a.session_timeout_minutes) * 60,
            click_lookback_secs: i64::from(a.click_lookback_days) * 86_400,
            view_lookback_secs: i64::from(a.view_lookback_days) * 86_400,
            half_life_secs: (a.time_decay_half_life_days * 86_400.0) as i64,
            default_model: Model::parse(&a.default_attribution_model).unwrap_or(Model::LastTouch),
            default_time_zone: a.timezone.parse().unwrap_or(chrono_tz::Tz::UTC),
            ..AccountSettings::default()
        };
        cfg.accounts.insert(a.id, settings);
        if let Ok(currency) = Currency::new(&a.currency) {
            cfg.catalog.currencies.insert(a.id, currency);
        }
    }
    for x in &snap.currency_rates {
        if let (Ok(from), Ok(to)) = (Currency::new(&x.from_currency), Currency::new(&x.to_currency)) {
            cfg.catalog.rates.insert(from, to, RateRow { valid_from: x.valid_from, valid_until: x.valid_until, rate: x.rate });
        }
    }
    for c in snap.campaigns.values() {
        cfg.catalog.set_time_zone(c.account_id, &c.id, &c.timezone);
    }
    for w in snap.channel_weights.values() {
        if let Some(model) = Model::parse(&w.model).filter(|m| m.is_data_driven()) {
            cfg.catalog.channel_weights.insert((w.account_id, model), ChannelWeights(w.weights.clone()));
        }
    }
    cfg
}

pub struct Aggregator {
    pub bus: Arc<dyn Bus>,
    pub sinks: Vec<Arc<dyn Sink>>,
    pub catalog: Arc<touchline_store::CatalogCache>,
    pub config: AggregatorConfig,
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub stats: Arc<AggStats>,
}

/// A running partition task and the switch that stops it.
struct Running {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<Result<(), AggError>>,
}

impl Running {
    /// Stops the partition (it flushes and checkpoints what it read) and waits for it.
    async fn stop(self) -> Result<(), AggError> {
        let _ = self.stop.send(true);
        match self.handle.await {
            Ok(r) => r,
            Err(e) => Err(AggError::Engine(format!("partition task panicked: {e}"))),
        }
    }
}

/// Which partitions of a run-until-consumed are idle, and at which (checkpointed) positions.
#[derive(Default)]
struct Quiet {
    parts: std::sync::Mutex<BTreeMap<u32, Option<BTreeMap<String, u64>>>>,
}

impl Quiet {
    fn busy(&self, p: u32) {
        if let Ok(mut m) = self.parts.lock() {
            m.insert(p, None);
        }
    }

    fn idle(&self, p: u32, offsets: &BTreeMap<String, u64>) {
        if let Ok(mut m) = self.parts.lock() {
            if !matches!(m.get(&p), Some(Some(o)) if o == offsets) {
                m.insert(p, Some(offsets.clone()));
            }
        }
    }

    /// Every partition's position when all of them are idle.
    fn all_idle(&self) -> Option<Vec<(u32, BTreeMap<String, u64>)>> {
        let m = self.parts.lock().ok()?;
        m.iter().map(|(p, o)| o.clone().map(|o| (*p, o))).collect()
    }
}

impl Aggregator {
    /// Runs the partitions this instance owns until `shutdown` turns true, following the
    /// group's assignment. With `exit_when_idle` (replay, batch runs: one process, every
    /// partition) it returns once every partition has consumed everything, including the
    /// re-key records partitions sent each other, and flushed.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>, exit_when_idle: bool) -> Result<(), AggError> {
        if !exit_when_idle {
            return self.run_members(shutdown).await;
        }
        self.run_until_quiet(shutdown).await
    }

    /// Every owned partition at once, until all of them are idle together and nothing is left
    /// on the bus past their positions (re-key records they sent each other included). The
    /// partitions stay up while others still work, so state is restored once, not once per
    /// round of re-key records.
    async fn run_until_quiet(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> Result<(), AggError> {
        let quiet = Arc::new(Quiet::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for p in self.owned() {
            quiet.busy(p);
            let (me, q, stop) = (self.clone(), quiet.clone(), stop_rx.clone());
            tasks.push(tokio::spawn(async move { me.partition_loop(p, stop, Some(&q)).await }));
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = changed(&mut shutdown) => {}
            }
            if *shutdown.borrow() || tasks.iter().any(|t| t.is_finished()) || self.is_quiet(&quiet).await? {
                break;
            }
        }
        let _ = stop_tx.send(true);
        let mut first_err = None;
        for t in tasks {
            match t.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "aggregator partition failed");
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(AggError::Engine(format!("partition task panicked: {e}")));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Every partition idle at checkpointed positions that are the ends of their topics. A
    /// partition appends re-key records only while busy (before it reports idle), so when all
    /// report idle every such record is already counted in the end offsets read here.
    async fn is_quiet(&self, quiet: &Quiet) -> Result<bool, AggError> {
        let Some(positions) = quiet.all_idle() else { return Ok(false) };
        for (p, offsets) in positions {
            for t in INPUT_TOPICS {
                if self.bus.end_offset(t, p).await? > offsets.get(t).copied().unwrap_or(0) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Follows the membership: starts partitions as they are assigned, stops, flushes and
    /// releases them as they are revoked.
    async fn run_members(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> Result<(), AggError> {
        let membership: Arc<dyn Membership> = if self.config.partitions.is_empty() {
            self.bus.join(&self.config.group, &INPUT_TOPICS).await?
        } else {
            Arc::new(StaticMembership::new(self.config.partitions.clone()))
        };
        let mut owned = membership.owned();
        let mut running: BTreeMap<u32, Running> = BTreeMap::new();
        // Partitions whose task failed: restarted from their checkpoint after a backoff.
        let mut retry: BTreeMap<u32, (Instant, Duration)> = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let outcome: Result<(), AggError> = loop {
            if *shutdown.borrow() {
                break Ok(());
            }
            let want = owned.borrow_and_update().clone();
            retry.retain(|p, _| want.contains(p));
            // Revoked partitions are stopped (flushed, checkpointed) and handed back.
            let gone: Vec<u32> = running.keys().copied().filter(|p| !want.contains(p)).collect();
            for p in gone {
                if let Some(r) = running.remove(&p) {
                    if let Err(e) = self.stop_and_release(p, r, membership.as_ref()).await {
                        tracing::error!(partition = p, error = %e, "partition failed while stopping; released to the group");
                    }
                }
            }
            // A task that ended on its own failed (a broker, sink or checkpoint error that is
            // not retried in place, a save fenced by a newer owner): nothing past its last
            // checkpoint counts, so it restarts from there after a backoff while the partition
            // is still ours. The process carries on with its other partitions.
            let ended: Vec<u32> = running.iter().filter(|(_, r)| r.handle.is_finished()).map(|(p, _)| *p).collect();
            for p in ended {
                if let Some(r) = running.remove(&p) {
                    let e = r.stop().await.err().unwrap_or_else(|| AggError::Engine(format!("partition {p} stopped unexpectedly")));
                    self.stats.partition_failures.fetch_add(1, Ordering::Relaxed);
                    let backoff = retry.get(&p).map_or(Duration::from_secs(1), |(_, b)| (*b * 2).min(Duration::from_secs(30)));
                    tracing::error!(partition = p, error = %e, retry_in_ms = backoff.as_millis() as u64, "partition failed; restarting it from its checkpoint");
                    retry.insert(p, (Instant::now() + backoff, backoff));
                }
            }
            for &p in &want {
                if retry.get(&p).is_some_and(|(at, _)| Instant::now() < *at) {
                    continue;
                }
                if let std::collections::btree_map::Entry::Vacant(slot) = running.entry(p) {
                    let (stop, stop_rx) = watch::channel(false);
                    let me = self.clone();
                    let handle = tokio::spawn(async move { me.partition_loop(p, stop_rx, None).await });
                    slot.insert(Running { stop, handle });
                }
            }
            tokio::select! {
                r = owned.changed() => {
                    if r.is_err() {
                        break Err(AggError::Bus(touchline_bus::BusError::Unavailable("the consumer group membership ended".into())));
                    }
                }
                () = changed(&mut shutdown) => {}
                _ = tick.tick() => {}
            }
        };
        for (p, r) in std::mem::take(&mut running) {
            if let Err(e) = self.stop_and_release(p, r, membership.as_ref()).await {
                tracing::error!(partition = p, error = %e, "partition failed while stopping");
            }
        }
        outcome
    }

    /// Stops a partition (it flushes and checkpoints what it read), drops it from the lag
    /// gauge and hands it back to the group.
    async fn stop_and_release(&self, p: u32, r: Running, membership: &dyn Membership) -> Result<(), AggError> {
        let res = r.stop().await;
        self.forget_partition(p);
        membership.released(p);
        tracing::info!(partition = p, "partition stopped, flushed, checkpointed and released");
        res.map(|_| ())
    }

    fn owned(&self) -> Vec<u32> {
        if self.config.partitions.is_empty() {
            (0..self.bus.partitions()).collect()
        } else {
            self.config.partitions.clone()
        }
    }

    /// One partition: restore, then read → apply → flush until `shutdown`. With `quiet` (runs
    /// that end when everything is consumed) it flushes as soon as it has caught up and reports
    /// itself idle, with its checkpointed positions, whenever a pass read nothing.
    async fn partition_loop(&self, p: u32, mut shutdown: watch::Receiver<bool>, quiet: Option<&Quiet>) -> Result<(), AggError> {
        let exit_when_idle = quiet.is_some();
        let epoch = self.checkpoints.acquire(p).await.map_err(AggError::Checkpoint)?;
        let cfg = engine_config(&self.catalog.snapshot(), p, self.bus.partitions(), self.config.allowed_lateness_secs);
        let mut catalog_version = self.catalog.snapshot().version;
        let (mut engine, mut chain, mut offsets) = match self.checkpoints.load(p).await.map_err(AggError::Checkpoint)? {
            Some(c) => {
                let restored = self.restore_state(p, cfg, &c).await?;
                // The previous owner may have died before (or while) delivering it.
                let outbox = c.outbox.or(restored.last_output).filter(|o| !o.is_empty());
                tracing::info!(partition = p, epoch, outbox = outbox.is_some(), "restored checkpoint");
                if let Some(out) = &outbox {
                    self.deliver(p, epoch, out, &shutdown).await?;
                }
                (restored.engine, restored.chain, c.offsets)
            }
            None => {
                let mut offsets = BTreeMap::new();
                for t in INPUT_TOPICS {
                    let start = match self.bus.committed(&self.config.group, t, p).await? {
                        Some(o) => o,
                        None => self.bus.start_offset(t, p).await?,
                    };
                    offsets.insert(t.to_owned(), start);
                }
                (Engine::new(cfg), None, offsets)
            }
        };
        self.resume_sinks(p, &offsets).await?;
        let flush_every = Duration::from_millis(self.config.flush_interval_ms.max(10));
        loop {
            let mut raw = Consumed::default();
            let mut dlq: Vec<OutRecord> = Vec::new();
            let mut pending = 0usize;
            let mut max_received: Option<DateTime<Utc>> = None;
            let started = Instant::now();
            let mut caught_up;
            loop {
                caught_up = true;
                for t in INPUT_TOPICS {
                    let from = offsets.get(t).copied().unwrap_or(0);
                    let reading = Instant::now();
                    let recs = self.bus.read(t, p, from, self.config.read_batch, Duration::ZERO).await?;
                    self.stats.stages.add(Stage::Read, reading.elapsed());
                    if recs.len() == self.config.read_batch {
                        caught_up = false;
                    }
                    if !recs.is_empty() {
                        if let Some(q) = quiet {
                            q.busy(p);
                        }
                    }
                    if let Some(last) = recs.last() {
                        offsets.insert(t.to_owned(), last.offset + 1);
                    }
                    pending += recs.len();
                    let decoded = self.stats.stages.time(Stage::Decode, || recs.iter().map(|r| decode(t, r)).collect::<Vec<_>>());
                    self.stats.stages.time(Stage::Engine, || {
                        for (r, d) in recs.iter().zip(decoded) {
                            self.apply(&mut engine, t, r, d, &mut raw, &mut dlq, &mut max_received);
                        }
                    });
                    if raw.bus_bytes >= self.config.raw_buffer_bytes {
                        self.write_raw(p, epoch, &mut raw, &shutdown).await?;
                    }
                }
                if *shutdown.borrow() || pending >= self.config.flush_records || started.elapsed() >= flush_every {
                    break;
                }
                if caught_up {
                    if exit_when_idle {
                        // Everything available was read: flush now rather than wait.
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(25)) => {}
                        () = changed(&mut shutdown) => {}
                    }
                }
            }
            // A catalog change applies from now on: campaign time zones to the records that follow,
            // new channel weights to the held conversions of their account, new exchange rates
            // to the records that waited for them.
            let snap = self.catalog.snapshot();
            let mut recredited = 0;
            if snap.version != catalog_version {
                catalog_version = snap.version;
                let cfg = engine_config(&snap, p, self.bus.partitions(), self.config.allowed_lateness_secs);
                recredited = engine.set_catalog(cfg.catalog);
            }
            if recredited > 0 {
                // Results of no record: a restore could not recompute them from the records
                // after the last base, so the checkpoint of this flush is a new base.
                tracing::info!(
                    partition = p,
                    records = recredited,
                    "catalog change: crediting held conversions again (new channel weights) or applying records that waited for an exchange rate"
                );
                chain = None;
            }
            if pending > 0 || recredited > 0 {
                let consumed = Consumption { offsets: &offsets, raw: &mut raw, records: pending as u64, max_received };
                self.flush_cycle(p, epoch, &mut engine, &mut chain, consumed, dlq, &shutdown).await?;
            } else if self.base_stale(chain.as_ref()) {
                self.checkpoint(p, epoch, &engine, &mut chain, &offsets, 0, None).await?;
            }
            self.update_lag(p, &offsets).await;
            if let Ok(mut m) = self.stats.waiting_for_rate_by_partition.lock() {
                m.insert(p, engine.waiting_for_rate() as u64);
            }
            if *shutdown.borrow() {
                return Ok(());
            }
            if let Some(q) = quiet.filter(|_| pending == 0 && caught_up) {
                // Nothing new and everything flushed: idle here until records arrive (another
                // partition's re-key records) or the run ends.
                q.idle(p, &offsets);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(25)) => {}
                    () = changed(&mut shutdown) => {}
                }
            }
        }
    }

    /// Applies one decoded record to the engine; what it cannot apply goes to `dlq`.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        engine: &mut Engine,
        topic: &str,
        r: &StoredRecord,
        decoded: Decoded,
        raw: &mut Consumed,
        dlq: &mut Vec<OutRecord>,
        max_received: &mut Option<DateTime<Utc>>,
    ) {
        self.stats.records.fetch_add(1, Ordering::Relaxed);
        let (outcome, record) = feed(engine, topic, r, decoded, max_received);
        if let Some(record) = record {
            raw.push(record, r.offset, r.value.len());
        }
        let reason = match outcome {
            Ok(Ingest::TooLate) => {
                self.stats.too_late.fetch_add(1, Ordering::Relaxed);
                "too_late".to_owned()
            }
            Ok(Ingest::Duplicate) => {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Ingest::NoRate) => {
                self.stats.no_rate.fetch_add(1, Ordering::Relaxed);
                "no_exchange_rate: no rate to the account's reporting currency, and the partition's list of records waiting for one is full"
                    .to_owned()
            }
            Ok(_) => return,
            Err(reason) => {
                self.stats.bad_records.fetch_add(1, Ordering::Relaxed);
                reason
            }
        };
        let value = serde_json::json!({
            "v": 1, "reason": reason, "topic": topic, "partition": r.partition, "offset": r.offset,
            "value": String::from_utf8_lossy(&r.value),
        });
        dlq.push(OutRecord {
            topic: topics::DLQ.to_owned(),
            key: r.key.clone(),
            value: serde_json::to_vec(&value).unwrap_or_default(),
            timestamp_ms: r.timestamp_ms,
        });
    }

    /// One flush: raw records and DLQ entries out (immutable, idempotent: before the
    /// checkpoint moves past them), then the checkpoint with the flush's output as outbox, then
    /// the outbox delivered. A crash anywhere leaves the sinks holding results of checkpointed
    /// states only; the next start delivers the outbox of the last checkpoint again.
    #[allow(clippy::too_many_arguments)]
    async fn flush_cycle(
        &self,
        p: u32,
        epoch: u32,
        engine: &mut Engine,
        chain: &mut Option<replay::Chain>,
        consumed: Consumption<'_>,
        dlq: Vec<OutRecord>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), AggError> {
        let Consumption { offsets, raw, records, max_received } = consumed;
        let out = self.stats.stages.time(Stage::Engine, || engine.flush());
        self.stats.attribution_sets.fetch_add(out.attributions.len() as u64, Ordering::Relaxed);
        self.stats.attribution_rows.fetch_add(out.attributions.iter().map(|s| s.credits.len() as u64).sum(), Ordering::Relaxed);
        self.write_raw(p, epoch, raw, shutdown).await?;
        if !dlq.is_empty() {
            self.append_retrying(dlq, shutdown).await?;
        }
        if let Some(w) = max_received {
            engine.advance_watermark(w);
        }
        let outbox = (!out.is_empty()).then_some(out);
        let outbox = self.checkpoint(p, epoch, engine, chain, offsets, records, outbox).await?;
        if let Some(out) = &outbox {
            self.deliver(p, epoch, out, shutdown).await?;
        }
        for (t, o) in offsets {
            // For lag and tools only: the checkpoint above is what a restart uses.
            let _ = self.bus.commit(&self.config.group, t, p, *o).await;
        }
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Saves the checkpoint of `engine` at `offsets` with `outbox`, and hands the outbox back
    /// for delivery.
    #[allow(clippy::too_many_arguments)]
    async fn checkpoint(
        &self,
        p: u32,
        epoch: u32,
        engine: &Engine,
        chain: &mut Option<replay::Chain>,
        offsets: &BTreeMap<String, u64>,
        records: u64,
        outbox: Option<Flush>,
    ) -> Result<Option<Flush>, AggError> {
        let state = self.checkpoint_state(p, epoch, engine, offsets, chain, records).await?;
        // A restore recomputes the output of a flush on a chain (see `replay.rs`); only a
        // checkpoint whose state is a snapshot must store it.
        let recomputed = state.replay.as_ref().is_some_and(|r| !r.flushes.is_empty());
        let (stored, kept) = if recomputed { (None, outbox) } else { (outbox, None) };
        let cp = checkpoint::Checkpoint { epoch, offsets: offsets.clone(), snapshot: state.snapshot, replay: state.replay, outbox: stored };
        let saving = Instant::now();
        self.checkpoints.save(p, &cp).await.map_err(AggError::Checkpoint)?;
        self.stats.stages.add(Stage::Checkpoint, saving.elapsed());
        if let (Some(base), Some(replay)) = (&state.new_base, &cp.replay) {
            self.settle_base(p, epoch, base, &replay.from).await?;
        }
        Ok(cp.outbox.or(kept))
    }

    /// Delivers a checkpoint's outbox: results to every sink, re-key records to the bus.
    async fn deliver(&self, p: u32, epoch: u32, out: &Flush, shutdown: &watch::Receiver<bool>) -> Result<(), AggError> {
        self.write_sinks(&SinkBatch { partition: p, epoch, raw: &[], raw_offsets: &[], flush: out }, shutdown).await?;
        let transfers: Vec<OutRecord> = out
            .transfers
            .iter()
            .map(|t| OutRecord {
                topic: t.topic().to_owned(),
                key: t.partition_key(),
                value: t.to_json(),
                timestamp_ms: t.linked_at.timestamp_millis(),
            })
            .collect();
        if !transfers.is_empty() {
            self.stats.transfers_out.fetch_add(transfers.len() as u64, Ordering::Relaxed);
            self.append_retrying(transfers, shutdown).await?;
        }
        if !out.refused.is_empty() {
            // Records the engine held (waiting for an exchange rate) and gave up on.
            self.stats.no_rate.fetch_add(out.refused.len() as u64, Ordering::Relaxed);
            let now = Utc::now().timestamp_millis();
            let dlq = out
                .refused
                .iter()
                .map(|x| {
                    let key = Record::from_json(x.record.as_bytes()).map(|r| r.partition_key()).unwrap_or_default();
                    let value = serde_json::json!({"v": 1, "reason": x.reason, "partition": p, "value": x.record});
                    OutRecord {
                        topic: topics::DLQ.to_owned(),
                        key,
                        value: serde_json::to_vec(&value).unwrap_or_default(),
                        timestamp_ms: now,
                    }
                })
                .collect();
            self.append_retrying(dlq, shutdown).await?;
        }
        Ok(())
    }

    /// Tells every sink where the partition resumes (see [`Sink::resume`]).
    async fn resume_sinks(&self, p: u32, offsets: &BTreeMap<String, u64>) -> Result<(), AggError> {
        for sink in &self.sinks {
            sink.resume(p, offsets).await.map_err(|e| AggError::Sink(format!("{} could not resume partition {p}: {e}", sink.name())))?;
        }
        Ok(())
    }

    /// Writes the consumed records held for the raw sinks, and forgets them.
    async fn write_raw(&self, p: u32, epoch: u32, raw: &mut Consumed, shutdown: &watch::Receiver<bool>) -> Result<(), AggError> {
        if !raw.records.is_empty() {
            let batch = SinkBatch { partition: p, epoch, raw: &raw.records, raw_offsets: &raw.offsets, flush: &Flush::default() };
            self.write_sinks(&batch, shutdown).await?;
        }
        raw.clear();
        Ok(())
    }

    /// Writes to every sink, retrying with backoff while consumption pauses. Rows a sink
    /// refuses as invalid go to the DLQ with the sink's reason, and the partition moves on.
    async fn write_sinks(&self, batch: &SinkBatch<'_>, shutdown: &watch::Receiver<bool>) -> Result<(), AggError> {
        for sink in &self.sinks {
            let writing = Instant::now();
            let refused = self.write_sink_retrying(sink.as_ref(), batch, shutdown).await?;
            let spent = writing.elapsed();
            let rows = if batch.raw.is_empty() { SinkRows::Results } else { SinkRows::Raw };
            self.stats.stages.add(Stage::Sinks, spent);
            self.stats.stages.add_sink(sink.name(), rows, spent);
            if !refused.is_empty() {
                self.stats.sink_refused_rows.fetch_add(refused.len() as u64, Ordering::Relaxed);
                tracing::error!(sink = sink.name(), partition = batch.partition, rows = refused.len(), first = %refused[0].reason, "sink refused rows as invalid; they go to the DLQ");
                self.append_retrying(refused.iter().map(refused_to_dlq).collect(), shutdown).await?;
            }
        }
        Ok(())
    }

    async fn write_sink_retrying(
        &self,
        sink: &dyn Sink,
        batch: &SinkBatch<'_>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Vec<sink::RefusedRow>, AggError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match sink.write(batch).await {
                Ok(refused) => return Ok(refused),
                Err(e) => {
                    self.stats.sink_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(sink = sink.name(), partition = batch.partition, error = %e, "sink write failed; retrying (consumption paused)");
                    if *shutdown.borrow() {
                        // Leave: the next start replays from the checkpoint (and delivers
                        // its outbox again).
                        return Err(AggError::Checkpoint(format!("shutdown while sink {} was failing: {e}", sink.name())));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn append_retrying(&self, records: Vec<OutRecord>, shutdown: &watch::Receiver<bool>) -> Result<(), AggError> {
        let appending = Instant::now();
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = self.bus.append(records.clone()).await {
            tracing::warn!(error = %e, "appending re-key/DLQ records failed; retrying");
            if *shutdown.borrow() {
                return Err(e.into());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        self.stats.stages.add(Stage::Append, appending.elapsed());
        Ok(())
    }

    /// Drops a released partition from the lag gauge (its new owner reports it).
    fn forget_partition(&self, p: u32) {
        if let Ok(mut m) = self.stats.lag_by_partition.lock() {
            m.remove(&p);
        }
        if let Ok(mut m) = self.stats.state_bytes_by_partition.lock() {
            m.remove(&p);
        }
        if let Ok(mut m) = self.stats.waiting_for_rate_by_partition.lock() {
            m.remove(&p);
        }
    }

    async fn update_lag(&self, p: u32, offsets: &BTreeMap<String, u64>) {
        let mut lag = 0u64;
        for t in INPUT_TOPICS {
            let end = self.bus.end_offset(t, p).await.unwrap_or(0);
            lag += end.saturating_sub(offsets.get(t).copied().unwrap_or(0));
        }
        if let Ok(mut m) = self.stats.lag_by_partition.lock() {
            m.insert(p, lag);
        }
    }
}

/// What a flush covers: the offsets it reached, the records it consumed that the raw sinks
/// have not been given yet, how many it consumed (DLQ'd ones included), and the newest server
/// time among them.
struct Consumption<'a> {
    offsets: &'a BTreeMap<String, u64>,
    raw: &'a mut Consumed,
    records: u64,
    max_received: Option<DateTime<Utc>>,
}

/// Records consumed and not yet written to the raw sinks, each with its offset in its topic
/// (the partition's), and the bus bytes they were read from.
#[derive(Default)]
struct Consumed {
    records: Vec<Record>,
    offsets: Vec<u64>,
    bus_bytes: usize,
}

impl Consumed {
    fn push(&mut self, record: Record, offset: u64, bus_bytes: usize) {
        self.records.push(record);
        self.offsets.push(offset);
        self.bus_bytes += bus_bytes;
    }

    fn clear(&mut self) {
        self.records.clear();
        self.offsets.clear();
        self.bus_bytes = 0;
    }
}

/// A bus record, parsed and checked.
// Nearly every record is a `Record`: boxing it would add an allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
enum Decoded {
    /// A record of an entity (identify and alias on the identities topic too).
    Record(Record),
    /// An identity transfer between partitions (identities topic only), which is no record.
    Transfer,
    /// Unreadable, or holding what no store could hold: the DLQ reason.
    Refused(String),
}

/// Feeds one decoded record to the engine: the engine's verdict (or why the record cannot be
/// applied), and the record itself for the sinks that keep raw rows.
fn feed(
    engine: &mut Engine,
    topic: &str,
    r: &StoredRecord,
    decoded: Decoded,
    max_received: &mut Option<DateTime<Utc>>,
) -> (Result<Ingest, String>, Option<Record>) {
    match decoded {
        Decoded::Record(rec) => {
            note_received(max_received, rec.meta.received_at);
            let outcome = if topic == topics::IDENTITIES {
                engine.ingest_identities_message(&r.value).map_err(|e| format!("unreadable: {e}"))
            } else {
                Ok(engine.ingest(&rec))
            };
            (outcome, Some(rec))
        }
        Decoded::Transfer => (engine.ingest_identities_message(&r.value).map_err(|e| format!("unreadable: {e}")), None),
        Decoded::Refused(reason) => (Err(reason), None),
    }
}

fn decode(topic: &str, r: &StoredRecord) -> Decoded {
    match Record::from_json(&r.value) {
        Ok(rec) => match check_stored(&rec) {
            Ok(()) => Decoded::Record(rec),
            Err(e) => Decoded::Refused(invalid(&e)),
        },
        Err(_) if topic == topics::IDENTITIES => Decoded::Transfer,
        Err(e) => Decoded::Refused(format!("unreadable: {e}")),
    }
}

/// Resolves when the stop signal changes. When its sender is gone no change can come: this
/// then never resolves, so a `select!` with a sleep beside it waits instead of spinning.
async fn changed(rx: &mut watch::Receiver<bool>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The DLQ reason of a record no store could hold (written to the bus past the decoder).
fn invalid(e: &touchline_model::RecordError) -> String {
    format!("invalid: {e}")
}

/// The DLQ record of a row a sink refused: what, where, why, and the row itself.
fn refused_to_dlq(r: &sink::RefusedRow) -> OutRecord {
    let value = serde_json::json!({
        "v": 1, "reason": format!("refused by sink {}: {}", r.sink, r.reason), "sink": r.sink, "kind": r.kind, "row": r.row,
    });
    OutRecord {
        topic: topics::DLQ.to_owned(),
        key: r.key.clone(),
        value: serde_json::to_vec(&value).unwrap_or_default(),
        timestamp_ms: Utc::now().timestamp_millis(),
    }
}

fn note_received(max: &mut Option<DateTime<Utc>>, t: DateTime<Utc>) {
    if max.is_none_or(|m| t > m) {
        *max = Some(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_signal_whose_sender_is_gone_never_fires() {
        let (tx, mut rx) = watch::channel(false);
        drop(tx);
        // With the sender gone, `rx.changed()` fails at once; a loop selecting on it beside a
        // sleep would spin. `changed` waits instead.
        let waited = tokio::time::timeout(Duration::from_millis(200), changed(&mut rx)).await;
        assert!(waited.is_err(), "resolved although no change can come");

        let (tx, mut rx) = watch::channel(false);
        let _ = tx.send(true);
        assert!(tokio::time::timeout(Duration::from_secs(1), changed(&mut rx)).await.is_ok(), "a real change resolves");
    }
}
