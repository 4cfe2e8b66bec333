//! Decoding request bodies into [`Record`]s: native JSON, Segment's tracking spec, pixel query
//! strings and beacon bodies. Every error names the record index and the field.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::check::{
    check_json, check_map, check_money, check_record, outside_window, rfc3339, round_money, time_in_window, CONTEXT_FIELDS,
};
use crate::entity::*;
use crate::error::{BodyError, RecordError};
use crate::fields::{ItemFields, RawFields};
use crate::ids::{json_type, parse_timestamp, Currency, Id, Kind};
use crate::limits::*;

/// Limits and mappings applied while decoding. Defaults are the brief's.
#[derive(Clone, Debug)]
pub struct DecodeOptions {
    /// Largest single record, in bytes of its JSON.
    pub max_record_bytes: usize,
    /// Most records (items) in one request.
    pub max_batch_records: usize,
    /// Segment `track` event names that are also conversions, with the conversion kind.
    /// Matching ignores case.
    pub conversion_events: BTreeMap<String, String>,
    /// A client timestamp further than this into the future (after skew correction) is replaced
    /// by the server time.
    pub max_future: Duration,
    /// Most bytes one request may turn into: the sum, over its accepted items, of the item's JSON
    /// and the request-derived values (`User-Agent`, client address, pixel `Referer`) copied
    /// into its records. Items past it are rejected as `too_large`. Keep it at the body limit:
    /// then only the copied values can exceed it, and a request never grows much beyond what
    /// the client sent.
    pub max_request_bytes: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        let mut conversion_events = BTreeMap::new();
        conversion_events.insert("order completed".to_owned(), "purchase".to_owned());
        conversion_events.insert("signed up".to_owned(), "signup".to_owned());
        DecodeOptions {
            max_record_bytes: 32 * 1024,
            max_batch_records: 2_500,
            conversion_events,
            max_future: Duration::hours(23),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

/// What the collector knows about the request that the body cannot be trusted to say.
#[derive(Clone, Debug)]
pub struct RequestCtx {
    pub account_id: Uuid,
    pub received_at: DateTime<Utc>,
    /// Client address, used for `context.ip` when the record has none; truncated to
    /// [`MAX_IP_BYTES`] there.
    pub ip: Option<String>,
    /// `User-Agent` header, used for `context.user_agent` when the record has none; truncated to
    /// [`MAX_USER_AGENT_BYTES`] there.
    pub user_agent: Option<String>,
}

/// Segment message types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentType {
    Track,
    Page,
    Screen,
    Identify,
    Alias,
    Group,
}

impl SegmentType {
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentType::Track => "track",
            SegmentType::Page => "page",
            SegmentType::Screen => "screen",
            SegmentType::Identify => "identify",
            SegmentType::Alias => "alias",
            SegmentType::Group => "group",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "track" => SegmentType::Track,
            "page" => SegmentType::Page,
            "screen" => SegmentType::Screen,
            "identify" => SegmentType::Identify,
            "alias" => SegmentType::Alias,
            "group" => SegmentType::Group,
            _ => return None,
        })
    }
}

/// What an endpoint accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `/v1/batch` and the beacon: each item names its type.
    Any,
    /// `/v1/events`, `/v1/conversions`, …: native records of one entity; `type` may be omitted.
    Entity(EntityKind),
    /// `/v1/track`, `/v1/page`, …: Segment messages of one type.
    Segment(SegmentType),
}

const TYPE_LIST: &str = "event, session, touchpoint, link_click, conversion, spend, identify, alias, track, page, screen, group";

/// A request body split into its items, before authentication.
#[derive(Debug)]
pub struct ParsedBody<'a> {
    pub items: Vec<&'a RawValue>,
    /// `writeKey` / `write_key` from the body (top level, or the first item).
    pub write_key: Option<String>,
    /// Batch-level `sentAt`, the fallback for items without their own.
    pub sent_at: Option<DateTime<Utc>>,
    /// True when the body was a `{"batch": […]}` or an array.
    pub is_batch: bool,
}

#[derive(Deserialize)]
struct KeyPeek {
    #[serde(rename = "writeKey")]
    write_key_camel: Option<String>,
    write_key: Option<String>,
}

