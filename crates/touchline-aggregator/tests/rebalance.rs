//! Partitions moving between two aggregator instances (as a Kafka consumer group does on
//! rebalance) give the same results as one instance that owned everything: a revoked partition
//! is flushed, checkpointed (in the shared SQL store) and released before the other instance
//! takes it over from that checkpoint.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use touchline_aggregator::{AggStats, Aggregator, AggregatorConfig, FileCheckpoints, Sink, SqlCheckpoints, INPUT_TOPICS};
use touchline_bus::{Bus, BusError, EmbeddedLog, LogConfig, Membership, OutRecord, Position, StoredRecord};
use touchline_model::{decode_items, parse_body, DecodeOptions, Expect, Record, RequestCtx};
use touchline_sql::SqlSink;
use touchline_sql::{Account, Store};
use uuid::Uuid;

const ACCOUNT: Uuid = Uuid::from_u128(0x4eba1);
const GROUP: &str = "touchline-aggregator";

/// A membership the test moves by hand, recording what its owner released.
struct HandMembership {
    owned: tokio::sync::watch::Sender<Vec<u32>>,
    released: Mutex<Vec<u32>>,
}

impl HandMembership {
    fn new(owned: Vec<u32>) -> Arc<Self> {
        Arc::new(HandMembership { owned: tokio::sync::watch::Sender::new(owned), released: Mutex::new(Vec::new()) })
    }

    /// Revokes `parts` and waits until the owner has flushed and released them.
    async fn revoke(&self, parts: &[u32]) {
        self.released.lock().unwrap().clear();
        self.owned.send_modify(|o| o.retain(|p| !parts.contains(p)));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let released = self.released.lock().unwrap().clone();
            if parts.iter().all(|p| released.contains(p)) {
                return;
            }
            assert!(Instant::now() < deadline, "partitions {parts:?} not released (released: {released:?})");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn assign(&self, parts: &[u32]) {
        self.owned.send_modify(|o| {
            o.extend_from_slice(parts);
            o.sort_unstable();
        });
    }
}

impl Membership for HandMembership {
    fn owned(&self) -> tokio::sync::watch::Receiver<Vec<u32>> {
        self.owned.subscribe()
    }
    fn released(&self, partition: u32) {
        self.released.lock().unwrap().push(partition);
    }
}

/// The embedded log, with `join` handing out prepared memberships in order.
struct GroupBus {
    log: Arc<EmbeddedLog>,
    members: Mutex<VecDeque<Arc<HandMembership>>>,
}

#[async_trait]
impl Bus for GroupBus {
    fn partitions(&self) -> u32 {
        self.log.partitions()
    }
    async fn append(&self, records: Vec<OutRecord>) -> Result<Vec<Position>, BusError> {
        self.log.append(records).await
    }
    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize, wait: Duration) -> Result<Vec<StoredRecord>, BusError> {
        self.log.read(topic, partition, from, max, wait).await
    }
    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, BusError> {
        self.log.start_offset(topic, partition).await
    }
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, BusError> {
        self.log.end_offset(topic, partition).await
    }
    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<(), BusError> {
        self.log.commit(group, topic, partition, next_offset).await
    }
    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, BusError> {
        self.log.committed(group, topic, partition).await
    }
    async fn ready(&self) -> Result<(), BusError> {
        self.log.ready().await
    }
    async fn join(&self, _group: &str, _topics: &[&str]) -> Result<Arc<dyn Membership>, BusError> {
        let m = self.members.lock().unwrap().pop_front().ok_or(BusError::Config("no membership prepared".into()))?;
        Ok(m)
    }
}

