//! The embedded log: the Bus conformance suite, crash recovery and retention.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use touchline_bus::{conformance, Bus, EmbeddedLog, LogConfig, OutRecord};

fn small() -> LogConfig {
    LogConfig { partitions: 4, segment_bytes: 4096, retention_check_secs: 0, ..LogConfig::default() }
}

/// Opens the log, waiting up to 5 s for a handle dropped just before (a reopen) to release its
/// lock: its background tasks end on the runtime's next turns, not at the drop.
async fn open(dir: &Path, cfg: LogConfig) -> Arc<EmbeddedLog> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match EmbeddedLog::open(dir, cfg.clone()).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline && e.to_string().contains("in use") => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("open log: {e}"),
        }
    }
}

fn opener(dir: PathBuf) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Arc<dyn Bus>>>> {
    move || {
        let dir = dir.clone();
        Box::pin(async move { open(&dir, small()).await as Arc<dyn Bus> })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn Bus> = open(dir.path(), small()).await;
    conformance::ordering_and_offsets(bus.as_ref(), "conf").await;
    conformance::read_waits_for_new_records(bus.clone(), "conf").await;
    conformance::concurrent_appends(bus.clone(), "conf").await;
    drop(bus);
    let dir2 = tempfile::tempdir().unwrap();
    conformance::commit_and_resume(opener(dir2.path().to_path_buf()), "conf").await;
    let dir3 = tempfile::tempdir().unwrap();
    conformance::redelivery_after_uncommitted_crash(opener(dir3.path().to_path_buf()), "conf").await;
}

fn rec(topic: &str, key: &str, value: &str, ts: i64) -> OutRecord {
    OutRecord { topic: topic.into(), key: key.into(), value: value.as_bytes().to_vec(), timestamp_ms: ts }
}

#[tokio::test]
async fn reopen_keeps_records_and_segments_roll() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), small()).await;
        for i in 0..200 {
            log.append(vec![rec("t", "acct:a", &format!("value-{i:04}-{}", "x".repeat(40)), i)]).await.unwrap();
        }
    }
    let log = open(dir.path(), small()).await;
    let p = touchline_bus::partition_for_key("acct:a", 4);
    let seg_dir = dir.path().join("topics/t").join(p.to_string());
    let segments = std::fs::read_dir(&seg_dir).unwrap().count();
    assert!(segments > 2, "4 KiB segments must have rolled, found {segments}");
    assert_eq!(log.end_offset("t", p).await.unwrap(), 200);
    let got = log.read("t", p, 150, 100, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 50);
    assert_eq!(got[0].offset, 150);
    assert!(String::from_utf8_lossy(&got[0].value).starts_with("value-0150"));
    // Appends continue at the right offset after reopen.
    let pos = log.append(vec![rec("t", "acct:a", "after", 0)]).await.unwrap();
    assert_eq!(pos[0].offset, 200);
}

#[tokio::test]
async fn torn_tail_is_cut_and_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let p = touchline_bus::partition_for_key("acct:a", 4);
    {
        let log = open(dir.path(), LogConfig { segment_bytes: 1 << 20, ..small() }).await;
        for i in 0..10 {
            log.append(vec![rec("t", "acct:a", &format!("v{i}"), i)]).await.unwrap();
        }
    }
    let seg = dir.path().join("topics/t").join(p.to_string()).join(format!("{:020}.log", 0));
    let full = std::fs::read(&seg).unwrap();
    // 1) A crash mid-write: half of a new frame at the end.
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&full[..full.len() / 10 / 2]).unwrap();
    drop(f);
    {
        let log = open(dir.path(), small()).await;
        assert_eq!(log.end_offset("t", p).await.unwrap(), 10);
        let got = log.read("t", p, 0, 100, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 10);
        assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, full.len(), "tail cut back to the last whole frame");
    }
    // 2) A flipped bit in the last frame: it and only it is dropped.
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let log = open(dir.path(), small()).await;
    assert_eq!(log.end_offset("t", p).await.unwrap(), 9);
    let got = log.read("t", p, 0, 100, Duration::ZERO).await.unwrap();
    let values: Vec<_> = got.iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect();
    assert_eq!(values, (0..9).map(|i| format!("v{i}")).collect::<Vec<_>>());
    // The next append reuses offset 9.
    assert_eq!(log.append(vec![rec("t", "acct:a", "v9b", 0)]).await.unwrap()[0].offset, 9);
}

