//! The SQL side of touchline, one crate for Postgres (production) and SQLite (the embedded
//! default): the catalog the collector and aggregator read (accounts, keys, campaigns with their
//! time zones, advertisements, short links), the fact tables written back with idempotent
//! upserts of absolute values, the raw entity tables (SQLite), and a catalog cache.
//!
//! Both backends implement [`Store`], the union of the role traits of `touchline-store`, whose
//! conformance suites run against each (`tests/sqlite.rs`, `tests/postgres.rs`).

mod columns;
pub mod pg;
mod rows;
pub mod sink;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

pub use pg::PgStore;
pub use sink::SqlSink;
pub use sqlite::SqliteStore;
pub use touchline_model::results::publish_cells;
pub use touchline_store::{cache, CatalogCache};
pub use touchline_store::{
    Account, Advertisement, ApiKey, AttributionRow, Campaign, Catalog, CatalogStore, ChannelWeights, CheckpointTable, CheckpointWrite,
    CurrencyRate, DailyMetricRow, JourneyPartialRow, JourneyPathRow, KeyKind, Link, LinkClickPartialRow, PartialRow, Result, ResultReader,
    ResultSink, StoreError, StoredCheckpoint, DATA_DRIVEN_MODELS, MODELS,
};

/// The store traits, for callers of their methods: `use touchline_sql::prelude::*;`.
pub mod prelude {
    pub use crate::Store;
    pub use touchline_store::{CatalogStore, CheckpointTable, ResultReader, ResultSink};
}

/// A SQL store, Postgres or SQLite: every role at once, in one database.
#[async_trait]
pub trait Store: CatalogStore + ResultSink + ResultReader + CheckpointTable {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;

    /// Applies pending migrations (re-runnable).
    async fn migrate(&self) -> Result<()>;

    /// Idempotent upsert of absolute daily metrics rows, bypassing the partials (one
    /// transaction per account): for tools and tests that plant published rows.
    async fn upsert_daily_metrics(&self, rows: &[DailyMetricRow]) -> Result<u64>;
}

/// A checkpoint row as selected: epoch, offsets, snapshot (NULL once cleared) and replay.
pub(crate) type CheckpointRow = (i64, String, Option<Vec<u8>>, Option<String>);

pub(crate) fn checkpoint_from_row(row: Option<CheckpointRow>) -> Option<StoredCheckpoint> {
    row.and_then(|(epoch, offsets_json, snapshot, replay_json)| {
        snapshot.map(|snapshot| StoredCheckpoint { epoch: u32::try_from(epoch).unwrap_or(u32::MAX), offsets_json, snapshot, replay_json })
    })
}

/// Connects to `postgres://…` or `sqlite://…` (the file is created when missing).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::BadUrl(url.to_owned()))
    }
}

/// Rows grouped by account, in first-seen order (one transaction per account).
pub(crate) fn by_account<T>(rows: &[T], account: impl Fn(&T) -> Uuid) -> Vec<(Uuid, Vec<&T>)> {
    let mut out: Vec<(Uuid, Vec<&T>)> = Vec::new();
    for r in rows {
        let a = account(r);
        match out.iter_mut().find(|(id, _)| *id == a) {
            Some((_, v)) => v.push(r),
            None => out.push((a, vec![r])),
        }
    }
    out
}

/// For attribution upserts: the newest version per (conversion, model) in a batch; rows of
/// older versions in the same batch are dropped.
pub(crate) fn newest_versions<'a>(rows: &[&'a AttributionRow]) -> Vec<&'a AttributionRow> {
    use std::collections::HashMap;
    let mut newest: HashMap<(&str, &str), i64> = HashMap::new();
    for r in rows {
        let e = newest.entry((r.conversion_id.as_str(), r.attribution_model.as_str())).or_insert(r.version);
        *e = (*e).max(r.version);
    }
    rows.iter().copied().filter(|r| newest.get(&(r.conversion_id.as_str(), r.attribution_model.as_str())) == Some(&r.version)).collect()
}

/// Rows per statement in batched upserts (well under both backends' bind-parameter limits).
pub(crate) const CHUNK: usize = 500;
