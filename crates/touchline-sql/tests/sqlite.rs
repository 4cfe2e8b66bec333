//! The store conformance suite on SQLite, plus SQLite specifics (WAL, raw tables).

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use touchline_sql::prelude::*;
use touchline_sql::SqliteStore;

mod common;
use common as conformance;

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
async fn daily_metrics_idempotent() {
    let (_d, s) = fresh().await;
    conformance::daily_metrics_idempotent(s.as_ref()).await;
}

async fn results() -> (tempfile::TempDir, touchline_store::testsuite::ResultStores) {
    let (guard, s) = fresh().await;
    (guard, touchline_store::testsuite::ResultStores::all_in(s))
}

touchline_store::catalog_store_suite!(fresh);
touchline_store::result_store_suite!(results);
touchline_store::checkpoint_table_suite!(fresh);

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

/// The WAL reaches the database file while the store is open, though the writer's own
/// auto-checkpoint is far off (a few pages against 16,384): the background checkpoint copied
/// it. Before the copy the database file holds only the migrations' pages.
#[tokio::test]
async fn the_wal_is_checkpointed_beside_the_writer() {
    let (dir, s) = fresh().await;
    let db = dir.path().join("touchline.db");
    let a = uuid::Uuid::from_u128(0xa);
    s.upsert_account(&touchline_sql::Account::new(a, "alpha")).await.unwrap();
    // Wait out checkpoints of the migrations' writes, then note the file's size.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let before = std::fs::metadata(&db).unwrap().len();
    let rows: Vec<_> = (0..2_000).map(|i| conformance::metric(a, &format!("c{i}"), "", 2, 100)).collect();
    s.upsert_daily_metrics(&rows).await.unwrap();
    let grown = async {
        while std::fs::metadata(&db).unwrap().len() <= before {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    // A liveness bound, not a timing assertion: checkpoints run every 250 ms.
    tokio::time::timeout(std::time::Duration::from_secs(30), grown).await.expect("no checkpoint copied the WAL into the database file");
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
    let first = [
        touchline_store::testsuite::attribution(a, "c1", "t1", "linear", 1, 0.5),
        touchline_store::testsuite::attribution(a, "c1", "t2", "linear", 1, 0.5),
    ];
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
    let second = [
        touchline_store::testsuite::attribution(a, "c1", "t1", "linear", 2, 0.75),
        touchline_store::testsuite::attribution(a, "c1", "t2", "linear", 2, 0.25),
    ];
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
    let v: String = sqlx::query_scalar("SELECT value FROM conversions").fetch_one(s.pool()).await.unwrap();
    assert_eq!(v, "19.99", "money is kept as exact decimal text");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM identities").fetch_one(s.pool()).await.unwrap();
    assert_eq!(n, 2);
}

fn partial(account: uuid::Uuid, partition: i32, cost: &str, revenue: &str) -> touchline_sql::PartialRow {
    touchline_sql::PartialRow {
        account_id: account,
        campaign_id: "c1".into(),
        advertisement_id: String::new(),
        metric_date: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        partition,
        impressions: 10,
        clicks: 1,
        reach: 5,
        engagements: 0,
        sessions: 0,
        conversions: "1".parse().unwrap(),
        revenue: revenue.parse().unwrap(),
        cost: cost.parse().unwrap(),
        reported_impressions: 0,
        reported_clicks: 0,
        epoch: 1,
        reach_sketch: Vec::new(),
        reach_hashes: Vec::new(),
        currency: None,
    }
}

/// Money does not pass through a double: as doubles, 0.1 + 0.2 is 0.30000000000000004 and
/// 1e15 + 0.01 loses its cents beyond the 16th digit. Sums come out exact, as Postgres's
/// numeric gives them.
#[tokio::test]
async fn money_sums_are_exact() {
    let (_d, s) = fresh().await;
    let a = uuid::Uuid::from_u128(0xa);
    s.upsert_account(&touchline_sql::Account::new(a, "alpha")).await.unwrap();
    s.publish_partials(&[partial(a, 0, "0.1", "1000000000000000"), partial(a, 1, "0.2", "0.01")]).await.unwrap();
    let (cost, revenue): (String, String) =
        sqlx::query_as("SELECT cost, revenue FROM campaign_performance_metrics").fetch_one(s.pool()).await.unwrap();
    assert_eq!((cost.as_str(), revenue.as_str()), ("0.3", "1000000000000000.01"));
    let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let row = &s.daily_metrics(a, day, day).await.unwrap()[0];
    assert_eq!(row.cost.to_string(), "0.3");
    // cpa = 0.3 / 2 conversions; cpc = 0.3 / 2 clicks.
    assert_eq!((row.cpa.unwrap().to_string(), row.cpc.unwrap().to_string()), ("0.15".to_owned(), "0.15".to_owned()));
}

/// A database written before money became text (NUMERIC columns, values stored as REAL or
/// INTEGER) is migrated to decimal text, rounded to six places.
#[tokio::test]
async fn numeric_money_of_an_older_database_becomes_exact_text() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("touchline.db").display());
    let all =
        sqlx::migrate::Migrator::new(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/sqlite"))).await.unwrap();
    let mut before =
        sqlx::migrate::Migrator::new(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/sqlite"))).await.unwrap();
    before.migrations = all.migrations.iter().filter(|m| m.description != "exact money").cloned().collect::<Vec<_>>().into();
    assert_eq!(before.migrations.len() + 1, all.migrations.len(), "the migration under test is named exact_money");
    let s = SqliteStore::connect(&url).await.unwrap();
    before.run(s.pool()).await.unwrap();
    let a = uuid::Uuid::from_u128(0xa).to_string();
    sqlx::query("INSERT INTO accounts (id, name) VALUES (?, 'alpha')").bind(&a).execute(s.pool()).await.unwrap();
    sqlx::query(
        "INSERT INTO campaign_metric_partials (account_id, campaign_id, metric_date, partition, conversions, revenue, cost) \
         VALUES (?, 'c1', '2026-12-01', 0, 3, 199.99, 0.1)",
    )
    .bind(&a)
    .execute(s.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO campaign_attributions (account_id, conversion_id, touchpoint_id, attribution_model, version, \
         conversion_time, conversion_value, weight, attributed_revenue) \
         VALUES (?, 'cv', 't', 'linear', 1, '2026-12-01T00:00:00Z', NULL, 0.333, 6.6666666666)",
    )
    .bind(&a)
    .execute(s.pool())
    .await
    .unwrap();
    s.migrate().await.unwrap();
    let kept: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT typeof(cost), conversions, revenue, cost FROM campaign_metric_partials").fetch_all(s.pool()).await.unwrap();
    assert_eq!(kept, vec![("text".into(), "3".into(), "199.99".into(), "0.1".into())]);
    let (value, revenue): (Option<String>, String) =
        sqlx::query_as("SELECT conversion_value, attributed_revenue FROM campaign_attributions").fetch_one(s.pool()).await.unwrap();
    assert_eq!((value, revenue.as_str()), (None, "6.666667"), "NULL stays NULL; six places, the last rounded");
}
