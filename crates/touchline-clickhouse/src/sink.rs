//! The ClickHouse sink: raw records into the raw tables, attribution rows into
//! `attributions`, per-partition daily partials into `campaign_daily_metrics`, per-partition
//! link click counts into `link_click_partials`, per-partition journey counts into
//! `journey_partials`.
//!
//! # Idempotence
//!
//! The runtime repeats a flush after a crash or a failed write, so every write may happen
//! twice, and a write of an older epoch may arrive after a newer one. Nothing is counted twice:
//!
//! * raw rows are deterministic per record and land in ReplacingMergeTree tables keyed by
//!   record id (plus, from server 22.2, an `insert_deduplication_token` made of the record
//!   ids of the block, so a repeated block is dropped at insert);
//! * attribution rows carry `epoch << 32 | engine version`; readers take the highest version
//!   per (conversion, model);
//! * partials (daily metrics, link clicks, journeys) are absolute values per (cell, partition) with
//!   version `epoch << 32 | n`, where `n` counts this process's partials writes; readers take
//!   each partition's highest version and sum partitions.
//!
//! # Backpressure and bounds
//!
//! A write either succeeds, returns the rows the server refused as invalid (the rest written),
//! or returns [`SinkError`] to be retried as a whole; nothing is buffered here between calls
//! (the runtime retries with backoff and stops consuming meanwhile). Inserts stream rows to
//! the server in 256 KiB frames, hold at most `max_insert_rows` rows per INSERT, and are
//! bounded in time by `insert_timeout_secs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use clickhouse::RowWrite;
use sha2::{Digest, Sha256};
use touchline_model::Record;
use touchline_store::sink::{
    attribution_chunks, journey_row, link_click_row, partial_row, sink_version, write_isolating, RefusedRow, Sink, SinkBatch, SinkError,
    ATTRIBUTION_ROWS_PER_WRITE,
};
use touchline_store::{AttributionRow, JourneyPartialRow, LinkClickPartialRow, PartialRow, ResultSink, StoreError};

use crate::rows::{
    self, AttrRow, ConversionRow, EventRow, IdentityRow, JourneyPartialChRow, LinkClickPartialChRow, LinkClickRow, MetricRow,
    ReachInputRow, SessionRow, SpendRow, TouchpointRow,
};
use crate::{ClickHouse, Error, Result};

pub struct ClickHouseSink {
    ch: ClickHouse,
    name: String,
    versions: PartialVersions,
}

/// Versions of partials writes: `epoch << 32 | n`, where `n` counts this process's partials
/// writes (all partitions). Within a (partition, epoch) versions grow with every write, and a
/// later epoch (a restart, or the next owner of the partition) outranks every earlier one.
#[derive(Debug, Default)]
pub struct PartialVersions(AtomicU32);

impl PartialVersions {
    pub fn next(&self, epoch: u32) -> i64 {
        let n = self.0.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        sink_version(epoch, u64::from(n))
    }
}

impl ClickHouseSink {
    pub fn new(ch: ClickHouse) -> ClickHouseSink {
        ClickHouseSink { ch, name: "clickhouse".into(), versions: PartialVersions::default() }
    }

    pub fn handle(&self) -> &ClickHouse {
        &self.ch
    }

    /// The version of the next partials write of `partition` in `epoch`: above every version
    /// this process wrote for the partition, and above every version of earlier epochs.
    pub fn next_partial_version(&self, epoch: u32) -> i64 {
        self.versions.next(epoch)
    }

