//! A conversion in a currency with no exchange rate waits in the aggregator (counted for
//! /metrics, nothing summed), is credited in the reporting currency once a rate is added to
//! the catalog, with no new record to wake the partition, and a restart keeps it.
// A panic is the failure report of a test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use touchline_bus::{Bus, EmbeddedLog, LogConfig, OutRecord};
use touchline_sql::{Account, CurrencyRate, Store};
use uuid::Uuid;

const ACCOUNT: Uuid = Uuid::from_u128(0xc0c0);

/// Visitor v clicks campaign c1, then buys for 100.00 EUR.
fn records() -> Vec<OutRecord> {
    let items = serde_json::json!({"batch": [
        {"type": "touchpoint", "kind": "click", "channel": "search", "campaign_id": "c1", "anonymous_id": "v",
         "timestamp": "2026-11-20T10:00:00Z", "message_id": "t1"},
        {"type": "conversion", "kind": "purchase", "value": "100.00", "currency": "EUR", "anonymous_id": "v",
         "timestamp": "2026-11-20T12:00:00Z", "message_id": "cv"}
    ]});
    common::bus_records(ACCOUNT, &items)
}

/// Last-touch rows: (conversion value, currency, attributed revenue).
async fn last_touch(store: &dyn Store) -> Vec<(String, Option<String>, String)> {
    store
        .attributions(ACCOUNT, Some("last_touch"))
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.conversion_value.unwrap_or_default().normalize().to_string(), a.currency, a.attributed_revenue.normalize().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversion_waits_for_its_rate_then_counts_in_the_reporting_currency() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), LogConfig { partitions: 2, retention_check_secs: 0, ..LogConfig::default() })
        .await
        .unwrap();
    log.append(records()).await.unwrap();
    let store = touchline_sql::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    store.migrate().await.unwrap();
    store.upsert_account(&Account::new(ACCOUNT, "default")).await.unwrap();
    let catalog = touchline_sql::CatalogCache::load(store.clone(), Duration::from_secs(60)).await.unwrap();
    let _refresh = catalog.spawn_refresh(Duration::from_millis(50));
    let state = dir.path().join("state");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let agg = common::aggregator(&log, &store, catalog.clone(), &state);
    let running = tokio::spawn(agg.clone().run(stopped, false));

    // No EUR → USD rate: the conversion waits, the click is counted.
    common::wait_for("the conversion waiting", async || agg.stats.waiting_for_rate() == 1).await;
    common::wait_for("the click counted", async || {
        store
            .daily_metrics(ACCOUNT, "2026-11-20".parse().unwrap(), "2026-11-20".parse().unwrap())
            .await
            .unwrap()
            .iter()
            .any(|m| m.clicks == 1)
    })
    .await;
    assert!(last_touch(store.as_ref()).await.is_empty(), "nothing credited in a wrong currency");

    store
        .put_currency_rate(&CurrencyRate {
            from_currency: "EUR".into(),
            to_currency: "USD".into(),
            rate: "1.10".parse().unwrap(),
            valid_from: "2026-11-01T00:00:00Z".parse().unwrap(),
            valid_until: None,
            source: "manual".into(),
        })
        .await
        .unwrap();
    // 100.00 EUR × 1.10 = 110.00 USD.
    let want = vec![("110".to_owned(), Some("USD".to_owned()), "110".to_owned())];
    common::wait_for("the conversion credited", async || last_touch(store.as_ref()).await == want).await;
    common::wait_for("the gauge back to 0", async || agg.stats.waiting_for_rate() == 0).await;
    let day = "2026-11-20".parse().unwrap();
    common::wait_for("the revenue published", async || {
        store.daily_metrics(ACCOUNT, day, day).await.unwrap().iter().any(|m| m.revenue == "110".parse().unwrap())
    })
    .await;
    let metrics = store.daily_metrics(ACCOUNT, day, day).await.unwrap();
    assert!(metrics.iter().all(|m| m.currency.as_deref() == Some("USD")), "{metrics:?}");
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    // A new instance restores the checkpoint the release wrote and changes nothing.
    let catalog = touchline_sql::CatalogCache::load(store.clone(), Duration::from_secs(60)).await.unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let restarted = common::aggregator(&log, &store, catalog, &state);
    tokio::time::timeout(Duration::from_secs(60), restarted.clone().run(stopped, true)).await.expect("finishes").unwrap();
    assert_eq!(last_touch(store.as_ref()).await, want);
    assert_eq!(restarted.stats.attribution_sets.load(Ordering::SeqCst), 0, "nothing credited again");
    assert_eq!(restarted.stats.waiting_for_rate(), 0);
}
