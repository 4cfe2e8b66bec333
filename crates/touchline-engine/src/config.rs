//! Engine configuration: the partition this engine owns, per-account settings and the campaign
//! catalog (time zones, data-driven channel weights). Every default lives here.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use touchline_model::Currency;
use uuid::Uuid;

use crate::attribution::Model;
use crate::currency::Rates;

/// Per-account settings. [`AccountSettings::default`] holds every default of the engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountSettings {
    /// Inactivity that closes a derived session (default 30 min). A gap `>=` this starts a new one.
    pub session_timeout_secs: i64,
    /// Longest derived session (default 24 h); an event at `>=` start + this starts a new session.
    pub session_max_secs: i64,
    /// Start a new derived session when an event carries a different utm source/medium/campaign.
    pub split_session_on_utm_change: bool,
    /// Click-class touches count for conversions up to this long after them (default 30 days).
    pub click_lookback_secs: i64,
    /// View-class touches (impressions) count up to this long after them (default 1 day).
    pub view_lookback_secs: i64,
    /// Half-life of the time-decay model (default 7 days).
    pub half_life_secs: i64,
    /// Model whose credit feeds `conversions`/`revenue` of the daily metrics (default last_touch).
    pub default_model: Model,
    /// Time zone of campaigns the catalog does not know (default UTC).
    pub default_time_zone: Tz,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            session_timeout_secs: 30 * 60,
            session_max_secs: 24 * 3600,
            split_session_on_utm_change: true,
            click_lookback_secs: 30 * 86_400,
            view_lookback_secs: 86_400,
            half_life_secs: 7 * 86_400,
            default_model: Model::LastTouch,
            default_time_zone: Tz::UTC,
        }
    }
}

impl AccountSettings {
    /// The longest lookback window of the account.
    pub fn max_lookback_secs(&self) -> i64 {
        self.click_lookback_secs.max(self.view_lookback_secs).max(0)
    }
}

/// The data-driven weights of one account under one model (`markov` or `shapley`): each
/// channel's share of the conversions the model credits over the account's recent journeys,
/// converting and not. The runtime computes them on a schedule, never per record; the engine
/// splits each conversion by them ([`crate::channel_credit`]). Keys are channel names as journey
/// paths write them ([`crate::journeys::path_name`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelWeights(pub BTreeMap<String, f64>);

impl ChannelWeights {
    /// The weight of `channel` (as a path names it): 0 when the table has none, or none usable.
    pub fn of(&self, path_name: &str) -> f64 {
        self.0.get(path_name).copied().filter(|w| w.is_finite() && *w > 0.0).unwrap_or(0.0)
    }
}

/// Campaign catalog supplied by the runtime as plain data: the time zone of each campaign, the
/// data-driven weights and the reporting currency of each account, and the exchange rates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    /// account → campaign id → IANA time zone.
    pub campaign_time_zones: HashMap<Uuid, HashMap<String, Tz>>,
    /// (account, `Model::Markov` or `Model::Shapley`) → channel weights. An account without
    /// them gets the linear split under those models.
    pub channel_weights: HashMap<(Uuid, Model), ChannelWeights>,
    /// Reporting currency of each account (USD when absent).
    pub currencies: HashMap<Uuid, Currency>,
    /// Exchange rates into (and out of) the reporting currencies.
    pub rates: Rates,
}

impl Catalog {
    /// The currency `account` reports revenue and cost in.
    pub fn reporting_currency(&self, account: &Uuid) -> Currency {
        self.currencies.get(account).copied().unwrap_or(Currency::USD)
    }

    /// `amount` in `currency` as `account` reports it at `at`: `(amount, currency)` converted,
    /// or `None` when no rate covers `at` ([`crate::currency`]).
    pub fn in_reporting_currency(
        &self,
        account: &Uuid,
        amount: Decimal,
        currency: Currency,
        at: DateTime<Utc>,
    ) -> Option<(Decimal, Currency)> {
        let to = self.reporting_currency(account);
        Some((self.rates.convert(amount, currency, to, at)?, to))
    }

