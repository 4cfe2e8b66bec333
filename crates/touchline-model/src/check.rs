//! The invariants of a record that every store can hold (see [`crate::limits`]), checked on the
//! decoded [`Record`]: by the decoder on everything it accepts, and by consumers on records
//! read back from the bus, which third-party producers may write without the decoder.

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Value};

use crate::decode::validate;
use crate::entity::{Body, Context, Record, ENVELOPE_VERSION};
use crate::error::RecordError;
use crate::limits::*;

/// Checks a record read back from the bus: the envelope version, the rules of [`validate`],
/// and the bounds of [`crate::limits`] (time window, money, counts, text, free JSON).
///
/// Every record the decoder accepts passes. Money with more than [`MONEY_SCALE`] decimal places
/// passes too: the stores round it themselves and the result stays in range. The error's
/// `index` is 0 and its `field` names the field as stored (`context.user_agent`,
/// `properties.name`, …).
pub fn check_stored(record: &Record) -> Result<(), RecordError> {
    if record.v != ENVELOPE_VERSION {
        return Err(RecordError::invalid(0, Some("v"), format!("unsupported envelope version {}", record.v)));
    }
    validate(0, record)?;
    check_record(0, record)
}

/// Rounds money to [`MONEY_SCALE`] places, half to even; fewer places are kept as they are.
pub fn round_money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointNearestEven)
}

/// Whether `t` lies in [2000-01-01, 2100-01-01).
pub fn time_in_window(t: DateTime<Utc>) -> bool {
    (MIN_TIME_MS..END_TIME_MS).contains(&t.timestamp_millis())
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub(crate) fn outside_window(t: DateTime<Utc>) -> String {
    format!("{} is outside {TIME_WINDOW}", rfc3339(t))
}

/// How a text field is bounded.
#[derive(Clone, Copy)]
pub(crate) enum Cap {
    Chars(usize),
    Bytes(usize),
}

/// The text rules: no NUL, no C0 control character but tab, newline and carriage return, no
/// DEL; at most `cap` long.
pub(crate) fn check_text(s: &str, cap: Cap) -> Result<(), String> {
    match cap {
        Cap::Bytes(n) if s.len() > n => return Err(format!("is {} bytes long, over the limit of {n} bytes", s.len())),
        // A character is at least one byte, so counting is only needed past `n` bytes.
        Cap::Chars(n) if s.len() > n => {
            let count = s.chars().count();
            if count > n {
                return Err(format!("is {count} characters long, over the limit of {n}"));
            }
        }
        _ => {}
    }
    // Without an early exit the scan compiles to SIMD compares; the position is only looked for
    // once something was found.
    if s.bytes().fold(false, |found, b| found | is_forbidden_byte(b)) {
        let pos = s.bytes().position(is_forbidden_byte).unwrap_or(0);
        let b = s.as_bytes()[pos];
        return Err(format!(
            "contains the control character U+{b:04X} at byte {pos}; text may not hold NUL, DEL or control characters other than tab, newline and carriage return"
        ));
    }
    Ok(())
}

pub(crate) fn check_money(d: Decimal) -> Result<(), String> {
    if d.abs() >= Decimal::from(MONEY_LIMIT) {
        return Err(format!("{d} is out of range: money must be less than 1000000000000 (10^12) in absolute value"));
    }
    Ok(())
}

/// Why a free JSON value cannot be stored.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonProblem {
    Nul,
    Deep,
}

impl JsonProblem {
    pub(crate) fn message(&self) -> String {
        match self {
            JsonProblem::Nul => "contains a NUL character (U+0000) in a key or a string, which no store can hold".to_owned(),
            JsonProblem::Deep => {
                format!("nests arrays and objects more than {MAX_JSON_DEPTH} levels deep as stored (counting the field's own object)")
            }
        }
    }
}

