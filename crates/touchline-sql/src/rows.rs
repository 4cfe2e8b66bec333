//! The SQL both stores share: the result tables' column lists, the catalog's SELECTs and the mapping of every row type from
//! either backend's rows ([`Columns`]).

use crate::columns::Columns;
use crate::{
    Account, Advertisement, ApiKey, AttributionRow, Campaign, ChannelWeights, CurrencyRate, DailyMetricRow, JourneyPathRow, KeyKind, Link,
    PartialRow, Result, StoreError,
};

/// Columns of `campaign_performance_metrics` a row is written with, in bind order.
pub(crate) const METRIC_COLS: &str =
    "account_id, campaign_id, advertisement_id, metric_date, impressions, clicks, reach, frequency, engagements, sessions, \
     conversions, revenue, cost, currency, ctr, cpc, cpm, cpa, roas, utm_source, utm_medium, utm_campaign";

/// Columns of `campaign_attributions` a row is written with, in bind order.
pub(crate) const ATTR_COLS: &str =
    "account_id, conversion_id, touchpoint_id, attribution_model, version, campaign_id, advertisement_id, customer_id, \
     touchpoint_type, touchpoint_timestamp, channel_id, conversion_time, conversion_value, currency, weight, attributed_revenue";

/// Columns of `link_click_partials` a row is written with, in bind order.
pub(crate) const LINK_CLICK_COLS: &str = "account_id, short_code, click_date, partition, human_clicks, bot_clicks, epoch";

/// Clicks per short code of the account bound as `param` (`$1` or `?`), summed over
/// partitions and days.
pub(crate) fn link_click_sums_sql(param: &str) -> String {
    format!(
        "SELECT short_code, CAST(sum(human_clicks) AS BIGINT), CAST(sum(bot_clicks) AS BIGINT) FROM link_click_partials \
         WHERE account_id = {param} GROUP BY short_code"
    )
}

/// Columns of `journey_partials` a row is written with, in bind order.
pub(crate) const JOURNEY_COLS: &str =
    "account_id, journey_date, channels, campaigns, partition, conversions, non_conversions, revenue, epoch";

/// The upsert of `journey_partials` rows: absolute values, and a write of an earlier epoch (a
/// previous owner of the partition) is ignored. `excluded` is how the backend names the
/// proposed row.
pub(crate) fn journey_upsert_sql(excluded: &str, now: &str) -> String {
    format!(
        " ON CONFLICT (account_id, journey_date, channels, campaigns, partition) DO UPDATE SET \
         conversions = {excluded}.conversions, non_conversions = {excluded}.non_conversions, revenue = {excluded}.revenue, \
         epoch = {excluded}.epoch, updated_at = {now} WHERE journey_partials.epoch <= {excluded}.epoch"
    )
}

/// An account's journeys per path: `rows` (any number per path) summed, paths whose sums are
/// all zero left out, sorted by channels then campaigns in byte order, as every store returns
/// them (a database's collation may sort text otherwise).
pub(crate) fn sum_journey_paths(rows: impl IntoIterator<Item = JourneyPathRow>) -> Vec<JourneyPathRow> {
    let mut paths: std::collections::BTreeMap<(String, String), JourneyPathRow> = std::collections::BTreeMap::new();
    for r in rows {
        match paths.entry((r.channels.clone(), r.campaigns.clone())) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(r);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let p = o.get_mut();
                p.conversions = p.conversions.saturating_add(r.conversions);
                p.non_conversions = p.non_conversions.saturating_add(r.non_conversions);
                p.revenue += r.revenue;
            }
        }
    }
    paths
        .into_values()
        .filter(|p| p.conversions != 0 || p.non_conversions != 0 || !p.revenue.is_zero())
        .map(|p| JourneyPathRow { revenue: p.revenue.normalize(), ..p })
        .collect()
}

pub(crate) fn journey_path_from_row(r: &impl Columns) -> Result<JourneyPathRow> {
    Ok(JourneyPathRow {
        channels: r.text("channels")?,
        campaigns: r.text("campaigns")?,
        conversions: r.int64("conversions")?,
        non_conversions: r.int64("non_conversions")?,
        revenue: r.money("revenue")?,
    })
}

/// Every partition's partial metrics of the account bound as `param` (`$1` or `?`) between
/// the days bound as the next two parameters: what a range report unions.
pub(crate) fn range_partials_sql(params: [&str; 3]) -> String {
    let [account, from, to] = params;
    format!(
        "SELECT {PARTIAL_COLS} FROM campaign_metric_partials WHERE account_id = {account} AND metric_date BETWEEN {from} AND {to} \
         ORDER BY campaign_id, advertisement_id, metric_date, partition",
        PARTIAL_COLS = crate::pg::PARTIAL_COLS
    )
}

/// Every table of derived results: what a replay clears before rebuilding them.
pub(crate) const RESULT_TABLES: [&str; 5] =
    ["campaign_metric_partials", "campaign_performance_metrics", "campaign_attributions", "link_click_partials", "journey_partials"];