    /// Writes raw records to their tables (any mix of entities). Returns the rows sent.
    pub async fn write_raw(&self, records: &[Record]) -> Result<u64> {
        let mut by_table: HashMap<&'static str, Vec<&Record>> = HashMap::new();
        for r in records {
            by_table.entry(rows::raw_table(&r.body)).or_default().push(r);
        }
        let mut n = 0;
        for table in rows::RAW_TABLES {
            let Some(recs) = by_table.get(table) else { continue };
            for chunk in recs.chunks(self.ch.config().max_insert_rows) {
                let token = self.ch.version().has_dedup_token().then(|| dedup_token(table, chunk));
                let it = chunk.iter().copied();
                n += match table {
                    "events" => self.insert::<EventRow<'static>>(table, token, it.filter_map(rows::event_row)).await?,
                    "sessions" => self.insert::<SessionRow<'static>>(table, token, it.filter_map(rows::session_row)).await?,
                    "touchpoints" => self.insert::<TouchpointRow<'static>>(table, token, it.filter_map(rows::touchpoint_row)).await?,
                    "link_clicks" => self.insert::<LinkClickRow<'static>>(table, token, it.filter_map(rows::link_click_row)).await?,
                    "conversions" => self.insert::<ConversionRow<'static>>(table, token, it.filter_map(rows::conversion_row)).await?,
                    "spend" => self.insert::<SpendRow<'static>>(table, token, it.filter_map(rows::spend_row)).await?,
                    _ => self.insert::<IdentityRow<'static>>(table, token, it.filter_map(rows::identity_row)).await?,
                };
            }
        }
        Ok(n)
    }

    /// Writes attribution rows (their versions decide which survive, see the module docs).
    pub async fn write_attributions(&self, rows: &[AttributionRow]) -> Result<u64> {
        let mut n = 0;
        for chunk in rows.chunks(self.ch.config().max_insert_rows) {
            n += self.insert::<AttrRow<'static>>("attributions", None, chunk.iter().map(rows::attr_row)).await?;
        }
        Ok(n)
    }

    /// Writes partial daily metrics with `version`.
    pub async fn write_partials(&self, rows: &[PartialRow], version: i64) -> Result<u64> {
        let now = rows::secs(chrono::Utc::now());
        let mut n = 0;
        for chunk in rows.chunks(self.ch.config().max_insert_rows) {
            n += self
                .insert::<MetricRow<'static>>("campaign_daily_metrics", None, chunk.iter().map(|p| rows::metric_row(p, version, now)))
                .await?;
            // The same partials' people, under the same version: a retry rewrites both.
            self.insert::<ReachInputRow<'static>>("campaign_reach_input", None, chunk.iter().map(|p| rows::reach_input_row(p, version)))
                .await?;
        }
        Ok(n)
    }

    /// Writes link click partials with `version`.
    pub async fn write_link_clicks(&self, rows: &[LinkClickPartialRow], version: i64) -> Result<u64> {
        let now = rows::secs(chrono::Utc::now());
        let mut n = 0;
        for chunk in rows.chunks(self.ch.config().max_insert_rows) {
            let it = chunk.iter().map(|p| rows::link_click_partial_row(p, version, now));
            n += self.insert::<LinkClickPartialChRow<'static>>("link_click_partials", None, it).await?;
        }
        Ok(n)
    }

    /// Writes journey partials with `version`.
    pub async fn write_journeys(&self, rows: &[JourneyPartialRow], version: i64) -> Result<u64> {
        let now = rows::secs(chrono::Utc::now());
        let mut n = 0;
        for chunk in rows.chunks(self.ch.config().max_insert_rows) {
            let it = chunk.iter().map(|p| rows::journey_partial_row(p, version, now));
            n += self.insert::<JourneyPartialChRow<'static>>("journey_partials", None, it).await?;
        }
        Ok(n)
    }

