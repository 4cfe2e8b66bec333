//! Where the aggregator's time goes: seconds per stage of the consume → flush cycle, summed over
//! partitions (which run side by side, so the sum can exceed the wall time), exported at
//! `/metrics` as `touchline_aggregator_stage_seconds_total{stage="…"}` and printed by
//! `touchline replay`.
//!
//! Stages are timed per batch of records, never per record, so timing costs nothing measurable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One stage of the cycle a partition runs: read → decode → engine → (flush) raw rows to the
/// sinks → snapshot → checkpoint → results to the sinks → re-key and dead-letter appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading records from the bus.
    Read,
    /// Parsing and checking records (`Record::from_json`, `check_stored`).
    Decode,
    /// The engine: ingesting records and computing a flush's output.
    Engine,
    /// Encoding the engine's whole state for the checkpoint.
    Snapshot,
    /// Saving the checkpoint: the outbox encoded, the file or row written and made durable.
    Checkpoint,
    /// Writing raw rows and results to every sink (each sink apart in [`StageTimes::sink_seconds`]).
    Sinks,
    /// Appending re-key and dead-letter records to the bus.
    Append,
}

impl Stage {
    pub const ALL: [Stage; 7] =
        [Stage::Read, Stage::Decode, Stage::Engine, Stage::Snapshot, Stage::Checkpoint, Stage::Sinks, Stage::Append];

    /// The stage's label value.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Decode => "decode",
            Stage::Engine => "engine",
            Stage::Snapshot => "snapshot",
            Stage::Checkpoint => "checkpoint",
            Stage::Sinks => "sinks",
            Stage::Append => "append",
        }
    }
}

/// Which rows a sink write carried: a flush writes the raw records first (before the
/// checkpoint), then the results (after it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SinkRows {
    Raw,
    Results,
}

impl SinkRows {
    pub fn name(self) -> &'static str {
        match self {
            SinkRows::Raw => "raw",
            SinkRows::Results => "results",
        }
    }
}

/// Nanoseconds spent per stage, and per sink and kind of rows.
#[derive(Debug, Default)]
pub struct StageTimes {
    nanos: [AtomicU64; Stage::ALL.len()],
    sinks: Mutex<BTreeMap<(String, SinkRows), u64>>,
}

impl StageTimes {
    pub fn add(&self, stage: Stage, spent: Duration) {
        self.nanos[stage as usize].fetch_add(nanos(spent), Ordering::Relaxed);
    }

    /// Runs `f`, counting its time to `stage`.
    pub fn time<T>(&self, stage: Stage, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.add(stage, started.elapsed());
        out
    }

    pub fn add_sink(&self, sink: &str, rows: SinkRows, spent: Duration) {
        if let Ok(mut m) = self.sinks.lock() {
            *m.entry((sink.to_owned(), rows)).or_default() += nanos(spent);
        }
    }

    /// Seconds per stage, in the order of [`Stage::ALL`].
    pub fn seconds(&self) -> Vec<(&'static str, f64)> {
        Stage::ALL.iter().map(|s| (s.name(), seconds(self.nanos[*s as usize].load(Ordering::Relaxed)))).collect()
    }

    /// Seconds per sink and kind of rows, by sink name.
    pub fn sink_seconds(&self) -> Vec<(String, SinkRows, f64)> {
        self.sinks.lock().map(|m| m.iter().map(|((sink, rows), v)| (sink.clone(), *rows, seconds(*v))).collect()).unwrap_or_default()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_adds_up_per_stage_and_per_sink() {
        let t = StageTimes::default();
        t.add(Stage::Engine, Duration::from_millis(1500));
        t.add(Stage::Engine, Duration::from_millis(500));
        t.add(Stage::Snapshot, Duration::from_micros(250));
        let ran = t.time(Stage::Decode, || 7);
        t.add_sink("sqlite", SinkRows::Raw, Duration::from_secs(3));
        t.add_sink("clickhouse", SinkRows::Results, Duration::from_secs(1));
        t.add_sink("sqlite", SinkRows::Raw, Duration::from_secs(2));
        t.add_sink("sqlite", SinkRows::Results, Duration::from_secs(4));
        assert_eq!(ran, 7);
        let by_stage: BTreeMap<&str, f64> = t.seconds().into_iter().collect();
        assert_eq!(by_stage.len(), Stage::ALL.len());
        assert!((by_stage["engine"] - 2.0).abs() < 1e-9);
        assert!((by_stage["snapshot"] - 0.000_25).abs() < 1e-9);
        assert!(by_stage["decode"] > 0.0 && by_stage["decode"] < 1.0);
        assert_eq!(by_stage["read"], 0.0);
        assert_eq!(
            t.sink_seconds(),
            vec![
                ("clickhouse".to_owned(), SinkRows::Results, 1.0),
                ("sqlite".to_owned(), SinkRows::Raw, 5.0),
                ("sqlite".to_owned(), SinkRows::Results, 4.0)
            ]
        );
    }
}