/// Checks that `v` nests at most `room` levels of arrays and objects and holds no NUL. Stops at
/// the first problem, so the recursion never goes deeper than `room`.
pub(crate) fn check_json(v: &Value, room: usize) -> Result<(), JsonProblem> {
    match v {
        Value::String(s) if s.contains('\0') => Err(JsonProblem::Nul),
        Value::Array(a) => {
            let Some(inner) = room.checked_sub(1) else { return Err(JsonProblem::Deep) };
            a.iter().try_for_each(|x| check_json(x, inner))
        }
        Value::Object(o) => check_map(o, room),
        _ => Ok(()),
    }
}

/// [`check_json`] of a map held as an object (it takes one level itself).
pub(crate) fn check_map(o: &Map<String, Value>, room: usize) -> Result<(), JsonProblem> {
    let Some(inner) = room.checked_sub(1) else { return Err(JsonProblem::Deep) };
    for (k, x) in o {
        if k.contains('\0') {
            return Err(JsonProblem::Nul);
        }
        check_json(x, inner)?;
    }
    Ok(())
}

/// The fields of [`Context`] by their stored names. Its `extra` map is flattened beside them, so
/// an `extra` key with one of these names would be written twice and not read back.
pub(crate) const CONTEXT_FIELDS: [&str; 12] = [
    "page_url",
    "page_path",
    "page_title",
    "referrer",
    "user_agent",
    "ip",
    "locale",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

const UTM: [&str; 5] = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"];
const CONTEXT_UTM: [&str; 5] =
    ["context.utm_source", "context.utm_medium", "context.utm_campaign", "context.utm_term", "context.utm_content"];

struct Checker {
    index: usize,
}

impl Checker {
    fn err(&self, field: &str, msg: String) -> RecordError {
        RecordError::invalid(self.index, Some(field), msg)
    }

    fn time(&self, field: &str, t: DateTime<Utc>) -> Result<(), RecordError> {
        if time_in_window(t) {
            Ok(())
        } else {
            Err(self.err(field, outside_window(t)))
        }
    }

    fn date(&self, field: &str, d: NaiveDate) -> Result<(), RecordError> {
        if (MIN_YEAR..END_YEAR).contains(&d.year()) {
            Ok(())
        } else {
            Err(self.err(field, format!("{d} is outside {TIME_WINDOW}")))
        }
    }

    fn text(&self, field: &str, s: &str, cap: Cap) -> Result<(), RecordError> {
        check_text(s, cap).map_err(|m| self.err(field, m))
    }

    fn opt_text(&self, field: &str, s: &Option<String>, cap: Cap) -> Result<(), RecordError> {
        match s {
            Some(s) => self.text(field, s, cap),
            None => Ok(()),
        }
    }

    fn money(&self, field: &str, d: Decimal) -> Result<(), RecordError> {
        check_money(d).map_err(|m| self.err(field, m))
    }

    fn count(&self, field: &str, n: Option<u64>) -> Result<(), RecordError> {
        match n {
            Some(n) if n > MAX_COUNT => Err(self.err(field, format!("{n} is over the limit of {MAX_COUNT} (10^12)"))),
            _ => Ok(()),
        }
    }

    /// A free JSON map stored as the field `name`; errors name the first-level key at fault.
    fn json(&self, name: &str, map: &Map<String, Value>) -> Result<(), RecordError> {
        // The map is level 1; its values have one level less.
        let room = MAX_JSON_DEPTH - 1;
        for (k, v) in map {
            if k.contains('\0') {
                return Err(self.err(name, JsonProblem::Nul.message()));
            }
            if let Err(p) = check_json(v, room) {
                return Err(self.err(&key_path(name, k), p.message()));
            }
        }
        Ok(())
    }

    fn utm(&self, names: [&str; 5], fields: [&Option<String>; 5]) -> Result<(), RecordError> {
        for (name, v) in names.into_iter().zip(fields) {
            self.opt_text(name, v, Cap::Chars(MAX_UTM_CHARS))?;
        }
        Ok(())
    }

    fn context(&self, c: &Context) -> Result<(), RecordError> {
        let url = Cap::Bytes(MAX_URL_BYTES);
        self.opt_text("context.page_url", &c.page_url, url)?;
        self.opt_text("context.page_path", &c.page_path, url)?;
        self.opt_text("context.page_title", &c.page_title, Cap::Bytes(MAX_TEXT_BYTES))?;
        self.opt_text("context.referrer", &c.referrer, url)?;
        self.opt_text("context.user_agent", &c.user_agent, Cap::Bytes(MAX_USER_AGENT_BYTES))?;
        self.opt_text("context.ip", &c.ip, Cap::Bytes(MAX_IP_BYTES))?;
        self.opt_text("context.locale", &c.locale, Cap::Bytes(MAX_TEXT_BYTES))?;
        self.utm(CONTEXT_UTM, [&c.utm_source, &c.utm_medium, &c.utm_campaign, &c.utm_term, &c.utm_content])?;
        if let Some(k) = CONTEXT_FIELDS.iter().find(|k| !c.extra.is_empty() && c.extra.contains_key(**k)) {
            return Err(self.err(&format!("context.{k}"), "is both a context field and a key of the extra context".to_owned()));
        }
        self.json("context", &c.extra)
    }
}

/// `name.key`, or just `name` when the key would make an unreadable field name.
fn key_path(name: &str, key: &str) -> String {
    if key.len() <= 64 && !key.bytes().any(is_forbidden_byte) {
        format!("{name}.{key}")
    } else {
        name.to_owned()
    }
}

/// The bounds of [`crate::limits`] on one record; errors carry `index`.
pub(crate) fn check_record(index: usize, r: &Record) -> Result<(), RecordError> {
    let c = Checker { index };
    let m = &r.meta;
    c.time("timestamp", m.timestamp)?;
    c.time("received_at", m.received_at)?;
    if let Some(s) = m.sent_at {
        c.time("sent_at", s)?;
    }
    let url = Cap::Bytes(MAX_URL_BYTES);
    let ua = Cap::Bytes(MAX_USER_AGENT_BYTES);
    let ip = Cap::Bytes(MAX_IP_BYTES);
    match &r.body {
        Body::Event(e) => {
            c.text("event_name", &e.event_name, Cap::Chars(MAX_EVENT_NAME_CHARS))?;
            c.json("properties", &e.properties)?;
            c.context(&e.context)?;
        }
        Body::Session(s) => {
            c.time("started_at", s.started_at)?;
            if let Some(t) = s.ended_at {
                c.time("ended_at", t)?;
            }
            c.utm(UTM, [&s.utm_source, &s.utm_medium, &s.utm_campaign, &s.utm_term, &s.utm_content])?;
            c.opt_text("referrer", &s.referrer, url)?;
            c.opt_text("landing_page", &s.landing_page, url)?;
            c.opt_text("user_agent", &s.user_agent, ua)?;
            c.opt_text("ip", &s.ip, ip)?;
        }
        Body::Touchpoint(t) => {
            c.opt_text("channel", &t.channel, Cap::Chars(MAX_CHANNEL_CHARS))?;
            c.utm(UTM, [&t.utm_source, &t.utm_medium, &t.utm_campaign, &t.utm_term, &t.utm_content])?;
            c.opt_text("referrer", &t.referrer, url)?;
            c.opt_text("page_url", &t.page_url, url)?;
            c.json("detail", &t.detail)?;
        }
        Body::LinkClick(l) => {
            c.opt_text("target_url", &l.target_url, url)?;
            c.opt_text("referer", &l.referer, url)?;
            c.opt_text("user_agent", &l.user_agent, ua)?;
            c.opt_text("ip", &l.ip, ip)?;
        }
        Body::Conversion(v) => {
            if let Some(value) = v.value {
                c.money("value", value)?;
            }
            c.json("properties", &v.properties)?;
        }
        Body::Spend(s) => {
            c.date("date", s.date)?;
            c.money("cost", s.cost)?;
            c.count("impressions", s.impressions)?;
            c.count("clicks", s.clicks)?;
            c.text("source", &s.source, Cap::Bytes(MAX_SOURCE_BYTES))?;
        }
        Body::Identify(i) => c.json("traits", &i.traits)?,
        // Identifiers, kinds and currencies are checked when they are built.
        Body::Alias(_) => {}
    }
    Ok(())
}
