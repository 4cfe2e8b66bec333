//! The touchline bus on Kafka (rdkafka, bundled librdkafka).
//!
//! * [`KafkaBus`] implements [`touchline_bus::Bus`]: an idempotent producer (`acks=all`, lz4,
//!   linger) whose `append` returns only after every delivery report, with the partition set
//!   explicitly by Kafka's murmur2 partitioner ([`touchline_bus::partition_for_key`]) so the
//!   embedded log and Kafka agree; per-partition readers kept positioned and prefetching;
//!   watermarks; consumer-group offsets; and [`touchline_bus::Bus::join`] as a consumer-group
//!   member with range assignment ([`KafkaMembership`]).
//! * [`ensure_topics`] creates the topics (`touchline migrate`) and checks that every existing
//!   one has the configured partition count (co-partitioning).
//! * [`SpillingBus`] wraps a [`KafkaBus`] for the collector: while Kafka is unreachable,
//!   acknowledged records go durably to an embedded-log spill and are drained to Kafka in
//!   order when the broker returns.
//!
//! Wire format: the record value is touchline's versioned JSON envelope (`{"v":1,"type":…}`,
//! see `touchline_model::Record`), the key `{account_id}:{identity}` as UTF-8, the Kafka
//! timestamp the record time (CreateTime). No headers are required to read a record.

mod admin;
mod bus;
mod config;
mod context;
mod membership;
mod reader;
mod spill;

pub use admin::{ensure_topics, TopicReport, TopicState};
pub use bus::KafkaBus;
pub use config::{KafkaConfig, SpillConfig};
pub use membership::KafkaMembership;
pub use spill::{SpillState, SpillStatus, SpillingBus};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use touchline_bus::BusError;

/// Maps a librdkafka error to the bus error the collector turns into an HTTP status: every
/// broker, network or timeout problem is `Unavailable` (503, the client retries).
pub(crate) fn bus_error(what: &str, e: &KafkaError) -> BusError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
            BusError::Unavailable(format!("kafka {what}: record too large for the broker ({e})"))
        }
        Some(RDKafkaErrorCode::MessageTimedOut) | Some(RDKafkaErrorCode::OperationTimedOut) | Some(RDKafkaErrorCode::RequestTimedOut) => {
            BusError::Unavailable(format!("kafka {what}: timed out (is the broker reachable?): {e}"))
        }
        _ => BusError::Unavailable(format!("kafka {what}: {e}")),
    }
}

/// Runs a blocking librdkafka call off the async workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, BusError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BusError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| BusError::Unavailable(format!("kafka client task failed: {e}")))?
}
