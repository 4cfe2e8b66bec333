//! The same behaviours as the broker tests, on librdkafka's built-in mock cluster: quick
//! checks of the bus logic that need no broker process (topics are created through the mock,
//! which has no CreateTopics). The real-broker tests are conformance.rs,
//! topics_and_membership.rs, outage.rs and interop.rs.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use touchline_bus::{conformance, Bus, OutRecord};
use touchline_kafka::{KafkaBus, KafkaConfig, SpillState, SpillingBus};

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

fn mock(topics: &[&str]) -> (MockCluster<'static, rdkafka::producer::DefaultProducerContext>, KafkaConfig) {
    let mock = MockCluster::new(1).unwrap();
    for t in topics {
        mock.create_topic(t, 4, 1).unwrap();
    }
    let cfg =
        KafkaConfig { partitions: 4, message_timeout_ms: 2_000, request_timeout_ms: 1_000, ..KafkaConfig::new(mock.bootstrap_servers()) };
    (mock, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_the_mock_cluster() {
    init_tracing();
    let (_mock, cfg) = mock(&["m.order", "m.wait", "m.concurrent", "m.commit", "m.redeliver"]);
    let cfg = KafkaConfig { request_timeout_ms: 5_000, ..cfg };
    let bus: Arc<dyn Bus> = KafkaBus::connect(cfg.clone()).unwrap();
    bus.ready().await.unwrap();
    conformance::ordering_and_offsets(bus.as_ref(), "m").await;
    conformance::read_waits_for_new_records(bus.clone(), "m").await;
    conformance::concurrent_appends(bus.clone(), "m").await;
    let c = cfg.clone();
    conformance::commit_and_resume(
        move || {
            let c = c.clone();
            async move { KafkaBus::connect(c).unwrap() as Arc<dyn Bus> }
        },
        "m",
    )
    .await;
    conformance::redelivery_after_uncommitted_crash(
        move || {
            let c = cfg.clone();
            async move { KafkaBus::connect(c).unwrap() as Arc<dyn Bus> }
        },
        "m",
    )
    .await;
}

fn rec(i: u64) -> OutRecord {
    OutRecord { topic: "s.t".into(), key: format!("acct:{}", i % 8), value: format!("acct:{}#{i:06}", i % 8).into_bytes(), timestamp_ms: 1 }
}

/// Every record of s.t, per key in Kafka order.
async fn read_back(bus: &dyn Bus) -> HashMap<String, Vec<String>> {
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for p in 0..4 {
        let end = bus.end_offset("s.t", p).await.unwrap();
        let mut next = bus.start_offset("s.t", p).await.unwrap();
        while next < end {
            let b = bus.read("s.t", p, next, 1000, Duration::from_secs(5)).await.unwrap();
            next = b.last().unwrap().offset + 1;
            for r in b {
                by_key.entry(r.key).or_default().push(String::from_utf8(r.value).unwrap());
            }
        }
    }
    by_key
}

fn expected(n: u64) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..n {
        let r = rec(i);
        m.entry(r.key).or_default().push(String::from_utf8(r.value).unwrap());
    }
    m
}

async fn append_for(bus: &SpillingBus, next: &mut u64, d: Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < d {
        bus.append(vec![rec(*next)]).await.unwrap();
        *next += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spill_while_the_broker_is_down_and_drain_in_order() {
    init_tracing();
    let (mock, cfg) = mock(&["s.t"]);
    let dir = tempfile::tempdir().unwrap();
    let bus = SpillingBus::open(KafkaBus::connect(cfg).unwrap(), dir.path()).await.unwrap();
    let mut n = 0;
    append_for(&bus, &mut n, Duration::from_secs(1)).await;
    assert_eq!(bus.status().state, SpillState::Direct);
    mock.broker_down(1).unwrap();
    append_for(&bus, &mut n, Duration::from_secs(4)).await;
    let st = bus.status();
    assert_eq!(st.state, SpillState::Spilling, "{st:?}");
    assert!(st.backlog_records > 0 && st.last_error.is_some(), "{st:?}");
    bus.ready().await.unwrap();
    mock.broker_up(1).unwrap();
    append_for(&bus, &mut n, Duration::from_secs(1)).await;
    assert!(bus.wait_drained(Duration::from_secs(30)).await, "{:?}", bus.status());
    let st = bus.status();
    assert_eq!((st.state, st.backlog_records, st.drained_total), (SpillState::Direct, 0, st.spilled_total), "{st:?}");
    assert_eq!(read_back(bus.as_ref()).await, expected(n), "every record once, in order per key");
}

async fn open_spill(kafka: Arc<KafkaBus>, dir: &Path) -> Arc<SpillingBus> {
    // The previous handle's drain task may still hold the spill for a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SpillingBus::open(kafka.clone(), dir).await {
            Ok(b) => return b,
            Err(e) if Instant::now() < deadline && e.to_string().contains("in use") => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("reopen the spill: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spill_left_by_an_earlier_run_drains_after_restart() {
    init_tracing();
    let (mock, cfg) = mock(&["s.t"]);
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    {
        let bus = SpillingBus::open(KafkaBus::connect(cfg.clone()).unwrap(), dir.path()).await.unwrap();
        append_for(&bus, &mut n, Duration::from_millis(500)).await;
        mock.broker_down(1).unwrap();
        append_for(&bus, &mut n, Duration::from_secs(3)).await;
        assert!(bus.status().backlog_records > 0);
    }
    let bus = open_spill(KafkaBus::connect(cfg).unwrap(), dir.path()).await;
    let st = bus.status();
    assert_eq!(st.state, SpillState::Spilling, "a backlog from the earlier run is recovered: {st:?}");
    mock.broker_up(1).unwrap();
    assert!(bus.wait_drained(Duration::from_secs(30)).await, "{:?}", bus.status());
    assert_eq!(read_back(bus.as_ref()).await, expected(n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spill_answers_unavailable() {
    init_tracing();
    let (mock, cfg) = mock(&["s.t"]);
    let cfg = KafkaConfig { spill: touchline_kafka::SpillConfig { max_bytes: 200, ..Default::default() }, ..cfg };
    let dir = tempfile::tempdir().unwrap();
    let bus = SpillingBus::open(KafkaBus::connect(cfg).unwrap(), dir.path()).await.unwrap();
    mock.broker_down(1).unwrap();
    let mut accepted = 0;
    let err = loop {
        match bus.append(vec![rec(accepted)]).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "the spill is bounded");
    };
    assert!(matches!(err, touchline_bus::BusError::Unavailable(_)) && err.to_string().contains("spill is full"), "{err}");
    assert_eq!(bus.status().state, SpillState::Full);
    let details = touchline_bus::Bus::details(bus.as_ref());
    assert_eq!(
        (details["spill"]["state"].as_str(), details["spill"]["backlog_records"].as_u64()),
        (Some("full"), Some(accepted)),
        "{details}"
    );
    assert!(bus.ready().await.is_err(), "not ready while full");
    mock.broker_up(1).unwrap();
    assert!(bus.wait_drained(Duration::from_secs(30)).await, "{:?}", bus.status());
    bus.ready().await.unwrap();
    assert_eq!(read_back(bus.as_ref()).await, expected(accepted));
}
