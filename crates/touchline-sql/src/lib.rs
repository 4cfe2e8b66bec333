//! The SQL side of touchline, one crate for Postgres (production) and SQLite (the embedded
//! default): the catalog the collector and aggregator read (accounts, keys, campaigns with their
//! time zones, advertisements, short links), the fact tables written back with idempotent
//! upserts of absolute values, the raw entity tables (SQLite), and a catalog cache.
//!
//! Both backends implement [`Store`]; [`conformance`] is one suite run against each.

pub mod cache;
pub mod conformance;
pub mod pg;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use cache::CatalogCache;
pub use pg::PgStore;
pub use sqlite::SqliteStore;
pub use touchline_model::results::{publish_cells, AttributionRow, DailyMetricRow, PartialRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database URL {0:?}: use postgres://… or sqlite://…")]
    BadUrl(String),
    #[error("{0}")]
    Invalid(String),
    /// The store cannot hold these rows as they are (a sum that overflows its column);
    /// writing them again would fail again.
    #[error("refused: {0}")]
    Refused(String),
    /// The transaction that held this write was cancelled before it committed, so nothing
    /// of it was written; writing again succeeds.
    #[error("the transaction holding this write was cancelled before it committed")]
    Cancelled,
}

impl StoreError {
    /// True when the database refused the data itself (a value out of range, a character it
    /// cannot store, a constraint): the same rows will be refused again, so retrying is
    /// pointless. Connection, timeout, lock and space errors are not refusals.
    pub fn is_refusal(&self) -> bool {
        if matches!(self, StoreError::Refused(_)) {
            return true;
        }
        let StoreError::Db(sqlx::Error::Database(db)) = self else { return false };
        let code = db.code();
        let code = code.as_deref().unwrap_or("");
        if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
            return postgres_refusal(code);
        }
        sqlite_refusal(code)
    }
}

/// SQLSTATE classes 22 (data exception: numeric out of range, invalid text such as NUL,
/// bad datetime) and 23 (integrity constraint violation).
fn postgres_refusal(sqlstate: &str) -> bool {
    sqlstate.starts_with("22") || sqlstate.starts_with("23")
}

/// SQLite's primary result codes (the low byte of an extended code): TOOBIG (18), CONSTRAINT
/// (19), MISMATCH (20), RANGE (25). BUSY, LOCKED, IOERR and FULL are worth retrying.
fn sqlite_refusal(code: &str) -> bool {
    code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The attribution models, as stored in `attribution_model`.
pub const MODELS: [&str; 8] =
    ["first_touch", "last_touch", "last_non_direct", "linear", "time_decay", "position_based", "markov", "shapley"];

/// An account and its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub timezone: String,
    pub default_attribution_model: String,
    pub click_lookback_days: i32,
    pub view_lookback_days: i32,
    pub time_decay_half_life_days: f64,
    pub session_timeout_minutes: i32,
    pub anonymize_ip: bool,
}

impl Account {
    /// An account with the defaults of the brief.
    pub fn new(id: Uuid, name: impl Into<String>) -> Account {
        Account {
            id,
            name: name.into(),
            timezone: "UTC".into(),
            default_attribution_model: "last_touch".into(),
            click_lookback_days: 30,
            view_lookback_days: 1,
            time_decay_half_life_days: 7.0,
            session_timeout_minutes: 30,
            anonymize_ip: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Write,
    Secret,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Write => "write",
            KeyKind::Secret => "secret",
        }
    }

    fn parse(s: &str) -> Result<KeyKind> {
        match s {
            "write" => Ok(KeyKind::Write),
            "secret" => Ok(KeyKind::Secret),
            other => Err(StoreError::Invalid(format!("unknown key kind {other:?}"))),
        }
    }
}

/// An API key as stored: its SHA-256 hash, never the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub account_id: Uuid,
    pub kind: KeyKind,
    pub key_hash: String,
    pub prefix: String,
    pub revoked: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub account_id: Uuid,
    pub id: String,
    pub name: Option<String>,
    pub timezone: String,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Advertisement {
    pub account_id: Uuid,
    pub id: String,
    pub campaign_id: Option<String>,
    pub channel_id: Option<String>,
    pub title: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub account_id: Uuid,
    pub short_code: String,
    pub target_url: String,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub campaign_id: Option<String>,
    pub advertisement_id: Option<String>,
    pub deleted: bool,
}

/// Everything the collector and aggregator read from the catalog.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    pub version: i64,
    pub accounts: Vec<Account>,
    pub keys: Vec<ApiKey>,
    pub campaigns: Vec<Campaign>,
    pub advertisements: Vec<Advertisement>,
    pub links: Vec<Link>,
}

