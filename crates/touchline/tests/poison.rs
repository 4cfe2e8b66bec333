//! Poison records never stall a partition, on every store.
//!
//! Kafka clients write to the topics directly, past the collector's decoder, so the aggregator
//! checks every record it reads and dead-letters what no store could hold. And a store may
//! still refuse a row the checks let through (a constraint of the operator's own, a value a
//! column cannot hold): that row goes to `touchline.dlq` with the store's reason, and the
//! partition moves on. Each test sends good records around the poison and requires the good
//! ones to reach the store and the aggregator to catch up (lag 0).

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use touchline::app::App;
use touchline::config::Config;
use touchline_bus::{Bus, OutRecord};
use touchline_sql::{Account, Store};
use uuid::Uuid;

const ACCOUNT: Uuid = Uuid::from_u128(0x9015);

/// Where the results go in one test run.
enum Backend {
    Sqlite,
    Postgres { url: String },
    SqliteAndClickHouse { database: String },
}

struct Running {
    app_bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    stats: Arc<touchline_aggregator::AggStats>,
    backend: Backend,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(backend: Backend) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: dir.path().join("data"), ..Config::default() };
    config.aggregator.flush_interval_ms = 100;
    match &backend {
        Backend::Sqlite => {}
        Backend::Postgres { url, .. } => config.database_url = Some(url.clone()),
        Backend::SqliteAndClickHouse { database } => {
            config.clickhouse_url = Some(common::clickhouse_url());
            config.clickhouse.database = database.clone();
        }
    }
    let store = touchline::app::open_store(&config).await.unwrap();
    store.upsert_account(&Account::new(ACCOUNT, "default")).await.unwrap();
    let app = App::build(config, touchline::app::Role::Serve).await.unwrap();
    let (app_bus, store, stats) = (app.bus.clone(), app.store.clone(), app.agg_stats.clone());
    let (_base, tx) = common::serve_on_loopback(app).await;
    Running { app_bus, store, stats, backend, _dir: dir, _stop: tx }
}

