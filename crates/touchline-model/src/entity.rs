//! The entities touchline accepts and the versioned JSON envelope they travel in.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ids::{ts, Currency, Id, Kind};

/// Version of the JSON envelope written to the bus (`"v"` field).
pub const ENVELOPE_VERSION: u8 = 1;

/// The entity families, one bus topic each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Event,
    Session,
    Touchpoint,
    LinkClick,
    Conversion,
    Spend,
    Identify,
    Alias,
}

impl EntityKind {
    pub const ALL: [EntityKind; 8] = [
        EntityKind::Event,
        EntityKind::Session,
        EntityKind::Touchpoint,
        EntityKind::LinkClick,
        EntityKind::Conversion,
        EntityKind::Spend,
        EntityKind::Identify,
        EntityKind::Alias,
    ];

    /// The `type` name of the entity in native JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Event => "event",
            EntityKind::Session => "session",
            EntityKind::Touchpoint => "touchpoint",
            EntityKind::LinkClick => "link_click",
            EntityKind::Conversion => "conversion",
            EntityKind::Spend => "spend",
            EntityKind::Identify => "identify",
            EntityKind::Alias => "alias",
        }
    }

    pub fn parse(s: &str) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The bus topic this entity is appended to. Identify and alias share
    /// `touchline.identities`.
    pub fn topic(self) -> &'static str {
        match self {
            EntityKind::Event => topics::EVENTS,
            EntityKind::Session => topics::SESSIONS,
            EntityKind::Touchpoint => topics::TOUCHPOINTS,
            EntityKind::LinkClick => topics::LINK_CLICKS,
            EntityKind::Conversion => topics::CONVERSIONS,
            EntityKind::Spend => topics::SPEND,
            EntityKind::Identify | EntityKind::Alias => topics::IDENTITIES,
        }
    }
}

/// Topic names fixed by the design brief.
pub mod topics {
    pub const EVENTS: &str = "touchline.events";
    pub const SESSIONS: &str = "touchline.sessions";
    pub const TOUCHPOINTS: &str = "touchline.touchpoints";
    pub const LINK_CLICKS: &str = "touchline.link_clicks";
    pub const CONVERSIONS: &str = "touchline.conversions";
    pub const SPEND: &str = "touchline.spend";
    pub const IDENTITIES: &str = "touchline.identities";
    pub const DLQ: &str = "touchline.dlq";

    /// Every entity topic (same partition count and key on all of them) plus the DLQ.
    pub const ALL: [&str; 8] = [EVENTS, SESSIONS, TOUCHPOINTS, LINK_CLICKS, CONVERSIONS, SPEND, IDENTITIES, DLQ];
}

/// Fields every record carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Record id (`message_id` / `event_id` in, generated when absent); used for dedup.
    pub record_id: Id,
    /// Tenant, from the write key; never from the body.
    pub account_id: Uuid,
    /// Client event time, corrected for clock skew with `sent_at`.
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub timestamp: DateTime<Utc>,
    /// Server time at the collector.
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub received_at: DateTime<Utc>,
    /// The client's clock when it sent the request, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::rfc3339::option::serialize")]
    pub sent_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<Id>,
}

/// One accepted record: the envelope written to the bus.
///
/// Wire form (JSON): `{"v":1,"type":"event","record_id":…,"account_id":…,"timestamp":…,
/// "received_at":…,"anonymous_id":…,"customer_id":…, <entity fields>}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub v: u8,
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    Event(Event),
    Session(Session),
    Touchpoint(Touchpoint),
    LinkClick(LinkClick),
    Conversion(Conversion),
    Spend(Spend),
    Identify(Identify),
    Alias(Alias),
}

impl Body {
    pub fn kind(&self) -> EntityKind {
        match self {
            Body::Event(_) => EntityKind::Event,
            Body::Session(_) => EntityKind::Session,
            Body::Touchpoint(_) => EntityKind::Touchpoint,
            Body::LinkClick(_) => EntityKind::LinkClick,
            Body::Conversion(_) => EntityKind::Conversion,
            Body::Spend(_) => EntityKind::Spend,
            Body::Identify(_) => EntityKind::Identify,
            Body::Alias(_) => EntityKind::Alias,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Page and client context of an event (Segment's `context`, flattened to snake_case).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_content: Option<String>,
    /// Anything else the client sent in its context (library, device, os, …), and the
    /// collector's list of fields it truncated ([`crate::limits::TRUNCATED_KEY`]).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Context {
    pub fn is_empty(&self) -> bool {
        *self == Context::default()
    }

    /// Fills missing `utm_*` from the query string of `page_url`.
    pub fn fill_utm_from_url(&mut self) {
        let Some(url) = self.page_url.as_deref() else { return };
        let Some(q) = url.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or("")) else {
            return;
        };
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            let slot = match &*k {
                "utm_source" => &mut self.utm_source,
                "utm_medium" => &mut self.utm_medium,
                "utm_campaign" => &mut self.utm_campaign,
                "utm_term" => &mut self.utm_term,
                "utm_content" => &mut self.utm_content,
                _ => continue,
            };
            if slot.is_none() && !v.is_empty() {
                *slot = Some(v.into_owned());
            }
        }
    }

    /// The text field stored under `name`, if there is one.
    pub(crate) fn field_mut(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "page_url" => &mut self.page_url,
            "page_path" => &mut self.page_path,
            "page_title" => &mut self.page_title,
            "referrer" => &mut self.referrer,
            "user_agent" => &mut self.user_agent,
            "ip" => &mut self.ip,
            "locale" => &mut self.locale,
            "utm_source" => &mut self.utm_source,
            "utm_medium" => &mut self.utm_medium,
            "utm_campaign" => &mut self.utm_campaign,
            "utm_term" => &mut self.utm_term,
            "utm_content" => &mut self.utm_content,
            _ => return None,
        })
    }

    pub fn has_utm(&self) -> bool {
        self.utm_source.is_some() || self.utm_medium.is_some() || self.utm_campaign.is_some()
    }
}

