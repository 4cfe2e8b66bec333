//! The sink and the report reads on the real server, driven by the real engine: records are
//! queryable, the reports equal the SQL store's row by row, and repeated or stale flushes
//! change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use chrono::NaiveDate;
use common::{account, dataset, TestDb};
use touchline_clickhouse::{ClickHouseSink, ClickHouseStore};
use touchline_engine::{Engine, EngineConfig, Flush, JourneyPartial};
use touchline_model::{partition_for, Body, Record};
use touchline_sql::prelude::*;
use touchline_sql::SqlSink;
use touchline_sql::{Account, AttributionRow, DailyMetricRow, JourneyPathRow, SqliteStore, MODELS};
use touchline_store::sink::{Sink, SinkBatch};
use uuid::Uuid;

const PARTITIONS: u32 = 2;
const BATCH: usize = 60;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn split(records: &[Record]) -> Vec<Vec<Record>> {
    let mut parts = vec![Vec::new(); PARTITIONS as usize];
    for r in records {
        parts[partition_for(r.partition_key().as_bytes(), PARTITIONS) as usize].push(r.clone());
    }
    parts
}

/// The dataset's money is in EUR: both accounts report in it, so nothing waits for a rate.
fn config(partition: u32, partitions: u32) -> EngineConfig {
    let mut cfg = EngineConfig { partition, partitions, ..EngineConfig::default() };
    for n in [1, 2] {
        cfg.catalog.currencies.insert(account(n), touchline_model::Currency::new("EUR").unwrap());
    }
    cfg
}

fn engine(p: u32) -> Engine {
    Engine::new(config(p, PARTITIONS))
}

async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let store = SqliteStore::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    store.migrate().await.unwrap();
    for n in [1, 2] {
        store.upsert_account(&Account { currency: "EUR".into(), ..Account::new(account(n), format!("acct{n}")) }).await.unwrap();
    }
    Arc::new(store)
}

/// What the reports API serves: daily metrics and attribution rows (without the internal
/// version, which a restart raises by design).
async fn report(store: &ClickHouseStore, acct: Uuid) -> (Vec<DailyMetricRow>, Vec<AttributionRow>) {
    let mut attributions = store.attributions(acct, None).await.unwrap();
    for a in &mut attributions {
        a.version = 0;
    }
    (store.daily_metrics(acct, day("2026-01-01"), day("2026-12-31")).await.unwrap(), attributions)
}

async fn reports(store: &ClickHouseStore) -> Vec<(Vec<DailyMetricRow>, Vec<AttributionRow>)> {
    vec![report(store, account(1)).await, report(store, account(2)).await]
}

/// Equality with the first differing row in the message (the reports are long).
fn assert_same_reports(
    got: &[(Vec<DailyMetricRow>, Vec<AttributionRow>)],
    want: &[(Vec<DailyMetricRow>, Vec<AttributionRow>)],
    what: &str,
) {
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0.len(), w.0.len(), "{what}: daily metric rows");
        for (a, b) in g.0.iter().zip(&w.0) {
            assert_eq!(a, b, "{what}: daily metrics");
        }
        assert_eq!(g.1.len(), w.1.len(), "{what}: attribution rows");
        for (a, b) in g.1.iter().zip(&w.1) {
            assert_eq!(a, b, "{what}: attributions");
        }
    }
    assert_eq!(got.len(), want.len());
}

fn assert_same_metrics(ch: &[DailyMetricRow], sql: &[DailyMetricRow]) {
    assert_eq!(ch.len(), sql.len(), "row counts differ");
    for (c, s) in ch.iter().zip(sql) {
        let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(1.0),
            (x, y) => x == y,
        };
        // ctr, frequency and roas are doubles: the SQLite store computes roas from float sums,
        // so it may differ from the exact decimal sums in the last bits.
        assert!(close(c.roas, s.roas), "roas {:?} vs {:?} in {c:?}", c.roas, s.roas);
        let mut c2 = c.clone();
        c2.roas = s.roas;
        assert_eq!(&c2, s);
    }
}

