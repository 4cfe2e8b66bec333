//! Checkpoints as rows of a table every instance of a consumer group shares (Kafka
//! deployments), fenced by epoch: a partition's new owner bumps its epoch, and saves under an
//! older epoch are refused from then on.

use async_trait::async_trait;

use crate::Result;

/// An aggregator checkpoint as stored: the epoch it was written under, the next offset of
/// every topic (a JSON object), and the engine snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub epoch: u32,
    pub offsets_json: String,
    pub snapshot: Vec<u8>,
}

#[async_trait]
pub trait CheckpointTable: Send + Sync + 'static {
    /// Takes `partition` of consumer group `group` for a new owner: bumps and returns its
    /// epoch. Saves made with an older epoch fail from now on.
    async fn checkpoint_acquire(&self, group: &str, partition: u32) -> Result<u32>;

    /// The stored checkpoint of a partition, if any.
    async fn checkpoint_load(&self, group: &str, partition: u32) -> Result<Option<StoredCheckpoint>>;

    /// Stores a checkpoint (written under `epoch`) if `epoch` is still the partition's
    /// epoch; `false` when a newer owner has acquired the partition (nothing is written then).
    async fn checkpoint_save(&self, group: &str, partition: u32, epoch: u32, offsets_json: &str, snapshot: &[u8]) -> Result<bool>;

    /// Deletes a group's checkpoints (before a replay). Epochs are kept, so the next owner's
    /// results still supersede earlier ones.
    async fn checkpoint_clear(&self, group: &str) -> Result<u64>;
}