    /// Adds a campaign's time zone from its IANA name; an unknown name is ignored and returned as `false`.
    pub fn set_time_zone(&mut self, account: Uuid, campaign_id: &str, tz_name: &str) -> bool {
        match tz_name.parse::<Tz>() {
            Ok(tz) => {
                self.campaign_time_zones.entry(account).or_default().insert(campaign_id.to_owned(), tz);
                true
            }
            Err(_) => false,
        }
    }

    /// A digest of the data-driven weights of every account that has some: what the engine
    /// compares to know whose conversions to credit again.
    pub(crate) fn weight_digests(&self) -> BTreeMap<Uuid, u64> {
        let mut sorted: Vec<(&(Uuid, Model), &ChannelWeights)> = self.channel_weights.iter().collect();
        sorted.sort_by_key(|(k, _)| **k);
        let mut out: BTreeMap<Uuid, crate::util::Fingerprint> = BTreeMap::new();
        for ((account, model), table) in sorted {
            let h = out.entry(*account).or_insert_with(|| crate::util::Fingerprint::new(false));
            h.u64(model.index() as u64);
            for (channel, w) in &table.0 {
                h.bytes(channel.as_bytes());
                h.u64(w.to_bits());
            }
        }
        out.into_iter().map(|(a, h)| (a, h.value())).collect()
    }
}

/// Everything the engine needs to know that is not in the records.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// The bus partition this engine instance consumes.
    pub partition: u32,
    /// Partition count of the entity topics (to decide whether a stitched identity lives elsewhere).
    pub partitions: u32,
    /// Settings of accounts without an override.
    pub default_settings: AccountSettings,
    /// Per-account overrides.
    pub accounts: HashMap<Uuid, AccountSettings>,
    /// Records with a timestamp older than `watermark - allowed_lateness` are not applied; they are
    /// counted in [`crate::Counters::too_late`] and reported to the caller (default 7 days).
    pub allowed_lateness_secs: i64,
    /// Campaign time zones.
    pub catalog: Catalog,
    /// Records a partition holds while they wait for an exchange rate; beyond it a record
    /// without a rate is refused ([`crate::Ingest::NoRate`]).
    pub max_waiting_for_rate: usize,
    /// Bytes (JSON) of the records a partition holds while they wait for an exchange rate;
    /// beyond it a record without a rate is refused too.
    pub max_waiting_for_rate_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            partition: 0,
            partitions: 1,
            default_settings: AccountSettings::default(),
            accounts: HashMap::new(),
            allowed_lateness_secs: 7 * 86_400,
            catalog: Catalog::default(),
            max_waiting_for_rate: crate::currency::DEFAULT_MAX_WAITING_FOR_RATE,
            max_waiting_for_rate_bytes: crate::currency::DEFAULT_MAX_WAITING_FOR_RATE_BYTES,
        }
    }
}

impl EngineConfig {
    /// A single-partition configuration with every default.
    pub fn single() -> Self {
        EngineConfig::default()
    }

    pub fn settings(&self, account: &Uuid) -> &AccountSettings {
        self.accounts.get(account).unwrap_or(&self.default_settings)
    }

    /// Longest lookback of any account (drives eviction).
    pub fn max_lookback_secs(&self) -> i64 {
        self.accounts.values().map(AccountSettings::max_lookback_secs).fold(self.default_settings.max_lookback_secs(), i64::max)
    }

    /// Longest derived-session span of any account.
    pub fn max_session_secs(&self) -> i64 {
        self.accounts.values().map(|s| s.session_max_secs).fold(self.default_settings.session_max_secs, i64::max).max(0)
    }

    /// Time zone in which the days of `campaign` are counted.
    pub fn time_zone(&self, account: &Uuid, campaign: &str) -> Tz {
        self.catalog
            .campaign_time_zones
            .get(account)
            .and_then(|m| m.get(campaign))
            .copied()
            .unwrap_or(self.settings(account).default_time_zone)
    }

    pub(crate) fn lateness(&self) -> Duration {
        Duration::try_seconds(self.allowed_lateness_secs.max(0)).unwrap_or(Duration::MAX)
    }
}
