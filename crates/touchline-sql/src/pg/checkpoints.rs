//! Aggregator checkpoints and their base snapshots in Postgres, fenced by epoch. A write
//! that must happen only under the partition's current epoch locks the partition's
//! checkpoint row first (`FOR UPDATE`), so an owner taking the partition over waits for it,
//! and it for the take-over.

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::PgStore;
use crate::{checkpoint_from_row, CheckpointTable, CheckpointWrite, Result, StoreError, StoredCheckpoint};

/// Whether `epoch` is the partition's epoch, its checkpoint row locked until `tx` ends.
async fn holds_epoch(tx: &mut Transaction<'static, Postgres>, group: &str, partition: u32, epoch: u32) -> Result<bool> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM aggregator_checkpoints WHERE group_id = $1 AND partition = $2 FOR UPDATE")
            .bind(group)
            .bind(partition as i32)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(current == Some(i64::from(epoch)))
}

#[async_trait]
impl CheckpointTable for PgStore {
    async fn checkpoint_acquire(&self, group: &str, partition: u32) -> Result<u32> {
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO aggregator_checkpoints (group_id, partition, epoch) VALUES ($1, $2, 1) \
             ON CONFLICT (group_id, partition) DO UPDATE SET epoch = aggregator_checkpoints.epoch + 1, updated_at = now() \
             RETURNING epoch",
        )
        .bind(group)
        .bind(partition as i32)
        .fetch_one(&self.pool)
        .await?;
        u32::try_from(epoch).map_err(|_| StoreError::Invalid(format!("checkpoint epoch {epoch} out of range")))
    }

    async fn checkpoint_load(&self, group: &str, partition: u32) -> Result<Option<StoredCheckpoint>> {
        let row =
            sqlx::query_as("SELECT epoch, offsets, snapshot, replay FROM aggregator_checkpoints WHERE group_id = $1 AND partition = $2")
                .bind(group)
                .bind(partition as i32)
                .fetch_optional(&self.pool)
                .await?;
        Ok(checkpoint_from_row(row))
    }

    async fn checkpoint_save(&self, group: &str, partition: u32, c: CheckpointWrite<'_>) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE aggregator_checkpoints SET offsets = $1, snapshot = $2, replay = $3, updated_at = now() \
             WHERE group_id = $4 AND partition = $5 AND epoch = $6",
        )
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
        let mut tx = self.pool.begin().await?;
        if !holds_epoch(&mut tx, group, partition, epoch).await? {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO aggregator_checkpoint_bases (group_id, partition, name, epoch, snapshot) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (group_id, partition, name) DO UPDATE SET epoch = EXCLUDED.epoch, snapshot = EXCLUDED.snapshot",
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
        Ok(sqlx::query_scalar("SELECT snapshot FROM aggregator_checkpoint_bases WHERE group_id = $1 AND partition = $2 AND name = $3")
            .bind(group)
            .bind(partition as i32)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn checkpoint_remove_bases_except(&self, group: &str, partition: u32, epoch: u32, keep: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !holds_epoch(&mut tx, group, partition, epoch).await? {
            return Ok(false);
        }
        sqlx::query("DELETE FROM aggregator_checkpoint_bases WHERE group_id = $1 AND partition = $2 AND name <> $3")
            .bind(group)
            .bind(partition as i32)
            .bind(keep)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn checkpoint_clear(&self, group: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("UPDATE aggregator_checkpoints SET snapshot = NULL, replay = NULL, offsets = '{}' WHERE group_id = $1")
            .bind(group)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM aggregator_checkpoint_bases WHERE group_id = $1").bind(group).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(n)
    }
}