#[tokio::test]
async fn retention_by_age_and_size_respects_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { partitions: 1, segment_bytes: 1024, retention_secs: 3600, retention_bytes: 0, ..small() };
    let log = open(dir.path(), cfg).await;
    let now = 10_000_000_000i64;
    for i in 0..60 {
        // Old records first, then recent ones.
        let ts = if i < 40 { now - 7_200_000 } else { now };
        log.append(vec![rec("t", "k", &"x".repeat(100), ts)]).await.unwrap();
    }
    // A consumer that has processed only 10 records holds the old segments.
    log.commit("agg", "t", 0, 10).await.unwrap();
    let removed_held = log.enforce_retention(now).await.unwrap();
    assert!(log.start_offset("t", 0).await.unwrap() <= 10, "uncommitted records kept");
    log.commit("agg", "t", 0, 60).await.unwrap();
    let removed = log.enforce_retention(now).await.unwrap();
    assert!(removed > 0);
    let start = log.start_offset("t", 0).await.unwrap();
    assert!(start > 10 && start <= 40, "old segments gone, recent kept: start {start} (held pass removed {removed_held})");
    let rest = log.read("t", 0, start, 1000, Duration::ZERO).await.unwrap();
    assert_eq!(rest.last().unwrap().offset, 59);
}

#[tokio::test]
async fn refuses_a_second_opener_and_a_partition_change() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small()).await;
    let err = EmbeddedLog::open(dir.path(), small()).await.err().expect("second open must fail").to_string();
    assert!(err.contains("in use by another process"), "{err}");
    drop(log);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = EmbeddedLog::open(dir.path(), LogConfig { partitions: 8, ..small() }).await.err().expect("must fail").to_string();
    assert!(err.contains("has 4 partitions") && err.contains("asks for 8"), "{err}");
}

#[tokio::test]
async fn rejects_bad_topics_and_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small()).await;
    let err = log.append(vec![rec("bad topic!", "k", "v", 0)]).await.unwrap_err().to_string();
    assert!(err.contains("invalid topic name"), "{err}");
    let err = log.read("t", 9, 0, 1, Duration::ZERO).await.unwrap_err().to_string();
    assert!(err.contains("partition 9 does not exist"), "{err}");
}

