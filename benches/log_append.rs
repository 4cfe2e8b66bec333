//! Embedded-log appends (records/s, durable: fsynced before the append returns), against a
//! baseline of the same bytes appended to one plain file with the simplest correct group commit.
//! Every side runs 64 concurrent appenders of one record each and checks every append's result
//! (a failed append fails the bench).
//!
//! * `baseline_file_group_commit`: appenders push their bytes to a queue; one writer thread
//!   takes everything queued, writes it with one `write`, runs one `fdatasync`, then
//!   acknowledges every append of the group. This is what any durable writer can do without a
//!   log, so the ratio measures the embedded log's own cost (framing, partitioning, offsets,
//!   index) and not the mere fact that it groups fsyncs.
//! * `naive_fsync_per_record`: `write` + `fdatasync` per record under one mutex, the writer that
//!   cannot share fsyncs, for reference (the earlier baseline).
//! * `embedded_log_group_commit`: [`EmbeddedLog::append`] (8 partitions, each with its own
//!   segment file, and one committer whose journal fsync covers them all).

use std::fs::File;
use std::io::Write;
use std::sync::{mpsc, Arc, Mutex};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::sync::oneshot;
use touchline_bus::{Bus, EmbeddedLog, LogConfig, OutRecord};

const APPENDERS: usize = 64;

fn value() -> Vec<u8> {
    br#"{"v":1,"type":"event","record_id":"0192f0c4-8c1e-7a4b-9f52-1c3b2d4e5f60","account_id":"00000000-0000-0000-0000-000000000001","timestamp":"2026-11-21T10:00:00Z","received_at":"2026-11-21T10:00:00.120Z","anonymous_id":"anon-1","event_name":"page_view","context":{"page_url":"https://shop.example/sale?utm_source=zalo","user_agent":"Mozilla/5.0"}}"#.to_vec()
}

/// One append queued to the group-commit file writer: its bytes and where to acknowledge it.
struct QueuedAppend {
    bytes: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The baseline's writer thread: waits for an append, takes everything else queued by then,
/// writes the group with one `write`, makes it durable with one `fdatasync`, then answers every
/// append of the group. Returns when every sender is gone.
fn group_commit_writer(mut file: File, queue: mpsc::Receiver<QueuedAppend>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        group.extend(queue.try_iter());
        let mut buf = Vec::with_capacity(group.iter().map(|a| a.bytes.len()).sum());
        for a in &group {
            buf.extend_from_slice(&a.bytes);
        }
        let result = file.write_all(&buf).and_then(|()| file.sync_data()).map_err(|e| format!("write + fdatasync: {e}"));
        for a in group {
            // The appender awaits its answer; if it is gone, nobody is left to tell.
            a.done.send(result.clone()).ok();
        }
    }
}

/// Awaits every appender task and fails the bench on the first failed append.
async fn check_all<E: std::fmt::Display>(side: &str, tasks: Vec<tokio::task::JoinHandle<Result<(), E>>>) {
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{side}: append failed: {e}"),
            Err(e) => panic!("{side}: appender task failed: {e}"),
        }
    }
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap_or_else(|e| panic!("runtime: {e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let log = rt
        .block_on(EmbeddedLog::open(dir.path().join("log"), LogConfig { retention_check_secs: 0, ..LogConfig::default() }))
        .unwrap_or_else(|e| panic!("open: {e}"));
    let grouped_file = File::create(dir.path().join("baseline_grouped.bin")).unwrap_or_else(|e| panic!("file: {e}"));
    let (queue, queued) = mpsc::channel::<QueuedAppend>();
    let writer = std::thread::Builder::new()
        .name("baseline-group-commit".into())
        .spawn(move || group_commit_writer(grouped_file, queued))
        .unwrap_or_else(|e| panic!("writer thread: {e}"));
    let naive_file = Arc::new(Mutex::new(File::create(dir.path().join("naive.bin")).unwrap_or_else(|e| panic!("file: {e}"))));
    let v = value();

    let mut g = c.benchmark_group("durable_append_64_concurrent");
    g.throughput(Throughput::Elements(APPENDERS as u64));
    g.sample_size(20);
    g.bench_function("baseline_file_group_commit", |b| {
        b.to_async(&rt).iter(|| {
            let queue = queue.clone();
            let v = v.clone();
            async move {
                let mut tasks = Vec::with_capacity(APPENDERS);
                for _ in 0..APPENDERS {
                    let queue = queue.clone();
                    let bytes = v.clone();
                    tasks.push(tokio::spawn(async move {
                        let (done, answer) = oneshot::channel();
                        queue.send(QueuedAppend { bytes, done }).map_err(|_| "the writer thread has stopped".to_owned())?;
                        answer.await.map_err(|_| "the writer thread dropped the append".to_owned())?
                    }));
                }
                check_all("baseline_file_group_commit", tasks).await;
            }
        })
    });
    g.bench_function("naive_fsync_per_record", |b| {
        b.to_async(&rt).iter(|| {
            let file = naive_file.clone();
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
                check_all("naive_fsync_per_record", tasks).await;
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
                    tasks.push(tokio::spawn(async move {
                        let positions = log.append(vec![rec]).await.map_err(|e| e.to_string())?;
                        if positions.len() == 1 {
                            Ok(())
                        } else {
                            Err(format!("one record appended, {} positions returned", positions.len()))
                        }
                    }));
                }
                check_all("embedded_log_group_commit", tasks).await;
            }
        })
    });
    g.finish();

    drop(queue);
    writer.join().unwrap_or_else(|_| panic!("the baseline's writer thread panicked"));
}

criterion_group!(benches, append);
criterion_main!(benches);
