//! Markov and Shapley credit per channel over an account's journeys of a date range, converting
//! and non-converting alike (`journey_partials`, summed by the store), as ChannelAttribution
//! builds its chain.
//!
//! The solve runs on a blocking thread: Markov's removal effects cost one linear solve per
//! channel, so channels beyond [`MAX_CHANNELS`] (the rarest, by journeys) are merged into
//! [`OTHER_CHANNEL`]. Answers are cached per (account, range, model) for [`CACHE_TTL`], since
//! the journeys of a range change only as the aggregator flushes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{json, Value};
use touchline_collector::ApiError;
use touchline_engine::{aggregate_paths, markov_of_order, shapley, PathCount, ShapleyOptions};

pub use touchline_engine::MAX_MARKOV_ORDER;
use touchline_sql::{JourneyPathRow, ResultReader};
use uuid::Uuid;

/// Models computed on demand over the journeys of a range (and per conversion by the
/// channel weights, see [`crate::weights`]).
pub use touchline_sql::DATA_DRIVEN_MODELS as MODELS;

/// Channels the chain keeps at most; the rest are merged into [`OTHER_CHANNEL`].
pub const MAX_CHANNELS: usize = 48;

/// The channel the rarest channels are merged into beyond [`MAX_CHANNELS`].
pub const OTHER_CHANNEL: &str = "(other)";

/// How long an answer is reused for the same account, range and model.
pub const CACHE_TTL: Duration = Duration::from_secs(30);

type Key = (Uuid, NaiveDate, NaiveDate, &'static str, usize);

/// Answers of the last [`CACHE_TTL`], bounded by entries.
pub struct Cache(quick_cache::sync::Cache<Key, (Instant, Arc<Value>)>);

impl Default for Cache {
    fn default() -> Self {
        Cache(quick_cache::sync::Cache::new(1_024))
    }
}

/// What a data-driven report is asked for.
#[derive(Clone, Copy)]
pub struct Query {
    pub account: Uuid,
    /// One of [`MODELS`].
    pub model: &'static str,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Markov's order (1 to [`MAX_MARKOV_ORDER`]); Shapley ignores it.
    pub order: usize,
}

/// The credits of the model over the account's journeys of the range.
pub async fn report(results: &dyn ResultReader, cache: &Cache, q: Query) -> Result<Arc<Value>, ApiError> {
    let Query { account, model, from, to, order } = q;
    let order = if model == "markov" { order } else { 1 };
    let key = (account, from, to, model, order);
    if let Some((_, v)) = cache.0.get(&key).filter(|(at, _)| at.elapsed() < CACHE_TTL) {
        return Ok(v);
    }
    let rows = results.journey_paths(account, from, to).await.map_err(crate::reports::store_unavailable)?;
    let paths = paths_of(&rows);
    let answer = tokio::task::spawn_blocking(move || credit(paths, Query { order, ..q }))
        .await
        .map_err(|e| ApiError::Internal(format!("the {model} computation failed: {e}")))?;
    let answer = Arc::new(answer);
    cache.0.insert(key, (Instant::now(), answer.clone()));
    Ok(answer)
}

/// The channel paths of the store's journey rows, as the models read them.
pub fn paths_of(rows: &[JourneyPathRow]) -> Vec<PathCount> {
    rows.iter()
        .map(|r| PathCount {
            channels: touchline_model::results::path_names(&r.channels).into_iter().map(str::to_owned).collect(),
            conversions: r.conversions as f64,
            nulls: r.non_conversions as f64,
            value: r.revenue.to_f64().unwrap_or(0.0),
        })
        .collect()
}

/// The rarest channels (by journeys through them) beyond [`MAX_CHANNELS`] renamed
/// [`OTHER_CHANNEL`], so the chain stays small enough to solve.
pub fn bound_channels(paths: Vec<PathCount>, max: usize) -> Vec<PathCount> {
    let mut weight: HashMap<&str, f64> = HashMap::new();
    for p in &paths {
        for c in &p.channels {
            *weight.entry(c.as_str()).or_default() += p.conversions + p.nulls;
        }
    }
    if weight.len() <= max {
        return paths;
    }
    let mut ranked: Vec<(&str, f64)> = weight.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let kept: std::collections::HashSet<String> = ranked.iter().take(max.saturating_sub(1)).map(|(c, _)| (*c).to_owned()).collect();
    let merged: Vec<PathCount> = paths
        .into_iter()
        .map(|mut p| {
            for c in &mut p.channels {
                if !kept.contains(c) {
                    OTHER_CHANNEL.clone_into(c);
                }
            }
            p
        })
        .collect();
    aggregate_paths(merged)
}

fn credit(paths: Vec<PathCount>, q: Query) -> Value {
    let Query { model, from, to, order, .. } = q;
    // Whole counts: each path's come from the store's integer sums.
    let journeys = paths.iter().map(|p| p.conversions + p.nulls).sum::<f64>().round() as u64;
    let converting = paths.iter().map(|p| p.conversions).sum::<f64>().round() as u64;
    let paths = bound_channels(aggregate_paths(paths), MAX_CHANNELS);
    let round = |x: f64| (x * 1e9).round() / 1e9;
    let (channels, extra) = if model == "markov" {
        let m = markov_of_order(&paths, order);
        (m.channels, json!({"conversion_probability": round(m.conversion_probability), "order": order}))
    } else {
        let r = shapley(&paths, ShapleyOptions::default());
        (r.channels, serde_json::to_value(&r.method).unwrap_or(Value::Null))
    };
    let mut rows: Vec<Value> = channels
        .iter()
        .map(|c| {
            let mut row = json!({"campaign_id": null, "advertisement_id": null, "channel": c.channel, "conversions": round(c.conversions), "revenue": round(c.revenue)});
            if let Some(effect) = c.removal_effect {
                row["removal_effect"] = json!(round(effect));
            }
            row
        })
        .collect();
    crate::reports::by_revenue_desc(&mut rows);
    json!({"model": model, "from": from.to_string(), "to": to.to_string(), "journeys": journeys, "paths": converting,
           "details": extra, "scope": "channels, over the converting and non-converting journeys of the period", "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(channels: &[&str], conversions: f64, nulls: f64) -> PathCount {
        PathCount { channels: channels.iter().map(|c| (*c).to_owned()).collect(), conversions, nulls, value: 0.0 }
    }

    #[test]
    fn the_rarest_channels_merge_into_other() {
        let paths = vec![path(&["a", "b"], 5.0, 0.0), path(&["c"], 0.0, 1.0), path(&["d", "a"], 1.0, 0.0)];
        // Journeys through each: a 6, b 5, c 1, d 1; three kept means a, b and one merged channel.
        let bounded = bound_channels(paths.clone(), 3);
        let names: std::collections::BTreeSet<&str> = bounded.iter().flat_map(|p| p.channels.iter().map(String::as_str)).collect();
        assert_eq!(names, ["(other)", "a", "b"].into_iter().collect());
        assert_eq!(bounded.iter().map(|p| p.conversions + p.nulls).sum::<f64>(), 7.0, "no journey is lost");
        assert_eq!(bound_channels(paths.clone(), 4), paths, "within the bound nothing changes");
    }
}
