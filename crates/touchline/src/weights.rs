//! The data-driven channel weights: each account's per-channel shares of its conversions under
//! Markov and Shapley, computed over its journeys of a trailing window and stored in the
//! catalog (`channel_weights`), from where the aggregator splits each conversion by them.
//!
//! The window ends on the last day whose journeys are all decided: a journey that did not
//! convert is known only once no late record can extend it or convert it (the allowed
//! lateness plus twice the click lookback after its last touch, see docs/attribution.md).
//! Days after that hold their converting journeys but not yet their non-converting ones, and
//! weights over them would favour the channels of converting paths.
//!
//! They are refreshed on a schedule, never per record: a refresh changes the rows of every
//! conversion the aggregator still holds at most once, and a refresh per record would rewrite
//! them continuously. Every instance running the schedule checks the stored `computed_at`, so
//! instances sharing a catalog refresh an account about once per interval (two that check at
//! the same moment both compute, from the same journeys, the same weights).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use touchline_engine::{aggregate_paths, markov_of_order, shapley, ChannelCredit, PathCount, ShapleyOptions};
use touchline_sql::{Account, CatalogCache, CatalogStore, ChannelWeights, ResultReader};
use uuid::Uuid;

use crate::datadriven::{bound_channels, paths_of, MAX_CHANNELS, OTHER_CHANNEL};

/// When and over what the weights are computed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeightsConfig {
    /// Seconds between two refreshes of an account's weights (default a day); 0 turns the
    /// schedule off (`touchline weights refresh` still works).
    pub refresh_secs: u64,
    /// Days of journeys the weights are computed over (default 90), up to the last day whose
    /// journeys are all decided.
    pub window_days: u32,
    /// Order of the Markov chain (1 to 3, default 1).
    pub markov_order: usize,
}

impl Default for WeightsConfig {
    fn default() -> Self {
        WeightsConfig { refresh_secs: 86_400, window_days: 90, markov_order: 1 }
    }
}

/// How often the schedule looks for accounts whose weights are due, at most.
const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// The weights of `account` under Markov and Shapley over its journeys of the `window_days`
/// days that end on `to`.
pub async fn compute(
    results: &dyn ResultReader,
    account: Uuid,
    to: NaiveDate,
    cfg: &WeightsConfig,
    now: DateTime<Utc>,
) -> anyhow::Result<[ChannelWeights; 2]> {
    let from = to - chrono::Days::new(u64::from(cfg.window_days.max(1) - 1));
    let rows = results.journey_paths(account, from, to).await.with_context(|| format!("reading the journeys of account {account}"))?;
    let journeys = rows.iter().map(|r| r.conversions + r.non_conversions).sum();
    let conversions = rows.iter().map(|r| r.conversions).sum();
    let paths = paths_of(&rows);
    let order = cfg.markov_order.clamp(1, touchline_engine::MAX_MARKOV_ORDER);
    let (markov, shapley) = tokio::task::spawn_blocking(move || solve(paths, order)).await.context("the weights computation failed")?;
    let weights = |model: &str, weights| ChannelWeights {
        account_id: account,
        model: model.to_owned(),
        weights,
        window_from: from,
        window_to: to,
        journeys,
        conversions,
        computed_at: now,
    };
    Ok([weights("markov", markov), weights("shapley", shapley)])
}

/// Markov's and Shapley's channel shares over `paths`.
fn solve(paths: Vec<PathCount>, order: usize) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let paths = aggregate_paths(paths);
    let all: BTreeSet<String> = paths.iter().flat_map(|p| p.channels.iter().cloned()).collect();
    let bounded = bound_channels(paths, MAX_CHANNELS);
    let kept: BTreeSet<&str> = bounded.iter().flat_map(|p| p.channels.iter().map(String::as_str)).collect();
    let merged: Vec<&str> = all.iter().map(String::as_str).filter(|c| !kept.contains(c)).collect();
    let markov = shares(&markov_of_order(&bounded, order).channels, &merged);
    let shapley = shares(&shapley(&bounded, ShapleyOptions::default()).channels, &merged);
    (markov, shapley)
}

