//! Pure row mapping between touchline's types and the ClickHouse tables (no I/O).
//!
//! Values are encoded as the server stores them: `Date` as days since 1970-01-01 (u16),
//! `DateTime` as seconds (u32), `Decimal(38, 6)` as an i128 of millionths, `UUID` through the
//! `clickhouse` crate's helper. Out-of-range times are clamped into the column's range (the
//! exact value stays in `payload`) rather than failing: a write that can never succeed would
//! stall the partition forever, since the runtime retries a failed flush.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use touchline_model::{Body, Id, Record};
use touchline_store::{AttributionRow, JourneyPartialRow, JourneyPathRow, LinkClickPartialRow, PartialRow};
use uuid::Uuid;

use crate::{Error, Result};

/// Scale of every `Decimal(38, 6)` column.
pub const SCALE: u32 = 6;

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => panic!("1970-01-01 is a date"),
};

/// `Date`: days since 1970-01-01, clamped to the column's range (1970-01-01 ..= 2149-06-06).
pub fn date_days(d: NaiveDate) -> u16 {
    let days = d.signed_duration_since(EPOCH).num_days();
    u16::try_from(days.max(0)).unwrap_or(u16::MAX)
}

pub fn date_from_days(days: u16) -> NaiveDate {
    EPOCH + chrono::Days::new(u64::from(days))
}

/// `DateTime`: whole seconds since the epoch, clamped to the column's range (1970 ..= 2106).
pub fn secs(t: DateTime<Utc>) -> u32 {
    u32::try_from(t.timestamp().max(0)).unwrap_or(u32::MAX)
}

/// The UTC day of a time, as a `Date`.
pub fn utc_day(t: DateTime<Utc>) -> u16 {
    date_days(t.date_naive())
}

/// Microseconds since the epoch (what the SQL stores keep: sub-microsecond digits are cut).
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| Error::Decode(format!("{us} µs is not a representable time")))
}

/// A decimal as millionths, rounded half away from zero as Postgres' numeric(…, 6) does.
/// Every `rust_decimal` value fits (|mantissa| < 2^96, so millionths < 10^35 < 10^38).
pub fn dec6(d: Decimal) -> i128 {
    let r = d.round_dp_with_strategy(SCALE, RoundingStrategy::MidpointAwayFromZero);
    let scale_up = SCALE.saturating_sub(r.scale());
    r.mantissa().saturating_mul(10i128.pow(scale_up))
}

pub fn from_dec6(v: i128) -> Result<Decimal> {
    Decimal::try_from_i128_with_scale(v, SCALE).map_err(|e| Error::Decode(format!("decimal {v}e-6: {e}")))
}

fn s(o: &Option<Id>) -> &str {
    o.as_deref().unwrap_or("")
}

fn t(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("")
}

/// The raw table a record goes to.
pub fn raw_table(body: &Body) -> &'static str {
    match body {
        Body::Event(_) => "events",
        Body::Session(_) => "sessions",
        Body::Touchpoint(_) => "touchpoints",
        Body::LinkClick(_) => "link_clicks",
        Body::Conversion(_) => "conversions",
        Body::Spend(_) => "spend",
        Body::Identify(_) | Body::Alias(_) => "identities",
    }
}

/// Raw tables, in the order the sink writes them.
pub const RAW_TABLES: [&str; 7] = ["events", "sessions", "touchpoints", "link_clicks", "conversions", "spend", "identities"];