/// Splits a JSON body into items: `{"batch":[…]}`, `[…]`, or one object.
pub fn parse_body<'a>(bytes: &'a [u8], opts: &DecodeOptions) -> Result<ParsedBody<'a>, BodyError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| BodyError::Malformed(format!("body is not UTF-8 (invalid byte at offset {})", e.valid_up_to())))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(BodyError::Empty);
    }
    let malformed = |e: serde_json::Error| BodyError::Malformed(e.to_string());
    let (items, mut write_key, sent_at, is_batch) = if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(malformed)?;
        (items, None, None, true)
    } else if trimmed.starts_with('{') {
        let top: BTreeMap<Cow<'a, str>, &'a RawValue> = serde_json::from_str(text).map_err(malformed)?;
        let key = peek_key(&top);
        if let Some(batch) = top.get("batch") {
            let items: Vec<&RawValue> = serde_json::from_str(batch.get())
                .map_err(|e| BodyError::Shape(format!("field `batch`: expected an array of records ({e})")))?;
            let sent_at = match top.get("sentAt").or_else(|| top.get("sent_at")) {
                Some(raw) => {
                    let v: Value = serde_json::from_str(raw.get()).map_err(malformed)?;
                    if v.is_null() {
                        None
                    } else {
                        let t = parse_timestamp(&v).map_err(|m| BodyError::Shape(format!("field `sentAt`: {m}")))?;
                        if !time_in_window(t) {
                            return Err(BodyError::Shape(format!("field `sentAt`: {}", outside_window(t))));
                        }
                        Some(t)
                    }
                }
                None => None,
            };
            (items, key, sent_at, true)
        } else {
            let whole: &RawValue = serde_json::from_str(text).map_err(malformed)?;
            (vec![whole], key, None, false)
        }
    } else {
        // Let serde_json describe what it found.
        let e = serde_json::from_str::<Value>(text).err();
        return Err(match e {
            Some(e) => BodyError::Malformed(e.to_string()),
            None => BodyError::Shape("expected a JSON object, an array of objects, or {\"batch\": [...]}".into()),
        });
    };
    if items.len() > opts.max_batch_records {
        return Err(BodyError::TooManyRecords { count: items.len(), limit: opts.max_batch_records });
    }
    if write_key.is_none() && is_batch {
        if let Some(first) = items.first() {
            if let Ok(p) = serde_json::from_str::<KeyPeek>(first.get()) {
                write_key = p.write_key_camel.or(p.write_key);
            }
        }
    }
    Ok(ParsedBody { items, write_key, sent_at, is_batch })
}

fn peek_key(top: &BTreeMap<Cow<'_, str>, &RawValue>) -> Option<String> {
    let raw = top.get("writeKey").or_else(|| top.get("write_key"))?;
    serde_json::from_str::<String>(raw.get()).ok()
}

/// The outcome of decoding a request's items.
#[derive(Debug, Default)]
pub struct Decoded {
    pub records: Vec<Record>,
    pub rejected: Vec<RecordError>,
    /// Items accepted (one item may give more than one record, e.g. a Segment
    /// `Order Completed` gives an event and a conversion).
    pub accepted_items: usize,
}

/// Decodes every item; invalid ones are listed in `rejected` with their index.
///
/// Items past [`DecodeOptions::max_request_bytes`] are rejected as `too_large` without being
/// decoded, so the records of one request stay a bounded multiple of its body.
pub fn decode_items(parsed: &ParsedBody<'_>, ctx: &RequestCtx, expect: Expect, opts: &DecodeOptions) -> Decoded {
    let mut out = Decoded { records: Vec::with_capacity(parsed.items.len()), ..Decoded::default() };
    let from_request = FromRequest::new(ctx);
    let mut used = 0usize;
    let mut budget_hit_at = None;
    for (i, raw) in parsed.items.iter().enumerate() {
        if let Some(first) = budget_hit_at {
            out.rejected.push(RecordError::too_large_because(
                i,
                None,
                format!(
                    "not decoded: the request reached its limit of {} bytes at record {first} (item JSON plus the values copied from the request, such as its `User-Agent`, into each record); send fewer records per request",
                    opts.max_request_bytes
                ),
            ));
            continue;
        }
        match decode_sized(i, raw, ctx, from_request, expect, parsed.sent_at, opts) {
            Ok((mut recs, cost)) => {
                let total = used.saturating_add(cost);
                if total > opts.max_request_bytes {
                    budget_hit_at = Some(i);
                    out.rejected.push(RecordError::too_large_because(
                        i,
                        None,
                        format!(
                            "this record brings the request to {total} bytes (item JSON plus the values copied from the request, such as its `User-Agent`, into each record), over the limit of {} bytes; it and the records after it were not stored",
                            opts.max_request_bytes
                        ),
                    ));
                    continue;
                }
                used = total;
                out.accepted_items += 1;
                out.records.append(&mut recs);
            }
            Err(e) => out.rejected.push(e),
        }
    }
    out
}

/// Decodes one item of a request.
pub fn decode_item(
    index: usize,
    raw: &RawValue,
    ctx: &RequestCtx,
    expect: Expect,
    batch_sent_at: Option<DateTime<Utc>>,
    opts: &DecodeOptions,
) -> Result<Vec<Record>, RecordError> {
    decode_sized(index, raw, ctx, FromRequest::new(ctx), expect, batch_sent_at, opts).map(|(r, _)| r)
}

/// [`decode_item`], also returning the bytes the item costs: its JSON plus the values copied
/// into its records from the request.
fn decode_sized(
    index: usize,
    raw: &RawValue,
    ctx: &RequestCtx,
    from_request: FromRequest<'_>,
    expect: Expect,
    batch_sent_at: Option<DateTime<Utc>>,
    opts: &DecodeOptions,
) -> Result<(Vec<Record>, usize), RecordError> {
    let len = raw.get().len();
    if len > opts.max_record_bytes {
        return Err(RecordError::too_large(index, len, opts.max_record_bytes));
    }
    let Ok(fields) = RawFields::parse(raw.get()) else { return Err(not_an_object(index, raw)) };
    let d = ItemDecoder { index, ctx, opts, batch_sent_at, raw_len: len, from_request };
    d.dispatch(fields, expect)
}