    /// One INSERT of `rows` into `table`, bounded by the insert timeout.
    async fn insert<'a, T>(&self, table: &str, token: Option<String>, rows: impl Iterator<Item = T::Value<'a>> + Send) -> Result<u64>
    where
        T: RowWrite + 'static,
        T::Value<'a>: Send,
    {
        let what = format!("INSERT into {}", self.ch.table(table));
        let timeout = Duration::from_secs(self.ch.config().insert_timeout_secs);
        let mut insert = self.ch.client().insert_unescaped::<T>(&self.ch.table(table)).await.map_err(|e| self.ch.query_error(&what, e))?;
        insert = insert.with_timeouts(Some(timeout), Some(timeout));
        if let Some(t) = token {
            insert = insert.with_setting("insert_deduplication_token", t);
        }
        let mut n = 0u64;
        let result: clickhouse::error::Result<()> = async {
            for row in rows {
                insert.write(&row).await?;
                n += 1;
            }
            insert.end().await
        }
        .await;
        match result {
            Ok(()) => Ok(n),
            Err(clickhouse::error::Error::TimedOut) => Err(Error::Timeout { what, secs: timeout.as_secs() }),
            Err(e) => Err(self.ch.query_error(&what, e)),
        }
    }
}

/// A token naming the block's content: the table and the ids of its records, in order.
fn dedup_token(table: &str, records: &[&Record]) -> String {
    let mut h = Sha256::new();
    h.update(table.as_bytes());
    for r in records {
        h.update([0u8]);
        h.update(r.meta.account_id.as_bytes());
        h.update(r.meta.record_id.as_bytes());
    }
    format!("touchline-{}", hex::encode(&h.finalize()[..16]))
}

#[async_trait]
impl Sink for ClickHouseSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&self, batch: &SinkBatch<'_>) -> Result<Vec<RefusedRow>, SinkError> {
        let name = self.name.as_str();
        let refused = |e: &Error| e.is_refusal();
        let mut out = Vec::new();
        let raw = write_isolating(batch.raw, |c| async move { self.write_raw(c).await.map(drop) }, refused).await.map_err(tagged)?;
        out.extend(raw.into_iter().map(|(r, why)| RefusedRow::raw(name, r, why)));
        for rows in attribution_chunks(&batch.flush.attributions, batch.epoch, ATTRIBUTION_ROWS_PER_WRITE) {
            let attrs =
                write_isolating(&rows, |c| async move { self.write_attributions(c).await.map(drop) }, refused).await.map_err(tagged)?;
            out.extend(attrs.into_iter().map(|(a, why)| RefusedRow::attribution(name, a, why)));
        }
        let partials: Vec<PartialRow> = batch.flush.metrics.iter().map(|m| partial_row(m, batch.epoch)).collect();
        if !partials.is_empty() {
            let version = self.next_partial_version(batch.epoch);
            let cells = write_isolating(&partials, |c| async move { self.write_partials(c, version).await.map(drop) }, refused)
                .await
                .map_err(tagged)?;
            out.extend(cells.into_iter().map(|(p, why)| RefusedRow::partial(name, p, why)));
        }
        let clicks: Vec<LinkClickPartialRow> = batch.flush.link_clicks.iter().map(|p| link_click_row(p, batch.epoch)).collect();
        if !clicks.is_empty() {
            let version = self.next_partial_version(batch.epoch);
            let links = write_isolating(&clicks, |c| async move { self.write_link_clicks(c, version).await.map(drop) }, refused)
                .await
                .map_err(tagged)?;
            out.extend(links.into_iter().map(|(p, why)| RefusedRow::link_clicks(name, p, why)));
        }
        let journeys: Vec<JourneyPartialRow> = batch.flush.journeys.iter().map(|p| journey_row(p, batch.epoch)).collect();
        if !journeys.is_empty() {
            let version = self.next_partial_version(batch.epoch);
            let paths = write_isolating(&journeys, |c| async move { self.write_journeys(c, version).await.map(drop) }, refused)
                .await
                .map_err(tagged)?;
            out.extend(paths.into_iter().map(|(p, why)| RefusedRow::journeys(name, p, why)));
        }
        Ok(out)
    }
}