fn now_text(offset_secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(offset_secs)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A record as a third-party producer writes it: the documented JSON, keyed by identity.
fn produced(topic: &str, identity: &str, mut value: Value) -> OutRecord {
    let base = json!({"v": 1, "record_id": Uuid::new_v4().to_string(), "account_id": ACCOUNT.to_string(),
        "timestamp": now_text(-3600), "received_at": now_text(-3590), "anonymous_id": identity});
    for (k, v) in base.as_object().unwrap() {
        value.as_object_mut().unwrap().entry(k.clone()).or_insert(v.clone());
    }
    OutRecord {
        topic: topic.into(),
        key: format!("{ACCOUNT}:{identity}"),
        value: serde_json::to_vec(&value).unwrap(),
        timestamp_ms: Utc::now().timestamp_millis(),
    }
}

fn click(identity: &str, campaign: &str) -> OutRecord {
    produced(
        "touchline.touchpoints",
        identity,
        json!({"type": "touchpoint", "kind": "click", "channel": "search", "campaign_id": campaign, "timestamp": now_text(-7200)}),
    )
}

fn purchase(identity: &str, value: &str) -> OutRecord {
    produced(
        "touchline.conversions",
        identity,
        json!({"type": "conversion", "kind": "purchase", "value": value, "currency": "USD", "order_id": format!("o-{identity}")}),
    )
}

impl Running {
    async fn dlq(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for p in 0..self.app_bus.partitions() {
            for r in self.app_bus.read("touchline.dlq", p, 0, 10_000, Duration::ZERO).await.unwrap() {
                out.push(serde_json::from_slice(&r.value).unwrap());
            }
        }
        out
    }

    /// Waits until the aggregator has consumed everything and the DLQ holds `dlq` entries.
    async fn settle(&self, consumed: u64, dlq: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let entries = self.dlq().await;
            let caught_up = self.stats.records.load(Ordering::Relaxed) >= consumed && self.stats.lag() == 0;
            if caught_up && entries.len() >= dlq {
                return entries;
            }
            assert!(
                Instant::now() < deadline,
                "the aggregator did not move on: consumed {} of {consumed}, lag {}, DLQ {entries:?}",
                self.stats.records.load(Ordering::Relaxed),
                self.stats.lag()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The campaigns credited under last touch, in the SQL store or in ClickHouse, once they
    /// equal `expected` (results reach the sinks just after the checkpoint that counts them
    /// consumed, so they are polled for).
    async fn credited_eventually(&self, clickhouse: bool, expected: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = if clickhouse { self.clickhouse_campaigns().await } else { self.credited_campaigns().await };
            if got == expected {
                return;
            }
            assert!(Instant::now() < deadline, "credited campaigns {got:?}, expected {expected:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Campaigns credited under last touch in the SQL store.
    async fn credited_campaigns(&self) -> Vec<String> {
        let mut c: Vec<String> =
            self.store.attributions(ACCOUNT, Some("last_touch")).await.unwrap().into_iter().filter_map(|r| r.campaign_id).collect();
        c.sort();
        c
    }

    async fn clickhouse_campaigns(&self) -> Vec<String> {
        let Backend::SqliteAndClickHouse { database } = &self.backend else { return Vec::new() };
        let q = format!(
            "SELECT DISTINCT campaign_id FROM {database}.attributions WHERE attribution_model = 'last_touch' ORDER BY campaign_id FORMAT TabSeparated"
        );
        let text = reqwest::Client::new().post(common::clickhouse_url()).body(q).send().await.unwrap().text().await.unwrap();
        text.lines().map(str::to_owned).collect()
    }
}

/// Records no store could hold, written straight to the bus, each with the field its DLQ
/// reason must name.
fn poison() -> Vec<(OutRecord, &'static str)> {
    let mut deep = json!("bottom");
    for _ in 0..40 {
        deep = json!({ "n": deep });
    }
    vec![
        (purchase("p-money", "1000000000000000"), "value"),
        (
            produced(
                "touchline.touchpoints",
                "p-nul",
                json!({"type": "touchpoint", "kind": "click", "channel": "sea\u{0}rch", "campaign_id": "fine"}),
            ),
            "channel",
        ),
        (
            produced(
                "touchline.touchpoints",
                "p-time",
                json!({"type": "touchpoint", "kind": "click", "campaign_id": "fine", "timestamp": "1970-01-01T00:00:00Z"}),
            ),
            "timestamp",
        ),
        (
            produced("touchline.events", "p-deep", json!({"type": "event", "event_name": "page_view", "properties": {"payload": deep}})),
            "properties",
        ),
    ]
}

async fn poison_is_dead_lettered_and_the_partition_moves_on(backend: Backend) {
    let t = start(backend).await;
    let mut records = vec![click("good-1", "fine"), purchase("good-1", "25.00")];
    let poison = poison();
    records.extend(poison.iter().map(|(r, _)| r.clone()));
    // Good records after the poison, on the same partitions as the poison (same identities'
    // keys would be refused too, so use identities that hash alike is not needed: every
    // partition is read in order, and lag 0 proves nothing was left behind).
    records.extend([click("good-2", "after"), purchase("good-2", "30.00")]);
    let n = records.len() as u64;
    t.app_bus.append(records).await.unwrap();
    let dlq = t.settle(n, poison.len()).await;
    assert_eq!(dlq.len(), poison.len(), "{dlq:?}");
    for (_, field) in &poison {
        assert!(
            // Fields are named as stored: `properties.payload` for a value under `properties`.
            dlq.iter().any(|d| d["reason"].as_str().unwrap_or("").contains(&format!("`{field}"))),
            "no DLQ reason names `{field}`: {dlq:?}"
        );
    }
    t.credited_eventually(false, &["after", "fine"]).await;
    if matches!(t.backend, Backend::SqliteAndClickHouse { .. }) {
        t.credited_eventually(true, &["after", "fine"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_sqlite() {
    poison_is_dead_lettered_and_the_partition_moves_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_postgres() {
    let (url, name) = common::postgres_database("poison").await;
    poison_is_dead_lettered_and_the_partition_moves_on(Backend::Postgres { url }).await;
    common::drop_postgres_database(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_clickhouse() {
    let database = common::clickhouse_database("poison");
    poison_is_dead_lettered_and_the_partition_moves_on(Backend::SqliteAndClickHouse { database: database.clone() }).await;
    common::drop_clickhouse_database(&database).await;
}

/// The campaign the stores in these tests are made to refuse.
const REFUSED: &str = "refused-by-store";

/// Makes the store refuse attribution rows of campaign [`REFUSED`], as an operator's own
/// constraint would.
async fn refuse_a_campaign(t: &Running) {
    match &t.backend {
        Backend::Sqlite => {
            let db = t._dir.path().join("data/touchline.db");
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", db.display())).await.unwrap();
            sqlx::query(&format!(
                "CREATE TRIGGER refuse BEFORE INSERT ON campaign_attributions WHEN NEW.campaign_id = '{REFUSED}' \
                 BEGIN SELECT RAISE(ABORT, 'campaign refused by the operator'); END"
            ))
            .execute(&mut c)
            .await
            .unwrap();
        }
        Backend::Postgres { url, .. } => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
            sqlx::query(&format!(
                "ALTER TABLE campaign_attributions ADD CONSTRAINT refuse CHECK (campaign_id IS DISTINCT FROM '{REFUSED}')"
            ))
            .execute(&mut c)
            .await
            .unwrap();
        }
        Backend::SqliteAndClickHouse { database } => {
            let q = format!("ALTER TABLE {database}.attributions ADD COLUMN refuse UInt8 MATERIALIZED throwIf(campaign_id = '{REFUSED}')");
            let r = reqwest::Client::new().post(common::clickhouse_url()).body(q).send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    }
}

async fn a_refused_row_is_dead_lettered_and_the_rest_written(backend: Backend, sink: &str) {
    let t = start(backend).await;
    refuse_a_campaign(&t).await;
    let records = vec![click("r-1", REFUSED), purchase("r-1", "10.00"), click("r-2", "fine"), purchase("r-2", "20.00")];
    t.app_bus.append(records).await.unwrap();
    // Eight models, one touch each: the refused conversion's eight rows go to the DLQ.
    let models = touchline_sql::MODELS.len();
    assert_eq!(models, 8);
    let dlq = t.settle(4, models).await;
    let refused: Vec<&Value> = dlq.iter().filter(|d| d["kind"] == "attribution").collect();
    assert_eq!(refused.len(), models, "{dlq:?}");
    for d in &refused {
        assert_eq!(d["sink"], sink);
        assert_eq!(d["row"]["campaign_id"], REFUSED);
        assert!(d["reason"].as_str().unwrap().starts_with(&format!("refused by sink {sink}:")), "{d}");
    }
    // Later records are still processed.
    t.app_bus.append(vec![click("r-3", "later"), purchase("r-3", "5.00")]).await.unwrap();
    t.settle(6, models).await;
    t.credited_eventually(matches!(t.backend, Backend::SqliteAndClickHouse { .. }), &["fine", "later"]).await;
    assert_eq!(t.stats.sink_refused_rows.load(Ordering::Relaxed), models as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_sqlite() {
    a_refused_row_is_dead_lettered_and_the_rest_written(Backend::Sqlite, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_postgres() {
    let (url, name) = common::postgres_database("refused").await;
    a_refused_row_is_dead_lettered_and_the_rest_written(Backend::Postgres { url }, "postgres").await;
    common::drop_postgres_database(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_clickhouse() {
    let database = common::clickhouse_database("refused");
    a_refused_row_is_dead_lettered_and_the_rest_written(Backend::SqliteAndClickHouse { database: database.clone() }, "clickhouse").await;
    common::drop_clickhouse_database(&database).await;
}