fn payload(r: &Record) -> String {
    String::from_utf8(r.to_json()).unwrap_or_default()
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct EventRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub record_id: &'a str,
    pub date: u16,
    pub timestamp: u32,
    pub received_at: u32,
    pub anonymous_id: &'a str,
    pub customer_id: &'a str,
    pub event_name: &'a str,
    pub session_id: &'a str,
    pub campaign_id: &'a str,
    pub advertisement_id: &'a str,
    pub page_url: &'a str,
    pub page_path: &'a str,
    pub referrer: &'a str,
    pub user_agent: &'a str,
    pub ip: &'a str,
    pub utm_source: &'a str,
    pub utm_medium: &'a str,
    pub utm_campaign: &'a str,
    pub utm_term: &'a str,
    pub utm_content: &'a str,
    pub payload: String,
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct SessionRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub record_id: &'a str,
    pub date: u16,
    pub timestamp: u32,
    pub received_at: u32,
    pub anonymous_id: &'a str,
    pub customer_id: &'a str,
    pub session_id: &'a str,
    pub started_at: u32,
    pub ended_at: Option<u32>,
    pub device_id: &'a str,
    pub campaign_id: &'a str,
    pub advertisement_id: &'a str,
    pub utm_source: &'a str,
    pub utm_medium: &'a str,
    pub utm_campaign: &'a str,
    pub utm_term: &'a str,
    pub utm_content: &'a str,
    pub referrer: &'a str,
    pub landing_page: &'a str,
    pub user_agent: &'a str,
    pub ip: &'a str,
    pub payload: String,
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct TouchpointRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub record_id: &'a str,
    pub date: u16,
    pub timestamp: u32,
    pub received_at: u32,
    pub anonymous_id: &'a str,
    pub customer_id: &'a str,
    pub r#type: &'a str,
    pub channel: &'a str,
    pub campaign_id: &'a str,
    pub advertisement_id: &'a str,
    pub session_id: &'a str,
    pub utm_source: &'a str,
    pub utm_medium: &'a str,
    pub utm_campaign: &'a str,
    pub utm_term: &'a str,
    pub utm_content: &'a str,
    pub referrer: &'a str,
    pub page_url: &'a str,
    pub payload: String,
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct LinkClickRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub record_id: &'a str,
    pub date: u16,
    pub timestamp: u32,
    pub received_at: u32,
    pub anonymous_id: &'a str,
    pub customer_id: &'a str,
    pub link_id: &'a str,
    pub short_code: &'a str,
    pub target_url: &'a str,
    pub referer: &'a str,
    pub user_agent: &'a str,
    pub ip: &'a str,
    pub device_id: &'a str,
    pub campaign_id: &'a str,
    pub advertisement_id: &'a str,
    pub bot: u8,
    pub is_unique: Option<u8>,
    pub payload: String,
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct ConversionRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub record_id: &'a str,
    pub date: u16,
    pub timestamp: u32,
    pub received_at: u32,
    pub anonymous_id: &'a str,
    pub customer_id: &'a str,
    pub r#type: &'a str,
    pub value: Option<i128>,
    pub currency: &'a str,
    pub order_id: &'a str,
    pub campaign_id: &'a str,
    pub advertisement_id: &'a str,
    pub session_id: &'a str,
    pub payload: String,
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct SpendRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub record_id: &'a str,
    pub date: u16,
    pub timestamp: u32,
    pub received_at: u32,
    pub campaign_id: &'a str,
    pub advertisement_id: &'a str,
    pub cost: i128,
    pub currency: &'a str,
    pub impressions: Option<u64>,
    pub clicks: Option<u64>,
    pub source: &'a str,
    pub payload: String,
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct IdentityRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub record_id: &'a str,
    pub date: u16,
    pub timestamp: u32,
    pub received_at: u32,
    pub r#type: &'a str,
    pub anonymous_id: &'a str,
    pub customer_id: &'a str,
    pub previous_id: &'a str,
    pub payload: String,
}

/// The common columns of a raw row: (account, record id, date, timestamp, received_at,
/// anonymous id, customer id).
fn common(r: &Record) -> (Uuid, &str, u16, u32, u32, &str, &str) {
    let m = &r.meta;
    (
        m.account_id,
        m.record_id.as_str(),
        utc_day(m.timestamp),
        secs(m.timestamp),
        secs(m.received_at),
        s(&m.anonymous_id),
        s(&m.customer_id),
    )
}

