//! The store conformance suite on the real Postgres (each test its own database), plus
//! row-level security.
//!
//! `TOUCHLINE_TEST_PG` is the server URL without a database (default
//! `postgres://postgres@127.0.0.1:5432`).

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use sqlx::Connection;
use touchline_sql::prelude::*;
use touchline_sql::PgStore;

mod common;
use common as conformance;
use uuid::Uuid;

fn server() -> String {
    std::env::var("TOUCHLINE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A new, empty database for one test; dropped when the guard goes.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn new() -> TestDb {
        let name = format!("touchline_t_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", server())).await.expect("connect to the test Postgres");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        TestDb { url: format!("{}/{name}", server()), name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let url = format!("{}/postgres", server());
        // Best effort, on a thread of its own (Drop cannot await).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

async fn fresh() -> (TestDb, Arc<PgStore>) {
    let db = TestDb::new().await;
    let store = PgStore::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    (db, Arc::new(store))
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

async fn results() -> (TestDb, touchline_store::testsuite::ResultStores) {
    let (guard, s) = fresh().await;
    (guard, touchline_store::testsuite::ResultStores::all_in(s))
}

touchline_store::catalog_store_suite!(fresh);
touchline_store::result_store_suite!(results);
touchline_store::checkpoint_table_suite!(fresh);

/// A change made in SQL by another client reaches the cache through LISTEN/NOTIFY, well before
/// the (long) poll interval.
#[tokio::test]
async fn notify_reaches_a_running_cache_fast() {
    let (d, s) = fresh().await;
    let a = Uuid::from_u128(0xa);
    s.upsert_account(&touchline_sql::Account::new(a, "alpha")).await.unwrap();
    let cache = touchline_sql::CatalogCache::load(s.clone(), std::time::Duration::from_secs(60)).await.unwrap();
    let _t = cache.spawn_refresh(std::time::Duration::from_secs(3600));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // the listener connects
    let mut other = sqlx::PgConnection::connect(&d.url).await.unwrap();
    sqlx::query("INSERT INTO marketing_campaigns (account_id, id, timezone) VALUES ($1, 'c-sql', 'Asia/Tokyo')")
        .bind(a)
        .execute(&mut other)
        .await
        .unwrap();
    let start = std::time::Instant::now();
    while cache.snapshot().campaign_timezone(a, "c-sql") != "Asia/Tokyo" {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "NOTIFY did not reach the cache");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Through the touchline role, account A can neither read nor write account B's rows. The test
/// then disables the policy and shows the same query would leak, so it fails if RLS is removed.
#[tokio::test]
async fn row_level_security_isolates_accounts() {
    let (_d, s) = fresh().await;
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    s.upsert_account(&touchline_sql::Account::new(a, "alpha")).await.unwrap();
    s.upsert_account(&touchline_sql::Account::new(b, "beta")).await.unwrap();
    s.upsert_daily_metrics(&[conformance::metric(a, "ca", "", 1, 10), conformance::metric(b, "cb", "", 1, 20)]).await.unwrap();

    // Reads: only A's rows, even without a WHERE on account.
    let mut tx = s.as_account(a).await.unwrap();
    let campaigns: Vec<String> =
        sqlx::query_scalar("SELECT campaign_id FROM campaign_performance_metrics").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(campaigns, vec!["ca".to_owned()]);
    let role: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(role, "touchline_app");
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetch_one(&mut *tx).await.unwrap();
    assert!(!superuser);
    // Writes: updating B's rows touches nothing; inserting a row for B is refused.
    let updated = sqlx::query("UPDATE campaign_performance_metrics SET impressions = 0 WHERE account_id = $1")
        .bind(b)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 0);
    let insert =
        sqlx::query("INSERT INTO campaign_performance_metrics (account_id, campaign_id, metric_date) VALUES ($1, 'evil', '2026-11-01')")
            .bind(b)
            .execute(&mut *tx)
            .await;
    let err = insert.unwrap_err().to_string();
    assert!(err.contains("row-level security"), "{err}");
    drop(tx);
    // Without an account set, nothing is visible.
    let mut tx = s.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE touchline_app").execute(&mut *tx).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM campaign_performance_metrics").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(n, 0);
    drop(tx);
    // B's row is intact.
    assert_eq!(
        s.daily_metrics(b, conformance::metric(b, "cb", "", 1, 0).metric_date, conformance::metric(b, "cb", "", 30, 0).metric_date)
            .await
            .unwrap()[0]
            .impressions,
        20
    );
    // Every account-scoped table has its policy.
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_policies WHERE policyname LIKE '%_account_isolation' ORDER BY 1")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(
        tables,
        [
            "accounts",
            "advertisements",
            "api_keys",
            "campaign_attributions",
            "campaign_metric_partials",
            "campaign_performance_metrics",
            "channel_weights",
            "journey_partials",
            "link_click_partials",
            "links",
            "marketing_campaigns"
        ]
    );

    // The same read without RLS leaks B's row: the assertions above depend on the policy.
    sqlx::query("ALTER TABLE campaign_performance_metrics DISABLE ROW LEVEL SECURITY").execute(s.pool()).await.unwrap();
    let mut tx = s.as_account(a).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM campaign_performance_metrics").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(n, 2, "without the policy account A would see B's rows");
}

/// Every pooled connection plans each statement for its parameters and the tables as they
/// are: a generic plan cached while the result tables were nearly empty made a replay into a
/// fresh database scan `campaign_attributions` once per replaced set.
#[tokio::test]
async fn connections_plan_each_statement_afresh() {
    let (_d, s) = fresh().await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(s.pool().acquire().await.unwrap());
    }
    for c in &mut conns {
        let mode: String = sqlx::query_scalar("SHOW plan_cache_mode").fetch_one(&mut **c).await.unwrap();
        assert_eq!(mode, "force_custom_plan");
    }
}

/// A result table that grows from empty gets fresh planner statistics from the store itself
/// (autovacuum would wait up to a minute, and a replay plans against an "empty" table
/// meanwhile). `last_analyze` is set only by an explicit ANALYZE, never by autovacuum
/// (`last_autoanalyze`), so this fails if the store stops analyzing.
#[tokio::test]
async fn a_fast_growing_attribution_table_is_analyzed() {
    let (_d, s) = fresh().await;
    let a = Uuid::from_u128(0xa);
    s.upsert_account(&touchline_sql::Account::new(a, "alpha")).await.unwrap();
    let last_analyze = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'campaign_attributions'",
        )
        .fetch_one(s.pool())
        .await
        .unwrap()
    };
    let rows: Vec<_> =
        (0..5_000).map(|c| touchline_store::testsuite::attribution(a, &format!("conv-{c}"), "t1", "linear", 1, 1.0)).collect();
    s.upsert_attributions(&rows).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(last_analyze().await, None, "5,000 rows are below the first threshold (10,000)");
    let more: Vec<_> =
        (5_000..11_000).map(|c| touchline_store::testsuite::attribution(a, &format!("conv-{c}"), "t1", "linear", 1, 1.0)).collect();
    s.upsert_attributions(&more).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while last_analyze().await.is_none() {
        assert!(std::time::Instant::now() < deadline, "campaign_attributions was not analyzed within 10 s of reaching 11,000 rows");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
