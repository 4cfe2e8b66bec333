//! The aggregator is killed with SIGKILL at random points while it processes a dataset, and
//! restarted; the final results must equal an uninterrupted run's, row by row — on the
//! embedded default (SQLite) and with Postgres as the fact-table store.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use touchline_bus::{Bus, EmbeddedLog, LogConfig, OutRecord};
use touchline_model::{decode_items, parse_body, DecodeOptions, Expect, RequestCtx};
use touchline_sql::{Account, Store};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_touchline");
const ACCOUNT: Uuid = Uuid::from_u128(0xc4a5);
const PARTITIONS: u32 = 4;

/// A small deterministic generator (64-bit LCG), so every run sees the same dataset.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// ~3,000 records: visitors with impressions and clicks on 5 campaigns, some identify, some
/// convert (some conversions retried), daily spend reports (some revised).
fn dataset() -> Vec<Value> {
    let mut g = Lcg(42);
    let mut items = Vec::new();
    let base = DateTime::parse_from_rfc3339("2026-11-15T00:00:00Z").unwrap().with_timezone(&Utc);
    for v in 0..1000 {
        let anon = format!("anon-{v}");
        let mut t = base + chrono::Duration::minutes(g.next(5 * 24 * 60) as i64);
        for k in 0..(1 + g.next(4)) {
            let camp = format!("c{}", g.next(5));
            let kind = if g.next(3) == 0 { "click" } else { "impression" };
            let channel = ["search", "display", "social"][g.next(3) as usize];
            items.push(json!({"type": "touchpoint", "kind": kind, "channel": channel,
                "campaign_id": camp, "advertisement_id": format!("{camp}-ad{}", g.next(2)), "anonymous_id": anon,
                "timestamp": t.to_rfc3339(), "message_id": format!("tp-{v}-{k}")}));
            t += chrono::Duration::minutes(1 + g.next(600) as i64);
        }
        let customer = format!("cust-{}", v % 300);
        if g.next(2) == 0 {
            items.push(json!({"type": "identify", "anonymous_id": anon, "customer_id": customer, "timestamp": t.to_rfc3339(), "message_id": format!("id-{v}")}));
        }
        if g.next(10) < 3 {
            t += chrono::Duration::minutes(5);
            let conv = json!({"type": "conversion", "kind": "purchase", "value": format!("{}.{:02}", 10 + g.next(200), g.next(100)), "currency": "USD",
                "order_id": format!("o-{v}"), "customer_id": customer, "timestamp": t.to_rfc3339(), "message_id": format!("cv-{v}")});
            items.push(conv.clone());
            if g.next(4) == 0 {
                let mut retry = conv;
                retry["message_id"] = json!(format!("cv-{v}-retry"));
                items.push(retry);
            }
        }
    }
    for day in 15..20 {
        for c in 0..5 {
            items.push(json!({"type": "spend", "date": format!("2026-11-{day}"), "campaign_id": format!("c{c}"), "cost": format!("{}.50", 10 + g.next(90)),
                "currency": "USD", "source": "ads", "timestamp": format!("2026-11-{day}T20:00:00Z"), "message_id": format!("sp-{day}-{c}")}));
            if g.next(3) == 0 {
                items.push(json!({"type": "spend", "date": format!("2026-11-{day}"), "campaign_id": format!("c{c}"), "cost": format!("{}.25", 10 + g.next(90)),
                    "currency": "USD", "source": "ads", "timestamp": format!("2026-11-{day}T23:00:00Z"), "message_id": format!("sp-{day}-{c}-rev")}));
            }
        }
    }
    // Shuffle deterministically: arrival order across topics is not event order.
    for i in (1..items.len()).rev() {
        let j = g.next(i as u64 + 1) as usize;
        items.swap(i, j);
    }
    items
}

