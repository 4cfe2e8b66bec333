//! Interop with a third-party client: Python's confluent-kafka (from PyPI) produces a
//! conversion in touchline's JSON envelope, and touchline reads and decodes it; a record
//! touchline produces is read by confluent-kafka byte for byte. Both sides pick the same
//! partition for the key (Kafka's murmur2).
//!
//! Python: `TOUCHLINE_TEST_PYTHON` (default `~/.cache/touchline/venv/bin/python`) with
//! `confluent-kafka` installed.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use touchline_bus::{partition_for_key, Bus, OutRecord};
use touchline_kafka::{ensure_topics, KafkaBus};
use touchline_model::{Body, Record};

fn python() -> PathBuf {
    let py = std::env::var_os("TOUCHLINE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/touchline/venv/bin/python"));
    let ok = Command::new(&py).args(["-c", "import confluent_kafka"]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "{} with confluent-kafka is needed (python3 -m venv ~/.cache/touchline/venv && ~/.cache/touchline/venv/bin/pip install confluent-kafka), or set TOUCHLINE_TEST_PYTHON", py.display());
    py
}

fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "python failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const PRODUCE: &str = r#"
import sys, json
from confluent_kafka import Producer
broker, topic, key, value = sys.argv[1:5]
p = Producer({"bootstrap.servers": broker, "partitioner": "murmur2_random", "enable.idempotence": True, "acks": "all"})
out = {}
def done(err, msg):
    if err is not None:
        raise SystemExit("delivery failed: %s" % err)
    out["partition"], out["offset"] = msg.partition(), msg.offset()
p.produce(topic, key=key.encode(), value=value.encode(), on_delivery=done)
left = p.flush(30)
if left:
    raise SystemExit("%d records not delivered" % left)
print(json.dumps(out))
"#;

const CONSUME: &str = r#"
import sys, json
from confluent_kafka import Consumer, TopicPartition
broker, topic, partition, offset = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = Consumer({"bootstrap.servers": broker, "group.id": "touchline-interop-py", "enable.auto.commit": False})
c.assign([TopicPartition(topic, partition, offset)])
m = None
for _ in range(60):
    m = c.poll(1.0)
    if m is not None and m.error() is None:
        break
if m is None or m.error() is not None:
    raise SystemExit("no record: %s" % (m.error() if m else "timeout"))
print(json.dumps({"partition": m.partition(), "offset": m.offset(), "key": m.key().hex(), "value": m.value().hex(),
                  "timestamp": m.timestamp()[1]}))
c.close()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_python_and_touchline_read_each_other() {
    common::init_tracing();
    let broker = common::broker();
    let topic = format!("{}.conversions", common::prefix("interop"));
    let cfg = common::config(4);
    ensure_topics(&cfg, &[topic.as_str()]).await.unwrap();
    let bus = KafkaBus::connect(cfg.clone()).unwrap();

    // 1. Python produces a conversion in the documented envelope.
    let account = "0b6f1c2e-5d4a-4e3b-9c2d-1a2b3c4d5e6f";
    let key = format!("{account}:cust-42");
    let value = serde_json::json!({
        "v": 1, "type": "conversion", "record_id": "py-conv-1", "account_id": account,
        "timestamp": "2026-11-21T10:00:00Z", "received_at": "2026-11-21T10:00:01Z",
        "customer_id": "cust-42", "kind": "purchase", "value": "19.99", "currency": "USD", "order_id": "order-7",
        "campaign_id": "cmp-1"
    })
    .to_string();
    let out: serde_json::Value = serde_json::from_str(&run_python(PRODUCE, &[&broker, &topic, &key, &value])).unwrap();
    let p = partition_for_key(&key, cfg.partitions);
    assert_eq!(out["partition"].as_u64(), Some(u64::from(p)), "confluent-kafka's murmur2 partition equals touchline's");
    let offset = out["offset"].as_u64().unwrap();
    let got = bus.read(&topic, p, offset, 10, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got.first().map(|r| r.offset), Some(offset));
    let r = &got[0];
    assert_eq!(r.key, key);
    let rec = Record::from_json(&r.value).unwrap();
    assert_eq!(rec.partition_key(), key, "the key is the record's own partition key");
    assert_eq!(rec.meta.account_id.to_string(), account);
    let Body::Conversion(c) = &rec.body else { panic!("decoded {:?}", rec.body) };
    assert_eq!(c.kind.as_str(), "purchase");
    assert_eq!(c.value.map(|v| v.to_string()).as_deref(), Some("19.99"));
    assert_eq!(c.order_id.as_ref().map(|o| o.as_str()), Some("order-7"));

    // 2. touchline produces the same entity (re-encoded) and Python reads it byte for byte.
    let bytes = rec.to_json();
    let ts = 1_763_719_200_123;
    let pos = bus.append(vec![OutRecord { topic: topic.clone(), key: key.clone(), value: bytes.clone(), timestamp_ms: ts }]).await.unwrap();
    assert_eq!(pos[0].partition, p);
    let seen: serde_json::Value =
        serde_json::from_str(&run_python(CONSUME, &[&broker, &topic, &p.to_string(), &pos[0].offset.to_string()])).unwrap();
    assert_eq!(seen["partition"].as_u64(), Some(u64::from(p)));
    assert_eq!(seen["offset"].as_u64(), Some(pos[0].offset));
    assert_eq!(seen["key"].as_str().unwrap(), hex(key.as_bytes()));
    assert_eq!(seen["value"].as_str().unwrap(), hex(&bytes), "the value python read is what touchline wrote");
    assert_eq!(seen["timestamp"].as_i64(), Some(ts), "the record time travels as the Kafka timestamp");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
