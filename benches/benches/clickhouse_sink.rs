//! ClickHouse sink throughput: rows/s of 50,000-event batches written into `events` through
//! [`ClickHouseSink`] (row mapping, the JSON payload, RowBinary over HTTP, LZ4), against a
//! plain `clickhouse-client --query "INSERT INTO … FORMAT RowBinary"` of the same rows (the
//! RowBinary bytes are produced once, before timing), in the same run; prints the ratio.
//!
//! Server: TOUCHLINE_TEST_CLICKHOUSE (default http://127.0.0.1:8123; native protocol on
//! TOUCHLINE_TEST_CLICKHOUSE_NATIVE_PORT, default 9000); `scripts/clickhouse.sh` starts one.
//! A database `touchline_bench_<random>` is created and dropped. In criterion's test mode
//! (`cargo test --all-targets`) each side runs once on 2,000 rows.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use touchline_aggregator::sink::{Sink, SinkBatch};
use touchline_clickhouse::{ClickHouse, ClickHouseConfig, ClickHouseSink};
use touchline_engine::Flush;
use touchline_model::Record;

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn rows() -> usize {
    if bench_mode() {
        50_000
    } else {
        2_000
    }
}

/// Page events as the collector stores them: ids, UTM context, a page URL, properties.
fn events(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let name = ["page_view", "product_viewed", "product_added", "order_completed"][i % 4];
            let v = serde_json::json!({
                "v": 1, "type": "event", "record_id": format!("bench-{i:08}"), "account_id": "00000000-0000-0000-0000-00000000be01",
                "timestamp": format!("2026-03-{:02}T{:02}:{:02}:{:02}.250Z", 1 + i % 28, i % 24, i % 60, (i / 60) % 60),
                "received_at": "2026-03-28T12:00:00.5Z", "anonymous_id": format!("anon-{}", i % 5_000),
                "event_name": name,
                "session_id": format!("s-{}", i % 9_000), "campaign_id": format!("cmp-{}", i % 40),
                "properties": {"title": "Winter sale", "category": "shoes", "price": 59.9},
                "context": {"page_url": format!("https://shop.example/p/{}?utm_source=zalo&utm_medium=oa&utm_campaign=winter", i % 700),
                            "referrer": "https://zalo.me/", "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
                            "ip": "203.0.113.7", "utm_source": "zalo", "utm_medium": "oa", "utm_campaign": "winter"}
            });
            Record::from_json(&serde_json::to_vec(&v).unwrap_or_default()).unwrap_or_else(|e| panic!("bench record: {e}"))
        })
        .collect()
}

struct Setup {
    ch: ClickHouse,
    sink: ClickHouseSink,
    records: Vec<Record>,
    rowbinary: Vec<u8>,
    host: String,
    port: String,
}

async fn setup() -> Setup {
    let url = std::env::var("TOUCHLINE_TEST_CLICKHOUSE").unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    let db = format!("touchline_bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let ch = touchline_clickhouse::connect(&ClickHouseConfig::from_url(&url).with_database(&db))
        .await
        .unwrap_or_else(|e| panic!("{e}\nThe ClickHouse bench needs a server: run scripts/clickhouse.sh"));
    touchline_clickhouse::migrate(&ch).await.unwrap_or_else(|e| panic!("{e}"));
    let records = events(rows());
    let sink = ClickHouseSink::new(ch.clone());
    // The baseline's input: the same rows as RowBinary, produced once through the server.
    sink.write_raw(&records).await.unwrap_or_else(|e| panic!("{e}"));
    let mut cur = ch
        .client()
        .query_raw(&format!("SELECT * FROM {}.events ORDER BY record_id", db))
        .fetch_bytes("RowBinary")
        .unwrap_or_else(|e| panic!("{e}"));
    let rowbinary = cur.collect().await.unwrap_or_else(|e| panic!("{e}")).to_vec();
    ch.execute(&format!("TRUNCATE TABLE {db}.events"), "truncate").await.unwrap_or_else(|e| panic!("{e}"));
    let authority = url.split("://").nth(1).unwrap_or(&url).split('/').next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h).to_owned();
    let port = std::env::var("TOUCHLINE_TEST_CLICKHOUSE_NATIVE_PORT").unwrap_or_else(|_| "9000".into());
    Setup { ch, sink, records, rowbinary, host, port }
}

async fn through_sink(s: &Setup) {
    let flush = Flush::default();
    s.sink.write(&SinkBatch { partition: 0, epoch: 1, raw: &s.records, flush: &flush }).await.unwrap_or_else(|e| panic!("{e}"));
}

fn through_client(s: &Setup) {
    let mut child = Command::new("clickhouse-client")
        .args(["--host", &s.host, "--port", &s.port, "--query", &format!("INSERT INTO {} FORMAT RowBinary", s.ch.table("events"))])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("clickhouse-client: {e} (scripts/clickhouse.sh installs it)"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&s.rowbinary).unwrap_or_else(|e| panic!("clickhouse-client stdin: {e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("clickhouse-client: {e}"));
    assert!(out.status.success(), "clickhouse-client failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn clickhouse_sink(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    let s = rt.block_on(setup());
    let n = s.records.len();

    let mut g = c.benchmark_group(format!("clickhouse_events_{n}_rows"));
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.bench_function("baseline_clickhouse_client_rowbinary", |b| b.iter(|| through_client(&s)));
    g.bench_function("clickhouse_sink", |b| b.to_async(&rt).iter(|| through_sink(&s)));
    g.finish();

    // The ratio, from interleaved rounds timed here (criterion reports each side separately).
    let rounds = if bench_mode() { 5 } else { 1 };
    let (mut sink_time, mut client_time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let t = Instant::now();
        through_client(&s);
        client_time += t.elapsed();
        let t = Instant::now();
        rt.block_on(through_sink(&s));
        sink_time += t.elapsed();
    }
    let rate = |d: Duration| (n * rounds) as f64 / d.as_secs_f64();
    println!(
        "clickhouse sink: {:.0} rows/s; clickhouse-client RowBinary: {:.0} rows/s; ratio sink/client = {:.2} ({} rounds of {n} rows, server {})",
        rate(sink_time),
        rate(client_time),
        rate(sink_time) / rate(client_time),
        rounds,
        s.ch.version()
    );
    let rows_in_table: u64 = rt
        .block_on(s.ch.client().query_raw(&format!("SELECT uniqExact(record_id) FROM {}", s.ch.table("events"))).fetch_one::<u64>())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows_in_table, n as u64, "both sides wrote the same rows");
    rt.block_on(s.ch.drop_database()).unwrap_or_else(|e| panic!("{e}"));
}

criterion_group!(benches, clickhouse_sink);
criterion_main!(benches);
