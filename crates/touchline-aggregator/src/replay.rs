//! Checkpoints between snapshots: when a snapshot of the whole state is due, what a checkpoint
//! in between holds, and how a restore rebuilds the state from it.
//!
//! A snapshot costs time in proportion to the whole state, which grows with history; what a
//! flush changes does not. So where the checkpoint store keeps snapshots apart
//! ([`crate::CheckpointStore::keeps_bases`]), a partition writes its whole state only as a *base*,
//! every `snapshot_records` records (or `snapshot_max_age_secs`, or [`MAX_FLUSHES`]
//! flushes), and the checkpoints in between list the offsets of their flushes ([`Replay`]).
//! The log already holds the records in between. A restore restores the base, feeds those
//! records to the engine again and flushes where the first run flushed, discarding the
//! output, which was delivered when it first happened, except the last flush's: that is the
//! checkpoint's outbox, delivered again as always. So a checkpoint on a chain does not store
//! its outbox (the whole flush output, often larger than everything else a checkpoint holds):
//! the restore computes it again. The watermark moves only at flushes, so every record fed again
//! is judged late or not as it first was; within one flush the engine's results do not depend
//! on the order records arrive in, so the topics are fed one after the other.
//! `tests/partitions_sim.rs` checks the rebuilt state against an uninterrupted run under
//! any schedule of crashes.
//!
//! ```text
//!   base: snapshot at B    checkpoint 1        checkpoint 2        checkpoint 3
//!  ────────┬────────────────────┬───────────────────┬───────────────────┬──────▶ offsets
//!          B                    C1                  C2                  C3
//!  restore(3) = restore(base), feed [B, C1), flush, feed [C1, C2), flush, feed [C2, C3), flush
//!                                                                                   └─ outbox
//! ```
//!
//! Retention: the base's offsets are committed to the bus under the group `{group}.base`, so a
//! log that keeps what a group has not committed (the embedded log's default) keeps every
//! record a restore could feed again.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use touchline_engine::{Engine, EngineConfig, Flush};

use crate::checkpoint::{crc, Checkpoint, Replay};
use crate::{decode, feed, AggError, Aggregator, Stage, INPUT_TOPICS};

/// Flushes between two bases at most: bounds the checkpoint's offset list (a few hundred bytes
/// per flush) and, with the default flush interval of 5 s, the base's age to about 21 minutes
/// while records arrive.
pub(crate) const MAX_FLUSHES: usize = 256;

/// A partition's chain of checkpoints since its last base.
pub(crate) struct Chain {
    pub(crate) replay: Replay,
    /// Records consumed since the base.
    pub(crate) records: u64,
}

impl Chain {
    fn older_than(&self, secs: u64) -> bool {
        u64::try_from(now_ms().saturating_sub(self.replay.based_at_ms)).unwrap_or(0) / 1000 >= secs
    }
}

/// A partition's state rebuilt from its checkpoint.
pub(crate) struct Restored {
    pub(crate) engine: Engine,
    pub(crate) chain: Option<Chain>,
    /// The output of the checkpoint's own flush, computed again by the replay of a chain.
    pub(crate) last_output: Option<Flush>,
}

