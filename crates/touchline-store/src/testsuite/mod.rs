//! One conformance suite per storage trait, run over every implementation: each backend's
//! test crate invokes the macros below with a function that makes a fresh, empty store, and
//! gets one test per check. Enabled by the `testsuite` feature (for dev-dependencies).
//!
//! ```ignore
//! async fn fresh() -> (TempDir, Arc<SqliteStore>) { … }
//! touchline_store::catalog_store_suite!(fresh);
//! touchline_store::checkpoint_table_suite!(fresh);
//! async fn results() -> (TempDir, ResultStores) { … }
//! touchline_store::result_store_suite!(results);
//! ```

pub mod catalog;
pub mod checkpoints;
pub mod results;

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{Account, AttributionRow, CatalogStore, DailyMetricRow, PartialRow, ResultReader, ResultSink};

/// The stores a result suite writes through and reads back from; one object on the SQL
/// stores, two on ClickHouse (its sink and its reader).
pub struct ResultStores {
    pub sink: Arc<dyn ResultSink>,
    pub reader: Arc<dyn ResultReader>,
    /// Where accounts must exist before results name them (the SQL stores' foreign keys).
    pub catalog: Option<Arc<dyn CatalogStore>>,
}

impl ResultStores {
    /// One store that plays every part (the SQL stores).
    pub fn all_in<S: ResultSink + ResultReader + CatalogStore>(store: Arc<S>) -> ResultStores {
        ResultStores { sink: store.clone(), reader: store.clone(), catalog: Some(store) }
    }

    /// Accounts `a` and `b`, known to the catalog when there is one.
    pub async fn two_accounts(&self) -> (Uuid, Uuid) {
        match &self.catalog {
            Some(c) => two_accounts(c.as_ref()).await,
            None => (ACCOUNT_A, ACCOUNT_B),
        }
    }
}

/// The two accounts every check writes for.
pub const ACCOUNT_A: Uuid = Uuid::from_u128(0xa);
pub const ACCOUNT_B: Uuid = Uuid::from_u128(0xb);

/// Accounts [`ACCOUNT_A`] (`alpha`) and [`ACCOUNT_B`] (`beta`), created in `catalog`.
pub async fn two_accounts(catalog: &dyn CatalogStore) -> (Uuid, Uuid) {
    catalog.upsert_account(&Account::new(ACCOUNT_A, "alpha")).await.expect("account a");
    catalog.upsert_account(&Account::new(ACCOUNT_B, "beta")).await.expect("account b");
    (ACCOUNT_A, ACCOUNT_B)
}

/// Generates one `#[tokio::test]` per [`CatalogStore`] check. `$fresh` is an async function
/// returning `(guard, Arc<S>)` for a fresh store `S: CatalogStore`; the guard lives as long
/// as the test.
#[macro_export]
macro_rules! catalog_store_suite {
    ($fresh:ident) => {
        mod catalog_store_suite {
            #[tokio::test]
            async fn catalog_round_trip() {
                let (_guard, store) = super::$fresh().await;
                $crate::testsuite::catalog::catalog_round_trip(store.as_ref()).await;
            }

            #[tokio::test]
            async fn cache_follows_changes() {
                let (_guard, store) = super::$fresh().await;
                $crate::testsuite::catalog::cache_follows_changes(store).await;
            }

            #[tokio::test]
            async fn channel_weights_round_trip() {
                let (_guard, store) = super::$fresh().await;
                $crate::testsuite::catalog::channel_weights_round_trip(store).await;
            }

            #[tokio::test]
            async fn currency_rates_round_trip() {
                let (_guard, store) = super::$fresh().await;
                $crate::testsuite::catalog::currency_rates_round_trip(store).await;
            }
        }
    };
}

