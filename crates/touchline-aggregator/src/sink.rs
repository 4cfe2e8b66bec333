//! The sink seam: every store the aggregator writes results to implements [`Sink`]. The SQL
//! stores (SQLite, Postgres) are here; ClickHouse implements the same trait in `touchline-clickhouse`.

use std::sync::Arc;

use async_trait::async_trait;
use touchline_engine::{AttributionSet, DailyPartial, Flush};
use touchline_model::Record;
use touchline_sql::{AttributionRow, PartialRow, Store};

/// One flush of one partition.
pub struct SinkBatch<'a> {
    pub partition: u32,
    /// Bumped at every start of the partition; see the crate docs on versions.
    pub epoch: u32,
    /// Every record consumed since the last flush (raw tables; insert-or-ignore by record id).
    pub raw: &'a [Record],
    pub flush: &'a Flush,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// A destination for results. Writes must be idempotent: the runtime repeats a batch after a
/// crash or a failed write.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    fn name(&self) -> &str;
    async fn write(&self, batch: &SinkBatch<'_>) -> Result<(), SinkError>;
}

/// The sink version of an engine attribution version: later epochs supersede earlier ones.
pub fn sink_version(epoch: u32, engine_version: u64) -> i64 {
    (i64::from(epoch) << 32) | (engine_version & 0xffff_ffff) as i64
}

pub fn attribution_rows(set: &AttributionSet, epoch: u32) -> Vec<AttributionRow> {
    set.rows()
        .map(|r| AttributionRow {
            account_id: set.account_id,
            conversion_id: set.conversion_key.to_string(),
            touchpoint_id: r.touchpoint.to_string(),
            attribution_model: set.model.as_str().to_owned(),
            version: sink_version(epoch, set.version),
            campaign_id: r.campaign_id.as_ref().map(ToString::to_string),
            advertisement_id: r.advertisement_id.as_ref().map(ToString::to_string),
            customer_id: Some(set.identity.to_string()),
            touchpoint_type: Some(r.touch_kind.to_string()),
            touchpoint_timestamp: r.touched_at,
            channel_id: Some(r.channel.to_string()),
            conversion_time: set.converted_at,
            conversion_value: Some(set.value),
            currency: set.currency.map(|c| c.to_string()),
            weight: r.weight,
            attributed_revenue: r.attributed_revenue,
        })
        .collect()
}

/// The row of a partial written under `epoch` (see [`PartialRow::epoch`]).
pub fn partial_row(p: &DailyPartial, epoch: u32) -> PartialRow {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    PartialRow {
        account_id: p.account_id,
        campaign_id: p.campaign_id.clone(),
        advertisement_id: p.advertisement_id.clone().unwrap_or_default(),
        metric_date: p.date,
        partition: p.partition as i32,
        impressions: i(p.impressions),
        clicks: i(p.clicks),
        reach: i(p.reach),
        engagements: i(p.engagements),
        sessions: i(p.sessions),
        conversions: p.conversions,
        revenue: p.revenue,
        cost: p.cost,
        reported_impressions: i(p.reported_impressions),
        reported_clicks: i(p.reported_clicks),
        epoch,
    }
}

/// Postgres or SQLite: raw tables (SQLite), attribution rows, partial metrics published as sums.
pub struct SqlSink {
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl Sink for SqlSink {
    fn name(&self) -> &str {
        self.store.backend()
    }

    async fn write(&self, batch: &SinkBatch<'_>) -> Result<(), SinkError> {
        let e = |e: touchline_sql::StoreError| SinkError(e.to_string());
        if !batch.raw.is_empty() {
            self.store.insert_raw(batch.raw).await.map_err(e)?;
        }
        let rows: Vec<AttributionRow> = batch.flush.attributions.iter().flat_map(|s| attribution_rows(s, batch.epoch)).collect();
        if !rows.is_empty() {
            self.store.upsert_attributions(&rows).await.map_err(e)?;
        }
        let partials: Vec<PartialRow> = batch.flush.metrics.iter().map(|m| partial_row(m, batch.epoch)).collect();
        if !partials.is_empty() {
            self.store.publish_partials(&partials).await.map_err(e)?;
        }
        Ok(())
    }
}