pub fn event_row(r: &Record) -> Option<EventRow<'_>> {
    let Body::Event(e) = &r.body else { return None };
    let (account_id, record_id, date, timestamp, received_at, anonymous_id, customer_id) = common(r);
    let c = &e.context;
    Some(EventRow {
        account_id,
        record_id,
        date,
        timestamp,
        received_at,
        anonymous_id,
        customer_id,
        event_name: &e.event_name,
        session_id: s(&e.session_id),
        campaign_id: s(&e.campaign_id),
        advertisement_id: s(&e.advertisement_id),
        page_url: t(&c.page_url),
        page_path: t(&c.page_path),
        referrer: t(&c.referrer),
        user_agent: t(&c.user_agent),
        ip: t(&c.ip),
        utm_source: t(&c.utm_source),
        utm_medium: t(&c.utm_medium),
        utm_campaign: t(&c.utm_campaign),
        utm_term: t(&c.utm_term),
        utm_content: t(&c.utm_content),
        payload: payload(r),
    })
}

pub fn session_row(r: &Record) -> Option<SessionRow<'_>> {
    let Body::Session(x) = &r.body else { return None };
    let (account_id, record_id, date, timestamp, received_at, anonymous_id, customer_id) = common(r);
    Some(SessionRow {
        account_id,
        record_id,
        date,
        timestamp,
        received_at,
        anonymous_id,
        customer_id,
        session_id: x.session_id.as_str(),
        started_at: secs(x.started_at),
        ended_at: x.ended_at.map(secs),
        device_id: s(&x.device_id),
        campaign_id: s(&x.campaign_id),
        advertisement_id: s(&x.advertisement_id),
        utm_source: t(&x.utm_source),
        utm_medium: t(&x.utm_medium),
        utm_campaign: t(&x.utm_campaign),
        utm_term: t(&x.utm_term),
        utm_content: t(&x.utm_content),
        referrer: t(&x.referrer),
        landing_page: t(&x.landing_page),
        user_agent: t(&x.user_agent),
        ip: t(&x.ip),
        payload: payload(r),
    })
}

pub fn touchpoint_row(r: &Record) -> Option<TouchpointRow<'_>> {
    let Body::Touchpoint(x) = &r.body else { return None };
    let (account_id, record_id, date, timestamp, received_at, anonymous_id, customer_id) = common(r);
    Some(TouchpointRow {
        account_id,
        record_id,
        date,
        timestamp,
        received_at,
        anonymous_id,
        customer_id,
        r#type: x.kind.as_str(),
        channel: t(&x.channel),
        campaign_id: s(&x.campaign_id),
        advertisement_id: s(&x.advertisement_id),
        session_id: s(&x.session_id),
        utm_source: t(&x.utm_source),
        utm_medium: t(&x.utm_medium),
        utm_campaign: t(&x.utm_campaign),
        utm_term: t(&x.utm_term),
        utm_content: t(&x.utm_content),
        referrer: t(&x.referrer),
        page_url: t(&x.page_url),
        payload: payload(r),
    })
}

pub fn link_click_row(r: &Record) -> Option<LinkClickRow<'_>> {
    let Body::LinkClick(c) = &r.body else { return None };
    let (account_id, record_id, date, timestamp, received_at, anonymous_id, customer_id) = common(r);
    Some(LinkClickRow {
        account_id,
        record_id,
        date,
        timestamp,
        received_at,
        anonymous_id,
        customer_id,
        link_id: s(&c.link_id),
        short_code: s(&c.short_code),
        target_url: t(&c.target_url),
        referer: t(&c.referer),
        user_agent: t(&c.user_agent),
        ip: t(&c.ip),
        device_id: s(&c.device_id),
        campaign_id: s(&c.campaign_id),
        advertisement_id: s(&c.advertisement_id),
        bot: u8::from(c.bot),
        is_unique: c.unique.map(u8::from),
        payload: payload(r),
    })
}