/// Why an item that is not a JSON object was refused.
fn not_an_object(index: usize, raw: &RawValue) -> RecordError {
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Object(_)) => RecordError::invalid(index, None, "malformed JSON object"),
        Ok(other) => RecordError::invalid(index, None, format!("expected a JSON object, found {}", json_type(&other))),
        Err(e) => RecordError::invalid(index, None, format!("malformed JSON: {e}")),
    }
}

/// Fields whose presence marks a Segment-style `identify` or `alias` in a mixed batch.
const SEGMENT_KEYS: [&str; 6] = ["userId", "anonymousId", "previousId", "messageId", "originalTimestamp", "sentAt"];

/// Where an item goes: a native entity or a Segment message.
enum Route {
    Native(EntityKind),
    Segment(SegmentType),
}

/// Where an item of `type` `ty` goes at an endpoint expecting `expect`; `segment_style` says
/// whether it carries Segment's own field names (asked only for `identify` and `alias`, which
/// both specs have).
fn route(index: usize, ty: Option<&str>, expect: Expect, segment_style: impl Fn() -> bool) -> Result<Route, RecordError> {
    let wrong_type = |msg: String| Err(RecordError::invalid(index, Some("type"), msg));
    match expect {
        Expect::Entity(kind) => match ty {
            Some(t) if t != kind.as_str() => wrong_type(format!("this endpoint takes `{}` records, not `{t}`", kind.as_str())),
            _ => Ok(Route::Native(kind)),
        },
        Expect::Segment(st) => match ty {
            Some(t) if t != st.as_str() => wrong_type(format!("this endpoint takes Segment `{}` messages, not `{t}`", st.as_str())),
            _ => Ok(Route::Segment(st)),
        },
        Expect::Any => {
            let Some(t) = ty else { return wrong_type(format!("required; one of {TYPE_LIST}")) };
            match (EntityKind::parse(t), SegmentType::parse(t)) {
                (_, Some(st @ (SegmentType::Identify | SegmentType::Alias))) if segment_style() => Ok(Route::Segment(st)),
                (Some(kind), _) => Ok(Route::Native(kind)),
                (None, Some(st)) => Ok(Route::Segment(st)),
                (None, None) => wrong_type(format!("unknown type `{t}`; expected one of {TYPE_LIST}")),
            }
        }
    }
}

/// Decodes one record already parsed into a JSON object. Its size is not known here: the
/// caller limits it, and only the values copied from the request count against
/// [`DecodeOptions::max_record_bytes`].
pub fn decode_map(
    index: usize,
    map: Map<String, Value>,
    ctx: &RequestCtx,
    expect: Expect,
    batch_sent_at: Option<DateTime<Utc>>,
    opts: &DecodeOptions,
) -> Result<Vec<Record>, RecordError> {
    let d = ItemDecoder { index, ctx, opts, batch_sent_at, raw_len: 0, from_request: FromRequest::new(ctx) };
    d.dispatch(map, expect).map(|(r, _)| r)
}

/// A value taken from the request rather than the body, cut to its limit once per request.
#[derive(Clone, Copy)]
struct Capped<'a> {
    value: &'a str,
    truncated: bool,
}

impl<'a> Capped<'a> {
    fn new(s: &'a str, max: usize) -> Self {
        let (value, truncated) = truncate_utf8(s, max);
        Capped { value, truncated }
    }
}

/// The request's own values that records without them get a copy of.
#[derive(Clone, Copy)]
struct FromRequest<'a> {
    user_agent: Option<Capped<'a>>,
    ip: Option<Capped<'a>>,
}

impl<'a> FromRequest<'a> {
    fn new(ctx: &'a RequestCtx) -> Self {
        FromRequest {
            user_agent: ctx.user_agent.as_deref().map(|s| Capped::new(s, MAX_USER_AGENT_BYTES)),
            ip: ctx.ip.as_deref().map(|s| Capped::new(s, MAX_IP_BYTES)),
        }
    }
}

/// One value copied from the request: the field's name (for the `truncated` list), its stored
/// path, where it came from, its length, and whether it was cut.
#[derive(Clone, Copy)]
struct CopiedValue {
    name: &'static str,
    path: &'static str,
    source: &'static str,
    bytes: usize,
    truncated: bool,
}

/// What one record received from the request instead of the body: at most the client address,
/// the `User-Agent` and the pixel's `Referer`. Kept inline, since every event gets one.
#[derive(Default)]
struct Copied {
    values: [Option<CopiedValue>; 3],
}

impl Copied {
    /// Records `v` copied from `source` into the field `name`, stored at `path`.
    fn add(&mut self, name: &'static str, path: &'static str, source: &'static str, v: Capped<'_>) {
        if let Some(slot) = self.values.iter_mut().find(|s| s.is_none()) {
            *slot = Some(CopiedValue { name, path, source, bytes: v.value.len(), truncated: v.truncated });
        }
    }