/// Writes the dataset into an embedded log under `data_dir/log`, as the collector would.
async fn write_log(data_dir: &Path) -> usize {
    let log = EmbeddedLog::open(data_dir.join("log"), LogConfig { partitions: PARTITIONS, retention_check_secs: 0, ..LogConfig::default() }).await.unwrap();
    let opts = DecodeOptions::default();
    let received = DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z").unwrap().with_timezone(&Utc);
    let items = dataset();
    let mut n = 0;
    for chunk in items.chunks(100) {
        let body = serde_json::to_vec(&json!({ "batch": chunk })).unwrap();
        let parsed = parse_body(&body, &opts).unwrap();
        let ctx = RequestCtx { account_id: ACCOUNT, received_at: received, ip: None, user_agent: None };
        let d = decode_items(&parsed, &ctx, Expect::Any, &opts);
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let out: Vec<OutRecord> = d
            .records
            .iter()
            .map(|r| OutRecord { topic: r.topic().into(), key: r.partition_key(), value: r.to_json(), timestamp_ms: r.meta.received_at.timestamp_millis() })
            .collect();
        n += out.len();
        log.append(out).await.unwrap();
    }
    n
}

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
        .env("TOUCHLINE_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

async fn prepare_store(db: &str, data_dir: &Path) -> std::sync::Arc<dyn Store> {
    std::fs::create_dir_all(data_dir).unwrap();
    let s = touchline_sql::connect(db).await.unwrap();
    s.migrate().await.unwrap();
    s.upsert_account(&Account::new(ACCOUNT, "default")).await.unwrap();
    s
}

/// Everything the stores hold for the account, versions left out (they carry the run's epoch).
async fn results(s: &dyn Store) -> (Vec<touchline_sql::DailyMetricRow>, Vec<(String, String, String, String, String)>) {
    let metrics = s.daily_metrics(ACCOUNT, "2026-01-01".parse().unwrap(), "2027-01-01".parse().unwrap()).await.unwrap();
    let mut attrs: Vec<_> = s
        .attributions(ACCOUNT, None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.conversion_id, a.attribution_model, a.touchpoint_id, format!("{:.9}", a.weight), a.attributed_revenue.normalize().to_string()))
        .collect();
    attrs.sort();
    (metrics, attrs)
}

async fn crash_and_compare(db_a: String, db_b: String) {
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
    let status = aggregator(&dir_a, &db_a).status().unwrap();
    assert!(status.success());
    let full = started.elapsed();
    let expected = results(store_a.as_ref()).await;
    assert!(expected.0.len() > 20 && expected.1.len() > 100, "the dataset produces results ({} metric rows, {} attribution rows)", expected.0.len(), expected.1.len());

    // Interrupted runs: SIGKILL at pseudo-random points until 5 kills landed mid-run.
    let mut g = Lcg(7);
    let mut kills = 0;
    let mut attempts = 0;
    while kills < 5 && attempts < 40 {
        attempts += 1;
        let mut child = aggregator(&dir_b, &db_b).spawn().unwrap();
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
    let status = aggregator(&dir_b, &db_b).status().unwrap();
    assert!(status.success());
    let got = results(store_b.as_ref()).await;
    assert_eq!(got.0.len(), expected.0.len());
    for (g, e) in got.0.iter().zip(&expected.0) {
        assert_eq!(g, e, "daily metrics differ after {kills} crashes");
    }
    assert_eq!(got.1, expected.1, "attributions differ after {kills} crashes");
    eprintln!("{n} records; {kills} SIGKILLs; {} metric rows and {} attribution rows identical", got.0.len(), got.1.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_aggregator_embedded_default() {
    let root = tempfile::tempdir().unwrap();
    let a = format!("sqlite://{}", root.path().join("a.db").display());
    let b = format!("sqlite://{}", root.path().join("b.db").display());
    crash_and_compare(a, b).await;
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
    crash_and_compare(format!("{server}/{}", names[0]), format!("{server}/{}", names[1])).await;
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
    // From a date after every record: nothing is read, and the results are empty.
    let out = replay("2099-01-01");
    assert!(out.status.success());
    let (m, a) = results(store.as_ref()).await;
    assert!(m.is_empty() && a.is_empty());
}
