//! What the aggregator's catalog tests share: records decoded as the collector decodes them,
//! an aggregator over an embedded log and a SQL store, and a bounded wait.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use touchline_aggregator::{AggStats, Aggregator, AggregatorConfig, FileCheckpoints, Sink};
use touchline_bus::{Bus, EmbeddedLog, OutRecord};
use touchline_model::{decode_items, parse_body, DecodeOptions, Expect, RequestCtx};
use touchline_sql::{SqlSink, Store};
use uuid::Uuid;

/// The bus records of a `{"batch": [...]}` body of `account`, received on 2026-11-21 (every
/// item must decode).
pub fn bus_records(account: Uuid, batch: &serde_json::Value) -> Vec<OutRecord> {
    let body = serde_json::to_vec(batch).unwrap();
    let opts = DecodeOptions::default();
    let ctx = RequestCtx { account_id: account, received_at: "2026-11-21T00:00:00Z".parse().unwrap(), ip: None, user_agent: None };
    let decoded = decode_items(&parse_body(&body, &opts).unwrap(), &ctx, Expect::Any, &opts);
    assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
    decoded
        .records
        .iter()
        .map(|r| OutRecord { topic: r.topic().into(), key: r.partition_key(), value: r.to_json(), timestamp_ms: 0 })
        .collect()
}

/// An aggregator of `log` into `store`, flushing every 50 ms, checkpointing under `state`.
/// Snapshots far apart: the checkpoints between them are chains of offsets over a base.
pub fn aggregator(
    log: &Arc<EmbeddedLog>,
    store: &Arc<dyn Store>,
    catalog: Arc<touchline_sql::CatalogCache>,
    state: &std::path::Path,
) -> Arc<Aggregator> {
    let config = AggregatorConfig { flush_interval_ms: 50, snapshot_records: 1_000_000, ..AggregatorConfig::default() };
    Arc::new(Aggregator {
        bus: log.clone() as Arc<dyn Bus>,
        sinks: vec![Arc::new(SqlSink { store: store.clone(), raw_rows: true }) as Arc<dyn Sink>],
        catalog,
        config,
        checkpoints: Arc::new(FileCheckpoints { dir: state.to_path_buf() }),
        stats: Arc::new(AggStats::default()),
    })
}

/// Waits until `ok` holds; fails naming `what` after 30 s.
pub async fn wait_for(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !ok().await {
        assert!(started.elapsed() < Duration::from_secs(30), "{what} did not happen within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
