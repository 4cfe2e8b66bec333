//! The checks only the SQL stores answer (migrations, published rows written directly); the
//! rest of their conformance is `touchline_store::testsuite`, generated in each test crate.
#![allow(dead_code)]

use touchline_sql::prelude::*;
use touchline_sql::DailyMetricRow;
pub use touchline_store::testsuite::metric;
use touchline_store::testsuite::{d, date, two_accounts};

/// Migrations apply from empty and re-run cleanly.
pub async fn migrations_rerun(store: &dyn Store) {
    store.migrate().await.expect("first migrate");
    store.migrate().await.expect("re-running migrations is a no-op");
}

/// Repeated flushes leave identical rows; a new flush replaces values, never adds to them.
pub async fn daily_metrics_idempotent(store: &dyn Store) {
    let (a, b) = two_accounts(store).await;
    let rows: Vec<DailyMetricRow> = (0..1200)
        .map(|i| {
            metric(
                if i % 3 == 0 { b } else { a },
                &format!("c{}", i % 200),
                if i % 400 < 200 { "" } else { "ad-1" },
                1 + (i / 400) as u32,
                i as i64,
            )
        })
        .collect();
    let n = store.upsert_daily_metrics(&rows).await.expect("upsert");
    assert_eq!(n, 1200);
    let first = store.daily_metrics(a, date(1), date(30)).await.expect("read");
    assert_eq!(first.len(), 800);
    store.upsert_daily_metrics(&rows).await.expect("same flush again");
    let again = store.daily_metrics(a, date(1), date(30)).await.expect("read");
    assert_eq!(first, again, "a repeated flush changes nothing");
    let mut want: Vec<DailyMetricRow> = rows.iter().filter(|r| r.account_id == a).cloned().collect();
    want.sort_by(|x, y| (x.metric_date, &x.campaign_id, &x.advertisement_id).cmp(&(y.metric_date, &y.campaign_id, &y.advertisement_id)));
    assert_eq!(again, want, "rows read back equal rows written");
    // Absolute values: a later flush with new totals replaces them.
    let mut updated = rows[1].clone();
    updated.impressions = 5;
    updated.cpc = None;
    updated.revenue = d("0");
    store.upsert_daily_metrics(std::slice::from_ref(&updated)).await.expect("update");
    let now = store.daily_metrics(a, updated.metric_date, updated.metric_date).await.expect("read");
    let row = now.iter().find(|r| r.campaign_id == updated.campaign_id && r.advertisement_id == updated.advertisement_id).expect("row");
    assert_eq!(row, &updated);
    // Account isolation on reads.
    let other = store.daily_metrics(b, date(1), date(30)).await.expect("read b");
    assert_eq!(other.len(), 400);
    assert!(other.iter().all(|r| r.account_id == b));
}
