//! Produce throughput with the delivery awaited (records/s): the Kafka bus (idempotent
//! producer, acks=all, lz4, linger 5 ms) against the embedded log (fsynced group commit), in
//! the same run, with the same records.
//!
//! * `concurrent_64x1`: 64 concurrent appends of one record each (the collector's shape: many
//!   small requests).
//! * `batch_1000`: one append of 1000 records (a large `/v1/batch`).
//!
//! The broker is `TOUCHLINE_TEST_KAFKA` (default 127.0.0.1:9092; `scripts/tansu.sh` starts
//! one). Without a broker the bench fails, unless `TOUCHLINE_BENCH_SKIP_KAFKA=1`, which
//! measures the embedded log only.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use touchline_bus::{Bus, EmbeddedLog, LogConfig, OutRecord};
use touchline_kafka::{ensure_topics, KafkaBus, KafkaConfig};

const CONCURRENT: usize = 64;
const BATCH: usize = 1000;

fn value() -> Vec<u8> {
    br#"{"v":1,"type":"event","record_id":"0192f0c4-8c1e-7a4b-9f52-1c3b2d4e5f60","account_id":"00000000-0000-0000-0000-000000000001","timestamp":"2026-11-21T10:00:00Z","received_at":"2026-11-21T10:00:00.120Z","anonymous_id":"anon-1","event_name":"page_view","context":{"page_url":"https://shop.example/sale?utm_source=zalo","user_agent":"Mozilla/5.0"}}"#.to_vec()
}

fn rec(topic: &str, i: usize, v: &[u8]) -> OutRecord {
    OutRecord {
        topic: topic.to_owned(),
        key: format!("00000000-0000-0000-0000-000000000001:anon-{i}"),
        value: v.to_vec(),
        timestamp_ms: 1_763_719_200_000,
    }
}

fn kafka_bus(rt: &tokio::runtime::Runtime, topic: &str) -> Option<Arc<dyn Bus>> {
    let broker = std::env::var("TOUCHLINE_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let up = broker.parse().ok().is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if !up {
        if std::env::var("TOUCHLINE_BENCH_SKIP_KAFKA").is_ok_and(|v| v == "1") {
            eprintln!("produce bench: no Kafka broker at {broker}; measuring the embedded log only");
            return None;
        }
        panic!("produce bench: no Kafka broker at {broker}: run scripts/tansu.sh (or set TOUCHLINE_BENCH_SKIP_KAFKA=1)");
    }
    let cfg = KafkaConfig { partitions: 8, client_id: "touchline-bench".into(), ..KafkaConfig::new(broker) };
    rt.block_on(ensure_topics(&cfg, &[topic])).unwrap_or_else(|e| panic!("create {topic}: {e}"));
    let bus = KafkaBus::connect(cfg).unwrap_or_else(|e| panic!("kafka: {e}"));
    rt.block_on(bus.ready()).unwrap_or_else(|e| panic!("kafka not ready: {e}"));
    Some(bus)
}

fn produce(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap_or_else(|e| panic!("runtime: {e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let log: Arc<dyn Bus> = rt
        .block_on(EmbeddedLog::open(dir.path().join("log"), LogConfig { retention_check_secs: 0, ..LogConfig::default() }))
        .unwrap_or_else(|e| panic!("open: {e}"));
    let topic = format!("bench-produce-{}", uuid::Uuid::new_v4().simple());
    let mut buses: Vec<(&str, Arc<dyn Bus>)> = vec![("baseline_embedded_log", log)];
    if let Some(k) = kafka_bus(&rt, &topic) {
        buses.push(("kafka", k));
    }
    let v = value();

    let mut g = c.benchmark_group("produce_delivery_awaited_concurrent_64x1");
    g.throughput(Throughput::Elements(CONCURRENT as u64));
    g.sample_size(20);
    for (name, bus) in &buses {
        g.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| {
                let bus = bus.clone();
                let (v, topic) = (v.clone(), topic.clone());
                async move {
                    let mut tasks = Vec::with_capacity(CONCURRENT);
                    for i in 0..CONCURRENT {
                        let bus = bus.clone();
                        let r = rec(&topic, i, &v);
                        tasks.push(tokio::spawn(async move { bus.append(vec![r]).await }));
                    }
                    for t in tasks {
                        if let Ok(Err(e)) = t.await {
                            panic!("append: {e}");
                        }
                    }
                }
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("produce_delivery_awaited_batch_1000");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    for (name, bus) in &buses {
        let batch: Vec<OutRecord> = (0..BATCH).map(|i| rec(&topic, i, &v)).collect();
        g.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| {
                let bus = bus.clone();
                let batch = batch.clone();
                async move {
                    if let Err(e) = bus.append(batch).await {
                        panic!("append: {e}");
                    }
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, produce);
criterion_main!(benches);