/// The same writes as a [`ResultSink`], for callers that hold rows rather than a flush (and
/// for the result suite, which checks every store alike).
#[async_trait]
impl ResultSink for ClickHouseSink {
    async fn upsert_attributions(&self, rows: &[AttributionRow]) -> touchline_store::Result<u64> {
        self.write_attributions(rows).await.map_err(store_error)
    }

    /// Each epoch's rows are written under one new version of that epoch.
    async fn publish_partials(&self, rows: &[PartialRow]) -> touchline_store::Result<u64> {
        let mut n = 0;
        for (epoch, of_epoch) in by_epoch(rows, |r| r.epoch) {
            n += self.write_partials(&of_epoch, self.next_partial_version(epoch)).await.map_err(store_error)?;
        }
        Ok(n)
    }

    /// Each epoch's rows are written under one new version of that epoch.
    async fn publish_link_clicks(&self, rows: &[LinkClickPartialRow]) -> touchline_store::Result<u64> {
        let mut n = 0;
        for (epoch, of_epoch) in by_epoch(rows, |r| r.epoch) {
            n += self.write_link_clicks(&of_epoch, self.next_partial_version(epoch)).await.map_err(store_error)?;
        }
        Ok(n)
    }

    /// Each epoch's rows are written under one new version of that epoch.
    async fn publish_journeys(&self, rows: &[JourneyPartialRow]) -> touchline_store::Result<u64> {
        let mut n = 0;
        for (epoch, of_epoch) in by_epoch(rows, |r| r.epoch) {
            n += self.write_journeys(&of_epoch, self.next_partial_version(epoch)).await.map_err(store_error)?;
        }
        Ok(n)
    }

    async fn clear_results(&self) -> touchline_store::Result<u64> {
        crate::ClickHouseStore::new(self.ch.clone()).clear_results().await.map_err(store_error)?;
        Ok(0)
    }

    async fn insert_raw(&self, records: &[Record]) -> touchline_store::Result<u64> {
        self.write_raw(records).await.map_err(store_error)
    }
}

/// `rows` grouped by epoch, epochs ascending.
fn by_epoch<T: Clone>(rows: &[T], epoch_of: impl Fn(&T) -> u32) -> Vec<(u32, Vec<T>)> {
    let mut groups: std::collections::BTreeMap<u32, Vec<T>> = std::collections::BTreeMap::new();
    for r in rows {
        groups.entry(epoch_of(r)).or_default().push(r.clone());
    }
    groups.into_iter().collect()
}

fn store_error(e: Error) -> StoreError {
    if e.is_refusal() {
        StoreError::Refused(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

fn tagged(e: SinkError) -> SinkError {
    SinkError(format!("clickhouse: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn partial_versions_grow_within_an_epoch_and_across_epochs() {
        let v = PartialVersions::default();
        let a = v.next(1);
        let b = v.next(1);
        let c = v.next(2);
        assert!(a < b && b < c);
        assert!(v.next(1) < c, "an older epoch stays below a newer one");
        assert!(v.next(2) > c);
        assert!(PartialVersions::default().next(3) > v.next(2), "a restart (new process, next epoch) outranks the old process");
    }

    #[test]
    fn dedup_tokens_depend_on_table_and_record_ids() {
        let rec = |id: &str| {
            Record::from_json(format!(r#"{{"v":1,"type":"event","record_id":"{id}","account_id":"00000000-0000-0000-0000-000000000001","timestamp":"2026-01-01T00:00:00Z","received_at":"2026-01-01T00:00:00Z","event_name":"x"}}"#).as_bytes()).unwrap()
        };
        let (a, b) = (rec("a"), rec("b"));
        assert_eq!(dedup_token("events", &[&a, &b]), dedup_token("events", &[&a, &b]));
        assert_ne!(dedup_token("events", &[&a, &b]), dedup_token("events", &[&b, &a]));
        assert_ne!(dedup_token("events", &[&a]), dedup_token("sessions", &[&a]));
    }
}
