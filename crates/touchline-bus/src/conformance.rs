//! One conformance suite for every [`Bus`] implementation. Each check takes a topic prefix so
//! that every run uses its own topics, and a function that opens the bus (called again to
//! simulate a consumer that crashed and restarted).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{partition_for_key, Bus, OutRecord};

fn rec(topic: &str, key: &str, value: String) -> OutRecord {
    OutRecord { topic: topic.to_owned(), key: key.to_owned(), value: value.into_bytes(), timestamp_ms: 1_700_000_000_000 }
}

async fn read_all(bus: &dyn Bus, topic: &str, partition: u32, from: u64) -> Vec<crate::StoredRecord> {
    let end = bus.end_offset(topic, partition).await.expect("end_offset");
    let mut out = Vec::new();
    let mut next = from;
    while next < end {
        let batch = bus.read(topic, partition, next, 1000, Duration::from_secs(5)).await.expect("read");
        assert!(!batch.is_empty(), "read from {next} returned nothing before the end offset {end}");
        next = batch.last().map_or(next, |r| r.offset + 1);
        out.extend(batch);
    }
    out
}

/// Records of one key keep their order; offsets grow by one per partition; the partition is the
/// Kafka partitioner's; a read from an offset starts exactly there.
pub async fn ordering_and_offsets(bus: &dyn Bus, prefix: &str) {
    let topic = format!("{prefix}.order");
    let keys = ["acct:alice", "acct:bob", "acct:carol", "acct:dave", "acct:erin"];
    let mut sent: HashMap<&str, Vec<String>> = HashMap::new();
    let mut positions = Vec::new();
    for round in 0..20 {
        let batch: Vec<OutRecord> = keys.iter().map(|k| rec(&topic, k, format!("{k}#{round}"))).collect();
        for k in keys {
            sent.entry(k).or_default().push(format!("{k}#{round}"));
        }
        let pos = bus.append(batch).await.expect("append");
        assert_eq!(pos.len(), keys.len());
        for (k, p) in keys.iter().zip(&pos) {
            assert_eq!(p.partition, partition_for_key(k, bus.partitions()), "partition of {k}");
        }
        positions.extend(pos);
    }
    for p in 0..bus.partitions() {
        let start = bus.start_offset(&topic, p).await.expect("start_offset");
        let records = read_all(bus, &topic, p, start).await;
        for w in records.windows(2) {
            assert_eq!(w[1].offset, w[0].offset + 1, "offsets are dense within a partition");
        }
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        for r in &records {
            assert_eq!(r.partition, p);
            assert_eq!(r.topic, topic);
            by_key.entry(r.key.clone()).or_default().push(String::from_utf8(r.value.clone()).expect("utf8"));
        }
        for (k, vals) in by_key {
            assert_eq!(&vals, &sent[k.as_str()], "order of key {k}");
        }
        // Reading from the middle starts there.
        if records.len() > 3 {
            let mid = records[records.len() / 2].offset;
            let tail = bus.read(&topic, p, mid, 2, Duration::ZERO).await.expect("read");
            assert_eq!(tail.first().map(|r| r.offset), Some(mid));
            assert_eq!(tail.len(), 2, "max is respected");
        }
    }
    let total: usize = positions.len();
    assert_eq!(total, 100);
}

/// A read at the end waits for new records, and returns empty after the wait when none come.
pub async fn read_waits_for_new_records(bus: Arc<dyn Bus>, prefix: &str) {
    let topic = format!("{prefix}.wait");
    let p = partition_for_key("acct:k", bus.partitions());
    let end = bus.end_offset(&topic, p).await.expect("end_offset");
    let empty = bus.read(&topic, p, end, 10, Duration::from_millis(50)).await.expect("read");
    assert!(empty.is_empty());
    let b2 = bus.clone();
    let t2 = topic.clone();
    let reader = tokio::spawn(async move { b2.read(&t2, p, end, 10, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.append(vec![rec(&topic, "acct:k", "late".into())]).await.expect("append");
    let got = reader.await.expect("join").expect("read");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, b"late");
}

/// Committed offsets are stored per group, topic and partition, and survive a reopen.
pub async fn commit_and_resume<F, Fut>(open: F, prefix: &str)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Bus>>,
{
    let topic = format!("{prefix}.commit");
    {
        let bus = open().await;
        assert_eq!(bus.committed("g1", &topic, 0).await.expect("committed"), None);
        bus.commit("g1", &topic, 0, 17).await.expect("commit");
        bus.commit("g2", &topic, 0, 3).await.expect("commit");
        bus.commit("g1", &topic, 1, 5).await.expect("commit");
        bus.commit("g1", &topic, 0, 18).await.expect("commit");
    }
    let bus = open().await;
    assert_eq!(bus.committed("g1", &topic, 0).await.expect("committed"), Some(18));
    assert_eq!(bus.committed("g2", &topic, 0).await.expect("committed"), Some(3));
    assert_eq!(bus.committed("g1", &topic, 1).await.expect("committed"), Some(5));
    assert_eq!(bus.committed("g3", &topic, 0).await.expect("committed"), None);
}

/// A consumer that read records but crashed before committing gets them again; records after
/// its commit are delivered again, records before are not.
pub async fn redelivery_after_uncommitted_crash<F, Fut>(open: F, prefix: &str)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Bus>>,
{
    let topic = format!("{prefix}.redeliver");
    let key = "acct:redeliver";
    let p;
    {
        let bus = open().await;
        p = partition_for_key(key, bus.partitions());
        let recs = (0..10).map(|i| rec(&topic, key, format!("r{i}"))).collect();
        bus.append(recs).await.expect("append");
        let start = bus.start_offset(&topic, p).await.expect("start");
        let first = bus.read(&topic, p, start, 4, Duration::from_secs(5)).await.expect("read");
        assert_eq!(first.len(), 4);
        // Process 4, commit them; then read 3 more and "crash" before committing.
        bus.commit("worker", &topic, p, first[3].offset + 1).await.expect("commit");
        let more = bus.read(&topic, p, first[3].offset + 1, 3, Duration::from_secs(5)).await.expect("read");
        assert_eq!(more.len(), 3);
    }
    let bus = open().await;
    let resume = bus.committed("worker", &topic, p).await.expect("committed").expect("a committed offset");
    let again = read_all(bus.as_ref(), &topic, p, resume).await;
    let values: Vec<String> = again.iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect();
    assert_eq!(values, (4..10).map(|i| format!("r{i}")).collect::<Vec<_>>());
}

/// Many concurrent appenders: every acknowledged record is readable exactly once.
pub async fn concurrent_appends(bus: Arc<dyn Bus>, prefix: &str) {
    let topic = format!("{prefix}.concurrent");
    let mut tasks = Vec::new();
    for w in 0..16 {
        let bus = bus.clone();
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..25 {
                let key = format!("acct:w{w}");
                let pos = bus.append(vec![rec(&topic, &key, format!("w{w}-{i}"))]).await.expect("append");
                acked.push((pos[0], format!("w{w}-{i}")));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("join"));
    }
    let mut seen = HashMap::new();
    for p in 0..bus.partitions() {
        let start = bus.start_offset(&topic, p).await.expect("start");
        for r in read_all(bus.as_ref(), &topic, p, start).await {
            assert!(seen.insert((r.partition, r.offset), String::from_utf8_lossy(&r.value).into_owned()).is_none());
        }
    }
    assert_eq!(seen.len(), 16 * 25);
    for (pos, value) in acked {
        assert_eq!(seen.get(&(pos.partition, pos.offset)), Some(&value), "acknowledged record at {pos:?}");
    }
}
