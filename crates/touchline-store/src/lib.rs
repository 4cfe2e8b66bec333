//! touchline's storage seams, one trait per role:
//!
//! | trait | role | implementations |
//! | --- | --- | --- |
//! | [`CatalogStore`] | accounts, keys, campaigns, ads, links | SQLite, Postgres |
//! | [`ResultSink`] | what the aggregator writes: attributions, partials and the published sums, raw rows | SQLite, Postgres |
//! | [`ResultReader`] | what the reports API reads | SQLite, Postgres, ClickHouse |
//! | [`CheckpointTable`] | checkpoints shared by a consumer group, fenced by epoch | SQLite, Postgres |
//!
//! All return [`StoreError`], whose [`StoreError::is_refusal`] tells a caller whether a retry
//! can succeed. The result rows and their ratios live in `touchline_model::results`.

pub mod cache;
pub mod catalog;
pub mod checkpoints;
pub mod error;
pub mod results;
pub mod sink;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use cache::CatalogCache;
pub use catalog::{Account, Advertisement, ApiKey, Campaign, Catalog, CatalogStore, KeyKind, Link, MODELS};
pub use checkpoints::{CheckpointTable, StoredCheckpoint};
pub use error::{Result, StoreError};
pub use results::{ResultReader, ResultSink};
pub use touchline_model::results::{AttributionRow, DailyMetricRow, PartialRow};
