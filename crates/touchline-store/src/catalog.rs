//! The catalog: accounts and their settings, API keys (by hash), campaigns with their time
//! zones, advertisements, short links, the data-driven channel weights of each account and the exchange rates. The collector and the aggregator read it whole
//! ([`CatalogStore::load_catalog`]) and follow its changes ([`CatalogStore::catalog_version`]).

use async_trait::async_trait;
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Result, StoreError};

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
    /// Reporting currency (ISO 4217, upper case): revenue and cost are converted to it.
    pub currency: String,
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
            currency: "USD".into(),
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

    pub fn parse(s: &str) -> Result<KeyKind> {
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

/// The data-driven models whose per-conversion credit uses [`ChannelWeights`].
pub const DATA_DRIVEN_MODELS: [&str; 2] = ["markov", "shapley"];

/// An account's channel weights under one data-driven model, computed over its journeys of a
/// window of days: each channel's share of the conversions the model credits there. The
/// aggregator splits each conversion's credit by them (see docs/attribution.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelWeights {
    pub account_id: Uuid,
    /// One of [`DATA_DRIVEN_MODELS`].
    pub model: String,
    /// Channel (as journey paths name it) → share; the shares sum to 1, or the map is empty
    /// when the window held no converting journey.
    pub weights: BTreeMap<String, f64>,
    /// First and last day of the journeys they were computed over.
    pub window_from: NaiveDate,
    pub window_to: NaiveDate,
    /// Journeys of the window, converting and not, and the converting ones.
    pub journeys: i64,
    pub conversions: i64,
    pub computed_at: DateTime<Utc>,
}

/// An exchange rate, in the shape of the seeds' `currency_conversion`: one `from_currency` is
/// worth `rate` of `to_currency` from `valid_from` until `valid_until` (exclusive; when absent,
/// until the pair's next row). Global, not per account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurrencyRate {
    pub from_currency: String,
    pub to_currency: String,
    pub rate: Decimal,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    /// Who supplied it (`manual`, `ecb`, …).
    pub source: String,
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
    pub channel_weights: Vec<ChannelWeights>,
    /// Sorted by (from, to, valid_from).
    pub currency_rates: Vec<CurrencyRate>,
}

/// Where the catalog lives (the SQL stores).
#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// Reads the whole catalog (as the service, across accounts).
    async fn load_catalog(&self) -> Result<Catalog>;

    /// Bumped by every catalog change; cheap to poll.
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

    /// Replaces an account's channel weights under one model.
    async fn put_channel_weights(&self, weights: &ChannelWeights) -> Result<()>;

    /// Adds an exchange rate, or replaces the one of the same (from, to, valid_from).
    async fn put_currency_rate(&self, rate: &CurrencyRate) -> Result<()>;

    /// Returns when the catalog may have changed (Postgres: a NOTIFY) or after `timeout`.
    async fn wait_for_change(&self, timeout: std::time::Duration) {
        tokio::time::sleep(timeout).await
    }
}
