//! The bus: one trait, several implementations with the same semantics (topics, partitions
//! chosen by key with Kafka's partitioner, offsets, consumer-group commits).
//!
//! * [`EmbeddedLog`] — a durable, checksummed, segmented log on local disk (the single-machine
//!   default). An append returns only after its records are fsynced; concurrent appends share
//!   one fsync per partition (group commit).
//! * Kafka (rdkafka) — crate `touchline-kafka`, behind the same trait and the same
//!   [`conformance`] suite.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

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

    /// State worth showing at `/readyz` (e.g. a Kafka spill's backlog); `null` when none.
    fn details(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Joins consumer group `group` for `topics` and returns this process's share of the
    /// partitions. The default (embedded log, one process) owns every partition for good;
    /// Kafka assigns partitions among the group's members and moves them on rebalance.
    async fn join(&self, group: &str, topics: &[&str]) -> Result<Arc<dyn Membership>, BusError> {
        let _ = (group, topics);
        Ok(Arc::new(StaticMembership::new((0..self.partitions()).collect())))
    }
}

/// A process's share of a consumer group: the partitions it owns now.
///
/// Protocol: when a partition leaves [`Membership::owned`], the owner stops consuming it,
/// flushes and checkpoints it, then calls [`Membership::released`]; a rebalance waits for that
/// (up to a timeout) before the partition is given to another member, so two members never
/// work on one partition at once in the normal case.
pub trait Membership: Send + Sync + 'static {
    /// The partitions owned now (sorted); the receiver sees every change.
    fn owned(&self) -> watch::Receiver<Vec<u32>>;
    /// The owner has stopped and checkpointed `partition` after it left `owned`.
    fn released(&self, partition: u32);
}

/// Membership that owns a fixed set of partitions (single process).
pub struct StaticMembership {
    owned: watch::Sender<Vec<u32>>,
}

impl StaticMembership {
    pub fn new(mut partitions: Vec<u32>) -> Self {
        partitions.sort_unstable();
        partitions.dedup();
        StaticMembership { owned: watch::Sender::new(partitions) }
    }
}

impl Membership for StaticMembership {
    fn owned(&self) -> watch::Receiver<Vec<u32>> {
        self.owned.subscribe()
    }
    fn released(&self, _partition: u32) {}
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
