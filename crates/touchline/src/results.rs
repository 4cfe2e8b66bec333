//! Where the reports API and the link listing read results: the SQL store or ClickHouse
//! (`reports_source`). Both hold the same rows; the e2e tests compare them row by row.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use touchline_sql::{AttributionRow, DailyMetricRow, Store};
use uuid::Uuid;

#[async_trait]
pub trait Results: Send + Sync + 'static {
    /// For messages: `sql` or `clickhouse`.
    fn name(&self) -> &'static str;
    async fn daily_metrics(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> anyhow::Result<Vec<DailyMetricRow>>;
    async fn attributions(&self, account_id: Uuid, model: Option<&str>) -> anyhow::Result<Vec<AttributionRow>>;
    /// Clicks per short code, `(human, bot)`; `None` where raw clicks are not kept.
    async fn link_click_counts(&self, account_id: Uuid) -> anyhow::Result<Option<HashMap<String, (i64, i64)>>>;
}

/// The SQL store's result tables; link clicks from the Parquet warehouse when there is one
/// (the SQL store then keeps no raw rows).
pub struct SqlResults {
    pub store: Arc<dyn Store>,
    pub warehouse: Option<touchline_warehouse::Warehouse>,
}

#[async_trait]
impl Results for SqlResults {
    fn name(&self) -> &'static str {
        "sql"
    }
    async fn daily_metrics(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> anyhow::Result<Vec<DailyMetricRow>> {
        Ok(self.store.daily_metrics(account_id, from, to).await?)
    }
    async fn attributions(&self, account_id: Uuid, model: Option<&str>) -> anyhow::Result<Vec<AttributionRow>> {
        Ok(self.store.attributions(account_id, model).await?)
    }
    async fn link_click_counts(&self, account_id: Uuid) -> anyhow::Result<Option<HashMap<String, (i64, i64)>>> {
        let Some(w) = self.warehouse.clone() else { return Ok(self.store.link_click_counts(account_id).await?) };
        Ok(Some(tokio::task::spawn_blocking(move || w.link_click_counts(account_id)).await??))
    }
}

pub struct ClickHouseResults(pub touchline_clickhouse::ClickHouseStore);

#[async_trait]
impl Results for ClickHouseResults {
    fn name(&self) -> &'static str {
        "clickhouse"
    }
    async fn daily_metrics(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> anyhow::Result<Vec<DailyMetricRow>> {
        Ok(self.0.daily_metrics(account_id, from, to).await?)
    }
    async fn attributions(&self, account_id: Uuid, model: Option<&str>) -> anyhow::Result<Vec<AttributionRow>> {
        Ok(self.0.attributions(account_id, model).await?)
    }
    async fn link_click_counts(&self, account_id: Uuid) -> anyhow::Result<Option<HashMap<String, (i64, i64)>>> {
        Ok(Some(self.0.link_click_counts(account_id).await?))
    }
}