    fn iter(&self) -> impl Iterator<Item = &CopiedValue> {
        self.values.iter().flatten()
    }

    fn bytes(&self) -> usize {
        self.iter().map(|v| v.bytes).sum()
    }
}

struct ItemDecoder<'a> {
    index: usize,
    ctx: &'a RequestCtx,
    opts: &'a DecodeOptions,
    batch_sent_at: Option<DateTime<Utc>>,
    /// Bytes of the item as received (the pixel's query string).
    raw_len: usize,
    from_request: FromRequest<'a>,
}

/// Common fields as given by the client, before validation and time correction.
struct RawMeta {
    record_id: Option<Id>,
    timestamp: Option<DateTime<Utc>>,
    /// The field `timestamp` came from, for errors.
    timestamp_field: &'static str,
    sent_at: Option<DateTime<Utc>>,
    /// How errors name the field `sent_at` came from.
    sent_at_field: &'static str,
    anonymous_id: Option<Id>,
    customer_id: Option<Id>,
}

impl ItemDecoder<'_> {
    fn err(&self, field: &str, msg: impl Into<String>) -> RecordError {
        RecordError::invalid(self.index, Some(field), msg)
    }

    fn dispatch(&self, fields: impl ItemFields, expect: Expect) -> Result<(Vec<Record>, usize), RecordError> {
        let index = self.index;
        let ty = match fields.peek("type") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                return Err(RecordError::invalid(index, Some("type"), format!("expected a string, found {}", json_type(&other))))
            }
        };
        match route(index, ty.as_deref(), expect, || SEGMENT_KEYS.iter().any(|k| fields.has(k)))? {
            Route::Native(kind) => self.native(kind, fields, Copied::default()),
            Route::Segment(st) => {
                let map = fields.into_map().map_err(|e| RecordError::invalid(index, None, format!("malformed JSON: {e}")))?;
                self.segment(st, map)
            }
        }
    }

    fn take_id(&self, fields: &mut impl ItemFields, field: &str) -> Result<Option<Id>, RecordError> {
        match fields.take(field).map_err(|m| self.err(field, m))? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Id::deserialize(v).map(Some).map_err(|e| self.err(field, e.to_string())),
        }
    }

    /// A timestamp of the envelope, which must lie in the window.
    fn take_ts(&self, fields: &mut impl ItemFields, field: &str) -> Result<Option<DateTime<Utc>>, RecordError> {
        match fields.take(field).map_err(|m| self.err(field, m))? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let t = parse_timestamp(&v).map_err(|m| self.err(field, m))?;
                if !time_in_window(t) {
                    return Err(self.err(field, outside_window(t)));
                }
                Ok(Some(t))
            }
        }
    }

    fn take_object(&self, map: &mut Map<String, Value>, field: &str) -> Result<Map<String, Value>, RecordError> {
        match map.remove(field) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(o)) => Ok(o),
            Some(other) => Err(self.err(field, format!("expected an object, found {}", json_type(&other)))),
        }
    }

    /// First of several alias fields that is present; more than one is an error.
    fn take_id_alias(&self, fields: &mut impl ItemFields, names: &[&str]) -> Result<Option<Id>, RecordError> {
        let mut found: Option<(&str, Id)> = None;
        for f in names {
            if let Some(id) = self.take_id(fields, f)? {
                if let Some((prev, prev_id)) = &found {
                    if *prev_id != id {
                        return Err(self.err(f, format!("conflicts with `{prev}`; send one record id")));
                    }
                } else {
                    found = Some((f, id));
                }
            }
        }
        Ok(found.map(|(_, id)| id))
    }

    fn deserialize<T: DeserializeOwned>(&self, fields: impl ItemFields) -> Result<T, RecordError> {
        fields.decode().map_err(|e| RecordError::invalid(self.index, e.path.as_deref(), e.message))
    }

    /// Applies Segment's clock-skew correction and the future guard; generates the record id.
    fn finish_meta(&self, raw: RawMeta, sent_fallback: Option<DateTime<Utc>>) -> Result<Meta, RecordError> {
        let received_at = self.ctx.received_at;
        let (sent_at, sent_field) = match raw.sent_at {
            Some(s) => (Some(s), raw.sent_at_field),
            None => (sent_fallback, "the batch's `sentAt`"),
        };
        let mut timestamp = match (raw.timestamp, sent_at) {
            (Some(t), Some(s)) => {
                // `t` and `s` lie in the window but `received_at` is the caller's clock: checked
                // arithmetic, so that no clock can make this panic.
                let corrected = received_at.checked_sub_signed(s.signed_duration_since(t)).filter(|c| time_in_window(*c));
                corrected.ok_or_else(|| {
                    self.err(
                        raw.timestamp_field,
                        format!(
                            "{} corrected for clock skew with {sent_field} ({}) and the server time ({}) falls outside {TIME_WINDOW}",
                            rfc3339(t),
                            rfc3339(s),
                            rfc3339(received_at)
                        ),
                    )
                })?
            }
            (Some(t), None) => t,
            (None, _) => received_at,
        };
        if received_at.checked_add_signed(self.opts.max_future).is_some_and(|limit| timestamp > limit) {
            timestamp = received_at;
        }
        let record_id = raw.record_id.unwrap_or_else(|| Id::from_uuid(Uuid::now_v7()));
        Ok(Meta {
            record_id,
            account_id: self.ctx.account_id,
            timestamp,
            received_at,
            sent_at,
            anonymous_id: raw.anonymous_id,
            customer_id: raw.customer_id,
        })
    }

    fn native(&self, kind: EntityKind, mut map: impl ItemFields, mut copied: Copied) -> Result<(Vec<Record>, usize), RecordError> {
        // Never trusted from the body: the tenant comes from the key.
        for field in ["type", "account_id", "write_key", "writeKey"] {
            map.discard(field);
        }
        let raw = RawMeta {
            record_id: self.take_id_alias(&mut map, &["message_id", "event_id", "record_id"])?,
            timestamp: self.take_ts(&mut map, "timestamp")?,
            timestamp_field: "timestamp",
            sent_at: self.take_ts(&mut map, "sent_at")?,
            sent_at_field: "`sent_at`",
            anonymous_id: self.take_id(&mut map, "anonymous_id")?,
            customer_id: self.take_id(&mut map, "customer_id")?,
        };
        let body = match kind {
            EntityKind::Event => {
                let mut e: Event = self.deserialize(map)?;
                self.fill_context(&mut e.context, &mut copied);
                Body::Event(e)
            }
            EntityKind::Session => Body::Session(self.deserialize(map)?),
            EntityKind::Touchpoint => Body::Touchpoint(self.deserialize(map)?),
            EntityKind::LinkClick => Body::LinkClick(self.deserialize(map)?),
            EntityKind::Conversion => {
                let mut c: Conversion = self.deserialize(map)?;
                c.value = c.value.map(round_money);
                Body::Conversion(c)
            }
            EntityKind::Spend => {
                let mut s: Spend = self.deserialize(map)?;
                s.cost = round_money(s.cost);
                Body::Spend(s)
            }
            EntityKind::Identify => Body::Identify(self.deserialize(map)?),
            EntityKind::Alias => Body::Alias(self.deserialize(map)?),
        };
        let meta = self.finish_meta(raw, self.batch_sent_at)?;
        let mut record = Record { v: ENVELOPE_VERSION, meta, body };
        let cost = self.finish_copied(&mut record.body, &copied)?;
        self.check(&record)?;
        Ok((vec![record], cost))
    }

    /// The rules every accepted record keeps, so that it passes [`crate::check_stored`].
    fn check(&self, record: &Record) -> Result<(), RecordError> {
        validate(self.index, record)?;
        check_record(self.index, record)
    }

    /// Gives the context the request's client address and `User-Agent` when it has none.
    fn fill_context(&self, c: &mut Context, copied: &mut Copied) {
        c.fill_utm_from_url();
        if c.ip.is_none() {
            if let Some(ip) = self.from_request.ip {
                c.ip = Some(ip.value.to_owned());
                copied.add("ip", "context.ip", "the client address", ip);
            }
        }
        if c.user_agent.is_none() {
            if let Some(ua) = self.from_request.user_agent {
                c.user_agent = Some(ua.value.to_owned());
                copied.add("user_agent", "context.user_agent", "the `User-Agent` header", ua);
            }
        }
    }

    /// Flags the truncated fields in the record and checks that the item and what the request
    /// added to it fit [`DecodeOptions::max_record_bytes`]; returns the item's cost in bytes.
    fn finish_copied(&self, body: &mut Body, copied: &Copied) -> Result<usize, RecordError> {
        if copied.iter().any(|v| v.truncated) {
            let flag = Value::Array(copied.iter().filter(|v| v.truncated).map(|v| Value::from(v.name)).collect());
            match body {
                Body::Event(e) => e.context.extra.insert(TRUNCATED_KEY.to_owned(), flag),
                Body::Touchpoint(t) => t.detail.insert(TRUNCATED_KEY.to_owned(), flag),
                Body::Conversion(c) => c.properties.insert(TRUNCATED_KEY.to_owned(), flag),
                _ => None,
            };
        }
        let bytes = copied.bytes();
        let total = self.raw_len.saturating_add(bytes);
        if bytes > 0 && total > self.opts.max_record_bytes {
            let sources: Vec<String> = copied.iter().map(|v| format!("{} bytes of `{}` from {}", v.bytes, v.path, v.source)).collect();
            // Name the field that brought the most.
            let field = copied.iter().max_by_key(|v| v.bytes).map(|v| v.path);
            return Err(RecordError::too_large_because(
                self.index,
                field,
                format!(
                    "record is {} bytes plus {bytes} bytes copied from the request ({}), {total} bytes in all, over the limit of {} bytes",
                    self.raw_len,
                    sources.join(", "),
                    self.opts.max_record_bytes
                ),
            ));
        }
        Ok(total)
    }

    fn segment(&self, st: SegmentType, mut map: Map<String, Value>) -> Result<(Vec<Record>, usize), RecordError> {
        let (timestamp, timestamp_field) = match self.take_ts(&mut map, "timestamp")? {
            Some(t) => (Some(t), "timestamp"),
            None => (self.take_ts(&mut map, "originalTimestamp")?, "originalTimestamp"),
        };
        let raw = RawMeta {
            record_id: self.take_id(&mut map, "messageId")?,
            timestamp,
            timestamp_field,
            sent_at: self.take_ts(&mut map, "sentAt")?,
            sent_at_field: "`sentAt`",
            anonymous_id: self.take_id(&mut map, "anonymousId")?,
            customer_id: self.take_id(&mut map, "userId")?,
        };
        let mut copied = Copied::default();
        let context = self.segment_context(&mut map, &mut copied)?;
        let mut properties = self.take_object(&mut map, "properties")?;
        let meta = self.finish_meta(raw, self.batch_sent_at)?;
        let mut out = Vec::with_capacity(1);
        let body = match st {
            SegmentType::Track => {
                let name = match map.remove("event") {
                    Some(Value::String(s)) if !s.trim().is_empty() => s,
                    Some(Value::String(_)) | None | Some(Value::Null) => return Err(self.err("event", "required for a track call")),
                    Some(other) => return Err(self.err("event", format!("expected a string, found {}", json_type(&other)))),
                };
                if let Some(kind) = self.opts.conversion_events.get(&name.to_lowercase()) {
                    out.push(self.segment_conversion(&meta, kind, &properties)?);
                }
                Body::Event(Event { event_name: name, session_id: None, campaign_id: None, advertisement_id: None, properties, context })
            }
            SegmentType::Page | SegmentType::Screen => {
                let mut context = context;
                for (key, field) in [("name", "name"), ("category", "category")] {
                    if let Some(v) = map.remove(key) {
                        if !v.is_null() && !properties.contains_key(field) {
                            // Stored one level down, inside `properties`.
                            check_json(&v, MAX_JSON_DEPTH - 1).map_err(|p| self.err(key, p.message()))?;
                            properties.insert(field.to_owned(), v);
                        }
                    }
                }
                if st == SegmentType::Page {
                    let prop_str = |k: &str| properties.get(k).and_then(Value::as_str).map(str::to_owned);
                    if context.page_url.is_none() {
                        context.page_url = prop_str("url");
                        context.fill_utm_from_url();
                    }
                    if context.page_path.is_none() {
                        context.page_path = prop_str("path");
                    }
                    if context.page_title.is_none() {
                        context.page_title = prop_str("title");
                    }
                    if context.referrer.is_none() {
                        context.referrer = prop_str("referrer");
                    }
                }
                Body::Event(Event {
                    event_name: if st == SegmentType::Page { "page_view" } else { "screen_view" }.to_owned(),
                    session_id: None,
                    campaign_id: None,
                    advertisement_id: None,
                    properties,
                    context,
                })
            }
            SegmentType::Identify => Body::Identify(Identify { traits: self.take_object(&mut map, "traits")? }),
            SegmentType::Alias => {
                let previous_id =
                    self.take_id(&mut map, "previousId")?.ok_or_else(|| self.err("previousId", "required for an alias call"))?;
                Body::Alias(Alias { previous_id })
            }
            SegmentType::Group => {
                let group_id = self.take_id(&mut map, "groupId")?.ok_or_else(|| self.err("groupId", "required for a group call"))?;
                let traits = self.take_object(&mut map, "traits")?;
                let mut props = properties;
                props.insert("group_id".into(), Value::String(group_id.into_string()));
                if !traits.is_empty() {
                    // Stored one level down, as `properties.traits`.
                    check_map(&traits, MAX_JSON_DEPTH - 1).map_err(|p| self.err("traits", p.message()))?;
                    props.insert("traits".into(), Value::Object(traits));
                }
                Body::Event(Event {
                    event_name: "group".to_owned(),
                    session_id: None,
                    campaign_id: None,
                    advertisement_id: None,
                    properties: props,
                    context,
                })
            }
        };
        let mut record = Record { v: ENVELOPE_VERSION, meta, body };
        let cost = self.finish_copied(&mut record.body, &copied)?;
        self.check(&record)?;
        out.insert(0, record);
        Ok((out, cost))
    }

    /// Maps Segment's `context` onto ours: page, campaign (UTM), ip, userAgent, locale; the rest
    /// is kept in `extra`.
    fn segment_context(&self, map: &mut Map<String, Value>, copied: &mut Copied) -> Result<Context, RecordError> {
        let mut src = self.take_object(map, "context")?;
        let mut c = Context::default();
        let s = |v: Option<Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        if let Some(Value::Object(mut page)) = src.remove("page") {
            c.page_url = s(page.remove("url"));
            c.page_path = s(page.remove("path"));
            c.page_title = s(page.remove("title"));
            c.referrer = s(page.remove("referrer"));
        }
        match src.remove("campaign") {
            Some(Value::Object(mut camp)) => {
                c.utm_source = s(camp.remove("source"));
                c.utm_medium = s(camp.remove("medium"));
                c.utm_campaign = s(camp.remove("name")).or_else(|| s(camp.remove("campaign")));
                c.utm_term = s(camp.remove("term"));
                c.utm_content = s(camp.remove("content"));
            }
            None | Some(Value::Null) => {}
            Some(other) => return Err(self.err("context.campaign", format!("expected an object, found {}", json_type(&other)))),
        }
        c.ip = s(src.remove("ip"));
        c.user_agent = s(src.remove("userAgent"));
        c.locale = s(src.remove("locale"));
        // `extra` is stored flattened beside our own fields: a key named like one of them would
        // be written twice and the record could not be read back. Such a key fills the field
        // when Segment's own key did not.
        if src.keys().any(|k| CONTEXT_FIELDS.contains(&k.as_str())) {
            for field in CONTEXT_FIELDS {
                if let Some(v) = src.remove(field) {
                    if let Some(slot) = c.field_mut(field) {
                        if slot.is_none() {
                            *slot = s(Some(v));
                        }
                    }
                }
            }
        }
        c.extra = src;
        self.fill_context(&mut c, copied);
        Ok(c)
    }

    /// A Segment `track` that is configured as a conversion (e.g. `Order Completed`).
    fn segment_conversion(&self, meta: &Meta, kind: &str, props: &Map<String, Value>) -> Result<Record, RecordError> {
        let kind = Kind::new(kind).map_err(|m| self.err("event", m))?;
        let mut value = None;
        for key in ["revenue", "total", "value"] {
            if let Some(v) = props.get(key) {
                if v.is_null() {
                    continue;
                }
                let field = format!("properties.{key}");
                let d = round_money(decimal_from(v).map_err(|m| self.err(&field, m))?);
                check_money(d).map_err(|m| self.err(&field, m))?;
                value = Some(d);
                break;
            }
        }
        let currency = match props.get("currency") {
            Some(Value::String(s)) => Some(Currency::new(s).map_err(|m| self.err("properties.currency", m))?),
            _ if value.is_some() => Some(Currency::USD),
            _ => None,
        };
        let order_id = match props.get("order_id").or_else(|| props.get("orderId")) {
            None | Some(Value::Null) => None,
            Some(v) => Some(Id::deserialize(v.clone()).map_err(|e| self.err("properties.order_id", e.to_string()))?),
        };
        // A deterministic id, so an SDK retry of the same message dedups the conversion too.
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("conversion:{}", meta.record_id).as_bytes());
        let mut m = meta.clone();
        m.record_id = Id::from_uuid(id);
        let record = Record {
            v: ENVELOPE_VERSION,
            meta: m,
            body: Body::Conversion(Conversion {
                kind,
                value,
                currency,
                order_id,
                campaign_id: None,
                advertisement_id: None,
                session_id: None,
                properties: Map::new(),
            }),
        };
        self.check(&record)?;
        Ok(record)
    }
}

