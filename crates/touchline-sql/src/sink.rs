//! The SQL stores as a sink of the aggregator: raw rows (SQLite, when asked), attribution
//! rows, partial metrics published as sums, link click partials and journey partials, each
//! refused row isolated and reported.

use std::sync::Arc;

use async_trait::async_trait;
use touchline_store::sink::{
    attribution_chunks, journey_row, link_click_row, partial_row, write_isolating, RefusedRow, Sink, SinkBatch, SinkError,
    ATTRIBUTION_ROWS_PER_WRITE,
};

use crate::{JourneyPartialRow, LinkClickPartialRow, PartialRow, Store, StoreError};

/// Postgres or SQLite: raw tables (SQLite, when `raw_rows`), attribution rows, partial
/// metrics published as sums.
pub struct SqlSink {
    pub store: Arc<dyn Store>,
    /// Insert raw records into the store's raw tables (SQLite keeps them; Postgres ignores them).
    pub raw_rows: bool,
}

#[async_trait]
impl Sink for SqlSink {
    fn name(&self) -> &str {
        self.store.backend()
    }

    async fn write(&self, batch: &SinkBatch<'_>) -> Result<Vec<RefusedRow>, SinkError> {
        let name = self.store.backend();
        let refused = StoreError::is_refusal;
        let mut out = Vec::new();
        let raw_rows = if self.raw_rows { batch.raw } else { &[] };
        let raw = write_isolating(raw_rows, |c| async move { self.store.insert_raw(c).await.map(drop) }, refused).await?;
        out.extend(raw.into_iter().map(|(r, why)| RefusedRow::raw(name, r, why)));
        for rows in attribution_chunks(&batch.flush.attributions, batch.epoch, ATTRIBUTION_ROWS_PER_WRITE) {
            let attributions =
                write_isolating(&rows, |c| async move { self.store.upsert_attributions(c).await.map(drop) }, refused).await?;
            out.extend(attributions.into_iter().map(|(a, why)| RefusedRow::attribution(name, a, why)));
        }
        let partials: Vec<PartialRow> = batch.flush.metrics.iter().map(|m| partial_row(m, batch.epoch)).collect();
        let cells = write_isolating(&partials, |c| async move { self.store.publish_partials(c).await.map(drop) }, refused).await?;
        out.extend(cells.into_iter().map(|(p, why)| RefusedRow::partial(name, p, why)));
        let clicks: Vec<LinkClickPartialRow> = batch.flush.link_clicks.iter().map(|p| link_click_row(p, batch.epoch)).collect();
        let links = write_isolating(&clicks, |c| async move { self.store.publish_link_clicks(c).await.map(drop) }, refused).await?;
        out.extend(links.into_iter().map(|(p, why)| RefusedRow::link_clicks(name, p, why)));
        let journeys: Vec<JourneyPartialRow> = batch.flush.journeys.iter().map(|p| journey_row(p, batch.epoch)).collect();
        let paths = write_isolating(&journeys, |c| async move { self.store.publish_journeys(c).await.map(drop) }, refused).await?;
        out.extend(paths.into_iter().map(|(p, why)| RefusedRow::journeys(name, p, why)));
        Ok(out)
    }
}
