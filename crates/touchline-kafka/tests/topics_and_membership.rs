//! Topic management (create, idempotence, co-partitioning check) and consumer-group
//! membership (split, revoke waits for release, hand-over when a member leaves).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use touchline_bus::{Bus, Membership};
use touchline_kafka::{ensure_topics, KafkaBus, KafkaConfig, TopicState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_topics_creates_is_idempotent_and_rejects_mismatched_partitions() {
    common::init_tracing();
    let prefix = common::prefix("topics");
    let names: Vec<String> = ["events", "conversions", "dlq"].iter().map(|t| format!("{prefix}.{t}")).collect();
    let topics: Vec<&str> = names.iter().map(String::as_str).collect();
    let cfg = common::config(4);

    let first = ensure_topics(&cfg, &topics).await.unwrap();
    assert_eq!(first.topics.len(), 3);
    assert!(first.topics.iter().all(|(_, n, s)| *n == 4 && *s == TopicState::Created), "{first:?}");
    let again = ensure_topics(&cfg, &topics).await.unwrap();
    assert!(again.topics.iter().all(|(_, n, s)| *n == 4 && *s == TopicState::Exists), "{again:?}");

    // A topic created elsewhere with another partition count breaks co-partitioning.
    let odd = format!("{prefix}.sessions");
    ensure_topics(&KafkaConfig { partitions: 3, ..cfg.clone() }, &[odd.as_str()]).await.unwrap();
    let mut with_odd = topics.clone();
    with_odd.push(&odd);
    let err = ensure_topics(&cfg, &with_odd).await.unwrap_err().to_string();
    assert!(err.contains(&odd) && err.contains("has 3") && err.contains("kafka.partitions is 4"), "{err}");

    // The bus refuses to use it too.
    let bus = KafkaBus::connect(cfg.clone()).unwrap();
    let err = bus.end_offset(&odd, 0).await.unwrap_err().to_string();
    assert!(err.contains(&odd) && err.contains("3 partitions"), "{err}");
    // And an empty key is refused before anything is sent.
    let err = bus
        .append(vec![touchline_bus::OutRecord { topic: topics[0].into(), key: String::new(), value: b"{}".to_vec(), timestamp_ms: 1 }])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty key"), "{err}");
}

/// (when, "got" | "released", partition)
type Events = Arc<Mutex<Vec<(Instant, &'static str, u32)>>>;

/// Watches a member's partitions; releases each revoked one after `delay`, recording when.
/// Holds the member weakly, so dropping the test's handle leaves the group.
fn owner(m: &Arc<dyn Membership>, delay: Duration, log: Events) {
    let mut rx = m.owned();
    let weak = Arc::downgrade(m);
    tokio::spawn(async move {
        let mut prev: BTreeSet<u32> = rx.borrow().iter().copied().collect();
        while rx.changed().await.is_ok() {
            let now: BTreeSet<u32> = rx.borrow().iter().copied().collect();
            for p in now.difference(&prev) {
                log.lock().unwrap().push((Instant::now(), "got", *p));
            }
            let gone: Vec<u32> = prev.difference(&now).copied().collect();
            prev = now;
            if !gone.is_empty() {
                tokio::time::sleep(delay).await;
                let Some(m) = weak.upgrade() else { return };
                for p in gone {
                    log.lock().unwrap().push((Instant::now(), "released", p));
                    m.released(p);
                }
            }
        }
    });
}

async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn owned(m: &Arc<dyn Membership>) -> Vec<u32> {
    m.owned().borrow().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_partitions_and_revocation_waits_for_release() {
    common::init_tracing();
    let prefix = common::prefix("group");
    let names: Vec<String> = ["touches", "conversions"].iter().map(|t| format!("{prefix}.{t}")).collect();
    let topics: Vec<&str> = names.iter().map(String::as_str).collect();
    let cfg = KafkaConfig { revoke_timeout_ms: 20_000, session_timeout_ms: 6_000, ..common::config(4) };
    ensure_topics(&cfg, &topics).await.unwrap();
    let group = format!("{prefix}-aggregators");

    let bus_a = KafkaBus::connect(cfg.clone()).unwrap();
    let bus_b = KafkaBus::connect(cfg.clone()).unwrap();
    let log_a = Arc::new(Mutex::new(Vec::new()));
    let log_b = Arc::new(Mutex::new(Vec::new()));

    let a = bus_a.join(&group, &topics).await.unwrap();
    owner(&a, Duration::from_millis(1500), log_a.clone());
    wait_for("member a to own all 4 partitions", Duration::from_secs(60), || owned(&a) == vec![0, 1, 2, 3]).await;

    let b = bus_b.join(&group, &topics).await.unwrap();
    owner(&b, Duration::from_millis(100), log_b.clone());
    wait_for("a and b to split the partitions", Duration::from_secs(60), || {
        let (oa, ob) = (owned(&a), owned(&b));
        oa.len() == 2 && ob.len() == 2 && oa.iter().chain(&ob).copied().collect::<BTreeSet<u32>>().len() == 4
    })
    .await;
    // Range assignment: contiguous halves.
    assert!(owned(&a) == vec![0, 1] || owned(&a) == vec![2, 3], "range assignment, got {:?}", owned(&a));
    // b got nothing before a released what it was giving up.
    let released_a: Vec<Instant> = log_a.lock().unwrap().iter().filter(|e| e.1 == "released").map(|e| e.0).collect();
    let first_b = log_b.lock().unwrap().iter().filter(|e| e.1 == "got").map(|e| e.0).min().unwrap();
    assert!(!released_a.is_empty(), "a released partitions");
    let last_release = released_a.iter().max().copied().unwrap();
    assert!(first_b >= last_release, "b was assigned partitions before a released them");

    // b leaves: a gets everything back.
    drop(b);
    wait_for("a to own all partitions after b left", Duration::from_secs(60), || owned(&a) == vec![0, 1, 2, 3]).await;

    // Offsets committed by the member of the group are visible to everyone.
    let recs = (0..10)
        .map(|i| touchline_bus::OutRecord {
            topic: topics[0].into(),
            key: "acct:lag".into(),
            value: format!("{i}").into_bytes(),
            timestamp_ms: 1,
        })
        .collect();
    let p = bus_a.append(recs).await.unwrap()[0].partition;
    bus_a.commit(&group, topics[0], p, 7).await.unwrap();
    assert_eq!(bus_b.committed(&group, topics[0], p).await.unwrap(), Some(7));
    let lag = bus_b.lag(&group, &topics, &[p]).await.unwrap();
    assert_eq!(lag.get(&p), Some(&3), "10 records, 7 committed");
}
