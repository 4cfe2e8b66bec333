//! Checkpoints as rows of a table every instance of a consumer group shares (Kafka
//! deployments), fenced by epoch: a partition's new owner bumps its epoch, and saves under an
//! older epoch are refused from then on.
//!
//! Beside each checkpoint the table keeps the partition's *base* snapshots: a checkpoint may
//! hold the whole engine state, or name a base and the offsets to feed again on top of it
//! (the aggregator's `Replay`), so that checkpoints between two bases cost a few hundred bytes
//! instead of the whole state. Writing and removing bases is fenced by the same epoch, so an
//! owner that lost its partition can neither add a base nor remove one its successor needs.

use async_trait::async_trait;

use crate::Result;

/// An aggregator checkpoint as stored: the epoch it was written under, the next offset of
/// every topic (a JSON object), the engine snapshot (empty when `replay_json` names a base to
/// rebuild it from) and that replay, as JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub epoch: u32,
    pub offsets_json: String,
    pub snapshot: Vec<u8>,
    pub replay_json: Option<String>,
}

/// A checkpoint to save, borrowed from the caller (snapshots can be large).
#[derive(Clone, Copy, Debug)]
pub struct CheckpointWrite<'a> {
    /// The saver's epoch: the save happens only while it is the partition's epoch.
    pub epoch: u32,
    pub offsets_json: &'a str,
    pub snapshot: &'a [u8],
    pub replay_json: Option<&'a str>,
}

#[async_trait]
pub trait CheckpointTable: Send + Sync + 'static {
    /// Takes `partition` of consumer group `group` for a new owner: bumps and returns its
    /// epoch. Saves made with an older epoch fail from now on.
    async fn checkpoint_acquire(&self, group: &str, partition: u32) -> Result<u32>;

    /// The stored checkpoint of a partition, if any.
    async fn checkpoint_load(&self, group: &str, partition: u32) -> Result<Option<StoredCheckpoint>>;

    /// Stores a checkpoint if its epoch is still the partition's epoch; `false` when a newer
    /// owner has acquired the partition (nothing is written then).
    async fn checkpoint_save(&self, group: &str, partition: u32, c: CheckpointWrite<'_>) -> Result<bool>;

    /// Stores a base snapshot of `partition` under `name` if `epoch` is still the partition's
    /// epoch; `false` when a newer owner has acquired it (nothing is written then).
    async fn checkpoint_save_base(&self, group: &str, partition: u32, epoch: u32, name: &str, snapshot: &[u8]) -> Result<bool>;

    /// The base snapshot `name` of `partition`, if stored.
    async fn checkpoint_load_base(&self, group: &str, partition: u32, name: &str) -> Result<Option<Vec<u8>>>;

    /// Removes every base snapshot of `partition` but `keep`, if `epoch` is still the
    /// partition's epoch; `false` (nothing removed) when a newer owner has acquired it.
    async fn checkpoint_remove_bases_except(&self, group: &str, partition: u32, epoch: u32, keep: &str) -> Result<bool>;

    /// Deletes a group's checkpoints and base snapshots (before a replay). Epochs are kept,
    /// so the next owner's results still supersede earlier ones.
    async fn checkpoint_clear(&self, group: &str) -> Result<u64>;
}