/// Runs every partition's records through its own engine in batches, writing each flush to
/// every sink; returns the flush count.
async fn drive(records: &[Record], sinks: &[&dyn Sink]) -> usize {
    let mut flushes = 0;
    for (p, part) in split(records).into_iter().enumerate() {
        let p = p as u32;
        let mut e = engine(p);
        for chunk in part.chunks(BATCH) {
            for r in chunk {
                e.ingest(r);
            }
            let out = e.flush();
            let batch = SinkBatch { partition: p, epoch: 1, raw: chunk, raw_offsets: &[], flush: &out };
            for s in sinks {
                s.write(&batch).await.unwrap_or_else(|err| panic!("{} sink: {err}", s.name()));
            }
            flushes += 1;
        }
    }
    flushes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_equal_the_sql_store_row_by_row() {
    let db = TestDb::migrated("sink_eq").await;
    let records = dataset(240, 7);
    let dir = tempfile::tempdir().unwrap();
    let sql = sqlite(&dir).await;
    let ch_sink = ClickHouseSink::new(db.ch.clone());
    let sql_sink = SqlSink { store: sql.clone(), raw_rows: true };
    drive(&records, &[&ch_sink, &sql_sink]).await;

    let store = ClickHouseStore::new(db.ch.clone());
    let mut compared = (0, 0);
    for acct in [account(1), account(2)] {
        let (from, to) = (day("2026-01-01"), day("2026-12-31"));
        let ch = store.daily_metrics(acct, from, to).await.unwrap();
        let s = sql.daily_metrics(acct, from, to).await.unwrap();
        assert!(!ch.is_empty());
        assert_same_metrics(&ch, &s);
        compared.0 += ch.len();
        // A narrower range too.
        assert_same_metrics(
            &store.daily_metrics(acct, day("2026-03-02"), day("2026-03-02")).await.unwrap(),
            &sql.daily_metrics(acct, day("2026-03-02"), day("2026-03-02")).await.unwrap(),
        );
        let ch = store.attributions(acct, None).await.unwrap();
        assert!(!ch.is_empty());
        assert_eq!(ch, sql.attributions(acct, None).await.unwrap(), "attributions of {acct}");
        compared.1 += ch.len();
        for m in MODELS {
            assert_eq!(store.attributions(acct, Some(m)).await.unwrap(), sql.attributions(acct, Some(m)).await.unwrap(), "model {m}");
        }
    }
    assert!(compared.0 > 20 && compared.1 > 100, "compared {compared:?} rows");

    // Raw records are queryable, each once.
    let count = |f: fn(&Body) -> bool| records.iter().filter(|r| f(&r.body)).count() as u64;
    let checks: [(&str, u64); 7] = [
        ("events", count(|b| matches!(b, Body::Event(_)))),
        ("sessions", count(|b| matches!(b, Body::Session(_)))),
        ("touchpoints", count(|b| matches!(b, Body::Touchpoint(_)))),
        ("link_clicks", count(|b| matches!(b, Body::LinkClick(_)))),
        ("conversions", count(|b| matches!(b, Body::Conversion(_)))),
        ("spend", count(|b| matches!(b, Body::Spend(_)))),
        ("identities", count(|b| matches!(b, Body::Identify(_) | Body::Alias(_)))),
    ];
    for (table, n) in checks {
        assert!(n > 0, "the dataset has {table}");
        assert_eq!(db.count(&format!("SELECT count() FROM {}.{table} FINAL", db.name)).await, n, "{table}");
    }
    // Fields survive the trip: one event, field by field.
    let e = records.iter().find(|r| matches!(r.body, Body::Event(_))).unwrap();
    let row = db
        .tsv(&format!(
            "SELECT toString(account_id), toString(date), toString(timestamp), anonymous_id, event_name, campaign_id, page_url, utm_campaign, ip, \
             visitParamExtractString(payload, 'record_id') FROM {}.events WHERE record_id = '{}'",
            db.name, e.meta.record_id
        ))
        .await;
    let Body::Event(ev) = &e.body else { unreachable!() };
    let expect = format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
        e.meta.account_id,
        e.meta.timestamp.date_naive(),
        e.meta.timestamp.format("%Y-%m-%d %H:%M:%S"),
        e.meta.anonymous_id.as_deref().unwrap_or(""),
        ev.event_name,
        ev.campaign_id.as_deref().unwrap_or(""),
        ev.context.page_url.as_deref().unwrap_or(""),
        ev.context.utm_campaign.as_deref().unwrap_or(""),
        ev.context.ip.as_deref().unwrap_or(""),
        e.meta.record_id
    );
    assert_eq!(row, expect);
    // Link clicks per code: the records' own count, in both stores.
    for acct in [account(1), account(2)] {
        let mut expected: std::collections::HashMap<String, (i64, i64)> = std::collections::HashMap::new();
        let mut ids = std::collections::HashSet::new();
        for r in records.iter().filter(|r| r.meta.account_id == acct && ids.insert(r.meta.record_id.clone())) {
            if let Body::LinkClick(c) = &r.body {
                let Some(code) = &c.short_code else { continue };
                let e = expected.entry(code.to_string()).or_default();
                if c.bot {
                    e.1 += 1;
                } else {
                    e.0 += 1;
                }
            }
        }
        assert!(!expected.is_empty(), "the dataset has clicks of short links");
        assert_eq!(store.link_click_counts(acct).await.unwrap(), expected, "ClickHouse, {acct}");
        assert_eq!(sql.link_click_counts(acct).await.unwrap(), expected, "SQLite, {acct}");
    }
    // Journeys per path: the same in both stores.
    for acct in [account(1), account(2)] {
        let (from, to) = (day("2026-01-01"), day("2026-12-31"));
        assert_eq!(
            store.journey_paths(acct, from, to).await.unwrap(),
            sql.journey_paths(acct, from, to).await.unwrap(),
            "journeys of {acct}"
        );
    }
    // The BI view agrees with the store on every count and money column, and the currency.
    for acct in [account(1), account(2)] {
        let rows = store.daily_metrics(acct, day("2026-01-01"), day("2026-12-31")).await.unwrap();
        assert!(rows.iter().all(|r| r.currency.as_deref() == Some("EUR")), "the account's currency on every row: {rows:?}");
        let view = db
            .tsv(&format!(
                "SELECT campaign_id, advertisement_id, toString(metric_date), impressions, clicks, reach, sessions, toString(conversions), \
                 toString(revenue), toString(cost), ifNull(toString(cpc), 'null'), currency FROM {}.campaign_daily_report \
                 WHERE account_id = toUUID('{acct}') ORDER BY metric_date, campaign_id, advertisement_id",
                db.name
            ))
            .await;
        let from_store: String = rows
            .iter()
            .map(|r| {
                let cpc = r.cpc.map_or("null".to_owned(), |v| touchline_model::results::decimal_to_f64(v).to_string());
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.6}\t{:.6}\t{:.6}\t{}\t{}\n",
                    r.campaign_id,
                    r.advertisement_id,
                    r.metric_date,
                    r.impressions,
                    r.clicks,
                    r.reach,
                    r.sessions,
                    r.conversions,
                    r.revenue,
                    r.cost,
                    cpc,
                    r.currency.as_deref().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(view, from_store, "campaign_daily_report of {acct}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_repeated_after_a_crash_leaves_the_report_unchanged() {
    let db = TestDb::migrated("sink_crash").await;
    let records: Vec<Record> = dataset(120, 11).into_iter().filter(|r| partition_for(r.partition_key().as_bytes(), 1) == 0).collect();
    let (a, b) = records.split_at(records.len() / 2);
    let sink = ClickHouseSink::new(db.ch.clone());
    let store = ClickHouseStore::new(db.ch.clone());
    let cfg = config(0, 1);
    let mut e = Engine::new(cfg.clone());

    for r in a {
        e.ingest(r);
    }
    let fa = e.flush();
    sink.write(&SinkBatch { partition: 0, epoch: 1, raw: a, raw_offsets: &[], flush: &fa }).await.unwrap();
    let snapshot = e.snapshot();
    for r in b {
        e.ingest(r);
    }
    let fb = e.flush();
    assert!(!fb.attributions.is_empty() && !fb.metrics.is_empty());
    sink.write(&SinkBatch { partition: 0, epoch: 1, raw: b, raw_offsets: &[], flush: &fb }).await.unwrap();
    let expected = reports(&store).await;
    assert!(!expected[0].0.is_empty() && !expected[0].1.is_empty());
    let raw_total = db.count(&format!("SELECT count() FROM {}.touchpoints FINAL", db.name)).await;

    // The same batch written twice (the runtime retries a write whose answer it lost).
    sink.write(&SinkBatch { partition: 0, epoch: 1, raw: b, raw_offsets: &[], flush: &fb }).await.unwrap();
    assert_same_reports(&reports(&store).await, &expected, "same flush twice");

    // A crash after the write of B but before its checkpoint: the next start restores the
    // state after A, bumps the epoch and replays B.
    let mut restarted = Engine::restore(cfg, &snapshot).unwrap();
    for r in b {
        restarted.ingest(r);
    }
    let fb2 = restarted.flush();
    sink.write(&SinkBatch { partition: 0, epoch: 2, raw: b, raw_offsets: &[], flush: &fb2 }).await.unwrap();
    assert_same_reports(&reports(&store).await, &expected, "replayed after a restart");

    // A late write of an older epoch (a previous owner of the partition) after the newer one.
    sink.write(&SinkBatch { partition: 0, epoch: 1, raw: a, raw_offsets: &[], flush: &fa }).await.unwrap();
    assert_same_reports(&reports(&store).await, &expected, "older epoch after a newer one");

    // Raw tables hold each record once, before and after merges.
    assert_eq!(db.count(&format!("SELECT count() FROM {}.touchpoints FINAL", db.name)).await, raw_total);
    db.exec(&format!("OPTIMIZE TABLE {}.touchpoints FINAL", db.name)).await;
    db.exec(&format!("OPTIMIZE TABLE {}.campaign_daily_metrics FINAL", db.name)).await;
    db.exec(&format!("OPTIMIZE TABLE {}.attributions FINAL", db.name)).await;
    assert_eq!(db.count(&format!("SELECT count() FROM {}.touchpoints", db.name)).await, raw_total, "merged copies");
    assert_same_reports(&reports(&store).await, &expected, "after merges");

    // A replay clears the results first (its epochs start again).
    store.clear_results().await.unwrap();
    assert!(reports(&store).await.iter().all(|(m, a)| m.is_empty() && a.is_empty()));
}

fn journey(
    acct: Uuid,
    date: &str,
    channels: &str,
    partition: u32,
    conversions: u64,
    non_conversions: u64,
    revenue: &str,
) -> JourneyPartial {
    JourneyPartial {
        partition,
        account_id: acct,
        date: day(date),
        channels: channels.to_owned(),
        campaigns: channels.replace("email", "c1").replace("search", "c2"),
        conversions,
        non_conversions,
        revenue: revenue.parse().unwrap(),
    }
}

/// The journeys of a flush reach both stores and read back alike; a row the SQL store refuses
/// (its account is unknown there) comes back alone, as a `journeys` row for the DLQ, and a
/// late flush of an older epoch changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_of_a_flush_read_back_alike_in_both_stores() {
    let db = TestDb::migrated("sink_journeys").await;
    let dir = tempfile::tempdir().unwrap();
    let sql = sqlite(&dir).await;
    let ch_sink = ClickHouseSink::new(db.ch.clone());
    let sql_sink = SqlSink { store: sql.clone(), raw_rows: false };
    let store = ClickHouseStore::new(db.ch.clone());
    let unknown = Uuid::from_u128(0xdead);
    let first = Flush {
        journeys: vec![
            journey(account(1), "2026-03-01", "email > search", 0, 2, 1, "30.5"),
            journey(account(1), "2026-03-02", "email", 0, 0, 4, "0"),
            journey(unknown, "2026-03-01", "email", 0, 1, 0, "1"),
        ],
        ..Flush::default()
    };
    let second = Flush { journeys: vec![journey(account(1), "2026-03-02", "email > search", 1, 1, 0, "0.1234565")], ..Flush::default() };
    for (p, f) in [(0, &first), (1, &second)] {
        let batch = SinkBatch { partition: p, epoch: 2, raw: &[], raw_offsets: &[], flush: f };
        assert!(ch_sink.write(&batch).await.unwrap().is_empty(), "ClickHouse has no foreign keys");
        let refused = sql_sink.write(&batch).await.unwrap();
        if p == 0 {
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert_eq!((refused[0].kind, refused[0].key.as_str()), ("journeys", format!("{unknown}:2026-03-01:email:c1:0").as_str()));
        } else {
            assert!(refused.is_empty(), "{refused:?}");
        }
    }
    let (from, to) = (day("2026-03-01"), day("2026-03-02"));
    // email > search: 2 + 1 conversions, 30.5 + 0.123457 (rounded half away from zero).
    let expected = vec![
        JourneyPathRow {
            channels: "email".into(),
            campaigns: "c1".into(),
            conversions: 0,
            non_conversions: 4,
            revenue: "0".parse().unwrap(),
        },
        JourneyPathRow {
            channels: "email > search".into(),
            campaigns: "c1 > c2".into(),
            conversions: 3,
            non_conversions: 1,
            revenue: "30.623457".parse().unwrap(),
        },
    ];
    assert_eq!(store.journey_paths(account(1), from, to).await.unwrap(), expected, "ClickHouse");
    assert_eq!(sql.journey_paths(account(1), from, to).await.unwrap(), expected, "SQLite");
    // A previous owner of partition 0 flushing late (epoch 1) is ignored by both.
    let stale = Flush { journeys: vec![journey(account(1), "2026-03-01", "email > search", 0, 9, 9, "99")], ..Flush::default() };
    let batch = SinkBatch { partition: 0, epoch: 1, raw: &[], raw_offsets: &[], flush: &stale };
    ch_sink.write(&batch).await.unwrap();
    sql_sink.write(&batch).await.unwrap();
    db.exec(&format!("OPTIMIZE TABLE {}.journey_partials FINAL", db.name)).await;
    assert_eq!(store.journey_paths(account(1), from, to).await.unwrap(), expected, "ClickHouse after the stale flush and merges");
    assert_eq!(sql.journey_paths(account(1), from, to).await.unwrap(), expected, "SQLite after the stale flush");
}

#[tokio::test]
async fn a_failing_write_is_an_error_naming_the_table_and_nothing_is_buffered() {
    let db = TestDb::fresh("sink_fail").await; // no migration: the tables do not exist
    let records = dataset(5, 3);
    let sink = ClickHouseSink::new(db.ch.clone());
    let mut e = Engine::new(config(0, 1));
    for r in &records {
        e.ingest(r);
    }
    let out = e.flush();
    let err = sink.write(&SinkBatch { partition: 0, epoch: 1, raw: &records, raw_offsets: &[], flush: &out }).await.expect_err("no tables");
    assert!(err.0.contains(&format!("{}.", db.name)), "{err}");
    // Once the schema exists, the retried batch goes through.
    touchline_clickhouse::migrate(&db.ch).await.unwrap();
    sink.write(&SinkBatch { partition: 0, epoch: 1, raw: &records, raw_offsets: &[], flush: &out }).await.unwrap();
    assert_eq!(
        db.count(&format!("SELECT count() FROM {}.touchpoints FINAL", db.name)).await,
        records.iter().filter(|r| matches!(r.body, Body::Touchpoint(_))).count() as u64
    );
}

#[tokio::test]
async fn large_flushes_are_split_into_bounded_inserts() {
    let db = TestDb::migrated("sink_split").await;
    let cfg = touchline_clickhouse::ClickHouseConfig {
        max_insert_rows: 7,
        ..touchline_clickhouse::ClickHouseConfig::from_url(common::server()).with_database(&db.name)
    };
    let ch = touchline_clickhouse::connect(&cfg).await.unwrap();
    let records = dataset(30, 5);
    let sink = ClickHouseSink::new(ch);
    let n = sink.write_raw(&records).await.unwrap();
    assert_eq!(n, records.len() as u64);
    let touchpoints = records.iter().filter(|r| matches!(r.body, Body::Touchpoint(_))).count() as u64;
    assert!(touchpoints > 7, "the split path is exercised");
    assert_eq!(db.count(&format!("SELECT count() FROM {}.touchpoints FINAL", db.name)).await, touchpoints);
}
