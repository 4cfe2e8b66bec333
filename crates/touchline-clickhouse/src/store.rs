//! Report reads from ClickHouse, returning the SQL store's types and values: the same rows, in
//! the same order, with derived metrics computed the same way, so the reports API can serve
//! either store and tests can compare them row by row.
//!
//! Reads never rely on background merges: daily metrics, link clicks and journeys take each
//! partition's highest-version partial (argMax) and sum partitions; attributions keep, per
//! (conversion, model), the rows of the highest version, read with FINAL so copies from a
//! repeated flush count once.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use touchline_store::{AttributionRow, DailyMetricRow, JourneyPathRow, PartialRow, ResultReader, StoreError};
use uuid::Uuid;

use crate::rows::{AttrRead, JourneyPathSum, PartialRead, ATTR_READ_COLS};
use crate::{ClickHouse, Result};

#[derive(Clone, Debug)]
pub struct ClickHouseStore {
    ch: ClickHouse,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct ClickCount {
    short_code: String,
    human_clicks: u64,
    bot_clicks: u64,
}

impl ClickHouseStore {
    pub fn new(ch: ClickHouse) -> ClickHouseStore {
        ClickHouseStore { ch }
    }

    pub fn handle(&self) -> &ClickHouse {
        &self.ch
    }