fn decimal_from(v: &Value) -> Result<Decimal, String> {
    match v {
        Value::Number(n) => n
            .to_string()
            .parse::<Decimal>()
            .or_else(|_| n.as_f64().and_then(|f| Decimal::try_from(f).ok()).ok_or_else(|| format!("{n} is not a decimal number"))),
        Value::String(s) => s.trim().parse::<Decimal>().map_err(|_| format!("{s:?} is not a decimal number")),
        other => Err(format!("expected a decimal number, found {}", json_type(other))),
    }
}

/// Rules serde cannot express: identities, value/currency pairs, non-negative money, ….
pub fn validate(index: usize, r: &Record) -> Result<(), RecordError> {
    let err = |field: &str, msg: &str| Err(RecordError::invalid(index, Some(field), msg));
    let m = &r.meta;
    let has_person = m.anonymous_id.is_some() || m.customer_id.is_some();
    match &r.body {
        Body::Event(e) => {
            if e.event_name.trim().is_empty() {
                return err("event_name", "must not be empty");
            }
            if e.event_name.chars().count() > MAX_EVENT_NAME_CHARS {
                return err("event_name", "is over the limit of 255 characters");
            }
            if !has_person {
                return err("anonymous_id", "a record needs `anonymous_id` or `customer_id`");
            }
        }
        Body::Session(s) => {
            if let Some(end) = s.ended_at {
                if end < s.started_at {
                    return err("ended_at", "is before `started_at`");
                }
            }
            if !has_person && s.device_id.is_none() {
                return err("anonymous_id", "a session needs `anonymous_id`, `customer_id` or `device_id`");
            }
        }
        Body::Touchpoint(_) => {
            if !has_person {
                return err("anonymous_id", "a record needs `anonymous_id` or `customer_id`");
            }
        }
        Body::LinkClick(c) => {
            if c.link_id.is_none() && c.short_code.is_none() {
                return err("short_code", "a link click needs `short_code` or `link_id`");
            }
        }
        Body::Conversion(c) => {
            if !has_person {
                return err("customer_id", "a conversion needs `customer_id` or `anonymous_id`");
            }
            if let Some(v) = c.value {
                if v.is_sign_negative() && !v.is_zero() {
                    return err("value", "must not be negative");
                }
                if c.currency.is_none() {
                    return err("currency", "required when `value` is set (ISO 4217, e.g. USD)");
                }
            }
        }
        Body::Spend(s) => {
            if s.cost.is_sign_negative() && !s.cost.is_zero() {
                return err("cost", "must not be negative");
            }
            if s.source.trim().is_empty() || s.source.len() > MAX_SOURCE_BYTES {
                return err("source", "must be 1 to 64 characters");
            }
        }
        Body::Identify(_) => {
            if m.customer_id.is_none() {
                return err("customer_id", "an identify needs `customer_id` (Segment: `userId`)");
            }
        }
        Body::Alias(a) => {
            let Some(c) = &m.customer_id else {
                return err("customer_id", "an alias needs `customer_id` (Segment: `userId`)");
            };
            if *c == a.previous_id {
                return err("previous_id", "is the same as `customer_id`");
            }
        }
    }
    Ok(())
}