pub fn conversion_row(r: &Record) -> Option<ConversionRow<'_>> {
    let Body::Conversion(c) = &r.body else { return None };
    let (account_id, record_id, date, timestamp, received_at, anonymous_id, customer_id) = common(r);
    Some(ConversionRow {
        account_id,
        record_id,
        date,
        timestamp,
        received_at,
        anonymous_id,
        customer_id,
        r#type: c.kind.as_str(),
        value: c.value.map(dec6),
        currency: c.currency.as_ref().map_or("", |c| c.as_str()),
        order_id: s(&c.order_id),
        campaign_id: s(&c.campaign_id),
        advertisement_id: s(&c.advertisement_id),
        session_id: s(&c.session_id),
        payload: payload(r),
    })
}

pub fn spend_row(r: &Record) -> Option<SpendRow<'_>> {
    let Body::Spend(x) = &r.body else { return None };
    let m = &r.meta;
    Some(SpendRow {
        account_id: m.account_id,
        record_id: m.record_id.as_str(),
        date: date_days(x.date),
        timestamp: secs(m.timestamp),
        received_at: secs(m.received_at),
        campaign_id: x.campaign_id.as_str(),
        advertisement_id: s(&x.advertisement_id),
        cost: dec6(x.cost),
        currency: x.currency.as_str(),
        impressions: x.impressions,
        clicks: x.clicks,
        source: &x.source,
        payload: payload(r),
    })
}

pub fn identity_row(r: &Record) -> Option<IdentityRow<'_>> {
    let previous_id = match &r.body {
        Body::Identify(_) => "",
        Body::Alias(a) => a.previous_id.as_str(),
        _ => return None,
    };
    let (account_id, record_id, date, timestamp, received_at, anonymous_id, customer_id) = common(r);
    Some(IdentityRow {
        account_id,
        record_id,
        date,
        timestamp,
        received_at,
        r#type: r.kind().as_str(),
        anonymous_id,
        customer_id,
        previous_id,
        payload: payload(r),
    })
}

/// A row of `attributions`, as written.
#[derive(Debug, clickhouse::Row, Serialize)]
pub struct AttrRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub conversion_id: &'a str,
    pub touchpoint_id: &'a str,
    pub attribution_model: &'a str,
    pub version: i64,
    pub conversion_date: u16,
    pub conversion_time: u32,
    pub conversion_time_us: i64,
    pub campaign_id: Option<&'a str>,
    pub advertisement_id: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    pub touchpoint_type: Option<&'a str>,
    pub touchpoint_timestamp: Option<u32>,
    pub touchpoint_timestamp_us: Option<i64>,
    pub channel_id: Option<&'a str>,
    pub conversion_value: Option<i128>,
    pub currency: Option<&'a str>,
    pub weight: f64,
    pub attributed_revenue: i128,
}

pub fn attr_row(a: &AttributionRow) -> AttrRow<'_> {
    AttrRow {
        account_id: a.account_id,
        conversion_id: &a.conversion_id,
        touchpoint_id: &a.touchpoint_id,
        attribution_model: &a.attribution_model,
        version: a.version,
        conversion_date: utc_day(a.conversion_time),
        conversion_time: secs(a.conversion_time),
        conversion_time_us: micros(a.conversion_time),
        campaign_id: a.campaign_id.as_deref(),
        advertisement_id: a.advertisement_id.as_deref(),
        customer_id: a.customer_id.as_deref(),
        touchpoint_type: a.touchpoint_type.as_deref(),
        touchpoint_timestamp: a.touchpoint_timestamp.map(secs),
        touchpoint_timestamp_us: a.touchpoint_timestamp.map(micros),
        channel_id: a.channel_id.as_deref(),
        conversion_value: a.conversion_value.map(dec6),
        currency: a.currency.as_deref(),
        weight: a.weight,
        attributed_revenue: dec6(a.attributed_revenue),
    }
}

/// The columns [`AttrRead`] selects, in its field order.
pub const ATTR_READ_COLS: &str = "account_id, conversion_id, touchpoint_id, attribution_model, version, conversion_time_us, campaign_id, \
     advertisement_id, customer_id, touchpoint_type, touchpoint_timestamp_us, channel_id, conversion_value, currency, weight, attributed_revenue";

