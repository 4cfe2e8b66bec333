//! Embedded-log appends (records/s, durable: fsynced before the append returns), against a
//! baseline of the same bytes written with `write` + `fdatasync` per batch to one file.
//! Both sides run 64 concurrent appenders of one record each; the log shares fsyncs among
//! them (group commit), the baseline cannot.

use std::io::Write;
use std::sync::{Arc, Mutex};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use touchline_bus::{Bus, EmbeddedLog, LogConfig, OutRecord};

const APPENDERS: usize = 64;

fn value() -> Vec<u8> {
    br#"{"v":1,"type":"event","record_id":"0192f0c4-8c1e-7a4b-9f52-1c3b2d4e5f60","account_id":"00000000-0000-0000-0000-000000000001","timestamp":"2026-11-21T10:00:00Z","received_at":"2026-11-21T10:00:00.120Z","anonymous_id":"anon-1","event_name":"page_view","context":{"page_url":"https://shop.example/sale?utm_source=zalo","user_agent":"Mozilla/5.0"}}"#.to_vec()
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap_or_else(|e| panic!("runtime: {e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let log = rt
        .block_on(EmbeddedLog::open(dir.path().join("log"), LogConfig { retention_check_secs: 0, ..LogConfig::default() }))
        .unwrap_or_else(|e| panic!("open: {e}"));
    let file = Arc::new(Mutex::new(std::fs::File::create(dir.path().join("baseline.bin")).unwrap_or_else(|e| panic!("file: {e}"))));
    let v = value();
    let mut g = c.benchmark_group("durable_append_64_concurrent");
    g.throughput(Throughput::Elements(APPENDERS as u64));
    g.sample_size(20);
    g.bench_function("baseline_write_fdatasync_each", |b| {
        b.to_async(&rt).iter(|| {
            let file = file.clone();
            let v = v.clone();
            async move {
                let mut tasks = Vec::with_capacity(APPENDERS);
                for _ in 0..APPENDERS {
                    let file = file.clone();
                    let v = v.clone();
                    tasks.push(tokio::task::spawn_blocking(move || {
                        let mut f = file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        f.write_all(&v).and_then(|()| f.sync_data())
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            }
        })
    });
    g.bench_function("embedded_log_group_commit", |b| {
        b.to_async(&rt).iter(|| {
            let log = log.clone();
            let v = v.clone();
            async move {
                let mut tasks = Vec::with_capacity(APPENDERS);
                for i in 0..APPENDERS {
                    let log = log.clone();
                    let rec =
                        OutRecord { topic: "touchline.events".into(), key: format!("acct:anon-{i}"), value: v.clone(), timestamp_ms: 0 };
                    tasks.push(tokio::spawn(async move { log.append(vec![rec]).await }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
