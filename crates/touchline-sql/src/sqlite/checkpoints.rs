//! Aggregator checkpoints and their base snapshots in SQLite, fenced by epoch. SQLite has one
//! writer at a time, so a write checked against the partition's epoch in its own (immediate)
//! transaction cannot interleave with a take-over.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::{SqliteStore, NOW};
use crate::{checkpoint_from_row, CheckpointTable, CheckpointWrite, Result, StoreError, StoredCheckpoint};

/// Whether `epoch` is the partition's epoch.
async fn holds_epoch(tx: &mut Transaction<'static, Sqlite>, group: &str, partition: u32, epoch: u32) -> Result<bool> {
    let current: Option<i64> = sqlx::query_scalar("SELECT epoch FROM aggregator_checkpoints WHERE group_id = ? AND partition = ?")
        .bind(group)
        .bind(partition as i32)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(current == Some(i64::from(epoch)))
}

#[async_trait]
impl CheckpointTable for SqliteStore {
    async fn checkpoint_acquire(&self, group: &str, partition: u32) -> Result<u32> {
        let _turn = self.write_turn.lock().await;
        let epoch: i64 = sqlx::query_scalar(&format!(
            "INSERT INTO aggregator_checkpoints (group_id, partition, epoch) VALUES (?, ?, 1) \
             ON CONFLICT (group_id, partition) DO UPDATE SET epoch = aggregator_checkpoints.epoch + 1, updated_at = {NOW} \
             RETURNING epoch"
        ))
        .bind(group)
        .bind(partition as i32)
        .fetch_one(&self.pool)
        .await?;
        u32::try_from(epoch).map_err(|_| StoreError::Invalid(format!("checkpoint epoch {epoch} out of range")))
    }

    async fn checkpoint_load(&self, group: &str, partition: u32) -> Result<Option<StoredCheckpoint>> {
        let row =
            sqlx::query_as("SELECT epoch, offsets, snapshot, replay FROM aggregator_checkpoints WHERE group_id = ? AND partition = ?")
                .bind(group)
                .bind(partition as i32)
                .fetch_optional(&self.pool)
                .await?;
        Ok(checkpoint_from_row(row))
    }

    async fn checkpoint_save(&self, group: &str, partition: u32, c: CheckpointWrite<'_>) -> Result<bool> {
        let _turn = self.write_turn.lock().await;
        let n = sqlx::query(&format!(
            "UPDATE aggregator_checkpoints SET offsets = ?, snapshot = ?, replay = ?, updated_at = {NOW} \
             WHERE group_id = ? AND partition = ? AND epoch = ?"
        ))
        .bind(c.offsets_json)
        .bind(c.snapshot)
        .bind(c.replay_json)
        .bind(group)
        .bind(partition as i32)
        .bind(i64::from(c.epoch))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn checkpoint_save_base(&self, group: &str, partition: u32, epoch: u32, name: &str, snapshot: &[u8]) -> Result<bool> {
        let (_turn, mut tx) = self.write_tx().await?;
        if !holds_epoch(&mut tx, group, partition, epoch).await? {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO aggregator_checkpoint_bases (group_id, partition, name, epoch, snapshot) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (group_id, partition, name) DO UPDATE SET epoch = excluded.epoch, snapshot = excluded.snapshot",
        )
        .bind(group)
        .bind(partition as i32)
        .bind(name)
        .bind(i64::from(epoch))
        .bind(snapshot)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn checkpoint_load_base(&self, group: &str, partition: u32, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT snapshot FROM aggregator_checkpoint_bases WHERE group_id = ? AND partition = ? AND name = ?")
            .bind(group)
            .bind(partition as i32)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn checkpoint_remove_bases_except(&self, group: &str, partition: u32, epoch: u32, keep: &str) -> Result<bool> {
        let (_turn, mut tx) = self.write_tx().await?;
        if !holds_epoch(&mut tx, group, partition, epoch).await? {
            return Ok(false);
        }
        sqlx::query("DELETE FROM aggregator_checkpoint_bases WHERE group_id = ? AND partition = ? AND name <> ?")
            .bind(group)
            .bind(partition as i32)
            .bind(keep)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn checkpoint_clear(&self, group: &str) -> Result<u64> {
        let (_turn, mut tx) = self.write_tx().await?;
        let n = sqlx::query("UPDATE aggregator_checkpoints SET snapshot = NULL, replay = NULL, offsets = '{}' WHERE group_id = ?")
            .bind(group)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM aggregator_checkpoint_bases WHERE group_id = ?").bind(group).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(n)
    }
}
