//! Fresh planner statistics for a table that grows fast.
//!
//! Postgres plans from table statistics, which autovacuum refreshes at most once per
//! `autovacuum_naptime` (a minute by default) and only once a tenth of the table changed. A
//! result table that grows from empty during a replay or a backfill is planned as if it were
//! still empty: the DELETE of replaced attribution sets chose a sort and merge join over
//! every row of the account (442 ms for 1,124 sets, 402 k rows) where an index seek per set
//! takes 19 ms. So the store analyzes such a table itself whenever the rows written to it
//! reach twice what they were at its last ANALYZE: a handful of ANALYZEs per replay, each a
//! bounded sample (`default_statistics_target`), whatever the table's size.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::PgPool;

/// Rows written before the first ANALYZE.
pub(crate) const FIRST_ANALYZE_ROWS: u64 = 10_000;

pub(crate) struct GrowthAnalyzer {
    table: &'static str,
    written: AtomicU64,
    next_at: AtomicU64,
    running: AtomicBool,
}

impl GrowthAnalyzer {
    pub(crate) fn new(table: &'static str) -> Arc<GrowthAnalyzer> {
        Arc::new(GrowthAnalyzer {
            table,
            written: AtomicU64::new(0),
            next_at: AtomicU64::new(FIRST_ANALYZE_ROWS),
            running: AtomicBool::new(false),
        })
    }

    /// Counts `rows` written (and committed). When the count reaches the next threshold,
    /// analyzes the table in the background; a write never waits for it.
    pub(crate) fn wrote(self: &Arc<Self>, pool: &PgPool, rows: u64) {
        let written = self.written.fetch_add(rows, Ordering::Relaxed).saturating_add(rows);
        if written < self.next_at.load(Ordering::Relaxed) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.next_at.store(written.saturating_mul(2), Ordering::Relaxed);
        let (this, pool) = (self.clone(), pool.clone());
        tokio::spawn(async move {
            // Statistics are an optimisation: a failed ANALYZE leaves the old plans, so it is
            // logged, not returned to a writer.
            if let Err(e) = sqlx::query(&format!("ANALYZE {}", this.table)).execute(&pool).await {
                tracing::warn!(table = this.table, error = %e, "ANALYZE failed");
            }
            this.running.store(false, Ordering::Release);
        });
    }
}
