//! The reports API (secret key): daily campaign metrics and attribution by model, read from the
//! configured results source (the SQL store, or ClickHouse with `reports_source = clickhouse`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use touchline_collector::{ApiError, ApiQuery, AppState, SecretKey};
use touchline_model::{DailyMetricRow, RangeMetricRow};
use touchline_sql::ResultReader;

use crate::datadriven;
use crate::paths::{self, PathsBy};

/// What the report handlers share; the collector's state authenticates their secret keys.
#[derive(Clone, FromRef)]
pub struct ReportState {
    pub results: Arc<dyn ResultReader>,
    pub collector: Arc<AppState>,
    /// Markov and Shapley answers of the last seconds.
    pub data_driven: Arc<datadriven::Cache>,
}

pub fn router(state: ReportState) -> Router {
    Router::new()
        .route("/v1/reports/campaigns", get(campaigns))
        .route("/v1/reports/attribution", get(attribution))
        .route("/v1/reports/paths", get(paths))
        .with_state(state)
}

#[derive(Deserialize)]
struct Range {
    from: Option<String>,
    to: Option<String>,
    model: Option<String>,
    /// Markov's order, 1 (the default) to 3.
    order: Option<usize>,
    /// What `markov` and `shapley` are summed over: `journeys` (the default: credit per
    /// channel over the period's journeys) or `conversions` (the per-conversion rows the
    /// aggregator stores, split by the account's channel weights, like the other models).
    basis: Option<String>,
    /// Campaigns report: `day` (the default) for a row per day, `campaign` for a row per
    /// campaign and advertisement over the whole range (reach of the range, not a sum).
    group: Option<String>,
    /// Paths report: `channel` (the default) or `campaign`.
    by: Option<String>,
    /// Paths report: how many paths, 1 to [`paths::MAX_LIMIT`].
    limit: Option<usize>,
}

/// How a data-driven model is reported.
#[derive(Clone, Copy, PartialEq)]
enum Basis {
    Journeys,
    Conversions,
}

fn parse_basis(q: &Range, model: &str) -> Result<Basis, ApiError> {
    let data_driven = datadriven::MODELS.contains(&model);
    match q.basis.as_deref() {
        None if data_driven => Ok(Basis::Journeys),
        None | Some("conversions") => Ok(Basis::Conversions),
        Some("journeys") if data_driven => Ok(Basis::Journeys),
        Some("journeys") => {
            Err(ApiError::BadRequest(format!("query parameter `basis`: journeys applies to markov and shapley, not {model}")))
        }
        Some(other) => Err(ApiError::BadRequest(format!("query parameter `basis`: {other:?} is not journeys or conversions"))),
    }
}

/// Report ranges stay inside the years records can carry (the decoder refuses times outside
/// 2000–2100), and span at most ten years, so no date arithmetic can overflow and no query
/// scans an unbounded range.
const FIRST_REPORT_DAY: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => panic!("2000-01-01 is a date"),
};
const LAST_REPORT_DAY: NaiveDate = match NaiveDate::from_ymd_opt(2100, 12, 31) {
    Some(d) => d,
    None => panic!("2100-12-31 is a date"),
};
const MAX_REPORT_DAYS: i64 = 3_660;
const DEFAULT_REPORT_DAYS: i64 = 30;

fn parse_range(q: &Range) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let bad = ApiError::BadRequest;
    let parse = |name: &str, v: &Option<String>| -> Result<Option<NaiveDate>, ApiError> {
        let Some(s) = v else { return Ok(None) };
        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| bad(format!("query parameter `{name}`: {s:?} is not a date (YYYY-MM-DD)")))?;
        if !(FIRST_REPORT_DAY..=LAST_REPORT_DAY).contains(&d) {
            return Err(bad(format!("query parameter `{name}`: {d} is outside {FIRST_REPORT_DAY} to {LAST_REPORT_DAY}")));
        }
        Ok(Some(d))
    };
    let to = parse("to", &q.to)?.unwrap_or_else(|| Utc::now().date_naive().clamp(FIRST_REPORT_DAY, LAST_REPORT_DAY));
    let default_from = to.checked_sub_signed(Duration::days(DEFAULT_REPORT_DAYS)).unwrap_or(FIRST_REPORT_DAY).max(FIRST_REPORT_DAY);
    let from = parse("from", &q.from)?.unwrap_or(default_from);
    if from > to {
        return Err(bad("query parameter `from` is after `to`".into()));
    }
    if (to - from).num_days() >= MAX_REPORT_DAYS {
        return Err(bad(format!("the range {from} to {to} is longer than {MAX_REPORT_DAYS} days; ask for a shorter one")));
    }
    Ok((from, to))
}

fn num(d: Decimal) -> Value {
    use rust_decimal::prelude::ToPrimitive;
    d.normalize().to_f64().map_or(Value::Null, Value::from)
}

pub(crate) fn store_unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::StoreUnavailable(e.to_string())
}

async fn campaigns(
    State(results): State<Arc<dyn ResultReader>>,
    SecretKey(account): SecretKey,
    ApiQuery(q): ApiQuery<Range>,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = parse_range(&q)?;
    let rows: Vec<Value> = match q.group.as_deref().unwrap_or("day") {
        "day" => results.daily_metrics(account, from, to).await.map_err(store_unavailable)?.iter().map(daily_json).collect(),
        "campaign" => {
            let parts = results.range_partials(account, from, to).await.map_err(store_unavailable)?;
            let rows = touchline_model::summarize_range(&parts).map_err(store_unavailable)?;
            rows.iter().map(range_json).collect()
        }
        other => return Err(ApiError::BadRequest(format!("query parameter `group`: {other:?} is not `day` or `campaign`"))),
    };
    Ok(Json(json!({"from": from.to_string(), "to": to.to_string(), "rows": rows})))
}