/// Three waves of traffic: visitors touched by campaigns, some identify, some convert (also
/// server-side with only the customer id, so identity re-key records cross partitions).
fn wave(n: usize) -> Vec<Record> {
    let mut items = Vec::new();
    for i in 0..60 {
        let v = format!("v{n}-{i}");
        let day = 10 + n;
        items.push(serde_json::json!({"type": "touchpoint", "kind": "impression", "campaign_id": format!("c{}", i % 3),
            "anonymous_id": v, "timestamp": format!("2026-11-{day}T08:00:00Z"), "message_id": format!("imp-{v}")}));
        items.push(serde_json::json!({"type": "touchpoint", "kind": "click", "campaign_id": format!("c{}", (i + 1) % 3),
            "anonymous_id": v, "timestamp": format!("2026-11-{day}T09:00:00Z"), "message_id": format!("clk-{v}")}));
        items.push(serde_json::json!({"type": "event", "event_name": "page_view", "anonymous_id": v,
            "timestamp": format!("2026-11-{day}T09:01:00Z"), "message_id": format!("pv-{v}")}));
        if i % 2 == 0 {
            let u = format!("u{n}-{i}");
            items.push(serde_json::json!({"type": "identify", "anonymous_id": v, "customer_id": u,
                "timestamp": format!("2026-11-{day}T09:05:00Z"), "message_id": format!("id-{v}")}));
            items.push(serde_json::json!({"type": "conversion", "kind": "purchase", "customer_id": u, "value": format!("{}.50", 10 + i),
                "currency": "EUR", "order_id": format!("o-{v}"), "timestamp": format!("2026-11-{day}T10:00:00Z"), "message_id": format!("cv-{v}")}));
        }
        if n > 0 && i % 4 == 0 {
            // A repeat purchase by a customer of the previous wave: its credit depends on
            // touches the partition's state holds from before a rebalance.
            let u = format!("u{}-{i}", n - 1);
            items.push(serde_json::json!({"type": "conversion", "kind": "purchase", "customer_id": u, "value": "5",
                "currency": "EUR", "order_id": format!("r-{v}"), "timestamp": format!("2026-11-{day}T11:00:00Z"), "message_id": format!("rp-{v}")}));
        }
    }
    let body = serde_json::to_vec(&serde_json::json!({ "batch": items })).unwrap();
    let opts = DecodeOptions::default();
    let ctx = RequestCtx {
        account_id: ACCOUNT,
        received_at: format!("2026-11-{}T12:00:00Z", 10 + n).parse().unwrap(),
        ip: None,
        user_agent: None,
    };
    let out = decode_items(&parse_body(&body, &opts).unwrap(), &ctx, Expect::Any, &opts);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    out.records
}

async fn append(log: &EmbeddedLog, recs: &[Record]) {
    log.append(
        recs.iter().map(|r| OutRecord { topic: r.topic().into(), key: r.partition_key(), value: r.to_json(), timestamp_ms: 0 }).collect(),
    )
    .await
    .unwrap();
}

async fn store(dir: &std::path::Path, name: &str) -> Arc<dyn Store> {
    let s = touchline_sql::connect(&format!("sqlite://{}", dir.join(name).display())).await.unwrap();
    s.migrate().await.unwrap();
    // The traffic's money is in EUR: the account reports in it.
    s.upsert_account(&Account { currency: "EUR".into(), ..Account::new(ACCOUNT, "default") }).await.unwrap();
    s
}

fn aggregator(
    bus: Arc<dyn Bus>,
    store: &Arc<dyn Store>,
    catalog: Arc<touchline_sql::CatalogCache>,
    checkpoints: Arc<dyn touchline_aggregator::CheckpointStore>,
) -> Arc<Aggregator> {
    Arc::new(Aggregator {
        bus,
        sinks: vec![Arc::new(SqlSink { store: store.clone(), raw_rows: true }) as Arc<dyn Sink>],
        catalog,
        // Small flushes: many checkpoints per partition, so restarts rebuild states from their bases.
        config: AggregatorConfig { flush_interval_ms: 50, flush_records: 16, read_batch: 8, ..AggregatorConfig::default() },
        checkpoints,
        stats: Arc::new(AggStats::default()),
    })
}