/// A product or page event (`events` / `customer_event`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub event_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertisement_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Context::is_empty")]
    pub context: Context,
}

/// A visit (`sessions`), as sent by clients that sessionize themselves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub session_id: Id,
    #[serde(deserialize_with = "ts::deserialize")]
    pub started_at: DateTime<Utc>,
    #[serde(default, deserialize_with = "ts::option::deserialize", skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertisement_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// A marketing touch (`touchpoints` / `attribution_events`): impression, click, cta, email_open, ….
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Touchpoint {
    /// Stored in the seed's `type` column. `impression` (and `view`) are view touches; the rest clicks.
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertisement_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub detail: Map<String, Value>,
}

impl Touchpoint {
    /// Impressions are view touches (view lookback window); everything else is a click touch.
    pub fn is_view(&self) -> bool {
        matches!(self.kind.as_str(), "impression" | "view")
    }
}

/// A short-link click (`linkClicks`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkClick {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_code: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertisement_id: Option<Id>,
    /// Bots, link-preview fetchers and HEAD requests; excluded from click metrics.
    #[serde(default, skip_serializing_if = "is_false")]
    pub bot: bool,
    /// False when the same device clicked the same link within the hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<bool>,
}

/// A business conversion (`conversions`): signup, purchase, lead, ….
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conversion {
    /// Stored in the seed's `type` column.
    pub kind: Kind,
    /// Less than 10^12; decoding rounds it to 6 decimal places, half to even
    /// (see [`crate::limits::MONEY_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertisement_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

fn default_spend_source() -> String {
    "api".to_owned()
}

/// Ad spend for one campaign (and optionally one ad) on one day, as reported by a source.
/// Idempotent per (date, campaign, advertisement, source): a later report replaces an earlier one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spend {
    pub date: NaiveDate,
    pub campaign_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertisement_id: Option<Id>,
    /// Less than 10^12; decoding rounds it to 6 decimal places, half to even
    /// (see [`crate::limits::MONEY_LIMIT`]).
    pub cost: Decimal,
    pub currency: Currency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impressions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clicks: Option<u64>,
    /// Who reported it (`google_ads`, `meta`, `api`, …).
    #[serde(default = "default_spend_source")]
    pub source: String,
}

/// Links an anonymous id to a customer id (and carries the customer's traits).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identify {
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub traits: Map<String, Value>,
}

/// Merges a previous id (anonymous or an old customer id) into `customer_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alias {
    pub previous_id: Id,
}

impl Record {
    pub fn kind(&self) -> EntityKind {
        self.body.kind()
    }

    pub fn topic(&self) -> &'static str {
        self.kind().topic()
    }

    /// The identity whose partition this record belongs to.
    ///
    /// Touches, sessions, events, clicks and conversions go with the customer when known, else the
    /// anonymous id; identify and alias go with the *previous* (anonymous) identity, where that
    /// history lives, so the aggregator there can re-key it to the customer. Spend has no person:
    /// it is keyed by campaign.
    pub fn identity(&self) -> String {
        let m = &self.meta;
        match &self.body {
            Body::Identify(_) => m.anonymous_id.as_ref().or(m.customer_id.as_ref()).map(|i| i.as_str().to_owned()),
            Body::Alias(a) => Some(a.previous_id.as_str().to_owned()),
            Body::Spend(s) => Some(format!("campaign:{}", s.campaign_id)),
            Body::LinkClick(c) => {
                m.customer_id.as_ref().or(m.anonymous_id.as_ref()).or(c.device_id.as_ref()).map(|i| i.as_str().to_owned())
            }
            _ => m.customer_id.as_ref().or(m.anonymous_id.as_ref()).map(|i| i.as_str().to_owned()),
        }
        .unwrap_or_else(|| format!("record:{}", m.record_id))
    }

    /// The bus key: `{account_id}:{identity}`. Never empty.
    pub fn partition_key(&self) -> String {
        // Built without `fmt`: it is computed for every record the collector takes.
        let identity = self.identity();
        let mut key = String::with_capacity(uuid::fmt::Hyphenated::LENGTH + 1 + identity.len());
        key.push_str(self.meta.account_id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()));
        key.push(':');
        key.push_str(&identity);
        key
    }

    /// The versioned JSON written to the bus.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these types cannot fail: every map key is a string.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record back from its bus JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Record, String> {
        let r = crate::envelope::record_from_slice(bytes).map_err(|e| e.to_string())?;
        if r.v != ENVELOPE_VERSION {
            return Err(format!("unsupported envelope version {}", r.v));
        }
        Ok(r)
    }
}