pub(crate) const CATALOG_VERSION_SQL: &str = "SELECT version FROM catalog_version WHERE id = 1";

pub(crate) const ACCOUNTS_SQL: &str = "SELECT id, name, timezone, default_attribution_model, click_lookback_days, \
     view_lookback_days, time_decay_half_life_days, session_timeout_minutes, anonymize_ip, currency FROM accounts \
     WHERE deleted_at IS NULL ORDER BY name";

pub(crate) const KEYS_SQL: &str = "SELECT account_id, kind, key_hash, prefix, revoked_at IS NOT NULL AS revoked FROM api_keys ORDER BY id";

pub(crate) const CAMPAIGNS_SQL: &str = "SELECT account_id, id, name, timezone, start_date, end_date FROM marketing_campaigns \
     WHERE deleted_at IS NULL ORDER BY account_id, id";

pub(crate) const ADVERTISEMENTS_SQL: &str =
    "SELECT account_id, id, campaign_id, channel_id, title FROM advertisements WHERE deleted_at IS NULL ORDER BY account_id, id";

pub(crate) const LINKS_SQL: &str = "SELECT account_id, short_code, target_url, utm_source, utm_medium, utm_campaign, utm_term, \
     utm_content, campaign_id, advertisement_id, deleted_at IS NOT NULL AS deleted FROM links ORDER BY short_code";

/// The exchange rates, `{rate}` being the column as [`Columns::money`] reads it.
pub(crate) fn currency_rates_sql(rate: &str) -> String {
    format!(
        "SELECT from_currency, to_currency, {rate} AS rate, valid_from, valid_until, source FROM currency_rates \
         ORDER BY from_currency, to_currency, valid_from"
    )
}

pub(crate) fn currency_rate_from_row(r: &impl Columns) -> Result<CurrencyRate> {
    Ok(CurrencyRate {
        from_currency: r.text("from_currency")?,
        to_currency: r.text("to_currency")?,
        rate: r.money("rate")?,
        valid_from: r.time("valid_from")?,
        valid_until: r.opt_time("valid_until")?,
        source: r.text("source")?,
    })
}

/// Refuses a rate the tables would refuse less clearly (or, on SQLite, not at all).
pub(crate) fn check_currency_rate(x: &CurrencyRate) -> Result<()> {
    let code = |c: &str| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase());
    if !code(&x.from_currency) || !code(&x.to_currency) || x.from_currency == x.to_currency {
        return Err(StoreError::Invalid(format!(
            "exchange rate {} -> {}: two different ISO 4217 codes in upper case expected",
            x.from_currency, x.to_currency
        )));
    }
    if x.rate <= rust_decimal::Decimal::ZERO {
        return Err(StoreError::Invalid(format!("exchange rate {} -> {}: {} is not positive", x.from_currency, x.to_currency, x.rate)));
    }
    if x.valid_until.is_some_and(|u| u <= x.valid_from) {
        return Err(StoreError::Invalid(format!(
            "exchange rate {} -> {}: valid_until is not after valid_from",
            x.from_currency, x.to_currency
        )));
    }
    Ok(())
}

/// The channel weights, `{weights}` being the column read as JSON text.
pub(crate) fn channel_weights_sql(weights: &str) -> String {
    format!(
        "SELECT account_id, model, {weights} AS weights, window_from, window_to, journeys, conversions, computed_at \
         FROM channel_weights ORDER BY account_id, model"
    )
}

pub(crate) fn channel_weights_from_row(r: &impl Columns) -> Result<ChannelWeights> {
    let text = r.text("weights")?;
    let weights = serde_json::from_str(&text).map_err(|e| StoreError::Invalid(format!("bad channel weights {text:?}: {e}")))?;
    Ok(ChannelWeights {
        account_id: r.uuid("account_id")?,
        model: r.text("model")?,
        weights,
        window_from: r.date("window_from")?,
        window_to: r.date("window_to")?,
        journeys: r.int64("journeys")?,
        conversions: r.int64("conversions")?,
        computed_at: r.time("computed_at")?,
    })
}

/// The weights of `w` as the `weights` column stores them.
pub(crate) fn channel_weights_json(w: &ChannelWeights) -> Result<String> {
    serde_json::to_string(&w.weights).map_err(|e| StoreError::Invalid(format!("channel weights of {}: {e}", w.account_id)))
}

pub(crate) fn account_from_row(r: &impl Columns) -> Result<Account> {
    Ok(Account {
        id: r.uuid("id")?,
        name: r.text("name")?,
        timezone: r.text("timezone")?,
        default_attribution_model: r.text("default_attribution_model")?,
        click_lookback_days: r.int32("click_lookback_days")?,
        view_lookback_days: r.int32("view_lookback_days")?,
        time_decay_half_life_days: r.real("time_decay_half_life_days")?,
        session_timeout_minutes: r.int32("session_timeout_minutes")?,
        anonymize_ip: r.flag("anonymize_ip")?,
        currency: r.text("currency")?,
    })
}

