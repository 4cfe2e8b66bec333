//! The bus: one trait, several implementations with the same semantics (topics, partitions
//! chosen by key with Kafka's partitioner, offsets, consumer-group commits).
//!
//! * [`EmbeddedLog`] — a durable, checksummed, segmented log on local disk (the single-machine
//!   default). An append returns only after its records are fsynced; concurrent appends share
//!   one fsync per partition (group commit).
//! * Kafka (rdkafka) — in its own issue, behind the same trait and the same [`conformance`] suite.

use std::time::Duration;

use async_trait::async_trait;

pub mod conformance;
pub mod log;

pub use log::reader::LogReader;
pub use log::{EmbeddedLog, LogConfig};

/// A record to append. The partition is chosen from `key` (Kafka's murmur2 partitioner).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutRecord {
    pub topic: String,
    pub key: String,
    pub value: Vec<u8>,
    /// Record time in epoch milliseconds (used for retention by age).
    pub timestamp_ms: i64,
}

/// Where an appended record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub partition: u32,
    pub offset: u64,
}

/// A record read back from the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: String,
    pub value: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus cannot take records now; the client should retry (HTTP 503).
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt record in {path} at byte {position}: {why}")]
    Corrupt { path: String, position: u64, why: String },
    #[error("invalid topic name {0:?}: use 1 to 249 characters of [a-zA-Z0-9._-]")]
    InvalidTopic(String),
    #[error("partition {partition} does not exist in topic {topic} ({partitions} partitions)")]
    NoSuchPartition { topic: String, partition: u32, partitions: u32 },
    #[error("record of {size} bytes is over the bus limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("{0}")]
    Config(String),
    #[error("the bus is shut down")]
    Closed,
}

impl BusError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        BusError::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// The bus every touchline role talks to.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Number of partitions of every entity topic (the same on all, for co-partitioning).
    fn partitions(&self) -> u32;

    /// Appends records durably, in order per partition; returns each record's position, in the
    /// order given. When this returns `Ok`, the records survive a crash of the process.
    async fn append(&self, records: Vec<OutRecord>) -> Result<Vec<Position>, BusError>;

    /// Reads up to `max` records of one partition starting at `from`. Waits up to `wait` for
    /// records when none are available yet; an empty result means none arrived in time.
    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize, wait: Duration) -> Result<Vec<StoredRecord>, BusError>;

    /// The first offset still held (earlier ones were removed by retention).
    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, BusError>;

    /// The offset the next appended record will get (one past the last durable record).
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, BusError>;

    /// Stores `next_offset` (the offset of the next record to process) for a consumer group.
    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<(), BusError>;

    /// The offset a consumer group committed, if any.
    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, BusError>;

    /// `Ok` when the bus accepts appends now (for `/readyz`).
    async fn ready(&self) -> Result<(), BusError>;
}

/// The partition a key goes to among `partitions` (Kafka's default partitioner).
pub fn partition_for_key(key: &str, partitions: u32) -> u32 {
    touchline_model::partition_for(key.as_bytes(), partitions)
}

/// Checks a topic name the way Kafka does.
pub fn validate_topic(topic: &str) -> Result<(), BusError> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BusError::InvalidTopic(topic.to_owned()))
    }
}