/// Each channel's share of the credited conversions. The share of [`OTHER_CHANNEL`] goes in
/// equal parts to the channels merged into it, so every channel of the journeys has its own.
fn shares(credits: &[ChannelCredit], merged: &[&str]) -> BTreeMap<String, f64> {
    let total: f64 = credits.iter().map(|c| c.conversions.max(0.0)).sum();
    let mut out = BTreeMap::new();
    if !(total > 0.0 && total.is_finite()) {
        return out;
    }
    for c in credits {
        let share = c.conversions.max(0.0) / total;
        if share <= 0.0 {
            continue;
        }
        if c.channel == OTHER_CHANNEL && !merged.is_empty() {
            let each = share / merged.len() as f64;
            out.extend(merged.iter().map(|m| ((*m).to_owned(), each)));
        } else {
            out.insert(c.channel.clone(), share);
        }
    }
    out
}

/// Computes and stores the weights of `account` now.
pub async fn refresh(
    store: &dyn CatalogStore,
    results: &dyn ResultReader,
    account: Uuid,
    to: NaiveDate,
    cfg: &WeightsConfig,
) -> anyhow::Result<[ChannelWeights; 2]> {
    let weights = compute(results, account, to, cfg, Utc::now()).await?;
    for w in &weights {
        store.put_channel_weights(w).await.with_context(|| format!("storing the {} weights of account {account}", w.model))?;
    }
    Ok(weights)
}

/// The last day whose journeys are all decided on `today`, as the engine decides them: a
/// touch is judged once the touch cutoff (the allowed lateness plus the longest lookback of any
/// account, `longest_lookback_days`) has passed it, and its run is counted once that cutoff has
/// passed its last touch by the account's click lookback. A day counts once its last instant
/// has, so the day before `today` minus that sum is the last one.
pub fn last_decided_day(today: NaiveDate, lateness_secs: i64, longest_lookback_days: i32, click_lookback_days: i32) -> NaiveDate {
    let lateness_days = lateness_secs.max(0).unsigned_abs().div_ceil(86_400);
    let days = |d: i32| u64::from(d.max(0).unsigned_abs());
    let total = lateness_days.saturating_add(days(longest_lookback_days)).saturating_add(days(click_lookback_days)).saturating_add(1);
    today.checked_sub_days(chrono::Days::new(total)).unwrap_or(NaiveDate::MIN)
}

/// The longest click or view lookback, in days, of `accounts` and of the engine's defaults for
/// an account the catalog does not know: the engine holds touches that long.
pub fn longest_lookback_days<'a>(accounts: impl IntoIterator<Item = &'a Account>) -> i32 {
    let defaults = touchline_engine::AccountSettings::default().max_lookback_secs().max(0).unsigned_abs().div_ceil(86_400);
    let defaults = i32::try_from(defaults).unwrap_or(i32::MAX);
    accounts.into_iter().map(|a| a.click_lookback_days.max(a.view_lookback_days)).fold(defaults, i32::max)
}