pub(crate) fn key_from_row(r: &impl Columns) -> Result<ApiKey> {
    Ok(ApiKey {
        account_id: r.uuid("account_id")?,
        kind: KeyKind::parse(&r.text("kind")?)?,
        key_hash: r.text("key_hash")?,
        prefix: r.text("prefix")?,
        revoked: r.flag("revoked")?,
    })
}

pub(crate) fn campaign_from_row(r: &impl Columns) -> Result<Campaign> {
    Ok(Campaign {
        account_id: r.uuid("account_id")?,
        id: r.text("id")?,
        name: r.opt_text("name")?,
        timezone: r.text("timezone")?,
        start_date: r.opt_date("start_date")?,
        end_date: r.opt_date("end_date")?,
    })
}

pub(crate) fn advertisement_from_row(r: &impl Columns) -> Result<Advertisement> {
    Ok(Advertisement {
        account_id: r.uuid("account_id")?,
        id: r.text("id")?,
        campaign_id: r.opt_text("campaign_id")?,
        channel_id: r.opt_text("channel_id")?,
        title: r.opt_text("title")?,
    })
}

pub(crate) fn link_from_row(r: &impl Columns) -> Result<Link> {
    Ok(Link {
        account_id: r.uuid("account_id")?,
        short_code: r.text("short_code")?,
        target_url: r.text("target_url")?,
        utm_source: r.opt_text("utm_source")?,
        utm_medium: r.opt_text("utm_medium")?,
        utm_campaign: r.opt_text("utm_campaign")?,
        utm_term: r.opt_text("utm_term")?,
        utm_content: r.opt_text("utm_content")?,
        campaign_id: r.opt_text("campaign_id")?,
        advertisement_id: r.opt_text("advertisement_id")?,
        deleted: r.flag("deleted")?,
    })
}

pub(crate) fn metric_from_row(r: &impl Columns) -> Result<DailyMetricRow> {
    Ok(DailyMetricRow {
        account_id: r.uuid("account_id")?,
        campaign_id: r.text("campaign_id")?,
        advertisement_id: r.text("advertisement_id")?,
        metric_date: r.date("metric_date")?,
        impressions: r.int64("impressions")?,
        clicks: r.int64("clicks")?,
        reach: r.int64("reach")?,
        frequency: r.opt_real("frequency")?,
        engagements: r.int64("engagements")?,
        sessions: r.int64("sessions")?,
        conversions: r.money("conversions")?,
        revenue: r.money("revenue")?,
        cost: r.money("cost")?,
        currency: r.opt_text("currency")?,
        ctr: r.opt_real("ctr")?,
        cpc: r.opt_money("cpc")?,
        cpm: r.opt_money("cpm")?,
        cpa: r.opt_money("cpa")?,
        roas: r.opt_real("roas")?,
        utm_source: r.opt_text("utm_source")?,
        utm_medium: r.opt_text("utm_medium")?,
        utm_campaign: r.opt_text("utm_campaign")?,
    })
}

pub(crate) fn attribution_from_row(r: &impl Columns) -> Result<AttributionRow> {
    Ok(AttributionRow {
        account_id: r.uuid("account_id")?,
        conversion_id: r.text("conversion_id")?,
        touchpoint_id: r.text("touchpoint_id")?,
        attribution_model: r.text("attribution_model")?,
        version: r.int64("version")?,
        campaign_id: r.opt_text("campaign_id")?,
        advertisement_id: r.opt_text("advertisement_id")?,
        customer_id: r.opt_text("customer_id")?,
        touchpoint_type: r.opt_text("touchpoint_type")?,
        touchpoint_timestamp: r.opt_time("touchpoint_timestamp")?,
        channel_id: r.opt_text("channel_id")?,
        conversion_time: r.time("conversion_time")?,
        conversion_value: r.opt_money("conversion_value")?,
        currency: r.opt_text("currency")?,
        weight: r.real("weight")?,
        attributed_revenue: r.money("attributed_revenue")?,
    })
}

pub(crate) fn partial_from_row(r: &impl Columns) -> Result<PartialRow> {
    Ok(PartialRow {
        account_id: r.uuid("account_id")?,
        campaign_id: r.text("campaign_id")?,
        advertisement_id: r.text("advertisement_id")?,
        metric_date: r.date("metric_date")?,
        partition: r.int32("partition")?,
        impressions: r.int64("impressions")?,
        clicks: r.int64("clicks")?,
        reach: r.int64("reach")?,
        engagements: r.int64("engagements")?,
        sessions: r.int64("sessions")?,
        conversions: r.money("conversions")?,
        revenue: r.money("revenue")?,
        cost: r.money("cost")?,
        reported_impressions: r.int64("reported_impressions")?,
        reported_clicks: r.int64("reported_clicks")?,
        epoch: u32::try_from(r.int64("epoch")?).unwrap_or(u32::MAX),
        reach_sketch: r.bytes("reach_sketch")?,
        reach_hashes: Vec::new(),
        currency: None,
    })
}