/// The child side of the crash test: appends from many tasks and prints every acknowledgement.
/// Runs only when the parent test starts it (it is `#[ignore]`d otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of sigkill_loses_no_acknowledged_record"]
async fn crash_child() {
    let Ok(dir) = std::env::var("TOUCHLINE_CRASH_DIR") else { return };
    let log = open(Path::new(&dir), LogConfig { segment_bytes: 64 * 1024, ..small() }).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for w in 0..32 {
        let log = log.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for seq in 0u64.. {
                let key = format!("acct:k{}", w % 8);
                let value = format!("{w}:{seq}:{}", "p".repeat((seq % 50) as usize));
                let batch = vec![rec("crash", &key, &value, seq as i64)];
                match log.append(batch).await {
                    Ok(pos) => {
                        let _ = tx.send(format!("ACK {} {} {}\n", pos[0].partition, pos[0].offset, value));
                    }
                    Err(e) => panic!("append failed: {e}"),
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        out.write_all(line.as_bytes()).unwrap();
        out.flush().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("TOUCHLINE_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Collect acknowledgements for a while, then kill -9 mid-flight.
    let reader = std::thread::spawn(move || {
        let mut acked: Vec<(u32, u64, String)> = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints its own lines too; acknowledgements start with ACK.
            let Some(line) = line.strip_prefix("ACK ") else { continue };
            let mut parts = line.splitn(3, ' ');
            let (Some(p), Some(o), Some(v)) = (parts.next(), parts.next(), parts.next()) else { continue };
            acked.push((p.parse().unwrap(), o.parse().unwrap(), v.to_owned()));
        }
        acked
    });
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acked = reader.join().unwrap();
    assert!(acked.len() > 100, "the child acknowledged only {} appends", acked.len());

    let log = open(dir.path(), small()).await;
    let mut stored: HashMap<(u32, u64), String> = HashMap::new();
    for p in 0..4 {
        let end = log.end_offset("crash", p).await.unwrap();
        let mut next = 0;
        while next < end {
            let batch = log.read("crash", p, next, 5000, Duration::ZERO).await.unwrap();
            assert!(!batch.is_empty());
            for r in &batch {
                let v = String::from_utf8(r.value.clone()).expect("no corrupt record is ever returned");
                // Per-key order: a writer's sequence numbers only grow within a partition.
                stored.insert((p, r.offset), v);
            }
            next = batch.last().unwrap().offset + 1;
        }
    }
    for (p, o, v) in &acked {
        assert_eq!(stored.get(&(*p, *o)), Some(v), "acknowledged record {p}/{o} lost or changed");
    }
    // Order per writer (each writer uses one key): sequence numbers increase with offsets.
    let mut last_seq: HashMap<(u32, String), (u64, u64)> = HashMap::new();
    let mut keys: Vec<_> = stored.iter().collect();
    keys.sort_by_key(|(k, _)| **k);
    for ((p, o), v) in keys {
        let mut it = v.split(':');
        let w = it.next().unwrap().to_owned();
        let seq: u64 = it.next().unwrap().parse().unwrap();
        if let Some((prev_seq, prev_off)) = last_seq.insert((*p, w.clone()), (seq, *o)) {
            assert!(seq > prev_seq, "writer {w}: seq {seq} at offset {o} after {prev_seq} at {prev_off}");
        }
    }
    eprintln!("acknowledged {} appends before SIGKILL; {} records recovered", acked.len(), stored.len());
}

#[tokio::test]
async fn read_only_reader_sees_records_while_the_log_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small()).await;
    for i in 0..30 {
        log.append(vec![rec("touchline.events", &format!("acct:{}", i % 3), &format!("v{i}"), i)]).await.unwrap();
    }
    let reader = touchline_bus::LogReader::new(dir.path()).unwrap();
    assert_eq!(reader.topics(), vec!["touchline.events".to_owned()]);
    let mut total = 0;
    for p in reader.partitions("touchline.events") {
        let recs = reader.read("touchline.events", p, 0, 1000).unwrap();
        for w in recs.windows(2) {
            assert_eq!(w[1].offset, w[0].offset + 1);
        }
        total += recs.len();
        if let Some(last) = recs.last() {
            assert_eq!(reader.read("touchline.events", p, last.offset, 10).unwrap().len(), 1);
        }
    }
    assert_eq!(total, 30);
    assert!(touchline_bus::LogReader::new(dir.path().join("nope")).is_err());
}

/// Concurrent commits of one group (one task per partition, as the aggregator does) leave a
/// readable group file with every partition's latest offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_of_one_group() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), small()).await;
        let mut tasks = Vec::new();
        for p in 0..4u32 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for o in 0..50u64 {
                    log.commit("agg", "t", p, o + 1).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let log = open(dir.path(), small()).await;
    for p in 0..4 {
        assert_eq!(log.committed("agg", "t", p).await.unwrap(), Some(50));
    }
}

/// Many first appends to a new topic at once: the topic is opened once and no acknowledged
/// record is lost (regression: a concurrent second opener truncated the new segment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_appends_to_a_new_topic() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small()).await;
        let mut tasks = Vec::new();
        for w in 0..16 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append(vec![rec("fresh", &format!("acct:k{w}"), &format!("v{w}"), 0)]).await.unwrap()[0]
            }));
        }
        let mut acked = Vec::new();
        for t in tasks {
            acked.push(t.await.unwrap());
        }
        for p in acked {
            let got = log.read("fresh", p.partition, p.offset, 1, Duration::ZERO).await.unwrap();
            assert_eq!(got.len(), 1, "round {round}: acknowledged {p:?} missing");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_queue_within_a_byte_budget_and_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A budget smaller than two appends: each waits for the one before it to be written, and
    // one append larger than the whole budget still goes through (it takes all of it).
    let log = open(dir.path(), LogConfig { partitions: 1, queue_bytes: 1_500, ..small() }).await;
    let value = "v".repeat(900);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (log, value) = (log.clone(), value.clone());
        tasks.push(tokio::spawn(async move { log.append(vec![rec("t", &format!("k{i}"), &value, 0)]).await }));
    }
    let big = "b".repeat(10_000);
    tasks.push(tokio::spawn({
        let log = log.clone();
        async move { log.append(vec![rec("t", "big", &big, 0)]).await }
    }));
    for t in tasks {
        let positions =
            tokio::time::timeout(Duration::from_secs(30), t).await.expect("no append waits forever").expect("task").expect("append");
        assert_eq!(positions.len(), 1);
    }
    assert_eq!(log.end_offset("t", 0).await.expect("end"), 65);
}