    /// Deletes every result (attributions, daily metrics, link clicks, journeys) before a replay
    /// rebuilds them. Raw tables are kept. Needed because a replay restarts epochs, and rows of the old epochs
    /// would otherwise outrank the rebuilt ones.
    pub async fn clear_results(&self) -> Result<()> {
        for t in ["attributions", "campaign_daily_metrics", "campaign_reach_partials", "link_click_partials", "journey_partials"] {
            self.ch.execute(&format!("TRUNCATE TABLE {}", self.ch.table(t)), &format!("TRUNCATE {t}")).await?;
        }
        Ok(())
    }
}

impl ClickHouseStore {
    /// Every partition's latest partial of an account's cells between two dates (inclusive),
    /// with its latest reach sketch (empty when none was written), ordered by campaign,
    /// advertisement, date, partition.
    async fn read_range_partials(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<PartialRow>> {
        let range = format!("account_id = toUUID('{account_id}') AND metric_date >= toDate('{from}') AND metric_date <= toDate('{to}')");
        let sql = format!(
            "SELECT campaign_id, advertisement_id, metric_date, partition, ver AS version, impressions, clicks, reach, engagements, sessions, \
             conversions, revenue, cost, reported_impressions, reported_clicks, reach_sketch, currency \
             FROM (SELECT campaign_id, advertisement_id, metric_date, partition, max(version) AS ver, \
             argMax(impressions, version) AS impressions, argMax(clicks, version) AS clicks, argMax(reach, version) AS reach, \
             argMax(engagements, version) AS engagements, argMax(sessions, version) AS sessions, \
             argMax(conversions, version) AS conversions, argMax(revenue, version) AS revenue, argMax(cost, version) AS cost, \
             argMax(reported_impressions, version) AS reported_impressions, argMax(reported_clicks, version) AS reported_clicks, \
             argMax(currency, version) AS currency \
             FROM {metrics} WHERE {range} GROUP BY campaign_id, advertisement_id, metric_date, partition) \
             ANY LEFT JOIN (SELECT campaign_id, advertisement_id, metric_date, partition, argMax(reach_sketch, version) AS reach_sketch \
             FROM {reach} WHERE {range} GROUP BY campaign_id, advertisement_id, metric_date, partition) \
             USING (campaign_id, advertisement_id, metric_date, partition) \
             ORDER BY campaign_id, advertisement_id, metric_date, partition",
            metrics = self.ch.table("campaign_daily_metrics"),
            reach = self.ch.table("campaign_reach_partials"),
        );
        let rows: Vec<PartialRead> =
            self.ch.bounded("reading partial metrics", self.ch.client().query_raw(&sql).fetch_all::<PartialRead>()).await?;
        rows.into_iter().map(|r| r.into_row(account_id)).collect()
    }

    /// Daily metrics of an account between two dates (inclusive), ordered by date, campaign,
    /// advertisement (byte order), as the SQL stores return them: published from the partials
    /// by the function the SQL stores publish with, reach from the union of the sketches.
    async fn read_daily_metrics(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<DailyMetricRow>> {
        let parts = self.read_range_partials(account_id, from, to).await?;
        let mut rows = touchline_model::publish_cells(&parts).map_err(|e| crate::Error::Decode(e.to_string()))?;
        rows.sort_by(|a, b| {
            (a.metric_date, &a.campaign_id, &a.advertisement_id).cmp(&(b.metric_date, &b.campaign_id, &b.advertisement_id))
        });
        Ok(rows)
    }

    /// The current attribution rows of an account (optionally of one model), ordered by
    /// conversion, model, touchpoint, as the SQL stores return them.
    async fn read_attributions(&self, account_id: Uuid, model: Option<&str>) -> Result<Vec<AttributionRow>> {
        let table = self.ch.table("attributions");
        let model_filter = if model.is_some() { " AND attribution_model = ?" } else { "" };
        let sql = format!(
            "SELECT {ATTR_READ_COLS} FROM {table} FINAL WHERE account_id = toUUID('{account_id}'){model_filter} \
             AND (conversion_id, attribution_model, version) IN (SELECT conversion_id, attribution_model, max(version) FROM {table} \
             WHERE account_id = toUUID('{account_id}'){model_filter} GROUP BY conversion_id, attribution_model) \
             ORDER BY conversion_id, attribution_model, touchpoint_id"
        );
        let mut q = self.ch.client().query(&sql);
        if let Some(m) = model {
            q = q.bind(m).bind(m);
        }
        let rows: Vec<AttrRead> = self.ch.bounded("reading attributions", q.fetch_all::<AttrRead>()).await?;
        rows.into_iter().map(AttrRead::into_row).collect()
    }

    /// Clicks per short code of an account, `(human, bot)`: per (code, day, partition) the row
    /// of the highest version, summed.
    async fn read_link_click_counts(&self, account_id: Uuid) -> Result<HashMap<String, (i64, i64)>> {
        let sql = format!(
            "SELECT short_code, sum(h) AS human_clicks, sum(b) AS bot_clicks \
             FROM (SELECT short_code, click_date, partition, argMax(human_clicks, version) AS h, argMax(bot_clicks, version) AS b \
             FROM {} WHERE account_id = toUUID('{account_id}') GROUP BY short_code, click_date, partition) \
             GROUP BY short_code",
            self.ch.table("link_click_partials")
        );
        let rows: Vec<ClickCount> =
            self.ch.bounded("counting link clicks", self.ch.client().query_raw(&sql).fetch_all::<ClickCount>()).await?;
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Ok(rows.into_iter().map(|r| (r.short_code, (i(r.human_clicks), i(r.bot_clicks)))).collect())
    }

    /// An account's journeys between two days (inclusive) per path: per (day, path, partition)
    /// the row of the highest version, summed; paths whose sums are all zero left out, ordered
    /// by channels and campaigns (byte order), as the SQL stores return them.
    async fn read_journey_paths(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<JourneyPathRow>> {
        let sql = format!(
            "SELECT channels, campaigns, sum(c) AS conversions, sum(n) AS non_conversions, sum(r) AS revenue \
             FROM (SELECT journey_date, channels, campaigns, partition, argMax(conversions, version) AS c, \
             argMax(non_conversions, version) AS n, argMax(revenue, version) AS r FROM {} \
             WHERE account_id = toUUID('{account_id}') AND journey_date >= toDate('{from}') AND journey_date <= toDate('{to}') \
             GROUP BY journey_date, channels, campaigns, partition) \
             GROUP BY channels, campaigns HAVING conversions != 0 OR non_conversions != 0 OR revenue != 0 \
             ORDER BY channels, campaigns",
            self.ch.table("journey_partials")
        );
        let sums: Vec<JourneyPathSum> =
            self.ch.bounded("reading journeys", self.ch.client().query_raw(&sql).fetch_all::<JourneyPathSum>()).await?;
        sums.into_iter().map(JourneyPathSum::into_row).collect()
    }
}

fn read_error(e: crate::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

#[async_trait]
impl ResultReader for ClickHouseStore {
    async fn daily_metrics(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> touchline_store::Result<Vec<DailyMetricRow>> {
        self.read_daily_metrics(account_id, from, to).await.map_err(read_error)
    }

    async fn range_partials(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> touchline_store::Result<Vec<PartialRow>> {
        self.read_range_partials(account_id, from, to).await.map_err(read_error)
    }

    async fn attributions(&self, account_id: Uuid, model: Option<&str>) -> touchline_store::Result<Vec<AttributionRow>> {
        self.read_attributions(account_id, model).await.map_err(read_error)
    }

    async fn link_click_counts(&self, account_id: Uuid) -> touchline_store::Result<HashMap<String, (i64, i64)>> {
        self.read_link_click_counts(account_id).await.map_err(read_error)
    }

    async fn journey_paths(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> touchline_store::Result<Vec<JourneyPathRow>> {
        self.read_journey_paths(account_id, from, to).await.map_err(read_error)
    }
}
