//! Fact-table write-back throughput: idempotent upserts of 1,000 daily-metric rows per batch,
//! against a baseline of plain INSERTs of the same rows into a table with the same columns but
//! no unique key (what an append-only writer would cost). SQLite always; Postgres when
//! reachable at TOUCHLINE_BENCH_PG (default postgres://postgres@127.0.0.1:5432; a database
//! `touchline_bench` is created there).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sqlx::Connection;
use touchline_sql::prelude::*;
use touchline_sql::{Account, DailyMetricRow};
use touchline_store::testsuite::metric;
use uuid::Uuid;

const ROWS: usize = 1_000;

fn rows(account: Uuid, impressions: i64) -> Vec<DailyMetricRow> {
    (0..ROWS).map(|i| metric(account, &format!("c{}", i % 100), &format!("ad{}", i / 100), 2, impressions + i as i64)).collect()
}

async fn setup_pg() -> Option<Arc<touchline_sql::PgStore>> {
    let server = std::env::var("TOUCHLINE_BENCH_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await.ok()?;
    let _ = sqlx::query("DROP DATABASE IF EXISTS touchline_bench WITH (FORCE)").execute(&mut admin).await;
    sqlx::query("CREATE DATABASE touchline_bench").execute(&mut admin).await.ok()?;
    let s = touchline_sql::PgStore::connect(&format!("{server}/touchline_bench")).await.ok()?;
    s.migrate().await.ok()?;
    sqlx::query("CREATE TABLE plain_metrics AS SELECT * FROM campaign_performance_metrics WITH NO DATA").execute(s.pool()).await.ok()?;
    Some(Arc::new(s))
}

fn upserts(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let account = Uuid::from_u128(1);
    let sqlite = rt.block_on(async {
        let s = touchline_sql::SqliteStore::connect(&format!("sqlite://{}", dir.path().join("b.db").display()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        s.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        s.upsert_account(&Account::new(account, "bench")).await.unwrap_or_else(|e| panic!("{e}"));
        sqlx::query("CREATE TABLE plain_metrics AS SELECT * FROM campaign_performance_metrics WHERE 0")
            .execute(s.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Arc::new(s)
    });
    let pg = rt.block_on(async {
        let s = setup_pg().await?;
        s.upsert_account(&Account::new(account, "bench")).await.ok()?;
        Some(s)
    });
    let counter = Arc::new(AtomicI64::new(0));

    let mut g = c.benchmark_group("sqlite_metrics_1000_rows");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(20);
    g.bench_function("baseline_plain_insert", |b| {
        b.to_async(&rt).iter(|| {
            let s = sqlite.clone();
            async move {
                let mut tx = s.pool().begin().await.unwrap_or_else(|e| panic!("{e}"));
                for chunk in rows(account, 1).chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                        "INSERT INTO plain_metrics (account_id, campaign_id, advertisement_id, metric_date, impressions, clicks, revenue) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(r.account_id.to_string())
                            .push_bind(r.campaign_id.clone())
                            .push_bind(r.advertisement_id.clone())
                            .push_bind(r.metric_date.to_string())
                            .push_bind(r.impressions)
                            .push_bind(r.clicks)
                            .push_bind(1.5f64);
                    });
                    qb.build().execute(&mut *tx).await.unwrap_or_else(|e| panic!("{e}"));
                }
                tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
            }
        })
    });
    g.bench_function("idempotent_upsert", |b| {
        b.to_async(&rt).iter(|| {
            let s = sqlite.clone();
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move { s.upsert_daily_metrics(&rows(account, n)).await.unwrap_or_else(|e| panic!("{e}")) }
        })
    });
    g.finish();

    let Some(pg) = pg else {
        eprintln!("Postgres not reachable: skipping the Postgres group");
        return;
    };
    let mut g = c.benchmark_group("postgres_metrics_1000_rows");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(20);
    g.bench_function("baseline_plain_insert", |b| {
        b.to_async(&rt).iter(|| {
            let s = pg.clone();
            async move {
                let mut tx = s.pool().begin().await.unwrap_or_else(|e| panic!("{e}"));
                for chunk in rows(account, 1).chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                        "INSERT INTO plain_metrics (account_id, campaign_id, advertisement_id, metric_date, impressions, clicks, revenue) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(r.account_id)
                            .push_bind(r.campaign_id.clone())
                            .push_bind(r.advertisement_id.clone())
                            .push_bind(r.metric_date)
                            .push_bind(r.impressions)
                            .push_bind(r.clicks)
                            .push_bind(r.revenue);
                    });
                    qb.build().execute(&mut *tx).await.unwrap_or_else(|e| panic!("{e}"));
                }
                tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
            }
        })
    });
    g.bench_function("idempotent_upsert_rls", |b| {
        b.to_async(&rt).iter(|| {
            let s = pg.clone();
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move { s.upsert_daily_metrics(&rows(account, n)).await.unwrap_or_else(|e| panic!("{e}")) }
        })
    });
    g.finish();
}

criterion_group!(benches, upserts);
criterion_main!(benches);
