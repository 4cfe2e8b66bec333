//! Kafka settings: every default here, validated before a client is built.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the Kafka bus (`[kafka]` in the TOML file, `TOUCHLINE_KAFKA__*` in the
/// environment). Defaults: 8 partitions, replication factor 1, linger 5 ms, 100 000 queued
/// messages, 15 s delivery timeout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Partitions of every entity topic (created with this count; existing topics must match).
    pub partitions: u32,
    /// Replication factor of topics created by `touchline migrate`.
    pub replication_factor: i16,
    /// Create a topic on first use (with `partitions` and `replication_factor`) when it does not
    /// exist. `touchline migrate` creates the entity topics beforehand either way.
    pub auto_create_topics: bool,
    /// librdkafka `linger.ms`: how long the producer waits to batch records.
    pub linger_ms: u32,
    /// librdkafka `queue.buffering.max.messages`: records queued or in flight per producer
    /// (the in-flight bound; an append waits for room up to `produce_timeout_ms`).
    pub queue_max_messages: u32,
    /// librdkafka `queue.buffering.max.kbytes`.
    pub queue_max_kbytes: u32,
    /// librdkafka `message.timeout.ms`: a record not acknowledged by then fails.
    pub message_timeout_ms: u32,
    /// How long an append waits for its delivery reports; raised to at least
    /// `message_timeout_ms` + 1 s, so librdkafka's own verdict always comes first.
    pub produce_timeout_ms: u64,
    /// Timeout of metadata, watermark, offset and admin requests.
    pub request_timeout_ms: u64,
    /// librdkafka `compression.type`.
    pub compression: String,
    /// librdkafka `client.id` (suffixed with the role: `-producer`, `-reader`, …).
    pub client_id: String,
    /// librdkafka `fetch.wait.max.ms` of the readers (latency of an idle partition).
    pub fetch_wait_max_ms: u32,
    /// librdkafka `session.timeout.ms` of the consumer-group member.
    pub session_timeout_ms: u32,
    /// How long a rebalance waits for the owner to release a revoked partition.
    pub revoke_timeout_ms: u64,
    /// Extra librdkafka properties, applied last to every client (e.g. `security.protocol`).
    pub properties: BTreeMap<String, String>,
    /// Spill during broker outages (collector side).
    pub spill: SpillConfig,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            partitions: 8,
            replication_factor: 1,
            auto_create_topics: true,
            linger_ms: 5,
            queue_max_messages: 100_000,
            queue_max_kbytes: 256 * 1024,
            message_timeout_ms: 15_000,
            produce_timeout_ms: 16_000,
            request_timeout_ms: 10_000,
            compression: "lz4".to_owned(),
            client_id: "touchline".to_owned(),
            fetch_wait_max_ms: 100,
            session_timeout_ms: 10_000,
            revoke_timeout_ms: 30_000,
            properties: BTreeMap::new(),
            spill: SpillConfig::default(),
        }
    }
}

/// Where and how much a collector spills while Kafka is unreachable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpillConfig {
    /// Spill to an embedded log under this directory (the binary's default:
    /// `{data_dir}/spill`).
    pub dir: Option<PathBuf>,
    /// Largest backlog (key + value bytes not yet drained to Kafka); beyond it appends fail
    /// with 503.
    pub max_bytes: u64,
    /// An append Kafka has not confirmed within this goes to the spill (capped at the produce
    /// timeout; 0 = the produce timeout). The producer is then reset, so the records are
    /// never delivered twice.
    pub append_timeout_ms: u64,
    /// Records produced to Kafka per drain step.
    pub drain_batch: usize,
    /// Identical records (same key and value) already in Kafka after the last acknowledged
    /// offset are not produced again by the drain (they were written by a produce whose
    /// acknowledgement was lost). At most this many records per partition are checked when
    /// the last acknowledged offset is unknown.
    pub dedup_window: u64,
}

impl Default for SpillConfig {
    fn default() -> Self {
        SpillConfig { dir: None, max_bytes: 1 << 30, append_timeout_ms: 5_000, drain_batch: 2_000, dedup_window: 100_000 }
    }
}

impl KafkaConfig {
    /// A configuration for `brokers` with every other setting at its default.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig { brokers: brokers.into(), ..KafkaConfig::default() }
    }

    /// Checks every field; the message names the field and the rule.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka.brokers is empty: give host:port[,host:port…]".into());
        }
        for b in self.brokers.split(',') {
            let b = b.trim();
            let port = b.rsplit_once(':').map(|(_, p)| p);
            if b.is_empty() || port.is_none_or(|p| p.parse::<u16>().is_err()) {
                return Err(format!("kafka.brokers entry {b:?} is not host:port"));
            }
        }
        if self.partitions == 0 || self.partitions > 10_000 {
            return Err(format!("kafka.partitions must be between 1 and 10000, not {}", self.partitions));
        }
        if self.replication_factor < 1 {
            return Err(format!("kafka.replication_factor must be at least 1, not {}", self.replication_factor));
        }
        if self.message_timeout_ms < 1_000 {
            return Err(format!("kafka.message_timeout_ms must be at least 1000, not {}", self.message_timeout_ms));
        }
        if self.queue_max_messages == 0 {
            return Err("kafka.queue_max_messages must be at least 1".into());
        }
        if !matches!(self.compression.as_str(), "none" | "gzip" | "snappy" | "lz4" | "zstd") {
            return Err(format!("kafka.compression must be none, gzip, snappy, lz4 or zstd, not {:?}", self.compression));
        }
        if self.client_id.trim().is_empty() {
            return Err("kafka.client_id is empty".into());
        }
        if self.spill.drain_batch == 0 {
            return Err("kafka.spill.drain_batch must be at least 1".into());
        }
        Ok(())
    }

    /// How long an append waits for delivery reports: never less than `message.timeout.ms`.
    pub fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.produce_timeout_ms.max(u64::from(self.message_timeout_ms) + 1_000))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(100))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_produce_timeout_covers_message_timeout() {
        let c = KafkaConfig::default();
        c.validate().unwrap();
        let c = KafkaConfig { produce_timeout_ms: 10, message_timeout_ms: 20_000, ..c };
        assert_eq!(c.produce_timeout(), Duration::from_millis(21_000));
    }

    #[test]
    fn validation_names_the_field() {
        let e = KafkaConfig { partitions: 0, ..KafkaConfig::default() }.validate().unwrap_err();
        assert!(e.contains("kafka.partitions"), "{e}");
        let e = KafkaConfig::new("localhost").validate().unwrap_err();
        assert!(e.contains("host:port"), "{e}");
        let e = KafkaConfig { compression: "brotli".into(), ..KafkaConfig::default() }.validate().unwrap_err();
        assert!(e.contains("kafka.compression"), "{e}");
    }

    #[test]
    fn deserialises_with_defaults() {
        let c: KafkaConfig =
            serde_json::from_str(r#"{"brokers":"k1:9092,k2:9092","partitions":16,"properties":{"security.protocol":"ssl"}}"#).unwrap();
        assert_eq!(c.partitions, 16);
        assert_eq!(c.linger_ms, 5);
        assert_eq!(c.properties["security.protocol"], "ssl");
        c.validate().unwrap();
    }
}