/// A row of `attributions`, as read back.
#[derive(Debug, clickhouse::Row, Deserialize)]
pub struct AttrRead {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub conversion_id: String,
    pub touchpoint_id: String,
    pub attribution_model: String,
    pub version: i64,
    pub conversion_time_us: i64,
    pub campaign_id: Option<String>,
    pub advertisement_id: Option<String>,
    pub customer_id: Option<String>,
    pub touchpoint_type: Option<String>,
    pub touchpoint_timestamp_us: Option<i64>,
    pub channel_id: Option<String>,
    pub conversion_value: Option<i128>,
    pub currency: Option<String>,
    pub weight: f64,
    pub attributed_revenue: i128,
}

impl AttrRead {
    pub fn into_row(self) -> Result<AttributionRow> {
        Ok(AttributionRow {
            account_id: self.account_id,
            conversion_id: self.conversion_id,
            touchpoint_id: self.touchpoint_id,
            attribution_model: self.attribution_model,
            version: self.version,
            campaign_id: self.campaign_id,
            advertisement_id: self.advertisement_id,
            customer_id: self.customer_id,
            touchpoint_type: self.touchpoint_type,
            touchpoint_timestamp: self.touchpoint_timestamp_us.map(from_micros).transpose()?,
            channel_id: self.channel_id,
            conversion_time: from_micros(self.conversion_time_us)?,
            conversion_value: self.conversion_value.map(from_dec6).transpose()?,
            currency: self.currency,
            weight: self.weight,
            attributed_revenue: from_dec6(self.attributed_revenue)?,
        })
    }
}

/// A row of `campaign_daily_metrics` (one partition's partial), as written.
#[derive(Debug, clickhouse::Row, Serialize)]
pub struct MetricRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub campaign_id: &'a str,
    pub advertisement_id: &'a str,
    pub metric_date: u16,
    pub partition: u32,
    pub version: i64,
    pub impressions: u64,
    pub clicks: u64,
    pub reach: u64,
    pub engagements: u64,
    pub sessions: u64,
    pub conversions: i128,
    pub revenue: i128,
    pub cost: i128,
    pub reported_impressions: u64,
    pub reported_clicks: u64,
    pub written_at: u32,
    /// The account's reporting currency (`''` when the partial has none).
    pub currency: &'a str,
}

/// A row of `link_click_partials`.
#[derive(clickhouse::Row, Serialize)]
pub struct LinkClickPartialChRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub short_code: &'a str,
    pub click_date: u16,
    pub partition: u32,
    pub version: i64,
    pub human_clicks: u64,
    pub bot_clicks: u64,
    pub written_at: u32,
}

pub fn link_click_partial_row(p: &LinkClickPartialRow, version: i64, written_at: u32) -> LinkClickPartialChRow<'_> {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    LinkClickPartialChRow {
        account_id: p.account_id,
        short_code: &p.short_code,
        click_date: date_days(p.click_date),
        // `link_click_row` casts the engine's u32 partition `as i32`; this is the inverse.
        partition: p.partition as u32,
        version,
        human_clicks: u(p.human_clicks),
        bot_clicks: u(p.bot_clicks),
        written_at,
    }
}

/// A row of `journey_partials`.
#[derive(clickhouse::Row, Serialize)]
pub struct JourneyPartialChRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub journey_date: u16,
    pub channels: &'a str,
    pub campaigns: &'a str,
    pub partition: u32,
    pub version: i64,
    pub conversions: u64,
    pub non_conversions: u64,
    pub revenue: i128,
    pub written_at: u32,
}

pub fn journey_partial_row(p: &JourneyPartialRow, version: i64, written_at: u32) -> JourneyPartialChRow<'_> {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    JourneyPartialChRow {
        account_id: p.account_id,
        journey_date: date_days(p.journey_date),
        channels: &p.channels,
        campaigns: &p.campaigns,
        // `journey_row` casts the engine's u32 partition `as i32`; this is the inverse.
        partition: p.partition as u32,
        version,
        conversions: u(p.conversions),
        non_conversions: u(p.non_conversions),
        revenue: dec6(p.revenue),
        written_at,
    }
}

