//! The store conformance suite on SQLite, plus SQLite specifics (WAL, raw tables).

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use touchline_sql::{conformance, SqliteStore, Store};

async fn fresh() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("touchline.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    (dir, Arc::new(store))
}

#[tokio::test]
async fn migrations_rerun() {
    let (_d, s) = fresh().await;
    conformance::migrations_rerun(s.as_ref()).await;
}

#[tokio::test]
async fn catalog_round_trip() {
    let (_d, s) = fresh().await;
    conformance::catalog_round_trip(s.as_ref()).await;
}

#[tokio::test]
async fn daily_metrics_idempotent() {
    let (_d, s) = fresh().await;
    conformance::daily_metrics_idempotent(s.as_ref()).await;
}

#[tokio::test]
async fn attribution_versions() {
    let (_d, s) = fresh().await;
    conformance::attribution_versions(s.as_ref()).await;
}

#[tokio::test]
async fn attribution_bulk_replacement() {
    let (_d, s) = fresh().await;
    conformance::attribution_bulk_replacement(s.as_ref()).await;
}

#[tokio::test]
async fn partials_publish_sums() {
    let (_d, s) = fresh().await;
    conformance::partials_publish_sums(s.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_result_writes() {
    let (_d, s) = fresh().await;
    conformance::concurrent_result_writes(s).await;
}

#[tokio::test]
async fn checkpoints_fence_old_owners() {
    let (_d, s) = fresh().await;
    conformance::checkpoints_fence_old_owners(s.as_ref()).await;
}

#[tokio::test]
async fn cache_follows_changes() {
    let (_d, s) = fresh().await;
    conformance::cache_follows_changes(s).await;
}

#[tokio::test]
async fn wal_mode_and_a_second_reader_while_writing() {
    let (dir, s) = fresh().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(s.pool()).await.unwrap();
    assert_eq!(mode, "wal");
    let a = uuid::Uuid::from_u128(0xa);
    s.upsert_account(&touchline_sql::Account::new(a, "alpha")).await.unwrap();
    s.upsert_daily_metrics(&[conformance::metric(a, "c1", "", 2, 100)]).await.unwrap();
    // The sqlite3 command-line tool reads the results while the store is open.
    let out = std::process::Command::new("sqlite3")
        .arg(dir.path().join("touchline.db"))
        .arg("SELECT campaign_id, impressions, revenue FROM campaign_performance_metrics")
        .output();
    if let Ok(out) = out {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "c1|100|199.99");
    }
}

/// Attribution rows carry their write times in the column defaults' format: an update moves
/// `updated_at` and keeps `created_at`; a row written again unchanged keeps both.
#[tokio::test]
async fn attribution_rows_keep_their_write_times() {
    let (_d, s) = fresh().await;
    let a = uuid::Uuid::from_u128(0xa);
    s.upsert_account(&touchline_sql::Account::new(a, "alpha")).await.unwrap();
    let times = |touch: &'static str| {
        let s = s.clone();
        async move {
            sqlx::query_as::<_, (String, String)>("SELECT created_at, updated_at FROM campaign_attributions WHERE touchpoint_id = ?")
                .bind(touch)
                .fetch_one(s.pool())
                .await
                .unwrap()
        }
    };
    let first = [conformance::attribution(a, "c1", "t1", "linear", 1, 0.5), conformance::attribution(a, "c1", "t2", "linear", 1, 0.5)];
    s.upsert_attributions(&first).await.unwrap();
    let (created, updated) = times("t1").await;
    assert_eq!(created, updated);
    // strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), e.g. 2026-12-07T09:00:00.123Z.
    assert!(created.len() == 24 && created.as_bytes()[10] == b'T' && created.as_bytes()[19] == b'.' && created.ends_with('Z'), "{created}");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // The same set again, as a replay writes it: nothing changes.
    s.upsert_attributions(&first).await.unwrap();
    assert_eq!(times("t1").await, (created.clone(), updated.clone()), "a row written again unchanged keeps both times");
    // Version 2 of the set moves credit from t2 to t1.
    let second = [conformance::attribution(a, "c1", "t1", "linear", 2, 0.75), conformance::attribution(a, "c1", "t2", "linear", 2, 0.25)];
    s.upsert_attributions(&second).await.unwrap();
    let (created_again, updated_again) = times("t1").await;
    assert_eq!(created_again, created, "an update keeps created_at");
    assert!(updated_again > updated, "an update moves updated_at: {updated} then {updated_again}");
}

#[tokio::test]
async fn raw_entities_insert_once() {
    use serde_json::json;
    use touchline_model::{decode_items, parse_body, DecodeOptions, Expect, RequestCtx};
    let (_d, s) = fresh().await;
    let body = serde_json::to_vec(&json!({"batch": [
        {"type": "event", "event_name": "page_view", "anonymous_id": "a1", "message_id": "m1", "context": {"page_url": "https://x.example/?utm_source=zalo"}},
        {"type": "session", "session_id": "s1", "started_at": "2026-11-21T10:00:00Z", "anonymous_id": "a1", "message_id": "m2"},
        {"type": "touchpoint", "kind": "impression", "campaign_id": "c1", "anonymous_id": "a1", "message_id": "m3"},
        {"type": "link_click", "short_code": "abc", "device_id": "d1", "message_id": "m4"},
        {"type": "conversion", "kind": "purchase", "value": "19.99", "currency": "USD", "customer_id": "u1", "message_id": "m5"},
        {"type": "spend", "date": "2026-11-20", "campaign_id": "c1", "cost": "5.5", "currency": "USD", "message_id": "m6"},
        {"type": "identify", "customer_id": "u1", "anonymous_id": "a1", "message_id": "m7"},
        {"type": "alias", "customer_id": "u1", "previous_id": "old", "message_id": "m8"}
    ]})).unwrap();
    let opts = DecodeOptions::default();
    let parsed = parse_body(&body, &opts).unwrap();
    let ctx = RequestCtx { account_id: uuid::Uuid::from_u128(1), received_at: chrono::Utc::now(), ip: None, user_agent: None };
    let d = decode_items(&parsed, &ctx, Expect::Any, &opts);
    assert_eq!(d.records.len(), 8);
    assert_eq!(s.insert_raw(&d.records).await.unwrap(), 8);
    assert_eq!(s.insert_raw(&d.records).await.unwrap(), 0, "a replay inserts nothing twice");
    let utm: String = sqlx::query_scalar("SELECT utm_source FROM events").fetch_one(s.pool()).await.unwrap();
    assert_eq!(utm, "zalo");
    let v: f64 = sqlx::query_scalar("SELECT value FROM conversions").fetch_one(s.pool()).await.unwrap();
    assert!((v - 19.99).abs() < 1e-9);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM identities").fetch_one(s.pool()).await.unwrap();
    assert_eq!(n, 2);
}
