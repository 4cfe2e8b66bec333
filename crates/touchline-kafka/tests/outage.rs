//! Broker outage without loss: under load through the SpillingBus, the broker (a tansu owned
//! by this test, on its own port, with SQLite storage so it keeps its data) is stopped for
//! 30 s and restarted; afterwards every acknowledged record is in Kafka exactly once, in order
//! per key.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use touchline_bus::{Bus, OutRecord};
use touchline_kafka::{ensure_topics, KafkaBus, KafkaConfig, SpillConfig, SpillState, SpillingBus};

fn tansu_bin() -> PathBuf {
    let bin = std::env::var_os("TOUCHLINE_TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/touchline/tansu/bin/tansu"));
    assert!(bin.exists(), "tansu is not at {} (build it with `scripts/tansu.sh build`, or set TOUCHLINE_TANSU_BIN)", bin.display());
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tansu broker of this test, with SQLite storage in `dir`.
struct Broker {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Broker {
    fn start(port: u16, dir: &Path) -> Broker {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("tansu.log")).unwrap();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_bin())
            .args(["broker", "--cluster-id", "touchline-outage", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start on port {port}; see {}", dir.join("tansu.log").display());
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child: Some(child), port, dir: dir.to_path_buf() }
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 10 s).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.wait();
    }

    fn restart(&mut self) {
        self.stop();
        let b = Broker::start(self.port, &self.dir);
        *self = b;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The last lines of the broker's log, for failure messages.
fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("tansu.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

const KEYS: usize = 16;
const WRITERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_under_load_loses_and_duplicates_nothing() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = Broker::start(port, dir.path());
    let topic = common::prefix("outage");
    let cfg = KafkaConfig {
        partitions: 4,
        message_timeout_ms: 3_000,
        request_timeout_ms: 2_000,
        linger_ms: 2,
        spill: SpillConfig { max_bytes: 256 << 20, ..SpillConfig::default() },
        ..KafkaConfig::new(format!("127.0.0.1:{port}"))
    };
    ensure_topics(&cfg, &[topic.as_str()]).await.unwrap();
    let kafka = KafkaBus::connect(cfg.clone()).unwrap();
    let bus = SpillingBus::open(kafka, dir.path().join("spill")).await.unwrap();

    // Writers: each owns two keys and appends them in sequence, one append at a time.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::new(Mutex::new(HashMap::new()));
    let slowest = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (bus, stop, acked, slowest, topic) = (bus.clone(), stop.clone(), acked.clone(), slowest.clone(), topic.clone());
        writers.push(tokio::spawn(async move {
            let keys: Vec<String> = (0..KEYS / WRITERS).map(|i| format!("acct:{}", w * (KEYS / WRITERS) + i)).collect();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let recs: Vec<OutRecord> = keys
                    .iter()
                    .map(|k| OutRecord {
                        topic: topic.clone(),
                        key: k.clone(),
                        value: format!("{k}#{seq:09}").into_bytes(),
                        timestamp_ms: 1_700_000_000_000,
                    })
                    .collect();
                let t = Instant::now();
                if let Err(e) = bus.append(recs).await {
                    panic!("append failed although the spill has room: {e}");
                }
                slowest.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                {
                    let mut a = acked.lock().unwrap();
                    for k in &keys {
                        a.entry(k.clone()).or_default().push(seq);
                    }
                }
                seq += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let count = |a: &Arc<Mutex<HashMap<String, Vec<u64>>>>| a.lock().unwrap().values().map(Vec::len).sum::<usize>();

    tokio::time::sleep(Duration::from_secs(5)).await;
    let before_outage = count(&acked);
    assert!(before_outage > 100, "writers are running ({before_outage} records)");
    assert_eq!(bus.status().state, SpillState::Direct);
    tokio::task::block_in_place(|| broker.stop());
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = count(&acked) - before_outage;
    let st = bus.status();
    assert_eq!(st.state, SpillState::Spilling, "{st:?}");
    assert!(st.backlog_records > 0, "{st:?}");
    eprintln!("outage: {during} records acknowledged while the broker was down for {:?}; {st:?}", stopped_at.elapsed());
    tokio::task::block_in_place(|| broker.restart());
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let drained = bus.wait_drained(Duration::from_secs(120)).await;
    if std::env::var_os("TOUCHLINE_TEST_KEEP_LOG").is_some() {
        let _ = std::fs::copy(dir.path().join("tansu.log"), std::env::temp_dir().join("touchline-outage-tansu.log"));
    }
    assert!(drained, "the spill drained: {:?}\nbroker log:\n{}", bus.status(), log_tail(dir.path()));
    let st = bus.status();
    eprintln!("after: {st:?}; slowest append {} ms", slowest.load(Ordering::Relaxed));
    assert!(st.spilled_total > 0 && st.drained_total + st.deduplicated_total >= st.spilled_total, "{st:?}");

    // Read everything back with a fresh client.
    let reader = KafkaBus::connect(cfg.clone()).unwrap();
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    let mut total = 0usize;
    for p in 0..cfg.partitions {
        let end = reader.end_offset(&topic, p).await.unwrap();
        let mut next = reader.start_offset(&topic, p).await.unwrap();
        while next < end {
            let batch = reader.read(&topic, p, next, 5_000, Duration::from_secs(10)).await.unwrap();
            assert!(!batch.is_empty(), "read {topic}/{p} at {next} before end {end}");
            for r in &batch {
                let v = String::from_utf8(r.value.clone()).unwrap();
                let (key, seq) = v.split_once('#').unwrap();
                assert_eq!(key, r.key);
                assert_eq!(touchline_bus::partition_for_key(key, cfg.partitions), p);
                seen.entry(key.to_owned()).or_default().push(seq.parse().unwrap());
                total += 1;
            }
            next = batch.last().unwrap().offset + 1;
        }
    }
    let acked = acked.lock().unwrap();
    let acked_total: usize = acked.values().map(Vec::len).sum();
    for (key, seqs) in acked.iter() {
        let got = seen.get(key).cloned().unwrap_or_default();
        // In order, exactly once: Kafka holds exactly the acknowledged sequence of the key.
        if &got != seqs {
            let dups = got.len() - got.iter().collect::<std::collections::BTreeSet<_>>().len();
            let missing = seqs.iter().filter(|s| !got.contains(s)).count();
            let out_of_order = got.windows(2).filter(|w| w[1] <= w[0]).count();
            panic!(
                "key {key}: {} acknowledged, {} in kafka ({dups} duplicates, {missing} missing, {out_of_order} out of order)",
                seqs.len(),
                got.len()
            );
        }
    }
    assert_eq!(total, acked_total, "kafka holds exactly the acknowledged records");
    eprintln!("verified {acked_total} acknowledged records ({during} during the outage): each in kafka once, in order per key");
}