/// Appends `n` records from concurrent tasks, each to a key of its own over three topics, and
/// returns what every acknowledgement said: (topic, partition, offset) → value.
async fn append_concurrently(log: &Arc<EmbeddedLog>, n: usize) -> HashMap<(String, u32, u64), String> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let topic = ["t.a", "t.b", "t.c"][i % 3].to_owned();
            let value = format!("value-{i}-{}", "x".repeat(i % 70));
            let pos = log.append(vec![rec(&topic, &format!("acct:k{i}"), &value, i as i64)]).await.expect("append");
            ((topic, pos[0].partition, pos[0].offset), value)
        }));
    }
    let mut acked = HashMap::new();
    for t in tasks {
        let (at, value) = t.await.expect("task");
        acked.insert(at, value);
    }
    acked
}

/// Every acknowledged record, read back from a reopened log.
async fn assert_all_readable(log: &EmbeddedLog, acked: &HashMap<(String, u32, u64), String>) {
    for ((topic, p, offset), value) in acked {
        let got = log.read(topic, *p, *offset, 1, Duration::ZERO).await.expect("read");
        let got: Vec<_> = got.iter().map(|r| (r.offset, String::from_utf8_lossy(&r.value).into_owned())).collect();
        assert_eq!(got, vec![(*offset, value.clone())], "{topic}/{p} at {offset}");
    }
}

/// A commit fsyncs the journal only; a power cut can take the unsynced tail of a segment with
/// it. Cutting every segment back to nothing stands for that: the reopened log must write every
/// acknowledged record again from the journal, at its acknowledged offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_lost_from_segments_come_back_from_the_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 1 << 20, ..small() };
    let acked = {
        let log = open(dir.path(), cfg.clone()).await;
        append_concurrently(&log, 120).await
    };
    let mut cut = 0;
    for topic in ["t.a", "t.b", "t.c"] {
        for p in 0..4 {
            let seg = dir.path().join("topics").join(topic).join(p.to_string()).join(format!("{:020}.log", 0));
            if std::fs::metadata(&seg).map(|m| m.len() > 0).unwrap_or(false) {
                std::fs::OpenOptions::new().write(true).open(&seg).expect("segment").set_len(0).expect("cut");
                cut += 1;
            }
        }
    }
    assert!(cut >= 8, "records must have spread over many partitions, cut {cut} segments");
    let log = open(dir.path(), cfg).await;
    assert_all_readable(&log, &acked).await;
    for topic in ["t.a", "t.b", "t.c"] {
        let total: u64 = {
            let mut sum = 0;
            for p in 0..4 {
                sum += log.end_offset(topic, p).await.expect("end");
            }
            sum
        };
        assert_eq!(total as usize, acked.keys().filter(|(t, _, _)| t == topic).count(), "{topic}: nothing more, nothing less");
    }
    // Appends go on after the restored records.
    let pos = log.append(vec![rec("t.a", "acct:k0", "after", 0)]).await.expect("append");
    let before = acked.keys().filter(|(t, p, _)| t == "t.a" && *p == pos[0].partition).count() as u64;
    assert_eq!(pos[0].offset, before);
}

/// Past `journal_bytes` the journal is retired: one small file remains, and what it no longer
/// holds is in the (fsynced) segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_is_retired_at_its_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { journal_bytes: 4096, ..small() };
    let acked = {
        let log = open(dir.path(), cfg.clone()).await;
        append_concurrently(&log, 300).await
    };
    let journals: Vec<_> = std::fs::read_dir(dir.path().join("journal")).expect("journal dir").map(|e| e.expect("entry").path()).collect();
    assert_eq!(journals.len(), 1, "one journal file at a time: {journals:?}");
    let name = journals[0].file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    assert!(
        name.trim_end_matches(".wal").parse::<u64>().expect("numbered") > 0,
        "300 records of ~100 bytes retire a 4 KiB journal: {name}"
    );
    let held = std::fs::metadata(&journals[0]).expect("journal").len();
    assert!(held < 4096 + 64 * 1024, "the journal holds at most one commit past its limit, held {held}");
    let log = open(dir.path(), cfg).await;
    assert_all_readable(&log, &acked).await;
}