pub(crate) fn checkpoint_from_row(row: Option<(i64, String, Option<Vec<u8>>)>) -> Option<StoredCheckpoint> {
    row.and_then(|(epoch, offsets_json, snapshot)| {
        snapshot.map(|snapshot| StoredCheckpoint { epoch: u32::try_from(epoch).unwrap_or(u32::MAX), offsets_json, snapshot })
    })
}

/// An aggregator checkpoint as stored in SQL: the epoch it was written under, the next offset
/// of every topic (JSON object), and the engine snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub epoch: u32,
    pub offsets_json: String,
    pub snapshot: Vec<u8>,
}

/// A store: Postgres or SQLite.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;

    /// Applies pending migrations (re-runnable).
    async fn migrate(&self) -> Result<()>;

    /// Reads the whole catalog (as the service, across accounts).
    async fn load_catalog(&self) -> Result<Catalog>;

    /// Bumped by every catalog change (triggers); cheap to poll.
    async fn catalog_version(&self) -> Result<i64>;

    /// One key by hash (a cache miss).
    async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKey>>;

    /// Creates or updates an account's settings.
    async fn upsert_account(&self, account: &Account) -> Result<()>;

    /// Adds a key (by hash). Adding an existing hash is a no-op.
    async fn insert_key(&self, key: &ApiKey) -> Result<()>;

    /// Revokes every key of `kind` of an account except `keep_hash`.
    async fn revoke_keys(&self, account_id: Uuid, kind: KeyKind, keep_hash: Option<&str>) -> Result<u64>;

    async fn upsert_campaign(&self, campaign: &Campaign) -> Result<()>;

    async fn upsert_advertisement(&self, ad: &Advertisement) -> Result<()>;

    async fn upsert_link(&self, link: &Link) -> Result<()>;

    /// Idempotent upsert of absolute daily metrics (grouped by account, one transaction each,
    /// with the account set for row-level security).
    async fn upsert_daily_metrics(&self, rows: &[DailyMetricRow]) -> Result<u64>;

    /// Upserts attribution rows: for each (conversion, model), rows of older versions are
    /// deleted, and rows older than what is stored are ignored.
    async fn upsert_attributions(&self, rows: &[AttributionRow]) -> Result<u64>;

    /// Writes one aggregator partition's partial rows (absolute values) and republishes the
    /// touched cells of `campaign_performance_metrics` as the sum over all partitions, in one
    /// transaction per account under a per-account lock. Idempotent.
    async fn publish_partials(&self, rows: &[PartialRow]) -> Result<u64>;

    /// Deletes every derived result (partials, published metrics, attributions) of every
    /// account, before a replay rebuilds them. Catalog and raw tables are kept.
    async fn clear_results(&self) -> Result<u64>;

    /// Daily metrics of an account between two dates (inclusive), read as that account.
    async fn daily_metrics(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<DailyMetricRow>>;

    /// Attribution rows of an account, optionally of one model, read as that account.
    async fn attributions(&self, account_id: Uuid, model: Option<&str>) -> Result<Vec<AttributionRow>>;

    /// Raw entity rows (SQLite: the raw tables, INSERT OR IGNORE by record id; Postgres keeps
    /// raw entities in ClickHouse and returns 0).
    async fn insert_raw(&self, records: &[touchline_model::Record]) -> Result<u64>;

    /// Takes partition `partition` of consumer group `group` for a new owner: bumps and
    /// returns its checkpoint epoch. Saves made with an older epoch fail from now on.
    async fn checkpoint_acquire(&self, group: &str, partition: u32) -> Result<u32>;

    /// The stored checkpoint of a partition, if any.
    async fn checkpoint_load(&self, group: &str, partition: u32) -> Result<Option<StoredCheckpoint>>;

    /// Stores a checkpoint (written under `epoch`) if `epoch` is still the partition's epoch;
    /// `false` when a newer owner has acquired the partition (nothing is written then).
    async fn checkpoint_save(&self, group: &str, partition: u32, epoch: u32, offsets_json: &str, snapshot: &[u8]) -> Result<bool>;

    /// Deletes a group's checkpoints (before a replay). Epochs are kept, so the next owner's
    /// results still supersede earlier ones.
    async fn checkpoint_clear(&self, group: &str) -> Result<u64>;

    /// Clicks per short code of an account, `(human, bot)`, from the raw `link_clicks` table.
    /// `None` where raw clicks are not kept in SQL (Postgres keeps them in ClickHouse).
    async fn link_click_counts(&self, _account_id: Uuid) -> Result<Option<std::collections::HashMap<String, (i64, i64)>>> {
        Ok(None)
    }

    /// Returns when the catalog may have changed (Postgres: a NOTIFY) or after `timeout`.
    async fn wait_for_change(&self, timeout: std::time::Duration) {
        tokio::time::sleep(timeout).await
    }
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