/// One path of an account over a range of days: the sums over partitions and days, as read
/// back.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct JourneyPathSum {
    pub channels: String,
    pub campaigns: String,
    pub conversions: u64,
    pub non_conversions: u64,
    pub revenue: i128,
}

impl JourneyPathSum {
    pub fn into_row(self) -> Result<JourneyPathRow> {
        let i = |v: u64| i64::try_from(v).map_err(|_| Error::Decode(format!("count {v} exceeds i64")));
        Ok(JourneyPathRow {
            conversions: i(self.conversions)?,
            non_conversions: i(self.non_conversions)?,
            revenue: from_dec6(self.revenue)?.normalize(),
            channels: self.channels,
            campaigns: self.campaigns,
        })
    }
}

pub fn metric_row(p: &PartialRow, version: i64, written_at: u32) -> MetricRow<'_> {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    MetricRow {
        account_id: p.account_id,
        campaign_id: &p.campaign_id,
        advertisement_id: &p.advertisement_id,
        metric_date: date_days(p.metric_date),
        // `partial_row` casts the engine's u32 partition `as i32`; this is the inverse.
        partition: p.partition as u32,
        version,
        impressions: u(p.impressions),
        clicks: u(p.clicks),
        reach: u(p.reach),
        engagements: u(p.engagements),
        sessions: u(p.sessions),
        conversions: dec6(p.conversions),
        revenue: dec6(p.revenue),
        cost: dec6(p.cost),
        reported_impressions: u(p.reported_impressions),
        reported_clicks: u(p.reported_clicks),
        written_at,
        currency: p.currency.as_deref().unwrap_or(""),
    }
}

/// A row of `campaign_reach_input`: one partition's people of one cell, as identity hashes
/// (the server builds the `uniqCombined` state from them) and as touchline's sketch.
#[derive(clickhouse::Row, Serialize)]
pub struct ReachInputRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub campaign_id: &'a str,
    pub advertisement_id: &'a str,
    pub metric_date: u16,
    pub partition: u32,
    pub version: i64,
    pub reach_hashes: Vec<u64>,
    pub reach_sketch: SketchBytes,
}

/// Sketch bytes in a `String` column (RowBinary strings are length-prefixed bytes; serde's
/// default for a byte vector would be an array).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SketchBytes(pub Vec<u8>);

