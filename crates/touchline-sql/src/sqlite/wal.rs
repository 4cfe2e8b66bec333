//! WAL checkpoints beside the writer rather than inside it.
//!
//! SQLite copies the WAL back into the database file (a checkpoint) from the connection that
//! commits once the WAL holds `wal_autocheckpoint` pages, so the one writer stops taking
//! rows while it copies pages: about a tenth of its time in a replay (perf, 454 k records).
//! Here a task checkpoints `PASSIVE` every [`CHECKPOINT_EVERY`] on another pool connection,
//! which sqlx runs on its own thread, while the writer goes on. A passive checkpoint never
//! blocks the writer nor waits for readers.
//!
//! The writer's own auto-checkpoint stays as a bound at [`WRITER_CHECKPOINT_PAGES`]: the WAL
//! starts again from its beginning only when a write begins after every frame was copied, so
//! under a writer that never pauses the task may not get the WAL to restart, and the writer
//! then checkpoints itself once it is that large (cheap: the task copied most frames).

use std::time::Duration;

use sqlx::SqlitePool;
use tokio::task::JoinHandle;

/// How often the task checkpoints. A checkpoint with nothing to copy costs one read of the
/// WAL index.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// WAL pages (4 KiB) at which a commit checkpoints on the writer's own connection: 64 MiB,
/// sixteen times SQLite's default, reached only when the task fell behind.
pub(super) const WRITER_CHECKPOINT_PAGES: u32 = 16_384;

/// The checkpoint task of a store's pool; it stops when this is dropped.
pub(super) struct Checkpointer(JoinHandle<()>);

impl Checkpointer {
    /// Starts checkpointing `pool`'s database in the background (needs a Tokio runtime).
    pub(super) fn start(pool: SqlitePool) -> Checkpointer {
        Checkpointer(tokio::spawn(async move {
            let mut every = tokio::time::interval(CHECKPOINT_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if pool.is_closed() {
                    return;
                }
                // A failure (the file busy in another process, the disk full) is the writer's
                // to report; the next tick tries again.
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                    tracing::debug!(error = %e, "WAL checkpoint failed; retrying");
                }
            }
        }))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}
