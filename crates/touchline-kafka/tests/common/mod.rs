//! Shared by the Kafka integration tests: the broker address and per-test names.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpStream;
use std::time::Duration;

use touchline_kafka::KafkaConfig;

/// The broker under test (`TOUCHLINE_TEST_KAFKA`, default 127.0.0.1:9092). Fails, with what to
/// run, when nothing answers there.
pub fn broker() -> String {
    let addr = std::env::var("TOUCHLINE_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let sock = addr.parse().unwrap_or_else(|e| panic!("TOUCHLINE_TEST_KAFKA={addr} is not host:port: {e}"));
    if TcpStream::connect_timeout(&sock, Duration::from_secs(2)).is_err() {
        panic!("no Kafka broker answers at {addr}: start one with `scripts/tansu.sh` (or set TOUCHLINE_TEST_KAFKA)");
    }
    addr
}

/// A topic prefix no other test (or earlier run) uses.
pub fn prefix(test: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t-{test}-{}", &id[..12])
}

pub fn config(partitions: u32) -> KafkaConfig {
    KafkaConfig { partitions, client_id: "touchline-test".into(), ..KafkaConfig::new(broker()) }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}