/// Generates one `#[tokio::test]` per [`ResultSink`] + [`ResultReader`] check (a sink is
/// checked by reading back what it wrote). `$fresh` returns `(guard, ResultStores)`.
#[macro_export]
macro_rules! result_store_suite {
    ($fresh:ident) => {
        mod result_store_suite {
            #[tokio::test]
            async fn attribution_versions() {
                let (_guard, stores) = super::$fresh().await;
                $crate::testsuite::results::attribution_versions(&stores).await;
            }

            #[tokio::test]
            async fn attribution_bulk_replacement() {
                let (_guard, stores) = super::$fresh().await;
                $crate::testsuite::results::attribution_bulk_replacement(&stores).await;
            }

            #[tokio::test]
            async fn partials_publish_sums() {
                let (_guard, stores) = super::$fresh().await;
                $crate::testsuite::results::partials_publish_sums(&stores).await;
            }

            #[tokio::test]
            async fn reach_unions_partitions_and_days() {
                let (_guard, stores) = super::$fresh().await;
                $crate::testsuite::results::reach_unions_partitions_and_days(&stores).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_result_writes() {
                let (_guard, stores) = super::$fresh().await;
                $crate::testsuite::results::concurrent_result_writes(&stores).await;
            }

            #[tokio::test]
            async fn link_clicks_sum_partitions_and_days() {
                let (_guard, stores) = super::$fresh().await;
                $crate::testsuite::results::link_clicks_sum_partitions_and_days(&stores).await;
            }

            #[tokio::test]
            async fn journeys_publish_sums() {
                let (_guard, stores) = super::$fresh().await;
                $crate::testsuite::results::journeys_publish_sums(&stores).await;
            }

            #[tokio::test]
            async fn clear_results_forgets_every_result() {
                let (_guard, stores) = super::$fresh().await;
                $crate::testsuite::results::clear_results_forgets_every_result(&stores).await;
            }
        }
    };
}

/// Generates one `#[tokio::test]` per [`CheckpointTable`](crate::CheckpointTable) check.
/// `$fresh` returns `(guard, Arc<S>)` for a fresh `S: CheckpointTable`.
#[macro_export]
macro_rules! checkpoint_table_suite {
    ($fresh:ident) => {
        mod checkpoint_table_suite {
            #[tokio::test]
            async fn checkpoints_fence_old_owners() {
                let (_guard, store) = super::$fresh().await;
                $crate::testsuite::checkpoints::checkpoints_fence_old_owners(store.as_ref()).await;
            }

            #[tokio::test]
            async fn base_snapshots_are_fenced_by_epoch() {
                let (_guard, store) = super::$fresh().await;
                $crate::testsuite::checkpoints::base_snapshots_are_fenced_by_epoch(store.as_ref()).await;
            }
        }
    };
}

pub fn d(s: &str) -> Decimal {
    s.parse().unwrap_or_default()
}

pub fn date(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, day).unwrap_or_default()
}

pub fn metric(account: Uuid, campaign: &str, ad: &str, day: u32, impressions: i64) -> DailyMetricRow {
    DailyMetricRow {
        account_id: account,
        campaign_id: campaign.into(),
        advertisement_id: ad.into(),
        metric_date: date(day),
        impressions,
        clicks: impressions / 10,
        reach: impressions / 2,
        frequency: Some(2.0),
        engagements: 3,
        sessions: 4,
        conversions: d("1.5"),
        revenue: d("199.99"),
        cost: d("12.34"),
        currency: Some("USD".into()),
        ctr: if impressions > 0 { Some(0.1) } else { None },
        cpc: if impressions >= 10 { Some(d("1.234")) } else { None },
        cpm: Some(d("0.5")),
        cpa: Some(d("8.226667")),
        roas: Some(16.2),
        utm_source: Some("zalo".into()),
        utm_medium: None,
        utm_campaign: Some("winter".into()),
    }
}

pub fn attribution(account: Uuid, conversion: &str, touch: &str, model: &str, version: i64, weight: f64) -> AttributionRow {
    AttributionRow {
        account_id: account,
        conversion_id: conversion.into(),
        touchpoint_id: touch.into(),
        attribution_model: model.into(),
        version,
        campaign_id: Some(format!("cmp-{touch}")),
        advertisement_id: None,
        customer_id: Some("c-1".into()),
        touchpoint_type: Some("click".into()),
        touchpoint_timestamp: Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).single(),
        channel_id: Some("paid_search".into()),
        conversion_time: Utc.with_ymd_and_hms(2026, 11, 21, 9, 30, 0).single().unwrap_or_default(),
        conversion_value: Some(d("100")),
        currency: Some("USD".into()),
        weight,
        attributed_revenue: Decimal::from_f64_retain(100.0 * weight).unwrap_or_default().round_dp(6).normalize(),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn partial(
    account: Uuid,
    campaign: &str,
    partition: i32,
    impressions: i64,
    clicks: i64,
    cost: &str,
    conversions: &str,
    revenue: &str,
) -> PartialRow {
    PartialRow {
        account_id: account,
        campaign_id: campaign.into(),
        advertisement_id: String::new(),
        metric_date: date(21),
        partition,
        impressions,
        clicks,
        reach: impressions / 2,
        engagements: 1,
        sessions: 2,
        conversions: d(conversions),
        revenue: d(revenue),
        cost: d(cost),
        reported_impressions: 0,
        reported_clicks: 0,
        epoch: 1,
        reach_sketch: Vec::new(),
        reach_hashes: Vec::new(),
        currency: None,
    }
}

/// A partial of campaign `reach` on `date(day)` whose people are `people`, one impression each,
/// with their sketch and hashes as the aggregator writes them.
pub fn people_partial(account: Uuid, partition: i32, day: u32, people: &[&str]) -> PartialRow {
    let sketch = touchline_model::reach::ReachSketch::of_identities(people.iter().copied());
    let n = i64::try_from(people.len()).unwrap_or(i64::MAX);
    PartialRow {
        metric_date: date(day),
        impressions: n,
        reach: n,
        reach_sketch: sketch.to_bytes(),
        reach_hashes: sketch.exact_hashes().map(<[u64]>::to_vec).unwrap_or_default(),
        ..partial(account, "reach", partition, 0, 0, "0", "0", "0")
    }
}
