//! touchline's storage seams, one trait per role:
//!
//! | trait | role | implementations |
//! | --- | --- | --- |
//! | [`CatalogStore`] | accounts, keys, campaigns, ads, links | SQLite, Postgres |
//! | [`ResultSink`] | result rows: attributions, partials and the sums they publish, raw rows | SQLite, Postgres, ClickHouse |
//! | [`ResultReader`] | what the reports API reads | SQLite, Postgres, ClickHouse |
//! | [`CheckpointTable`] | checkpoints shared by a consumer group, fenced by epoch | SQLite, Postgres |
//! | [`sink::Sink`] | what the aggregator hands over at each flush | SQL stores, ClickHouse, the Parquet warehouse |
//!
//! The store traits return [`StoreError`], whose [`StoreError::is_refusal`] tells a caller
//! whether a retry can succeed. The result rows and their ratios live in
//! `touchline_model::results`. The `testsuite` feature holds one conformance suite per trait.

pub mod cache;
pub mod catalog;
pub mod checkpoints;
pub mod error;
pub mod results;
pub mod sink;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use cache::CatalogCache;
pub use catalog::{
    Account, Advertisement, ApiKey, Campaign, Catalog, CatalogStore, ChannelWeights, CurrencyRate, KeyKind, Link, DATA_DRIVEN_MODELS,
    MODELS,
};
pub use checkpoints::{CheckpointTable, CheckpointWrite, StoredCheckpoint};
pub use error::{Result, StoreError};
pub use results::{ResultReader, ResultSink};
pub use touchline_model::results::{AttributionRow, DailyMetricRow, JourneyPartialRow, JourneyPathRow, LinkClickPartialRow, PartialRow};