/// Weight refreshes this process stored, and those that failed (exported in /metrics).
pub static REFRESHES: AtomicU64 = AtomicU64::new(0);
pub static REFRESH_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Refreshes every account whose weights are missing or older than the interval; returns how
/// many it refreshed. `lateness_secs` is the aggregator's allowed lateness.
pub async fn refresh_due(
    catalog: &CatalogCache,
    store: &dyn CatalogStore,
    results: &dyn ResultReader,
    cfg: &WeightsConfig,
    lateness_secs: i64,
) -> usize {
    let snap = catalog.snapshot();
    let now = Utc::now();
    let interval = chrono::Duration::seconds(i64::try_from(cfg.refresh_secs).unwrap_or(i64::MAX));
    let mut refreshed = 0;
    let longest = longest_lookback_days(snap.accounts.values());
    for (account, settings) in &snap.accounts {
        let last = touchline_sql::DATA_DRIVEN_MODELS
            .iter()
            .map(|m| snap.channel_weights.get(&(*account, (*m).to_owned())).map(|w| w.computed_at))
            .min()
            .flatten();
        if last.is_some_and(|t| now.signed_duration_since(t) < interval) {
            continue;
        }
        let to = last_decided_day(now.date_naive(), lateness_secs, longest, settings.click_lookback_days);
        match refresh(store, results, *account, to, cfg).await {
            Ok(w) => {
                refreshed += 1;
                REFRESHES.fetch_add(1, Ordering::Relaxed);
                tracing::info!(account = %account, journeys = w[0].journeys, channels = w[0].weights.len(), "refreshed the channel weights");
            }
            Err(e) => {
                REFRESH_FAILURES.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(account = %account, error = format!("{e:#}"), "could not refresh the channel weights; retrying later");
            }
        }
    }
    refreshed
}

