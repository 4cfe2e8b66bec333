//! [`SpillingBus`]: Kafka for the collector, with a durable spill for broker outages.
//!
//! * **Direct** (normal): appends go to Kafka and return after the delivery reports.
//! * **Spilling**: an append Kafka could not confirm (broker unreachable, timeout) is written to
//!   the spill — an [`EmbeddedLog`] (same durable, fsynced format as the embedded bus; one
//!   partition per topic, so the spill keeps the order of every key) — and acknowledged from
//!   there. While the spill holds undrained records every new append goes to the spill too, so
//!   a key's later records never overtake its spilled ones.
//! * A drain task probes the broker; once it answers, it produces the spilled records to
//!   Kafka in spill order, batch by batch, committing its spill offsets (group
//!   [`DRAIN_GROUP`] in the spill log) after each acknowledged batch. When the spill is empty
//!   it switches back to Direct (under a lock that spill appends share, so nothing slips in
//!   between).
//! * **Full**: when the backlog would exceed `spill.max_bytes`, appends fail with
//!   `BusError::Unavailable` (HTTP 503) and [`Bus::ready`] fails.
//!
//! Exactly once: a produce that failed may still have been written by the broker (its
//! acknowledgement lost when the broker went away). Before draining after a failure, the
//! drain reads what Kafka holds past the last offset this process saw acknowledged in each
//! affected partition (at most `spill.dedup_window` records when unknown) and skips spilled
//! records with the same key and value already there. touchline's values carry a record id
//! and the server time, so equal key and value means the same record. A crash of the process
//! in the middle of a drain batch is covered the same way on restart (bounded by the window).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::{Notify, RwLock};
use touchline_bus::{partition_for_key, Bus, BusError, EmbeddedLog, LogConfig, Membership, OutRecord, Position, StoredRecord};

use crate::bus::Floor;
use crate::{KafkaBus, SpillConfig};

/// Consumer group (in the spill log) holding how far the drain has produced to Kafka.
pub const DRAIN_GROUP: &str = "touchline-spill-drain";
/// The offset reported for a record acknowledged from the spill (its Kafka offset is not
/// known until the drain produces it).
pub const SPILLED_OFFSET: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpillState {
    /// Appends go to Kafka.
    Direct,
    /// Kafka is or was unreachable; appends go to the spill until it is drained.
    Spilling,
    /// The spill is full: appends fail with 503 until the drain makes room.
    Full,
}

/// For `/readyz` and `/metrics`.
#[derive(Clone, Debug, Serialize)]
pub struct SpillStatus {
    pub state: SpillState,
    pub backlog_records: u64,
    pub backlog_bytes: u64,
    pub max_bytes: u64,
    /// Records acknowledged from the spill since start.
    pub spilled_total: u64,
    /// Records the drain produced to Kafka since start.
    pub drained_total: u64,
    /// Spilled records found already in Kafka and not produced again.
    pub deduplicated_total: u64,
    pub last_error: Option<String>,
}

struct Shared {
    kafka: Arc<KafkaBus>,
    spill: Arc<EmbeddedLog>,
    cfg: SpillConfig,
    spilling: AtomicBool,
    /// Spill appends hold it shared; the switch back to Direct holds it exclusively.
    switch: RwLock<()>,
    backlog_bytes: AtomicU64,
    backlog_records: AtomicU64,
    full: AtomicBool,
    spilled_total: AtomicU64,
    drained_total: AtomicU64,
    deduplicated_total: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Per (topic, partition) touched by a failed produce: one past the last offset
    /// acknowledged before the failure (`None`: unknown). Drives the drain's dedup.
    marks: Mutex<BTreeMap<(String, u32), Option<u64>>>,
    wake: Notify,
}

/// The collector's bus when Kafka is configured: [`KafkaBus`] plus a spill. Reads, offsets
/// and group membership go straight to Kafka.
pub struct SpillingBus {
    shared: Arc<Shared>,
}