/// Decodes a tracking-pixel query string (`GET /p.gif?k=…&t=event&e=page_view&aid=…`).
///
/// Returns the write key (`k`) and the records. Short names are accepted beside the native
/// field names: `t` type, `e` event_name, `aid` anonymous_id, `uid` customer_id, `mid`
/// message_id, `ts` timestamp, `cid` campaign_id, `adid` advertisement_id, `sid` session_id,
/// `url` page url, `ref` referrer. `cb` and `_` (cache busters) are ignored; any other parameter
/// goes into `properties` (events, conversions) or `detail` (touchpoints).
///
/// Without `url`, the `Referer` header is the page URL, truncated to [`MAX_URL_BYTES`]. A query
/// string over [`DecodeOptions::max_record_bytes`] is refused unread (no key is returned).
pub fn decode_pixel(
    query: &str,
    referer_header: Option<&str>,
    ctx: &RequestCtx,
    opts: &DecodeOptions,
) -> (Option<String>, Result<Vec<Record>, RecordError>) {
    if query.len() > opts.max_record_bytes {
        return (None, Err(RecordError::too_large(0, query.len(), opts.max_record_bytes)));
    }
    let mut key = None;
    let mut map = Map::new();
    let mut extra = Map::new();
    let mut page = Map::new();
    let mut ty = "event".to_owned();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = v.into_owned();
        let field = match &*k {
            "k" | "writeKey" | "write_key" => {
                key = Some(v);
                continue;
            }
            "t" | "type" => {
                ty = v;
                continue;
            }
            "cb" | "_" => continue,
            "e" | "event" | "event_name" => "event_name",
            "aid" | "anonymous_id" => "anonymous_id",
            "uid" | "customer_id" => "customer_id",
            "mid" | "message_id" => "message_id",
            "ts" | "timestamp" => "timestamp",
            "cid" | "campaign_id" => "campaign_id",
            "adid" | "advertisement_id" => "advertisement_id",
            "sid" | "session_id" => "session_id",
            "kind" | "channel" | "value" | "currency" | "order_id" => {
                map.insert(k.into_owned(), Value::String(v));
                continue;
            }
            "url" | "page_url" => {
                page.insert("page_url".into(), Value::String(v));
                continue;
            }
            "ref" | "referrer" => {
                page.insert("referrer".into(), Value::String(v));
                continue;
            }
            "title" | "page_title" => {
                page.insert("page_title".into(), Value::String(v));
                continue;
            }
            u @ ("utm_source" | "utm_medium" | "utm_campaign" | "utm_term" | "utm_content") => {
                page.insert(u.to_owned(), Value::String(v));
                continue;
            }
            _ => {
                extra.insert(k.into_owned(), Value::String(v));
                continue;
            }
        };
        map.insert(field.to_owned(), Value::String(v));
    }
    let mut copied = Copied::default();
    if !page.contains_key("page_url") {
        if let Some(r) = referer_header {
            let r = Capped::new(r, MAX_URL_BYTES);
            page.insert("page_url".into(), Value::String(r.value.to_owned()));
            let path = match ty.as_str() {
                "touchpoint" => "page_url",
                "conversion" => "properties.page_url",
                _ => "context.page_url",
            };
            copied.add("page_url", path, "the `Referer` header", r);
        }
    }
    let Some(kind) = EntityKind::parse(&ty).filter(|k| matches!(k, EntityKind::Event | EntityKind::Touchpoint | EntityKind::Conversion))
    else {
        return (key, Err(RecordError::invalid(0, Some("t"), format!("the pixel takes type event, touchpoint or conversion, not `{ty}`"))));
    };
    match kind {
        EntityKind::Event => {
            map.insert("context".into(), Value::Object(page));
            map.insert("properties".into(), Value::Object(extra));
        }
        EntityKind::Touchpoint => {
            page.remove("page_title");
            for (k, v) in page {
                map.insert(k, v);
            }
            map.insert("detail".into(), Value::Object(extra));
        }
        _ => {
            for (k, v) in page {
                extra.insert(k, v);
            }
            map.insert("properties".into(), Value::Object(extra));
        }
    }
    let d = ItemDecoder { index: 0, ctx, opts, batch_sent_at: None, raw_len: query.len(), from_request: FromRequest::new(ctx) };
    (key, d.native(kind, map, copied).map(|(records, _)| records))
}