/// The metrics and ratios of a row, as both groupings answer them.
fn metrics_json(r: &DailyMetricRow) -> serde_json::Map<String, Value> {
    let v = json!({
        "campaign_id": r.campaign_id,
        "advertisement_id": if r.advertisement_id.is_empty() { Value::Null } else { Value::from(r.advertisement_id.clone()) },
        "impressions": r.impressions,
        "clicks": r.clicks,
        "reach": r.reach,
        "frequency": r.frequency,
        "engagements": r.engagements,
        "sessions": r.sessions,
        "conversions": num(r.conversions),
        "revenue": num(r.revenue),
        "cost": num(r.cost),
        "ctr": r.ctr,
        "cpc": r.cpc.map(num),
        "cpm": r.cpm.map(num),
        "cpa": r.cpa.map(num),
        "roas": r.roas,
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// A row of `group=day`: one campaign/advertisement on one day.
fn daily_json(r: &DailyMetricRow) -> Value {
    let mut m = metrics_json(r);
    m.insert("date".into(), Value::from(r.metric_date.to_string()));
    Value::Object(m)
}

/// A row of `group=campaign`: one campaign/advertisement over the range, reach from the union
/// of its people over every day and partition.
fn range_json(r: &RangeMetricRow) -> Value {
    let mut m = metrics_json(&r.metrics);
    m.insert("first_date".into(), Value::from(r.first_date.to_string()));
    m.insert("last_date".into(), Value::from(r.last_date.to_string()));
    m.insert("reach_estimated".into(), Value::from(r.reach_estimated));
    Value::Object(m)
}

/// Report rows, highest `revenue` first.
pub(crate) fn by_revenue_desc(rows: &mut [Value]) {
    let revenue = |v: &Value| v["revenue"].as_f64().unwrap_or(0.0);
    rows.sort_by(|x, y| revenue(y).partial_cmp(&revenue(x)).unwrap_or(std::cmp::Ordering::Equal));
}

async fn attribution(
    State(results): State<Arc<dyn ResultReader>>,
    State(cache): State<Arc<datadriven::Cache>>,
    SecretKey(account): SecretKey,
    ApiQuery(q): ApiQuery<Range>,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = parse_range(&q)?;
    let model = q.model.clone().unwrap_or_else(|| "last_touch".into());
    if !touchline_sql::MODELS.contains(&model.as_str()) {
        return Err(ApiError::BadRequest(format!("query parameter `model`: {model:?} is not one of {}", touchline_sql::MODELS.join(", "))));
    }
    let basis = parse_basis(&q, &model)?;
    if let Some(model) = datadriven::MODELS.into_iter().find(|m| *m == model && basis == Basis::Journeys) {
        let order = q.order.unwrap_or(1);
        if !(1..=datadriven::MAX_MARKOV_ORDER).contains(&order) {
            return Err(ApiError::BadRequest(format!("query parameter `order`: {order} is not 1, 2 or 3")));
        }
        let query = datadriven::Query { account, model, from, to, order };
        let answer = datadriven::report(results.as_ref(), &cache, query).await?;
        return Ok(Json(Value::clone(&answer)));
    }
    let rows = results.attributions(account, Some(&model)).await.map_err(store_unavailable)?;
    // (campaign, advertisement, channel) → (credited conversions, revenue)
    type Key = (Option<String>, Option<String>, Option<String>);
    let mut groups: BTreeMap<Key, (f64, Decimal)> = BTreeMap::new();
    for r in rows {
        let day = r.conversion_time.date_naive();
        if day < from || day > to {
            continue;
        }
        let g = groups.entry((r.campaign_id, r.advertisement_id, r.channel_id)).or_insert((0.0, Decimal::ZERO));
        g.0 += r.weight;
        g.1 += r.attributed_revenue;
    }
    let mut out: Vec<Value> = groups
        .into_iter()
        .map(|((c, a, ch), (conv, rev))| {
            json!({"campaign_id": c, "advertisement_id": a, "channel": ch, "conversions": (conv * 1e9).round() / 1e9, "revenue": num(rev)})
        })
        .collect();
    by_revenue_desc(&mut out);
    Ok(Json(json!({"model": model, "basis": "conversions", "from": from.to_string(), "to": to.to_string(), "rows": out})))
}

/// `GET /v1/reports/paths`: the range's journeys per channel (or campaign) path, the most
/// frequent first ([`paths::top_paths`]).
async fn paths(
    State(results): State<Arc<dyn ResultReader>>,
    SecretKey(account): SecretKey,
    ApiQuery(q): ApiQuery<Range>,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = parse_range(&q)?;
    let by = PathsBy::parse(q.by.as_deref()).map_err(ApiError::BadRequest)?;
    let limit = q.limit.unwrap_or(paths::DEFAULT_LIMIT);
    if !(1..=paths::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!("query parameter `limit`: {limit} is not 1 to {}", paths::MAX_LIMIT)));
    }
    let rows = results.journey_paths(account, from, to).await.map_err(store_unavailable)?;
    let (journeys, top) = paths::top_paths(&rows, by, limit);
    let rows: Vec<Value> = top
        .into_iter()
        .map(|p| {
            json!({"path": p.path, "journeys": p.journeys, "conversions": p.conversions, "non_conversions": p.non_conversions,
                   "revenue": num(p.revenue), "conversion_rate": p.conversion_rate})
        })
        .collect();
    Ok(Json(json!({"by": by.name(), "from": from.to_string(), "to": to.to_string(), "journeys": journeys, "rows": rows})))
}