/// Waits until the group has committed everything on every topic and partition (re-key records
/// included), stable for a moment.
async fn wait_caught_up(log: &EmbeddedLog) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stable = 0;
    while stable < 5 {
        let mut done = true;
        for t in INPUT_TOPICS {
            for p in 0..log.partitions() {
                let end = log.end_offset(t, p).await.unwrap();
                if end > 0 && log.committed(GROUP, t, p).await.unwrap() != Some(end) {
                    done = false;
                }
            }
        }
        stable = if done { stable + 1 } else { 0 };
        assert!(Instant::now() < deadline, "aggregators did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Results = (Vec<touchline_sql::DailyMetricRow>, BTreeMap<(String, String, String), (String, String)>);

async fn results(s: &dyn Store) -> Results {
    let metrics = s.daily_metrics(ACCOUNT, "2026-11-01".parse().unwrap(), "2026-11-30".parse().unwrap()).await.unwrap();
    // Attribution versions carry the writer's epoch; the rows themselves must agree.
    let attrs = s
        .attributions(ACCOUNT, None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| ((a.conversion_id, a.touchpoint_id, a.attribution_model), (a.weight.to_string(), a.attributed_revenue.to_string())))
        .collect();
    (metrics, attrs)
}

/// One uninterrupted instance owning every partition, every wave appended up front.
async fn reference(dir: &std::path::Path, cfg: &LogConfig, waves: &[Vec<Record>]) -> Results {
    let ref_log = EmbeddedLog::open(dir.join("ref-log"), cfg.clone()).await.unwrap();
    for w in waves {
        append(&ref_log, w).await;
    }
    let ref_store = store(dir, "ref.db").await;
    let ref_catalog = touchline_sql::CatalogCache::load(ref_store.clone(), Duration::from_secs(60)).await.unwrap();
    let reference =
        aggregator(ref_log.clone() as Arc<dyn Bus>, &ref_store, ref_catalog, Arc::new(FileCheckpoints { dir: dir.join("ref-state") }));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::time::timeout(Duration::from_secs(120), reference.run(rx, true)).await.expect("reference finishes").unwrap();
    results(ref_store.as_ref()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_moving_between_instances_give_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { partitions: 4, retention_check_secs: 0, ..LogConfig::default() };
    let waves = [wave(0), wave(1), wave(2)];

    let expected = reference(dir.path(), &cfg, &waves).await;
    assert!(expected.0.len() >= 9, "3 campaigns × 3 days of metrics, got {}", expected.0.len());
    assert_eq!(
        expected.1.keys().filter(|k| k.2 == "linear").map(|k| &k.0).collect::<std::collections::BTreeSet<_>>().len(),
        120,
        "90 conversions and 30 repeat purchases"
    );

    // Two instances sharing the partitions, checkpoints in the shared store.
    let log = EmbeddedLog::open(dir.path().join("log"), cfg).await.unwrap();
    let shared = store(dir.path(), "shared.db").await;
    let catalog = touchline_sql::CatalogCache::load(shared.clone(), Duration::from_secs(60)).await.unwrap();
    let a_m = HandMembership::new(vec![0, 1, 2, 3]);
    let b_m = HandMembership::new(vec![]);
    let bus = Arc::new(GroupBus { log: log.clone(), members: Mutex::new(VecDeque::from([a_m.clone(), b_m.clone()])) });
    let checkpoints =
        || Arc::new(SqlCheckpoints { store: shared.clone(), group: GROUP.into() }) as Arc<dyn touchline_aggregator::CheckpointStore>;
    let a = aggregator(bus.clone() as Arc<dyn Bus>, &shared, catalog.clone(), checkpoints());
    let b = aggregator(bus.clone() as Arc<dyn Bus>, &shared, catalog, checkpoints());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ta = tokio::spawn(a.clone().run(stop_rx.clone(), false));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tb = tokio::spawn(b.clone().run(stop_rx, false));

    append(&log, &waves[0]).await;
    wait_caught_up(&log).await;
    // Rebalance: B joins and takes partitions 2 and 3 from A.
    a_m.revoke(&[2, 3]).await;
    assert!(a.stats.lag_by_partition.lock().unwrap().keys().all(|p| *p < 2), "released partitions leave A's lag gauge");
    b_m.assign(&[2, 3]);
    append(&log, &waves[1]).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    // Rebalance in the middle of the wave: partition 3 goes back to A.
    b_m.revoke(&[3]).await;
    a_m.assign(&[3]);
    wait_caught_up(&log).await;
    append(&log, &waves[2]).await;
    wait_caught_up(&log).await;

    stop_tx.send(true).unwrap();
    ta.await.unwrap().unwrap();
    tb.await.unwrap().unwrap();
    assert!(b.stats.records.load(std::sync::atomic::Ordering::Relaxed) > 0, "B did consume its partitions");
    let got = results(shared.as_ref()).await;
    assert_eq!(got.0, expected.0, "daily metrics differ from the single-instance run");
    let only_got: Vec<_> = got.1.iter().filter(|(k, v)| expected.1.get(*k) != Some(*v)).take(12).collect();
    let only_expected: Vec<_> = expected.1.iter().filter(|(k, v)| got.1.get(*k) != Some(*v)).take(12).collect();
    assert!(
        only_got.is_empty() && only_expected.is_empty(),
        "attributions differ from the single-instance run: only here {only_got:?}; only in the reference {only_expected:?}"
    );
}

/// File checkpoints whose saves fail while `fail` is above zero (counting down). While
/// `fail_after_chain_save` is above zero, a checkpoint between snapshots is saved and then
/// reported failed, as when the process dies right after the save: its outbox is never
/// delivered by the run that made it.
struct FlakyCheckpoints {
    inner: FileCheckpoints,
    fail: std::sync::atomic::AtomicU32,
    fail_after_chain_save: std::sync::atomic::AtomicU32,
    /// Chain checkpoints saved without their outbox, counted while failing after the save.
    outboxes_left_to_recompute: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl touchline_aggregator::CheckpointStore for FlakyCheckpoints {
    async fn acquire(&self, partition: u32) -> Result<u32, String> {
        self.inner.acquire(partition).await
    }
    async fn load(&self, partition: u32) -> Result<Option<touchline_aggregator::checkpoint::Checkpoint>, String> {
        self.inner.load(partition).await
    }
    async fn save(&self, partition: u32, c: &touchline_aggregator::checkpoint::Checkpoint) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if self.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(format!("injected failure saving partition {partition}"));
        }
        self.inner.save(partition, c).await?;
        let on_chain = c.replay.as_ref().is_some_and(|r| !r.flushes.is_empty());
        if on_chain && self.fail_after_chain_save.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            if c.outbox.is_none() {
                self.outboxes_left_to_recompute.fetch_add(1, Ordering::SeqCst);
            }
            return Err(format!("injected failure after saving partition {partition}"));
        }
        Ok(())
    }
    async fn clear(&self) -> Result<(), String> {
        self.inner.clear().await
    }
    fn keeps_bases(&self) -> bool {
        self.inner.keeps_bases()
    }
    async fn save_base(&self, partition: u32, epoch: u32, name: &str, snapshot: &[u8]) -> Result<(), String> {
        self.inner.save_base(partition, epoch, name, snapshot).await
    }
    async fn load_base(&self, partition: u32, name: &str) -> Result<Vec<u8>, String> {
        self.inner.load_base(partition, name).await
    }
    async fn remove_bases_except(&self, partition: u32, epoch: u32, keep: &str) -> Result<(), String> {
        self.inner.remove_bases_except(partition, epoch, keep).await
    }
}

/// What a run through injected checkpoint failures left: the aggregator, its checkpoint
/// store, and the results next to those of an uninterrupted run.
struct FailureRun {
    agg: Arc<Aggregator>,
    checkpoints: Arc<FlakyCheckpoints>,
    expected: Results,
    got: Results,
}

/// Runs three waves through one aggregator; after the first, `arm` sets the failures to
/// inject. The aggregator runs on until every partition has caught up again.
async fn run_with_failures(arm: impl FnOnce(&FlakyCheckpoints)) -> FailureRun {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { partitions: 4, retention_check_secs: 0, ..LogConfig::default() };
    let waves = [wave(0), wave(1), wave(2)];

    let expected = reference(dir.path(), &cfg, &waves).await;

    let log = EmbeddedLog::open(dir.path().join("log"), cfg).await.unwrap();
    let st = store(dir.path(), "flaky.db").await;
    let catalog = touchline_sql::CatalogCache::load(st.clone(), Duration::from_secs(60)).await.unwrap();
    let checkpoints = Arc::new(FlakyCheckpoints {
        inner: FileCheckpoints { dir: dir.path().join("state") },
        fail: 0.into(),
        fail_after_chain_save: 0.into(),
        outboxes_left_to_recompute: 0.into(),
    });
    let agg = aggregator(log.clone() as Arc<dyn Bus>, &st, catalog, checkpoints.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(agg.clone().run(stop_rx, false));
    append(&log, &waves[0]).await;
    wait_caught_up(&log).await;
    arm(&checkpoints);
    append(&log, &waves[1]).await;
    append(&log, &waves[2]).await;
    wait_caught_up(&log).await;
    stop_tx.send(true).unwrap();
    run.await.unwrap().expect("the aggregator keeps running through partition failures");
    let got = results(st.as_ref()).await;
    FailureRun { agg, checkpoints, expected, got }
}

/// A partition whose task fails (here: checkpoint saves fail) restarts from its checkpoint
/// after a backoff; the process keeps its other partitions and the results are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_partition_restarts_from_its_checkpoint() {
    use std::sync::atomic::Ordering;
    // The next two saves fail: the partitions that hit them stop without a checkpoint.
    let FailureRun { agg, expected, got, .. } = run_with_failures(|c| c.fail.store(2, Ordering::SeqCst)).await;
    assert_eq!(agg.stats.partition_failures.load(Ordering::Relaxed), 2, "two partition tasks failed and restarted");
    // The restarted partitions rebuilt their state from a base snapshot and the records after it.
    assert!(agg.stats.records_fed_again.load(Ordering::Relaxed) > 0, "no state was rebuilt from its base");
    assert_eq!(got.0, expected.0, "daily metrics differ from the uninterrupted run");
    assert_eq!(got.1, expected.1, "attributions differ from the uninterrupted run");
    // Every stored attribution row came out of a flush (some of them more than once).
    let produced = agg.stats.attribution_rows.load(Ordering::Relaxed);
    assert!(produced >= got.1.len() as u64, "{produced} attribution rows produced, {} stored", got.1.len());
}

/// A checkpoint between snapshots stores no outbox: the restore computes it again from the
/// replay of the checkpoint's last flush. Here two partitions stop right after such a save,
/// before delivering anything, so their flush's results reach the store only through that
/// recomputation; the results must still equal the uninterrupted run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_not_delivered_before_a_failure_is_recomputed_on_restart() {
    use std::sync::atomic::Ordering;
    let FailureRun { agg, checkpoints, expected, got } = run_with_failures(|c| c.fail_after_chain_save.store(2, Ordering::SeqCst)).await;
    assert_eq!(agg.stats.partition_failures.load(Ordering::Relaxed), 2, "two partition tasks failed and restarted");
    assert_eq!(checkpoints.outboxes_left_to_recompute.load(Ordering::SeqCst), 2, "both checkpoints were saved without their outbox");
    assert_eq!(got.0, expected.0, "daily metrics differ from the uninterrupted run");
    assert_eq!(got.1, expected.1, "attributions differ from the uninterrupted run");
}