impl Serialize for SketchBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SketchBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = SketchBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("sketch bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<SketchBytes, E> {
                Ok(SketchBytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> std::result::Result<SketchBytes, E> {
                Ok(SketchBytes(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<SketchBytes, E> {
                Ok(SketchBytes(v.as_bytes().to_vec()))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

/// The identity hashes a partial's `uniqCombined` state is built from: those the aggregator
/// gave, else the hashes of an exact sketch (a row built without them).
fn reach_hashes(p: &PartialRow) -> Vec<u64> {
    if !p.reach_hashes.is_empty() {
        return p.reach_hashes.clone();
    }
    touchline_model::reach::ReachSketch::from_bytes(&p.reach_sketch)
        .ok()
        .and_then(|s| s.exact_hashes().map(<[u64]>::to_vec))
        .unwrap_or_default()
}

pub fn reach_input_row(p: &PartialRow, version: i64) -> ReachInputRow<'_> {
    ReachInputRow {
        account_id: p.account_id,
        campaign_id: &p.campaign_id,
        advertisement_id: &p.advertisement_id,
        metric_date: date_days(p.metric_date),
        partition: p.partition as u32,
        version,
        reach_hashes: reach_hashes(p),
        reach_sketch: SketchBytes(p.reach_sketch.clone()),
    }
}

/// One partition's latest partial of one cell, with its latest reach sketch, as read back.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct PartialRead {
    pub campaign_id: String,
    pub advertisement_id: String,
    pub metric_date: u16,
    pub partition: u32,
    pub version: i64,
    pub impressions: u64,
    pub clicks: u64,
    pub reach: u64,
    pub engagements: u64,
    pub sessions: u64,
    pub conversions: i128,
    pub revenue: i128,
    pub cost: i128,
    pub reported_impressions: u64,
    pub reported_clicks: u64,
    pub reach_sketch: SketchBytes,
    /// `''` in rows written before currencies.
    pub currency: String,
}

impl PartialRead {
    pub fn into_row(self, account_id: Uuid) -> Result<PartialRow> {
        let i = |v: u64| i64::try_from(v).map_err(|_| Error::Decode(format!("count {v} exceeds i64")));
        Ok(PartialRow {
            account_id,
            metric_date: date_from_days(self.metric_date),
            partition: i32::try_from(self.partition).map_err(|_| Error::Decode(format!("partition {} exceeds i32", self.partition)))?,
            impressions: i(self.impressions)?,
            clicks: i(self.clicks)?,
            reach: i(self.reach)?,
            engagements: i(self.engagements)?,
            sessions: i(self.sessions)?,
            conversions: from_dec6(self.conversions)?.normalize(),
            revenue: from_dec6(self.revenue)?.normalize(),
            cost: from_dec6(self.cost)?.normalize(),
            reported_impressions: i(self.reported_impressions)?,
            reported_clicks: i(self.reported_clicks)?,
            // The sink's version is `epoch << 32 | n`.
            epoch: u32::try_from(self.version >> 32).unwrap_or(0),
            reach_sketch: self.reach_sketch.0,
            reach_hashes: Vec::new(),
            currency: Some(self.currency).filter(|c| !c.is_empty()),
            campaign_id: self.campaign_id,
            advertisement_id: self.advertisement_id,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn decimals_round_half_away_from_zero_to_six_places() {
        assert_eq!(dec6(d("12.5")), 12_500_000);
        assert_eq!(dec6(d("0.0000005")), 1);
        assert_eq!(dec6(d("-0.0000005")), -1);
        assert_eq!(dec6(d("0.0000015")), 2);
        assert_eq!(dec6(d("1.23456749")), 1_234_567);
        assert_eq!(dec6(Decimal::MAX), Decimal::MAX.mantissa() * 1_000_000);
        assert_eq!(from_dec6(12_500_000).unwrap(), d("12.5"));
        assert!(from_dec6(i128::MAX).is_err());
    }

    #[test]
    fn times_and_dates_clamp_instead_of_failing() {
        let t = DateTime::parse_from_rfc3339("2026-03-01T10:20:30.123456789Z").unwrap().with_timezone(&Utc);
        assert_eq!(secs(t), 1_772_360_430);
        assert_eq!(micros(t), 1_772_360_430_123_456);
        assert_eq!(from_micros(micros(t)).unwrap(), DateTime::parse_from_rfc3339("2026-03-01T10:20:30.123456Z").unwrap());
        assert_eq!(date_from_days(utc_day(t)), NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        let early = DateTime::parse_from_rfc3339("1960-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!((secs(early), utc_day(early)), (0, 0));
        let late = DateTime::parse_from_rfc3339("2300-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!((secs(late), utc_day(late)), (u32::MAX, u16::MAX));
    }

    proptest! {
        #[test]
        fn millionths_round_trip(m in -10i64.pow(15)..10i64.pow(15), scale in 0u32..=6) {
            let v = Decimal::new(m, scale);
            prop_assert_eq!(from_dec6(dec6(v)).unwrap(), v);
        }

        #[test]
        fn microsecond_times_round_trip(us in 0i64..4_000_000_000_000_000) {
            let t = from_micros(us).unwrap();
            prop_assert_eq!(micros(t), us);
            prop_assert_eq!(i64::from(secs(t)), us.div_euclid(1_000_000));
        }

        #[test]
        fn days_round_trip(days in 0u16..=u16::MAX) {
            prop_assert_eq!(date_days(date_from_days(days)), days);
        }
    }
}
