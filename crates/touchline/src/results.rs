//! Where the reports API and the link listing read results: any [`ResultReader`], the SQL
//! store (below, with link clicks from the Parquet warehouse) or ClickHouse
//! (`reports_source`). Both hold the same rows; the e2e tests compare them row by row.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use touchline_sql::{AttributionRow, DailyMetricRow, ResultReader, Store, StoreError};
use uuid::Uuid;

/// The SQL store's result tables; link clicks from the Parquet warehouse when there is one
/// (the SQL store then keeps no raw rows).
pub struct SqlResults {
    pub store: Arc<dyn Store>,
    pub warehouse: Option<touchline_warehouse::Warehouse>,
}

#[async_trait]
impl ResultReader for SqlResults {
    async fn daily_metrics(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> touchline_sql::Result<Vec<DailyMetricRow>> {
        self.store.daily_metrics(account_id, from, to).await
    }

    async fn attributions(&self, account_id: Uuid, model: Option<&str>) -> touchline_sql::Result<Vec<AttributionRow>> {
        self.store.attributions(account_id, model).await
    }

    async fn link_click_counts(&self, account_id: Uuid) -> touchline_sql::Result<Option<HashMap<String, (i64, i64)>>> {
        let Some(w) = self.warehouse.clone() else { return self.store.link_click_counts(account_id).await };
        let failed = |e: &dyn std::fmt::Display| StoreError::Backend(format!("counting link clicks in the warehouse: {e}"));
        let counted = tokio::task::spawn_blocking(move || w.link_click_counts(account_id)).await.map_err(|e| failed(&e))?;
        counted.map(Some).map_err(|e| failed(&e))
    }
}