fn record_bytes(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

fn fingerprint(key: &str, value: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    value.hash(&mut h);
    h.finish()
}

impl SpillingBus {
    /// Opens (or recovers) the spill under `dir` and starts the drain task. A spill left with
    /// records by an earlier run starts in Spilling state and drains when Kafka answers.
    pub async fn open(kafka: Arc<KafkaBus>, dir: impl AsRef<Path>) -> Result<Arc<SpillingBus>, BusError> {
        let cfg = kafka.config().spill.clone();
        if cfg.drain_batch == 0 {
            return Err(BusError::Config("kafka.spill.drain_batch must be at least 1".into()));
        }
        let log_cfg = LogConfig {
            partitions: 1,
            segment_bytes: 16 * 1024 * 1024,
            retention_secs: 3600,
            retention_bytes: 0,
            retention_keeps_uncommitted: true,
            retention_check_secs: 300,
            ..LogConfig::default()
        };
        let spill = EmbeddedLog::open(dir.as_ref(), log_cfg).await?;
        let shared = Arc::new(Shared {
            kafka,
            spill,
            cfg,
            spilling: AtomicBool::new(false),
            switch: RwLock::new(()),
            backlog_bytes: AtomicU64::new(0),
            backlog_records: AtomicU64::new(0),
            full: AtomicBool::new(false),
            spilled_total: AtomicU64::new(0),
            drained_total: AtomicU64::new(0),
            deduplicated_total: AtomicU64::new(0),
            last_error: Mutex::new(None),
            marks: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        });
        // Recover the backlog of an earlier run.
        let mut records = 0u64;
        let mut bytes = 0u64;
        for topic in shared.spill.topics() {
            let (from, end) = shared.undrained(&topic).await?;
            let mut next = from;
            while next < end {
                let batch = shared.spill.read(&topic, 0, next, 10_000, Duration::ZERO).await?;
                let Some(last) = batch.last() else { break };
                next = last.offset + 1;
                records += batch.len() as u64;
                bytes += batch.iter().map(|r| record_bytes(&r.key, &r.value)).sum::<u64>();
                // Records whose produce may have happened before a crash: dedup them.
                let n = shared.kafka.partitions();
                shared.note_failure(batch.iter().map(|r| ((r.topic.clone(), partition_for_key(&r.key, n)), None)).collect());
            }
        }
        if records > 0 {
            tracing::warn!(records, bytes, "spill holds records from an earlier run; they drain to Kafka when it answers");
            shared.spilling.store(true, Ordering::SeqCst);
        }
        shared.backlog_records.store(records, Ordering::SeqCst);
        shared.backlog_bytes.store(bytes, Ordering::SeqCst);
        tokio::spawn(drain_loop(Arc::downgrade(&shared)));
        Ok(Arc::new(SpillingBus { shared }))
    }

    pub fn kafka(&self) -> &Arc<KafkaBus> {
        &self.shared.kafka
    }

    pub fn status(&self) -> SpillStatus {
        let s = &self.shared;
        let state = if s.full.load(Ordering::Relaxed) {
            SpillState::Full
        } else if s.spilling.load(Ordering::Relaxed) {
            SpillState::Spilling
        } else {
            SpillState::Direct
        };
        SpillStatus {
            state,
            backlog_records: s.backlog_records.load(Ordering::Relaxed),
            backlog_bytes: s.backlog_bytes.load(Ordering::Relaxed),
            max_bytes: s.cfg.max_bytes,
            spilled_total: s.spilled_total.load(Ordering::Relaxed),
            drained_total: s.drained_total.load(Ordering::Relaxed),
            deduplicated_total: s.deduplicated_total.load(Ordering::Relaxed),
            last_error: s.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
        }
    }

    /// Waits until the spill is drained and appends go to Kafka again (tests, shutdown).
    pub async fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.shared.spilling.load(Ordering::SeqCst) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            self.shared.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}

impl Shared {
    fn set_error(&self, e: &BusError) {
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
    }

    /// Remembers, for the partitions of a failed produce, the acknowledged end offset known
    /// before it was sent: its records can only have landed at or after it. The lowest floor
    /// wins until the spill is drained (`None`, unknown, is lowest).
    fn note_failure(&self, floors: Vec<Floor>) {
        let mut marks = self.marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (k, floor) in floors {
            marks
                .entry(k)
                .and_modify(|m| {
                    *m = match (*m, floor) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        _ => None,
                    }
                })
                .or_insert(floor);
        }
    }

    fn append_timeout(&self) -> Duration {
        let cfg = self.kafka.config();
        let cap = cfg.produce_timeout();
        if self.cfg.append_timeout_ms == 0 {
            cap
        } else {
            Duration::from_millis(self.cfg.append_timeout_ms).min(cap)
        }
    }

    async fn undrained(&self, topic: &str) -> Result<(u64, u64), BusError> {
        let start = self.spill.start_offset(topic, 0).await?;
        let from = self.spill.committed(DRAIN_GROUP, topic, 0).await?.unwrap_or(start).max(start);
        let end = self.spill.end_offset(topic, 0).await?;
        Ok((from, end))
    }

    /// Writes records to the spill; `None` when the spill is no longer in use (switched back
    /// to Direct meanwhile), so the caller goes to Kafka.
    async fn to_spill(&self, records: &[OutRecord]) -> Option<Result<Vec<Position>, BusError>> {
        let _shared = self.switch.read().await;
        if !self.spilling.load(Ordering::SeqCst) {
            return None;
        }
        let bytes: u64 = records.iter().map(|r| record_bytes(&r.key, &r.value)).sum();
        let now = self.backlog_bytes.fetch_add(bytes, Ordering::SeqCst) + bytes;
        if now > self.cfg.max_bytes {
            self.backlog_bytes.fetch_sub(bytes, Ordering::SeqCst);
            self.full.store(true, Ordering::SeqCst);
            let last = self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone().unwrap_or_default();
            return Some(Err(BusError::Unavailable(format!(
                "kafka is unreachable and the spill is full ({} of {} bytes); last kafka error: {last}",
                now - bytes,
                self.cfg.max_bytes
            ))));
        }
        // Retention of the spill keeps what the drain has not committed; a topic new to the
        // spill gets its drain position first, so retention never sees it uncommitted.
        let mut seen = Vec::new();
        for r in records {
            if !seen.contains(&r.topic.as_str()) {
                seen.push(&r.topic);
                match self.spill.committed(DRAIN_GROUP, &r.topic, 0).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        let start = match self.spill.start_offset(&r.topic, 0).await {
                            Ok(s) => s,
                            Err(e) => {
                                self.backlog_bytes.fetch_sub(bytes, Ordering::SeqCst);
                                return Some(Err(e));
                            }
                        };
                        if let Err(e) = self.spill.commit(DRAIN_GROUP, &r.topic, 0, start).await {
                            self.backlog_bytes.fetch_sub(bytes, Ordering::SeqCst);
                            return Some(Err(e));
                        }
                    }
                    Err(e) => {
                        self.backlog_bytes.fetch_sub(bytes, Ordering::SeqCst);
                        return Some(Err(e));
                    }
                }
            }
        }
        match self.spill.append(records.to_vec()).await {
            Ok(_) => {
                self.backlog_records.fetch_add(records.len() as u64, Ordering::SeqCst);
                self.spilled_total.fetch_add(records.len() as u64, Ordering::Relaxed);
                self.wake.notify_one();
                let n = self.kafka.partitions();
                Some(Ok(records.iter().map(|r| Position { partition: partition_for_key(&r.key, n), offset: SPILLED_OFFSET }).collect()))
            }
            Err(e) => {
                self.backlog_bytes.fetch_sub(bytes, Ordering::SeqCst);
                Some(Err(BusError::Unavailable(format!("kafka is unreachable and the spill failed: {e}"))))
            }
        }
    }

    /// Reads what Kafka holds past each mark and counts the (key, value) fingerprints.
    async fn kafka_fingerprints(&self) -> Result<HashMap<u64, u32>, BusError> {
        let marks: Vec<((String, u32), Option<u64>)> =
            self.marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut seen: HashMap<u64, u32> = HashMap::new();
        for ((topic, p), mark) in marks {
            let (start, end) = self.kafka.watermarks(&topic, p).await?;
            let from = match mark {
                Some(m) => m.max(start),
                None => end.saturating_sub(self.cfg.dedup_window).max(start),
            };
            let mut next = from;
            while next < end {
                let batch = self.kafka.read(&topic, p, next, 5_000, Duration::from_secs(5)).await?;
                let Some(last) = batch.last() else {
                    return Err(BusError::Unavailable(format!("kafka returned nothing from {topic}/{p} at {next} before its end {end}")));
                };
                next = last.offset + 1;
                for r in &batch {
                    *seen.entry(fingerprint(&r.key, &r.value)).or_insert(0) += 1;
                }
            }
        }
        Ok(seen)
    }

    /// Produces every spilled record to Kafka; `Ok` when the spill is empty.
    async fn drain_once(&self, dedup: &mut Option<HashMap<u64, u32>>) -> Result<(), BusError> {
        if dedup.is_none() {
            *dedup = Some(self.kafka_fingerprints().await?);
        }
        for topic in self.spill.topics() {
            loop {
                let (from, end) = self.undrained(&topic).await?;
                if from >= end {
                    break;
                }
                let batch = self.spill.read(&topic, 0, from, self.cfg.drain_batch, Duration::ZERO).await?;
                let Some(last) = batch.last() else { break };
                let next = last.offset + 1;
                let bytes: u64 = batch.iter().map(|r| record_bytes(&r.key, &r.value)).sum();
                let count = batch.len() as u64;
                let mut out = Vec::with_capacity(batch.len());
                let mut skipped = 0u64;
                for r in batch {
                    let fp = fingerprint(&r.key, &r.value);
                    if let Some(c) = dedup.as_mut().and_then(|d| d.get_mut(&fp)).filter(|c| **c > 0) {
                        *c -= 1;
                        skipped += 1;
                        continue;
                    }
                    out.push(stored_to_out(r));
                }
                if !out.is_empty() {
                    if let Err((e, floors)) = self.kafka.append_within(out, self.append_timeout()).await {
                        self.note_failure(floors);
                        *dedup = None;
                        return Err(e);
                    }
                }
                self.spill.commit(DRAIN_GROUP, &topic, 0, next).await?;
                self.backlog_bytes.fetch_sub(bytes.min(self.backlog_bytes.load(Ordering::SeqCst)), Ordering::SeqCst);
                self.backlog_records.fetch_sub(count.min(self.backlog_records.load(Ordering::SeqCst)), Ordering::SeqCst);
                self.drained_total.fetch_add(count - skipped, Ordering::Relaxed);
                self.deduplicated_total.fetch_add(skipped, Ordering::Relaxed);
                if skipped > 0 {
                    tracing::info!(topic, skipped, "spilled records already in kafka (acknowledgement lost) were not produced again");
                }
                self.full.store(false, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// Back to Direct when nothing is left (checked under the exclusive lock).
    async fn try_switch_back(&self) -> Result<bool, BusError> {
        let _excl = self.switch.write().await;
        for topic in self.spill.topics() {
            let (from, end) = self.undrained(&topic).await?;
            if from < end {
                return Ok(false);
            }
        }
        self.marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        self.backlog_bytes.store(0, Ordering::SeqCst);
        self.backlog_records.store(0, Ordering::SeqCst);
        self.full.store(false, Ordering::SeqCst);
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.spilling.store(false, Ordering::SeqCst);
        tracing::info!("spill drained; appends go to kafka again");
        Ok(true)
    }
}

fn stored_to_out(r: StoredRecord) -> OutRecord {
    OutRecord { topic: r.topic, key: r.key, value: r.value, timestamp_ms: r.timestamp_ms }
}

async fn drain_loop(shared: Weak<Shared>) {
    let mut backoff = Duration::from_millis(200);
    let mut dedup: Option<HashMap<u64, u32>> = None;
    loop {
        let Some(s) = shared.upgrade() else { return };
        if !s.spilling.load(Ordering::SeqCst) {
            // Idle: wait for a spill (or check now and then that we still exist).
            let woke = tokio::time::timeout(Duration::from_secs(1), s.wake.notified()).await;
            drop(s);
            let _ = woke;
            continue;
        }
        // Probe before producing, so the drain does not queue records behind a dead broker.
        if let Err(e) = s.kafka.ready().await {
            s.set_error(&e);
            drop(s);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        }
        match s.drain_once(&mut dedup).await {
            Ok(()) => match s.try_switch_back().await {
                Ok(true) => {
                    dedup = None;
                    backoff = Duration::from_millis(200);
                }
                Ok(false) => {}
                Err(e) => s.set_error(&e),
            },
            Err(e) => {
                tracing::warn!(error = %e, "draining the spill to kafka failed; retrying");
                s.set_error(&e);
                drop(s);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[async_trait]
impl Bus for SpillingBus {
    fn partitions(&self) -> u32 {
        self.shared.kafka.partitions()
    }

    async fn append(&self, records: Vec<OutRecord>) -> Result<Vec<Position>, BusError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        for r in &records {
            if r.key.is_empty() {
                return Err(BusError::Config(format!(
                    "a record for topic {} has an empty key; every record needs its account:identity key",
                    r.topic
                )));
            }
            touchline_bus::validate_topic(&r.topic)?;
        }
        let s = &self.shared;
        loop {
            if s.spilling.load(Ordering::SeqCst) {
                match s.to_spill(&records).await {
                    Some(res) => return res,
                    None => continue,
                }
            }
            match s.kafka.append_within(records.clone(), s.append_timeout()).await {
                Ok(pos) => return Ok(pos),
                Err((e @ BusError::Unavailable(_), floors)) => {
                    tracing::warn!(error = %e, records = records.len(), "kafka append failed; spilling");
                    s.set_error(&e);
                    s.note_failure(floors);
                    s.spilling.store(true, Ordering::SeqCst);
                    s.wake.notify_one();
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize, wait: Duration) -> Result<Vec<StoredRecord>, BusError> {
        self.shared.kafka.read(topic, partition, from, max, wait).await
    }

    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, BusError> {
        self.shared.kafka.start_offset(topic, partition).await
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, BusError> {
        self.shared.kafka.end_offset(topic, partition).await
    }

    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<(), BusError> {
        self.shared.kafka.commit(group, topic, partition, next_offset).await
    }

    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, BusError> {
        self.shared.kafka.committed(group, topic, partition).await
    }

    /// Ready while records can be accepted: Kafka is fine, or the spill has room.
    async fn ready(&self) -> Result<(), BusError> {
        let st = self.status();
        if st.state == SpillState::Full {
            return Err(BusError::Unavailable(format!(
                "kafka is unreachable and the spill is full ({} records, {} of {} bytes); last kafka error: {}",
                st.backlog_records,
                st.backlog_bytes,
                st.max_bytes,
                st.last_error.unwrap_or_default()
            )));
        }
        Ok(())
    }

    async fn join(&self, group: &str, topics: &[&str]) -> Result<Arc<dyn Membership>, BusError> {
        self.shared.kafka.join(group, topics).await
    }

    fn details(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "kafka", "spill": self.status() })
    }
}
