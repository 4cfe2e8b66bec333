//! Group commit of result writes.
//!
//! Every partition's flush writes its results through SQLite's one writer, and while one
//! transaction runs the other partitions queue behind it. Rather than one transaction each,
//! the writer whose turn comes next writes everything queued by then in one transaction and
//! hands each waiter its outcome:
//!
//! ```text
//!  partition 3 ──push──▶ ┌──────────────┐
//!  partition 5 ──push──▶ │ queue        │──take all──▶ BEGIN IMMEDIATE
//!  partition 1 ──push──▶ └──────────────┘             write 3, write 5, write 1
//!       │                                              COMMIT
//!       └─ each waits for the write turn; the first to get it takes the queue, the others
//!          find their outcome already sent when their turn comes, and leave.
//! ```
//!
//! One commit for a group of flushes writes each B-tree page the group touches to the WAL
//! once, instead of once per flush. That pays when flushes are small and frequent (a server's
//! flush every 5 s); a replay's flushes hold thousands of rows each, and there the cost is
//! per row. Durability is unchanged: a write returns only after the transaction
//! holding it commits. When the group's transaction fails, every write in it runs again in
//! a transaction of its own, so an error (a refused row, a full disk) reaches only the write
//! it belongs to, as if there were no group.

use tokio::sync::oneshot;

use super::{write_attributions, write_journeys, write_link_clicks, write_partials, SqliteStore};
use crate::{AttributionRow, JourneyPartialRow, LinkClickPartialRow, PartialRow, Result, StoreError};

/// A result write that can join a group.
pub(super) enum ResultWrite {
    Attributions(Vec<AttributionRow>),
    Partials(Vec<PartialRow>),
    LinkClicks(Vec<LinkClickPartialRow>),
    Journeys(Vec<JourneyPartialRow>),
}

struct Queued {
    write: ResultWrite,
    outcome: oneshot::Sender<Result<u64>>,
}

/// Writes waiting for the next transaction.
#[derive(Default)]
pub(super) struct WriteQueue(std::sync::Mutex<Vec<Queued>>);

impl WriteQueue {
    fn push(&self, write: ResultWrite) -> oneshot::Receiver<Result<u64>> {
        let (outcome, receiver) = oneshot::channel();
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Queued { write, outcome });
        receiver
    }

    fn take(&self) -> Vec<Queued> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl SqliteStore {
    /// Writes `write` in the next transaction, with whatever else is queued by then.
    pub(super) async fn write_grouped(&self, write: ResultWrite) -> Result<u64> {
        let mut outcome = self.queue.push(write);
        let turn = self.write_turn.lock().await;
        // Outcomes are sent before the turn is released, so an empty channel here means the
        // write is still queued, and this writer leads the next group.
        match outcome.try_recv() {
            Ok(done) => return done,
            Err(oneshot::error::TryRecvError::Closed) => return Err(StoreError::Cancelled),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let group = self.queue.take();
        self.commit_group(group).await;
        drop(turn);
        outcome.await.unwrap_or(Err(StoreError::Cancelled))
    }

    async fn commit_group(&self, group: Vec<Queued>) {
        tracing::trace!(writes = group.len(), "sqlite group commit");
        let writes: Vec<&ResultWrite> = group.iter().map(|q| &q.write).collect();
        match self.write_in_one_transaction(&writes).await {
            Ok(counts) => {
                for (queued, n) in group.into_iter().zip(counts) {
                    let _ = queued.outcome.send(Ok(n));
                }
            }
            Err(e) if group.len() == 1 => {
                if let Some(queued) = group.into_iter().next() {
                    let _ = queued.outcome.send(Err(e));
                }
            }
            Err(_) => {
                for queued in group {
                    let alone = self.write_in_one_transaction(&[&queued.write]).await.map(|counts| counts.into_iter().sum());
                    let _ = queued.outcome.send(alone);
                }
            }
        }
    }

    /// Rows written per write, committed together or not at all.
    async fn write_in_one_transaction(&self, writes: &[&ResultWrite]) -> Result<Vec<u64>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut counts = Vec::with_capacity(writes.len());
        for write in writes {
            counts.push(match write {
                ResultWrite::Attributions(rows) => write_attributions(&mut tx, rows).await?,
                ResultWrite::Partials(rows) => write_partials(&mut tx, rows).await?,
                ResultWrite::LinkClicks(rows) => write_link_clicks(&mut tx, rows).await?,
                ResultWrite::Journeys(rows) => write_journeys(&mut tx, rows).await?,
            });
        }
        tx.commit().await?;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use uuid::Uuid;

    use crate::prelude::*;
    use crate::Account;
    use touchline_store::testsuite::attribution;

    use super::*;

    async fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        store.migrate().await.unwrap();
        store.upsert_account(&Account::new(Uuid::from_u128(1), "known")).await.unwrap();
        (dir, Arc::new(store))
    }

    fn set(account: u128, conversion: &str) -> Vec<AttributionRow> {
        (0..3).map(|t| attribution(Uuid::from_u128(account), conversion, &format!("t{t}"), "linear", 1, 1.0 / 3.0)).collect()
    }

    /// Holds the write turn while `writes` queue behind it, so that they form one group.
    async fn one_group(store: &Arc<SqliteStore>, writes: Vec<Vec<AttributionRow>>) -> Vec<Result<u64>> {
        let turn = store.write_turn.lock().await;
        let n = writes.len();
        let tasks: Vec<_> = writes
            .into_iter()
            .map(|rows| {
                let store = store.clone();
                tokio::spawn(async move { store.upsert_attributions(&rows).await })
            })
            .collect();
        while store.queue.0.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(turn);
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        outcomes
    }

    #[tokio::test]
    async fn queued_writes_commit_together_and_each_gets_its_count() {
        let (_dir, store) = store().await;
        let outcomes = one_group(&store, vec![set(1, "a"), set(1, "b"), set(1, "c")]).await;
        assert_eq!(outcomes.into_iter().map(|o| o.unwrap()).collect::<Vec<_>>(), vec![3, 3, 3]);
        assert_eq!(store.attributions(Uuid::from_u128(1), None).await.unwrap().len(), 9);
    }

    #[tokio::test]
    async fn a_refused_write_fails_alone_and_its_group_is_written() {
        let (_dir, store) = store().await;
        // Account 2 does not exist: its rows break the foreign key, a refusal.
        let outcomes = one_group(&store, vec![set(1, "a"), set(2, "x"), set(1, "b")]).await;
        assert_eq!(outcomes[0].as_ref().unwrap(), &3);
        let refused = outcomes[1].as_ref().unwrap_err();
        assert!(refused.is_refusal(), "{refused}");
        assert_eq!(outcomes[2].as_ref().unwrap(), &3);
        let stored = store.attributions(Uuid::from_u128(1), None).await.unwrap();
        let mut conversions: Vec<&str> = stored.iter().map(|r| r.conversion_id.as_str()).collect();
        conversions.dedup();
        assert_eq!(conversions, vec!["a", "b"]);
    }

    #[tokio::test]
    async fn a_write_taken_by_a_cancelled_leader_reports_cancelled() {
        let (_dir, store) = store().await;
        let turn = store.write_turn.lock().await;
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.upsert_attributions(&set(1, "a")).await })
        };
        while store.queue.0.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // A leader that took the queue and was dropped before committing.
        drop(store.queue.take());
        drop(turn);
        assert!(matches!(waiter.await.unwrap(), Err(StoreError::Cancelled)));
        assert!(store.attributions(Uuid::from_u128(1), None).await.unwrap().is_empty());
    }
}
