//! The aggregator is killed with SIGKILL at random points while it processes a dataset, and
//! restarted; the final results must equal an uninterrupted run's, row by row — on the
//! embedded default (SQLite) and with Postgres as the fact-table store plus ClickHouse as a
//! second sink (which must then hold the same rows as Postgres).

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::dataset::{
    expected_link_clicks, journeys_of, link_clicks_of, prepare_store, results, write_log, Lcg, ACCOUNT, NO_WEIGHTS_SCHEDULE, PARTITIONS,
};
use touchline_sql::ResultReader;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_touchline");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn aggregator(data_dir: &Path, db: &str) -> Command {
    touchline(data_dir, db, &["aggregator", "--exit-when-idle"])
}

/// The aggregator, also writing to the ClickHouse database `ch` when given.
fn aggregator_with(data_dir: &Path, db: &str, ch: Option<&str>) -> Command {
    let mut c = aggregator(data_dir, db);
    if let Some(ch) = ch {
        c.env("TOUCHLINE_CLICKHOUSE_URL", common::clickhouse_url()).env("TOUCHLINE_CLICKHOUSE__DATABASE", ch);
    }
    c
}

/// The binary with the test's environment.
fn touchline(data_dir: &Path, db: &str, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("TOUCHLINE_DATA_DIR", data_dir)
        .env("TOUCHLINE_DATABASE_URL", db)
        .env("TOUCHLINE_LOG__PARTITIONS", PARTITIONS.to_string())
        .env("TOUCHLINE_LOG__RETENTION_CHECK_SECS", "0")
        .env("TOUCHLINE_AGGREGATOR__FLUSH_RECORDS", "150")
        .env("TOUCHLINE_AGGREGATOR__READ_BATCH", "50")
        // Raw rows go out after every read (about 17 KB), several times per flush, so kills
        // also land between a flush's raw writes.
        .env("TOUCHLINE_AGGREGATOR__RAW_BUFFER_BYTES", "8000")
        .env("TOUCHLINE_LOG_LEVEL", "warn")
        .env(NO_WEIGHTS_SCHEDULE.0, NO_WEIGHTS_SCHEDULE.1)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

/// Every row of the data directory's Parquet warehouse, as `entity:record id`, sorted.
fn warehouse_rows(data_dir: &Path) -> Vec<String> {
    let rows = touchline_warehouse::Warehouse::new(data_dir.join("warehouse")).all_record_keys().unwrap();
    assert!(!rows.is_empty(), "the warehouse under {} is empty", data_dir.display());
    rows
}

async fn crash_and_compare(db_a: String, db_b: String, clickhouse_db: Option<&str>) {
    let root = tempfile::tempdir().unwrap();
    let seed = root.path().join("seed");
    let n = write_log(&seed).await;
    let (dir_a, dir_b): (PathBuf, PathBuf) = (root.path().join("a"), root.path().join("b"));
    copy_dir(&seed.join("log"), &dir_a.join("log"));
    copy_dir(&seed.join("log"), &dir_b.join("log"));
    let store_a = prepare_store(&db_a, &dir_a).await;
    let store_b = prepare_store(&db_b, &dir_b).await;

    // Uninterrupted run.
    let started = Instant::now();
    // (With ClickHouse, the reference writes a database of its own, so both runs do the same work.)
    let ch_ref = clickhouse_db.map(|c| format!("{c}_ref"));
    let status = aggregator_with(&dir_a, &db_a, ch_ref.as_deref()).status().unwrap();
    assert!(status.success());
    let full = started.elapsed();
    let expected = results(store_a.as_ref()).await;
    assert!(
        expected.0.len() > 20 && expected.1.len() > 100,
        "the dataset produces results ({} metric rows, {} attribution rows)",
        expected.0.len(),
        expected.1.len()
    );

    // Interrupted runs: SIGKILL at pseudo-random points until 5 kills landed mid-run.
    let mut g = Lcg(7);
    let mut kills = 0;
    let mut attempts = 0;
    while kills < 5 && attempts < 40 {
        attempts += 1;
        let mut child = aggregator_with(&dir_b, &db_b, clickhouse_db).spawn().unwrap();
        // Each life gets 5–15 % of an uninterrupted run (start-up included), so five kills
        // land before the work is done.
        let wait = full.mul_f64(0.05 + g.next(100) as f64 / 1000.0);
        let start = Instant::now();
        let mut exited = false;
        while start.elapsed() < wait {
            if child.try_wait().unwrap().is_some() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if exited {
            break; // it finished before the kill: nothing left to interrupt
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 5, "only {kills} kills landed mid-run; the dataset ({n} records) is processed too fast to test");
    let status = aggregator_with(&dir_b, &db_b, clickhouse_db).status().unwrap();
    assert!(status.success());
    let got = results(store_b.as_ref()).await;
    assert_eq!(got.0.len(), expected.0.len());
    for (g, e) in got.0.iter().zip(&expected.0) {
        assert_eq!(g, e, "daily metrics differ after {kills} crashes");
    }
    assert_eq!(got.1, expected.1, "attributions differ after {kills} crashes");
    assert_eq!(link_clicks_of(store_a.as_ref()).await, expected_link_clicks(), "the uninterrupted run counts each click once");
    assert_eq!(link_clicks_of(store_b.as_ref()).await, expected_link_clicks(), "link clicks differ after {kills} crashes");
    let journeys = journeys_of(store_a.as_ref()).await;
    let converted: std::collections::BTreeSet<&str> = expected.1.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(journeys.iter().map(|j| j.conversions).sum::<i64>(), converted.len() as i64, "each conversion is one journey");
    assert_eq!(journeys_of(store_b.as_ref()).await, journeys, "journeys differ after {kills} crashes");
    let raw = warehouse_rows(&dir_b);
    assert_eq!(raw, warehouse_rows(&dir_a), "the Parquet warehouse holds the same rows after {kills} crashes");
    // One row per record of the log (a client's retry is a record of its own, with the same id).
    assert_eq!(raw.len(), n, "the warehouse holds each record of the log once after {kills} crashes");
    if let Some(ch) = clickhouse_db {
        // ClickHouse, written by the same crashing runs, holds exactly the SQL store's rows.
        let cfg = touchline_clickhouse::ClickHouseConfig::from_url(common::clickhouse_url()).with_database(ch);
        let chs = touchline_clickhouse::ClickHouseStore::new(touchline_clickhouse::connect(&cfg).await.unwrap());
        let (from, to) = ("2026-01-01".parse().unwrap(), "2027-01-01".parse().unwrap());
        assert_eq!(
            chs.daily_metrics(ACCOUNT, from, to).await.unwrap(),
            store_b.daily_metrics(ACCOUNT, from, to).await.unwrap(),
            "ClickHouse metrics equal the SQL store's"
        );
        assert_eq!(
            common::sorted_attributions(chs.attributions(ACCOUNT, None).await.unwrap()),
            common::sorted_attributions(store_b.attributions(ACCOUNT, None).await.unwrap()),
            "ClickHouse attributions equal the SQL store's"
        );
        assert_eq!(link_clicks_of(&chs).await, expected_link_clicks(), "ClickHouse link clicks");
        assert_eq!(journeys_of(&chs).await, journeys, "ClickHouse journeys");
        for db in [ch.to_owned(), format!("{ch}_ref")] {
            common::drop_clickhouse_database(&db).await;
        }
    }
    eprintln!("{n} records; {kills} SIGKILLs; {} metric rows and {} attribution rows identical", got.0.len(), got.1.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_aggregator_embedded_default() {
    let root = tempfile::tempdir().unwrap();
    let a = format!("sqlite://{}", root.path().join("a.db").display());
    let b = format!("sqlite://{}", root.path().join("b.db").display());
    crash_and_compare(a, b, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_aggregator_with_postgres() {
    use sqlx::Connection;
    let server = std::env::var("TOUCHLINE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await.expect("the test Postgres must be running");
    let names: Vec<String> = (0..2).map(|_| format!("touchline_crash_{}", Uuid::new_v4().simple())).collect();
    for n in &names {
        sqlx::query(&format!("CREATE DATABASE {n}")).execute(&mut admin).await.unwrap();
    }
    // Postgres as the fact-table store and ClickHouse as a second sink of the same runs.
    let ch = common::clickhouse_database("crash");
    crash_and_compare(format!("{server}/{}", names[0]), format!("{server}/{}", names[1]), Some(&ch)).await;
    for n in &names {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)")).execute(&mut admin).await;
    }
}

/// `touchline replay` clears the results and rebuilds exactly what the aggregator computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_the_same_results() {
    let root = tempfile::tempdir().unwrap();
    let seed = root.path().join("seed");
    write_log(&seed).await;
    let dir = root.path().join("a");
    copy_dir(&seed.join("log"), &dir.join("log"));
    let db = format!("sqlite://{}", root.path().join("a.db").display());
    let store = prepare_store(&db, &dir).await;
    assert!(aggregator(&dir, &db).status().unwrap().success());
    let expected = results(store.as_ref()).await;
    let journeys = journeys_of(store.as_ref()).await;
    assert!(!journeys.is_empty());
    // Damage the results: a bogus row and a changed one.
    let mut bogus = expected.0[0].clone();
    bogus.campaign_id = "bogus".into();
    let mut changed = expected.0[1].clone();
    changed.impressions += 1000;
    store.upsert_daily_metrics(&[bogus, changed]).await.unwrap();
    assert_ne!(results(store.as_ref()).await, expected);

    let replay = |from: &str| touchline(&dir, &db, &["replay", "--quiet", "--from", from]).stdout(Stdio::piped()).output().unwrap();
    let out = replay("earliest");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(results(store.as_ref()).await, expected, "replay rebuilds the same results");
    assert_eq!(link_clicks_of(store.as_ref()).await, expected_link_clicks(), "replay counts each click once");
    assert_eq!(journeys_of(store.as_ref()).await, journeys, "replay counts each journey once");
    // From a date after every record: nothing is read, and the results are empty.
    let out = replay("2099-01-01");
    assert!(out.status.success());
    let (m, a) = results(store.as_ref()).await;
    assert!(m.is_empty() && a.is_empty());
    assert!(link_clicks_of(store.as_ref()).await.is_empty());
    assert!(journeys_of(store.as_ref()).await.is_empty());
}
