//! Results: what the aggregator writes ([`ResultSink`]) and what the reports API reads
//! ([`ResultReader`]). The row types and the derived ratios are defined once, in
//! `touchline_model::results`.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use uuid::Uuid;

use crate::Result;
use touchline_model::results::{AttributionRow, DailyMetricRow, JourneyPartialRow, JourneyPathRow, LinkClickPartialRow, PartialRow};

/// A store the aggregator writes results to. Every write is idempotent: the runtime repeats
/// a write after a crash or a failed attempt, and the rows come out the same. Daily metrics
/// are never written directly: each store publishes them from the partials.
#[async_trait]
pub trait ResultSink: Send + Sync + 'static {
    /// Upserts attribution rows: for each (conversion, model), rows of older versions are
    /// deleted, and rows older than what is stored are ignored.
    async fn upsert_attributions(&self, rows: &[AttributionRow]) -> Result<u64>;

    /// Writes one aggregator partition's partial rows (absolute values; a row of an older
    /// epoch than the stored one is ignored) and republishes each touched cell's daily
    /// metrics as the sum over all partitions, atomically. Idempotent.
    async fn publish_partials(&self, rows: &[PartialRow]) -> Result<u64>;

    /// Writes one aggregator partition's clicks per short link and day (absolute values; a
    /// row of an older epoch than the stored one is ignored). Idempotent.
    async fn publish_link_clicks(&self, rows: &[LinkClickPartialRow]) -> Result<u64>;

    /// Writes one aggregator partition's journeys per account, day and path (absolute values
    /// per (account, day, channels, campaigns, partition); a row of an older epoch than the
    /// stored one is ignored). Idempotent.
    async fn publish_journeys(&self, rows: &[JourneyPartialRow]) -> Result<u64>;

    /// Deletes every derived result (partials, published metrics, attributions, link clicks,
    /// journeys) of every account, before a replay rebuilds them. Catalog and raw rows are kept.
    async fn clear_results(&self) -> Result<u64>;

    /// Raw entity rows, inserted once per record id; a store that keeps no raw rows
    /// returns 0.
    async fn insert_raw(&self, records: &[touchline_model::Record]) -> Result<u64>;
}

/// Where the reports API and the link listing read results.
#[async_trait]
pub trait ResultReader: Send + Sync + 'static {
    /// Daily metrics of an account between two dates (inclusive), sorted by date, campaign
    /// and advertisement.
    async fn daily_metrics(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<DailyMetricRow>>;

    /// Every partition's stored partial metrics of an account between two dates (inclusive),
    /// reach sketches included, sorted by campaign, advertisement, date and partition: what a
    /// report over a range sums and unions (`touchline_model::summarize_range`).
    async fn range_partials(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<PartialRow>>;

    /// The newest attribution rows of an account, optionally of one model.
    async fn attributions(&self, account_id: Uuid, model: Option<&str>) -> Result<Vec<AttributionRow>>;

    /// Clicks per short code of an account over every day, `(human, bot)`: the sum of the
    /// link click partials. Codes without clicks are absent.
    async fn link_click_counts(&self, account_id: Uuid) -> Result<HashMap<String, (i64, i64)>>;

    /// An account's journeys between two days (inclusive) per path: the sums over partitions
    /// and days of the journey partials, sorted by channels then campaigns (byte order). Paths
    /// whose sums are all zero are absent.
    async fn journey_paths(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<JourneyPathRow>>;
}
