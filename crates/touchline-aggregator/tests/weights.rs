//! New channel weights in the catalog credit the conversions an aggregator holds again, with no
//! new record to wake it, and a restart from the checkpoint keeps what they gave.
// A panic is the failure report of a test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use touchline_bus::{Bus, EmbeddedLog, LogConfig, OutRecord};
use touchline_sql::{Account, ChannelWeights, Store};
use uuid::Uuid;

const ACCOUNT: Uuid = Uuid::from_u128(0x3e16);

/// Visitor v: search (c1), then display (c2), then a purchase of 100. Visitor w: search (c1),
/// then a lead of 50.
fn records() -> Vec<OutRecord> {
    let items = serde_json::json!({"batch": [
        {"type": "touchpoint", "kind": "click", "channel": "search", "campaign_id": "c1", "anonymous_id": "v",
         "timestamp": "2026-11-20T10:00:00Z", "message_id": "t1"},
        {"type": "touchpoint", "kind": "click", "channel": "display", "campaign_id": "c2", "anonymous_id": "v",
         "timestamp": "2026-11-20T11:00:00Z", "message_id": "t2"},
        {"type": "conversion", "kind": "purchase", "value": "100", "currency": "USD", "anonymous_id": "v", "timestamp": "2026-11-20T12:00:00Z", "message_id": "cv"},
        {"type": "touchpoint", "kind": "click", "channel": "search", "campaign_id": "c1", "anonymous_id": "w",
         "timestamp": "2026-11-20T10:00:00Z", "message_id": "t3"},
        {"type": "conversion", "kind": "lead", "value": "50", "currency": "USD", "anonymous_id": "w", "timestamp": "2026-11-20T12:00:00Z", "message_id": "cw"}
    ]});
    common::bus_records(ACCOUNT, &items)
}

/// Markov's attributed revenue per (conversion, touch), as the store holds it.
async fn markov(store: &dyn Store) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = store
        .attributions(ACCOUNT, Some("markov"))
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.conversion_id, a.touchpoint_id, a.attributed_revenue.normalize().to_string()))
        .collect();
    rows.sort();
    rows
}

async fn until(store: &dyn Store, want: &[(&str, &str, &str)]) {
    let want: Vec<(String, String, String)> = want.iter().map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into())).collect();
    let started = Instant::now();
    loop {
        let got = markov(store).await;
        if got == want {
            return;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let all = store.attributions(ACCOUNT, None).await.unwrap();
            panic!("markov rows never became {want:?}; last {got:?}; every row: {all:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_weights_credit_held_conversions_again_and_survive_a_restart() {
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
    let running = tokio::spawn(common::aggregator(&log, &store, catalog.clone(), &state).run(stopped, false));

    // No weights yet: linear, 50 and 50 for v, 50 for w.
    until(store.as_ref(), &[("record:cv", "t1", "50"), ("record:cv", "t2", "50"), ("record:cw", "t3", "50")]).await;
    // Weights that credit display alone: v's purchase goes to its display touch; w's lead has
    // no channel with a weight, so it stays linear (all to its one touch).
    store
        .put_channel_weights(&ChannelWeights {
            account_id: ACCOUNT,
            model: "markov".into(),
            weights: [("display".to_owned(), 1.0)].into_iter().collect(),
            window_from: "2026-08-23".parse().unwrap(),
            window_to: "2026-11-20".parse().unwrap(),
            journeys: 2,
            conversions: 2,
            computed_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let after = [("record:cv", "t2", "100"), ("record:cw", "t3", "50")];
    until(store.as_ref(), &after).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    // A new instance restores the checkpoint the re-credit wrote and changes nothing.
    let catalog = touchline_sql::CatalogCache::load(store.clone(), Duration::from_secs(60)).await.unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let restarted = common::aggregator(&log, &store, catalog, &state);
    tokio::time::timeout(Duration::from_secs(60), restarted.clone().run(stopped, true)).await.expect("finishes").unwrap();
    assert_eq!(markov(store.as_ref()).await, after.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())));
    assert_eq!(restarted.stats.attribution_sets.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing credited again");
}