/// Runs the schedule until `stop` turns true: a check at start, then every hour at most.
pub async fn run_schedule(
    catalog: std::sync::Arc<CatalogCache>,
    store: std::sync::Arc<dyn touchline_sql::Store>,
    results: std::sync::Arc<dyn ResultReader>,
    cfg: WeightsConfig,
    lateness_secs: i64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if cfg.refresh_secs == 0 {
        return;
    }
    let every = CHECK_EVERY.min(Duration::from_secs(cfg.refresh_secs));
    loop {
        refresh_due(&catalog, store.as_ref(), results.as_ref(), &cfg, lateness_secs).await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// `touchline weights …`: the channel weights the aggregator splits conversions by.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum WeightsCommand {
    /// Compute and store the weights now, whatever the schedule, and print them as JSON.
    Refresh {
        /// The account (id or name); every account when omitted.
        #[arg(long)]
        account: Option<String>,
        /// Last day of the window (YYYY-MM-DD); by default the last day whose journeys are all
        /// decided, as the schedule does.
        #[arg(long)]
        to: Option<NaiveDate>,
    },
    /// Print the stored weights as JSON.
    Show,
}

/// Runs a `touchline weights` command against the configured stores.
pub async fn cli(config: crate::config::Config, command: WeightsCommand) -> anyhow::Result<()> {
    let store = crate::app::open_store(&config).await?;
    let weights = match command {
        WeightsCommand::Show => store.load_catalog().await.context("reading the catalog")?.channel_weights,
        WeightsCommand::Refresh { account, to } => {
            let clickhouse = crate::app::open_clickhouse(&config).await?;
            let results = crate::app::results_reader(&config, &store, clickhouse.as_ref())?;
            let accounts = store.load_catalog().await.context("reading the catalog")?.accounts;
            let chosen: Vec<Uuid> = accounts
                .iter()
                .filter(|a| account.as_deref().is_none_or(|want| want == a.name || want == a.id.to_string()))
                .map(|a| a.id)
                .collect();
            if chosen.is_empty() {
                anyhow::bail!("no account {:?} in {}", account.unwrap_or_default(), crate::app::redact(&config.database_url()));
            }
            let mut out = Vec::new();
            let longest = longest_lookback_days(&accounts);
            for id in chosen {
                let lookback = accounts.iter().find(|a| a.id == id).map_or(30, |a| a.click_lookback_days);
                let today = Utc::now().date_naive();
                let to = to.unwrap_or_else(|| last_decided_day(today, config.aggregator.allowed_lateness_secs, longest, lookback));
                out.extend(refresh(store.as_ref(), results.as_ref(), id, to, &config.weights).await?);
            }
            out
        }
    };
    println!("{}", serde_json::to_string_pretty(&weights)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn path(channels: &[&str], conversions: f64, nulls: f64) -> PathCount {
        PathCount { channels: channels.iter().map(|c| (*c).to_owned()).collect(), conversions, nulls, value: 0.0 }
    }

    #[test]
    fn shares_follow_the_credits_and_split_other_over_its_channels() {
        let credit =
            |channel: &str, conversions: f64| ChannelCredit { channel: channel.into(), conversions, revenue: 0.0, removal_effect: None };
        let got = shares(&[credit("a", 3.0), credit("(other)", 1.0)], &["x", "y"]);
        let want: BTreeMap<String, f64> = [("a".to_owned(), 0.75), ("x".to_owned(), 0.125), ("y".to_owned(), 0.125)].into_iter().collect();
        assert_eq!(got, want);
        assert!(shares(&[credit("a", 0.0)], &[]).is_empty(), "nothing credited: no weights");
    }

    #[test]
    fn the_window_ends_where_every_journey_is_decided() {
        // 7 days of lateness, 30 of the longest lookback, 30 of the click lookback: a run
        // whose last touch is at 2026-10-01T23:59:59Z is counted at watermark
        // 2026-12-07T23:59:59Z (the engine's boundaries test pins 67 days to the second), so on
        // 2026-12-07 the last whole decided day is 2026-09-30 (Dec 7 − 30 = Nov 7, − 31 =
        // Oct 7, − 6 = Oct 1, − 1).
        let today = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        assert_eq!(last_decided_day(today, 7 * 86_400, 30, 30), NaiveDate::from_ymd_opt(2026, 9, 30).unwrap());
        // Another account's 90-day view lookback keeps every touch 60 days longer.
        assert_eq!(last_decided_day(today, 7 * 86_400, 90, 30), NaiveDate::from_ymd_opt(2026, 8, 1).unwrap());
        // Part of a day of lateness counts as a whole one: 1 + 1 + 1 + 1 days.
        assert_eq!(last_decided_day(today, 3_600, 1, 1), NaiveDate::from_ymd_opt(2026, 12, 3).unwrap());
        assert_eq!(last_decided_day(today, i64::MAX, i32::MAX, i32::MAX), NaiveDate::MIN, "no overflow");
    }

    #[test]
    fn the_longest_lookback_counts_views_and_the_engine_defaults() {
        let id = |n: u128| Uuid::from_u128(n);
        let mut short = Account::new(id(1), "short");
        (short.click_lookback_days, short.view_lookback_days) = (7, 1);
        assert_eq!(longest_lookback_days([&short]), 30, "the engine's default click lookback");
        let mut views = Account::new(id(2), "views");
        (views.click_lookback_days, views.view_lookback_days) = (30, 90);
        assert_eq!(longest_lookback_days([&short, &views]), 90);
    }

    #[test]
    fn weights_of_a_hand_solved_chain() {
        // Journeys: a>b converts twice, a fails once, b converts once.
        // Markov (order 1): P(a→b)=2/3, P(a→null)=1/3, P(b→conv)=1; starts: a 3/4, b 1/4.
        // P(conv) = 3/4·2/3 + 1/4 = 3/4. Removing a: 1/4, effect 1 − (1/4)/(3/4) = 2/3.
        // Removing b: 0, effect 1. Shares: a (2/3)/(5/3) = 0.4, b 0.6.
        // Shapley: v({a}) = 0, v({b}) = 1, v({a,b}) = 3: a = (0 + 2)/2 = 1, b = (1 + 3)/2 = 2;
        // shares 1/3 and 2/3.
        let (markov, shapley) = solve(vec![path(&["a", "b"], 2.0, 0.0), path(&["a"], 0.0, 1.0), path(&["b"], 1.0, 0.0)], 1);
        assert!((markov["a"] - 0.4).abs() < 1e-9 && (markov["b"] - 0.6).abs() < 1e-9, "{markov:?}");
        assert!((shapley["a"] - 1.0 / 3.0).abs() < 1e-9 && (shapley["b"] - 2.0 / 3.0).abs() < 1e-9, "{shapley:?}");
    }
}
