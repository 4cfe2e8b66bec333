//! A sink that is down pauses consumption (bounded memory) and nothing is lost when it returns.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use touchline_aggregator::{AggStats, Aggregator, AggregatorConfig, RefusedRow, Sink, SinkBatch, SinkError};
use touchline_bus::{Bus, EmbeddedLog, LogConfig, OutRecord};
use touchline_model::{decode_items, parse_body, DecodeOptions, Expect, RequestCtx};
use touchline_sql::Account;
use touchline_sql::SqlSink;
use uuid::Uuid;

const ACCOUNT: Uuid = Uuid::from_u128(0xbac);

/// Fails its first `failures` writes (the database is "down"), then delegates to the real sink.
struct FlakySink {
    inner: SqlSink,
    failures: AtomicUsize,
    stats: Arc<AggStats>,
    /// Most records the aggregator had consumed while the sink was failing.
    consumed_while_down: AtomicU64,
}

#[async_trait]
impl Sink for FlakySink {
    fn name(&self) -> &str {
        "flaky"
    }

    async fn write(&self, batch: &SinkBatch<'_>) -> Result<Vec<RefusedRow>, SinkError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            self.consumed_while_down.fetch_max(self.stats.records.load(Ordering::SeqCst), Ordering::SeqCst);
            return Err(SinkError("database is down".into()));
        }
        self.inner.write(batch).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_pauses_consumption_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), LogConfig { partitions: 2, retention_check_secs: 0, ..LogConfig::default() })
        .await
        .unwrap();
    // 400 impressions of campaign c1 by 400 visitors on one day.
    let items: Vec<serde_json::Value> = (0..400)
        .map(|i| {
            serde_json::json!({"type": "touchpoint", "kind": "impression", "campaign_id": "c1", "anonymous_id": format!("v{i}"),
                                    "timestamp": "2026-11-20T10:00:00Z", "message_id": format!("t{i}")})
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "batch": items })).unwrap();
    let opts = DecodeOptions::default();
    let ctx = RequestCtx { account_id: ACCOUNT, received_at: "2026-11-21T00:00:00Z".parse().unwrap(), ip: None, user_agent: None };
    let recs = decode_items(&parse_body(&body, &opts).unwrap(), &ctx, Expect::Any, &opts).records;
    log.append(
        recs.iter().map(|r| OutRecord { topic: r.topic().into(), key: r.partition_key(), value: r.to_json(), timestamp_ms: 0 }).collect(),
    )
    .await
    .unwrap();

    let store = touchline_sql::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    store.migrate().await.unwrap();
    store.upsert_account(&Account::new(ACCOUNT, "default")).await.unwrap();
    let catalog = touchline_sql::CatalogCache::load(store.clone(), Duration::from_secs(60)).await.unwrap();
    let stats = Arc::new(AggStats::default());
    let sink = Arc::new(FlakySink {
        inner: SqlSink { store: store.clone(), raw_rows: true },
        failures: AtomicUsize::new(6),
        stats: stats.clone(),
        consumed_while_down: AtomicU64::new(0),
    });
    let config = AggregatorConfig { flush_records: 50, read_batch: 10, ..AggregatorConfig::default() };
    let agg = Arc::new(Aggregator {
        bus: log.clone() as Arc<dyn Bus>,
        sinks: vec![sink.clone() as Arc<dyn Sink>],
        catalog,
        config,
        checkpoints: Arc::new(touchline_aggregator::FileCheckpoints { dir: dir.path().join("state") }),
        stats: stats.clone(),
    });
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::time::timeout(Duration::from_secs(60), agg.run(rx, true)).await.expect("finishes").unwrap();

    assert_eq!(sink.failures.load(Ordering::SeqCst), 0, "every failure was retried");
    assert_eq!(stats.sink_errors.load(Ordering::SeqCst), 6);
    // While the sink was down each partition held at most one flush batch (50 records, plus
    // one read of 10 per topic) and stopped reading.
    let bound = 2 * (50 + 7 * 10);
    let while_down = sink.consumed_while_down.load(Ordering::SeqCst);
    assert!(while_down <= bound as u64, "consumed {while_down} records while the sink was down (bound {bound})");
    // Nothing lost: all 400 impressions and 400 visitors are in the published metrics.
    let rows = store.daily_metrics(ACCOUNT, "2026-11-20".parse().unwrap(), "2026-11-20".parse().unwrap()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].impressions, rows[0].reach), (400, 400));
    assert_eq!(stats.lag(), 0);
}
