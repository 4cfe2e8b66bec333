//! ClickHouse sink throughput: rows/s of 50,000-event batches written into `events` through
//! [`ClickHouseSink`] (row mapping, the JSON payload, RowBinary over HTTP, LZ4), against a
//! baseline measured in the same run: the same rows, already encoded as RowBinary (by the server,
//! before timing), POSTed as `INSERT INTO … FORMAT RowBinary` through a warm HTTP client
//! (`reqwest`, one client and its keep-alive connection pool reused across iterations, as the
//! sink reuses its own). The ratio is then the sink's own cost: building the rows and their JSON
//! payload, encoding, and LZ4 (the sink's default `compression: true`; the baseline sends the
//! bytes uncompressed, which on loopback is the cheaper choice). Prints the ratio of interleaved
//! rounds too.
//!
//! Every batch, on both sides, carries fresh record ids (`bench-<batch tag>-<row>`), so no
//! insert repeats an earlier block: servers from 22.2 drop a repeated block at insert, which
//! would make later iterations no-ops. The baseline's bytes get their fresh ids in place, before
//! timing. At the end the bench checks that the table holds exactly the rows both sides wrote,
//! all with distinct ids.
//!
//! Server: TOUCHLINE_TEST_CLICKHOUSE (default http://127.0.0.1:8123; user and password in the
//! URL are used by both sides); `scripts/clickhouse.sh` starts one. A database
//! `touchline_bench_<random>` is created and dropped. In criterion's test mode
//! (`cargo test --all-targets`) each side runs once on 2,000 rows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use touchline_aggregator::sink::{Sink, SinkBatch};
use touchline_clickhouse::{ClickHouse, ClickHouseConfig, ClickHouseSink};
use touchline_engine::Flush;
use touchline_model::{Id, Record};

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

/// The tag of the template rows; every measured batch takes a fresh one from [`fresh_tag`].
const TEMPLATE_TAG: u64 = 0;

/// Batch tags, shared by both sides so no two batches of a run share a record id.
static NEXT_TAG: AtomicU64 = AtomicU64::new(TEMPLATE_TAG + 1);

fn fresh_tag() -> u64 {
    NEXT_TAG.fetch_add(1, Ordering::Relaxed)
}

/// Record ids of one width whatever the tag (16 hex digits), so that a fresh tag can be written
/// over the template's in the encoded rows.
fn record_id(tag: u64, row: usize) -> String {
    format!("bench-{tag:016x}-{row:08}")
}

/// Page events as the collector stores them: ids, UTM context, a page URL, properties.
fn events(n: usize, tag: u64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let name = ["page_view", "product_viewed", "product_added", "order_completed"][i % 4];
            let v = serde_json::json!({
                "v": 1, "type": "event", "record_id": record_id(tag, i), "account_id": "00000000-0000-0000-0000-00000000be01",
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
    /// The rows with the template tag.
    records: Vec<Record>,
    /// The same rows as the server encodes them in RowBinary (columns in table order).
    rowbinary: Vec<u8>,
    /// Where the template tag's 16 hex digits are in `rowbinary` (each row's `record_id`, and
    /// its copy in the JSON `payload`).
    tag_offsets: Vec<usize>,
    /// The baseline's client, reused across iterations (its connection pool stays warm).
    http: reqwest::Client,
    /// `POST` target of the baseline: `?query=INSERT INTO db.events FORMAT RowBinary`.
    insert_url: reqwest::Url,
    /// Rows acknowledged by the server, both sides together.
    written: AtomicU64,
}

async fn setup() -> Setup {
    let url = std::env::var("TOUCHLINE_TEST_CLICKHOUSE").unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    let db = format!("touchline_bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let ch = touchline_clickhouse::connect(&ClickHouseConfig::from_url(&url).with_database(&db))
        .await
        .unwrap_or_else(|e| panic!("{e}\nThe ClickHouse bench needs a server: run scripts/clickhouse.sh"));
    touchline_clickhouse::migrate(&ch).await.unwrap_or_else(|e| panic!("{e}"));
    let records = events(rows(), TEMPLATE_TAG);
    let sink = ClickHouseSink::new(ch.clone());
    // The baseline's input: the same rows as RowBinary, produced once through the server.
    sink.write_raw(&records).await.unwrap_or_else(|e| panic!("{e}"));
    let mut cur = ch
        .client()
        .query_raw(&format!("SELECT * FROM {} ORDER BY record_id", ch.table("events")))
        .fetch_bytes("RowBinary")
        .unwrap_or_else(|e| panic!("{e}"));
    let rowbinary = cur.collect().await.unwrap_or_else(|e| panic!("{e}")).to_vec();
    ch.execute(&format!("TRUNCATE TABLE {}", ch.table("events")), "truncate").await.unwrap_or_else(|e| panic!("{e}"));

    let marker = record_id(TEMPLATE_TAG, 0);
    let prefix = marker.rsplit_once('-').map_or(marker.as_str(), |(p, _)| p).as_bytes(); // "bench-<tag>"
    let tag_offsets = find_all(&rowbinary, prefix).into_iter().map(|at| at + "bench-".len()).collect::<Vec<_>>();
    assert!(
        tag_offsets.len() >= records.len(),
        "the server's RowBinary of {} rows holds {} record ids of the template",
        records.len(),
        tag_offsets.len()
    );

    // User and password in the URL become basic auth (reqwest takes them out of the URL).
    let mut insert_url = reqwest::Url::parse(&url).unwrap_or_else(|e| panic!("TOUCHLINE_TEST_CLICKHOUSE {url:?}: {e}"));
    insert_url.set_query(None);
    insert_url.query_pairs_mut().append_pair("query", &format!("INSERT INTO {} FORMAT RowBinary", ch.table("events")));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(ch.config().insert_timeout_secs))
        .build()
        .unwrap_or_else(|e| panic!("HTTP client: {e}"));
    Setup { ch, sink, records, rowbinary, tag_offsets, http, insert_url, written: AtomicU64::new(0) }
}

/// Every start of `needle` in `haystack`, not overlapping.
fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = haystack.get(from..).and_then(|rest| rest.windows(needle.len()).position(|w| w == needle)) {
        found.push(from + at);
        from += at + needle.len();
    }
    found
}

/// The baseline's input for one iteration: the encoded rows with a fresh tag (not timed).
fn baseline_batch(s: &Setup) -> Vec<u8> {
    let tag = format!("{:016x}", fresh_tag());
    let mut bytes = s.rowbinary.clone();
    for &at in &s.tag_offsets {
        bytes[at..at + tag.len()].copy_from_slice(tag.as_bytes());
    }
    bytes
}

/// The sink's input for one iteration: the records with a fresh tag (not timed).
fn sink_batch(s: &Setup) -> Vec<Record> {
    let tag = fresh_tag();
    s.records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            r.meta.record_id = Id::new(record_id(tag, i)).unwrap_or_else(|e| panic!("record id: {e}"));
            r
        })
        .collect()
}