/// The state part of a checkpoint: a snapshot in it, or a replay of a stored base.
pub(crate) struct CheckpointState {
    pub(crate) snapshot: Vec<u8>,
    pub(crate) replay: Option<Replay>,
    /// The base written for this checkpoint: older ones go once the checkpoint is saved.
    pub(crate) new_base: Option<String>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Aggregator {
    /// The group under which a partition's base offsets are committed (see the module docs).
    fn base_group(&self) -> String {
        format!("{}.base", self.config.group)
    }

    /// Whether the next checkpoint, `records` after the last, must be a new base rather than
    /// one more flush on `chain`.
    fn base_due(&self, chain: Option<&Chain>, records: u64) -> bool {
        let Some(c) = chain else { return true };
        c.records.saturating_add(records) >= self.config.snapshot_records
            || c.replay.flushes.len() >= MAX_FLUSHES
            || c.older_than(self.config.snapshot_max_age_secs)
    }

    /// Whether a partition with nothing new to flush should write a base anyway: its chain is
    /// old enough that retention could soon remove records a restore feeds again.
    pub(crate) fn base_stale(&self, chain: Option<&Chain>) -> bool {
        chain.is_some_and(|c| !c.replay.flushes.is_empty() && c.older_than(self.config.snapshot_max_age_secs))
    }

    /// The state of the checkpoint at `offsets`: a snapshot in it (stores without bases), a new
    /// base, or one more flush on the chain. `records` were consumed since the last checkpoint.
    pub(crate) async fn checkpoint_state(
        &self,
        p: u32,
        epoch: u32,
        engine: &Engine,
        offsets: &BTreeMap<String, u64>,
        chain: &mut Option<Chain>,
        records: u64,
    ) -> Result<CheckpointState, AggError> {
        if !self.checkpoints.keeps_bases() {
            let snapshot = self.snapshot(p, engine);
            return Ok(CheckpointState { snapshot, replay: None, new_base: None });
        }
        let due = self.base_due(chain.as_ref(), records);
        if let Some(c) = chain.as_mut().filter(|_| !due) {
            c.records += records;
            c.replay.flushes.push(offsets.clone());
            return Ok(CheckpointState { snapshot: Vec::new(), replay: Some(c.replay.clone()), new_base: None });
        }
        let snapshot = self.snapshot(p, engine);
        let name = format!("e{epoch}-{}", offsets.values().sum::<u64>());
        self.checkpoints.save_base(p, epoch, &name, &snapshot).await.map_err(AggError::Checkpoint)?;
        let replay = Replay {
            base: name.clone(),
            base_len: snapshot.len(),
            base_crc: crc(&snapshot),
            based_at_ms: now_ms(),
            from: offsets.clone(),
            flushes: Vec::new(),
        };
        *chain = Some(Chain { replay: replay.clone(), records: 0 });
        Ok(CheckpointState { snapshot: Vec::new(), replay: Some(replay), new_base: Some(name) })
    }

    fn snapshot(&self, p: u32, engine: &Engine) -> Vec<u8> {
        let snapshot = self.stats.stages.time(Stage::Snapshot, || engine.snapshot());
        self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.stats.state_bytes_by_partition.lock() {
            m.insert(p, snapshot.len() as u64);
        }
        snapshot
    }

    /// After the checkpoint naming `base` is saved: older bases go, and the bus keeps what a
    /// restore from it could feed again.
    pub(crate) async fn settle_base(&self, p: u32, epoch: u32, base: &str, from: &BTreeMap<String, u64>) -> Result<(), AggError> {
        self.checkpoints.remove_bases_except(p, epoch, base).await.map_err(AggError::Checkpoint)?;
        let group = self.base_group();
        for (t, o) in from {
            self.bus.commit(&group, t, p, *o).await?;
        }
        Ok(())
    }

    /// Rebuilds the engine of a saved checkpoint, the chain the next checkpoints extend, and
    /// the output of the checkpoint's flush when the replay computed it again (see the module
    /// docs) rather than the checkpoint storing it.
    pub(crate) async fn restore_state(&self, p: u32, cfg: EngineConfig, c: &Checkpoint) -> Result<Restored, AggError> {
        let Some(replay) = &c.replay else {
            let engine = Engine::restore(cfg, &c.snapshot).map_err(|e| AggError::Engine(e.to_string()))?;
            return Ok(Restored { engine, chain: None, last_output: None });
        };
        let base = self.checkpoints.load_base(p, &replay.base).await.map_err(AggError::Checkpoint)?;
        if !replay.matches_base(&base) {
            return Err(AggError::Checkpoint(format!(
                "partition {p}: base snapshot {} is damaged (length or checksum mismatch)",
                replay.base
            )));
        }
        let mut engine = Engine::restore(cfg, &base).map_err(|e| AggError::Engine(e.to_string()))?;
        let (records, last_output) = self.feed_again(p, &mut engine, replay).await?;
        self.stats.records_fed_again.fetch_add(records, Ordering::Relaxed);
        tracing::info!(partition = p, base = %replay.base, flushes = replay.flushes.len(), records, "rebuilt the state from its base");
        Ok(Restored { engine, chain: Some(Chain { replay: replay.clone(), records }), last_output })
    }

    /// Feeds the records of every flush of `replay` to `engine` again, flushing after each.
    /// Returns how many records were fed and the last flush's output; the others' are
    /// discarded.
    async fn feed_again(&self, p: u32, engine: &mut Engine, replay: &Replay) -> Result<(u64, Option<Flush>), AggError> {
        self.check_retained(p, replay).await?;
        let mut at = replay.from.clone();
        let mut fed = 0u64;
        let mut last_output = None;
        for until in &replay.flushes {
            let mut max_received: Option<DateTime<Utc>> = None;
            for t in INPUT_TOPICS {
                let (from, end) = (at.get(t).copied().unwrap_or(0), until.get(t).copied().unwrap_or(0));
                fed += self.feed_range(p, t, from, end, engine, &mut max_received).await?;
            }
            last_output = Some(engine.flush());
            if let Some(w) = max_received {
                engine.advance_watermark(w);
            }
            at.clone_from(until);
        }
        Ok((fed, last_output))
    }

    /// Fails, naming what is missing, when retention removed records `replay` feeds again.
    async fn check_retained(&self, p: u32, replay: &Replay) -> Result<(), AggError> {
        let Some(last) = replay.flushes.last() else { return Ok(()) };
        for t in INPUT_TOPICS {
            let (from, end) = (replay.from.get(t).copied().unwrap_or(0), last.get(t).copied().unwrap_or(0));
            let first = self.bus.start_offset(t, p).await?;
            if from < end && first > from {
                return Err(AggError::Checkpoint(format!(
                    "partition {p}: {t} starts at offset {first} but the checkpoint rebuilds its state from offset {from}: \
                     retention removed records it needs; `touchline replay` rebuilds every state from what the log still holds"
                )));
            }
        }
        Ok(())
    }

    /// Feeds the records of `topic` from `from` up to `end` (exclusive) to `engine`.
    async fn feed_range(
        &self,
        p: u32,
        topic: &str,
        mut from: u64,
        end: u64,
        engine: &mut Engine,
        max_received: &mut Option<DateTime<Utc>>,
    ) -> Result<u64, AggError> {
        let mut fed = 0u64;
        while from < end {
            let want = usize::try_from(end - from).unwrap_or(usize::MAX).min(self.config.read_batch);
            let recs = self.bus.read(topic, p, from, want, Duration::ZERO).await?;
            let Some(last) = recs.last() else {
                return Err(AggError::Checkpoint(format!(
                    "partition {p}: {topic} ends at offset {from}, before the checkpointed offset {end}"
                )));
            };
            from = last.offset + 1;
            for r in recs.iter().filter(|r| r.offset < end) {
                // Their DLQ entries were appended when they were first read.
                let _ = feed(engine, topic, r, decode(topic, r), max_received);
                fed += 1;
            }
        }
        Ok(fed)
    }
}
