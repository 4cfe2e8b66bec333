#![allow(clippy::unwrap_used)]
mod common;
use std::time::Duration;
use touchline_bus::{Bus, OutRecord, partition_for_key};
use touchline_kafka::KafkaBus;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbg() {
    let topic = format!("{}.redeliver", common::prefix("dbg"));
    let key = "acct:redeliver";
    let bus = KafkaBus::connect(common::config(4)).unwrap();
    let p = partition_for_key(key, 4);
    let recs = (0..10).map(|i| OutRecord { topic: topic.clone(), key: key.into(), value: format!("r{i}").into_bytes(), timestamp_ms: 1 }).collect();
    let pos = bus.append(recs).await.unwrap();
    eprintln!("pos {pos:?}");
    eprintln!("wm {:?}", bus.watermarks(&topic, p).await);
    let first = bus.read(&topic, p, 0, 4, Duration::from_secs(5)).await.unwrap();
    eprintln!("first {:?}", first.iter().map(|r| r.offset).collect::<Vec<_>>());
    bus.commit("worker", &topic, p, 4).await.unwrap();
    eprintln!("committed {:?}", bus.committed("worker", &topic, p).await);
    let bus2 = KafkaBus::connect(common::config(4)).unwrap();
    eprintln!("committed2 {:?}", bus2.committed("worker", &topic, p).await);
    eprintln!("wm2 {:?}", bus2.watermarks(&topic, p).await);
    let again = bus2.read(&topic, p, 4, 100, Duration::from_secs(5)).await.unwrap();
    eprintln!("again {:?}", again.iter().map(|r| r.offset).collect::<Vec<_>>());
}