/// The baseline: one `INSERT … FORMAT RowBinary` of ready bytes over the warm client.
async fn through_http(s: &Setup, body: Vec<u8>) {
    let resp = s.http.post(s.insert_url.clone()).body(body).send().await.unwrap_or_else(|e| panic!("baseline INSERT over HTTP: {e}"));
    let status = resp.status();
    // Read the answer to its end, as the sink does, so the connection goes back to the pool.
    let answer = resp.bytes().await.unwrap_or_else(|e| panic!("baseline INSERT over HTTP, reading the answer: {e}"));
    assert!(status.is_success(), "baseline INSERT over HTTP: {status}: {}", String::from_utf8_lossy(&answer));
    s.written.fetch_add(s.records.len() as u64, Ordering::Relaxed);
}

/// The sink; returns the records so that criterion drops them outside the timing.
async fn through_sink(s: &Setup, records: Vec<Record>) -> Vec<Record> {
    let flush = Flush::default();
    s.sink
        .write(&SinkBatch { partition: 0, epoch: 1, raw: &records, raw_offsets: &[], flush: &flush })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.written.fetch_add(records.len() as u64, Ordering::Relaxed);
    records
}

fn clickhouse_sink(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    let s = rt.block_on(setup());
    let n = s.records.len();

    let mut g = c.benchmark_group(format!("clickhouse_events_{n}_rows"));
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.bench_function("baseline_http_rowbinary_warm", |b| {
        b.to_async(&rt).iter_batched(|| baseline_batch(&s), |body| through_http(&s, body), BatchSize::PerIteration)
    });
    g.bench_function("clickhouse_sink", |b| {
        b.to_async(&rt).iter_batched(|| sink_batch(&s), |records| through_sink(&s, records), BatchSize::PerIteration)
    });
    g.finish();

    // The ratio, from interleaved rounds timed here (criterion reports each side separately).
    let rounds = if bench_mode() { 5 } else { 1 };
    let (mut sink_time, mut http_time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let body = baseline_batch(&s);
        let t = Instant::now();
        rt.block_on(through_http(&s, body));
        http_time += t.elapsed();
        let records = sink_batch(&s);
        let t = Instant::now();
        let records = rt.block_on(through_sink(&s, records));
        sink_time += t.elapsed();
        drop(records);
    }
    let rate = |d: Duration| (n * rounds) as f64 / d.as_secs_f64();
    println!(
        "clickhouse sink: {:.0} rows/s; warm HTTP RowBinary baseline: {:.0} rows/s; ratio sink/baseline = {:.2} ({} rounds of {n} rows, server {})",
        rate(sink_time),
        rate(http_time),
        rate(sink_time) / rate(http_time),
        rounds,
        s.ch.version()
    );
    let (count, distinct): (u64, u64) = rt
        .block_on(s.ch.client().query_raw(&format!("SELECT count(), uniqExact(record_id) FROM {}", s.ch.table("events"))).fetch_one())
        .unwrap_or_else(|e| panic!("{e}"));
    let written = s.written.load(Ordering::Relaxed);
    assert_eq!((count, distinct), (written, written), "the table holds every row both sides wrote, each with its own record id");
    rt.block_on(s.ch.drop_database()).unwrap_or_else(|e| panic!("{e}"));
}

criterion_group!(benches, clickhouse_sink);
criterion_main!(benches);
