//! The engine: state of one partition, ingest, flush, watermark, snapshot/restore.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use touchline_model::{partition_for, topics, Body, Conversion, Currency, Event, Id, Kind, LinkClick, Record, Session, Spend, Touchpoint};
use uuid::Uuid;

use crate::attribution::{
    fill_one_hot, money_places, one_hot_shares, remainder_slot, split_exact_into, split_money_into, split_one_hot_into, weights_into,
    AttributedConversion, AttributionSet, Credit, CreditedTouch, Model, Touch, TouchSource, DIRECT,
};
use crate::channel_credit::channel_weights_into;
use crate::config::EngineConfig;
use crate::currency::{spend_rate_time, RefusedRecord, Waiting};
use crate::datadriven::{aggregate_paths, PathCount};
use crate::emitted::EmittedSession;
use crate::held::{elapsed_ms, nanos, Held, Parts};
use crate::idents::Idents;
use crate::journeys::{JourneyPartial, Journeys, Leaving, PathKey};
use crate::linkclicks::{LinkClickPartial, LinkClicks};
use crate::metrics::{add_d, add_u, Cell, CellKey, CellKeyRef, CellKeyView, DailyPartial};
use crate::session::{insert_point, EventPoint, ExplicitSession, SessionChange, SessionRow, Utm};
use crate::text::{Interner, Text};
use crate::util::{ordered, sort_strings, sorted, vecmap, FastIndexMap, FastMap, FastSet, Fingerprint};

/// Version of the snapshot format written by [`Engine::snapshot`] (2: binary header + deflated
/// state; 1 was plain JSON of a different state layout and is refused).
pub const SNAPSHOT_VERSION: u32 = 2;
const SNAPSHOT_FORMAT: &str = "touchline-engine-state";
/// First bytes of a snapshot: magic, then version and partition (u32 little endian), then codec.
const SNAPSHOT_MAGIC: &[u8; 4] = b"TLES";
const SNAPSHOT_HEADER: usize = 4 + 4 + 4 + 1;
/// Codec byte: the state as JSON, compressed with raw DEFLATE. Still read, no longer written.
const CODEC_DEFLATE_JSON: u8 = 1;
/// Codec byte: the state as MessagePack with named fields, compressed with raw DEFLATE.
/// Self-describing like JSON (fields left out when empty still decode), but numbers, floats
/// and strings go without text formatting, parsing or escaping.
const CODEC_DEFLATE_MSGPACK: u8 = 2;
/// Bytes of JSON handed to the compressor per write while a snapshot is encoded.
const SNAPSHOT_WRITE_BUFFER: usize = 256 * 1024;
/// Touches are carried across at most this many partitions (guards against alias cycles).
const MAX_HOPS: u8 = 4;
/// Identity chains/groups longer than this are cut (guards against pathological alias graphs).
const MAX_GROUP: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("snapshot does not hold a valid engine state: {0}")]
    Snapshot(String),
    #[error("snapshot format {found:?} version {version} is not supported (want {SNAPSHOT_FORMAT:?} version {SNAPSHOT_VERSION})")]
    SnapshotVersion { found: String, version: u32 },
    #[error("snapshot was taken for partition {found}, not {want}")]
    SnapshotPartition { found: u32, want: u32 },
    #[error("identities message is neither a record nor an identity transfer: {0}")]
    Decode(String),
}

/// What happened to one ingested record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ingest {
    /// The record changed (or may change) the results.
    Applied,
    /// Same record id (or dedup key) seen before and this copy does not win: no effect.
    Duplicate,
    /// Older than `watermark − allowed_lateness`: not applied, counted in
    /// [`Counters::too_late`]. The runtime keeps it for replay (e.g. to the DLQ).
    TooLate,
    /// Carries nothing the engine uses (a bot link click, a click without campaign, …).
    Ignored,
    /// An amount in a currency with no exchange rate to the account's reporting currency at
    /// the record's time: held in the state until a rate comes ([`Engine::set_catalog`]),
    /// counted in [`Counters::waited_for_rate`] and [`StateStats::waiting_for_rate`].
    Waiting,
    /// No exchange rate, and the partition already holds
    /// [`EngineConfig::max_waiting_for_rate`] records waiting for one: not applied, counted in
    /// [`Counters::no_rate`]. The runtime keeps it (the DLQ).
    NoRate,
}

/// Running counters (part of the snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub records: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub too_late: u64,
    pub ignored: u64,
    pub transfers_in: u64,
    pub transfers_out: u64,
    pub evicted_touches: u64,
    pub evicted_conversions: u64,
    /// Records that had to wait for an exchange rate (absent from older snapshots).
    #[serde(default)]
    pub waited_for_rate: u64,
    /// Records given up for want of an exchange rate: refused with the waiting list full, or
    /// still waiting when their time fell behind the allowed lateness.
    #[serde(default)]
    pub no_rate: u64,
}

/// A re-key record for `touchline.identities`: carries the touches of an anonymous identity (and
/// of identities stitched to it) to the partition of the customer it was linked to; or, as a
/// *link notice* (`notice`, no touches), tells the anonymous identity's partition about a link
/// that a record carrying both ids made on the customer's partition.
///
/// Wire form: JSON `{"v":1,"type":"identity_transfer","account_id":…,"from":…,"to":…,
/// "linked_at":…,"link_record_id":…,"touches":[…]}` (plus `"notice":true` on a notice), bus key
/// [`IdentityTransfer::partition_key`]. Applying one twice is harmless (touches are
/// deduplicated by key, links by their record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdentityTransfer {
    pub v: u8,
    #[serde(rename = "type")]
    pub kind: String,
    pub account_id: Uuid,
    /// The previous (anonymous) identity.
    pub from: String,
    /// The identity it was linked to (customer id).
    pub to: String,
    pub linked_at: DateTime<Utc>,
    pub link_record_id: Id,
    pub touches: Vec<Touch>,
    /// A link notice: it goes to the partition of `from`, which then sends `from`'s touches to
    /// the customer's partition as for an identify.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notice: bool,
}

impl IdentityTransfer {
    pub const TYPE: &'static str = "identity_transfer";

    /// Topic to append it to: `touchline.identities`.
    pub fn topic(&self) -> &'static str {
        topics::IDENTITIES
    }

    /// Bus key `{account_id}:{to}`, the partition of the customer; for a link notice
    /// `{account_id}:{from}`, the partition of the anonymous identity.
    pub fn partition_key(&self) -> String {
        let destination = if self.notice { &self.from } else { &self.to };
        format!("{}:{}", self.account_id, destination)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<IdentityTransfer, String> {
        let t: IdentityTransfer = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if t.kind != Self::TYPE || t.v != 1 {
            return Err(format!("not an identity transfer v1 (type {:?}, v {})", t.kind, t.v));
        }
        Ok(t)
    }
}

/// Everything a flush produced. Write `attributions`, `sessions` and `metrics` to the sinks
/// (upserts), append `transfers` to `touchline.identities`, then checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Flush {
    pub attributions: Vec<AttributionSet>,
    pub sessions: Vec<SessionChange>,
    pub metrics: Vec<DailyPartial>,
    pub transfers: Vec<IdentityTransfer>,
    #[serde(default)]
    pub link_clicks: Vec<LinkClickPartial>,
    #[serde(default)]
    pub journeys: Vec<JourneyPartial>,
    /// Records the engine gave up on after holding them (for the DLQ).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedRecord>,
}

impl Flush {
    pub fn is_empty(&self) -> bool {
        self.refused.is_empty()
            && self.attributions.is_empty()
            && self.sessions.is_empty()
            && self.metrics.is_empty()
            && self.transfers.is_empty()
            && self.link_clicks.is_empty()
            && self.journeys.is_empty()
    }
}

/// Sizes of the state, for metrics and for the "bytes per identity" figure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateStats {
    pub identities: usize,
    pub touches: usize,
    pub conversions: usize,
    pub event_points: usize,
    pub explicit_sessions: usize,
    pub links: usize,
    pub cells: usize,
    pub spend_reports: usize,
    /// Records waiting for an exchange rate.
    #[serde(default)]
    pub waiting_for_rate: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Link {
    to: String,
    at: DateTime<Utc>,
    rid: Id,
}

/// Lists conversion `key` for the next flush (once; no-op for an unknown key).
fn mark_dirty(convs: &mut FastIndexMap<Text, ConvState>, dirty: &mut Vec<Text>, key: Text) {
    if let Some(c) = convs.get_mut(&key) {
        if !c.dirty {
            c.dirty = true;
            dirty.push(key);
        }
    }
}

/// [`ConvState::ident_id`] before it is set.
fn no_slot() -> u32 {
    u32::MAX
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ConvState {
    account: Uuid,
    key: Text,
    record_id: Text,
    identity: Text,
    /// Identity key (`{account}:{identity}`), the same shared string as its slot's key in
    /// `State::ids`.
    ident: Text,
    /// Id of `ident` in `State::ids` (not in snapshots; set on ingest and restore). Valid while
    /// the slot's key is `ident` itself (pointer-equal): the slot lists this conversion, so it is
    /// not released while the conversion exists; checked anyway before use.
    #[serde(skip, default = "no_slot")]
    ident_id: u32,
    at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    kind: Kind,
    /// `kind` as the interner's shared string (not in snapshots; set on ingest and restore).
    #[serde(skip)]
    kind_text: Option<Text>,
    /// Listed in `State::dirty_convs` (not in snapshots; restored from that list).
    #[serde(skip)]
    dirty: bool,
    value: Decimal,
    #[serde(default)]
    currency: Option<Currency>,
    #[serde(default)]
    campaign_id: Option<Id>,
    #[serde(default)]
    advertisement_id: Option<Id>,
    version: u64,
    /// Per-model fingerprints of the emitted rows in the earlier byte-wise FNV-1a hash: only
    /// conversions restored from checkpoints taken before [`ConvState::fp`] existed have them
    /// (and keep using that hash).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    fingerprints: Vec<u64>,
    /// Per-model fingerprints of the emitted rows in [`Fingerprint`] over every row's bytes: only
    /// conversions restored from checkpoints taken before [`ConvState::fq`] existed have them (and
    /// keep using that form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    fp: Vec<u64>,
    /// Per-model fingerprints of the emitted rows in [`Fingerprint`] over per-touch hashes
    /// ([`FpScheme::Touches`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    fq: Vec<u64>,
    /// Contributions of the default model currently added to the daily cells.
    #[serde(default)]
    applied: Vec<(CellKey, Decimal, Decimal)>,
    /// The journey path this conversion is counted under, with the revenue it added (absent
    /// from snapshots of builds before journeys: such a conversion is counted when its
    /// attribution next changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    journey: Option<(PathKey, Decimal)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "DerivedIdentRepr")]
struct DerivedIdent {
    account: Uuid,
    identity: String,
    points: Vec<EventPoint>,
    /// session id → what was emitted of it.
    sessions: BTreeMap<String, EmittedSession>,
    /// Not serialised (restore starts from a full scan, dirty flags from the dirty set).
    #[serde(skip)]
    scan: ScanCache,
}

/// A [`DerivedIdent`] as snapshots hold it: builds before [`EmittedSession`] kept the emitted
/// rows whole (`emitted`), which restore as their fingerprints.
#[derive(Deserialize)]
struct DerivedIdentRepr {
    account: Uuid,
    identity: String,
    points: Vec<EventPoint>,
    #[serde(default)]
    sessions: BTreeMap<String, EmittedSession>,
    #[serde(default)]
    emitted: BTreeMap<String, SessionRow>,
}

impl From<DerivedIdentRepr> for DerivedIdent {
    fn from(r: DerivedIdentRepr) -> DerivedIdent {
        let mut sessions = r.sessions;
        sessions.extend(r.emitted.iter().map(|(id, row)| (id.clone(), EmittedSession::of(row))));
        DerivedIdent { account: r.account, identity: r.identity, points: r.points, sessions, scan: ScanCache::default() }
    }
}

/// What the last flush of a [`DerivedIdent`] computed, to resume from instead of rescanning: the
/// session ranges of the points as they were, and how many leading points are unchanged since
/// (0: nothing known, scan everything). Also the identity's dirty flag. Ignored by equality.
#[derive(Clone, Debug, Default)]
struct ScanCache {
    clean: usize,
    bounds: Vec<(usize, usize)>,
    /// Whether the identity is in the state's dirty set.
    dirty: bool,
}

impl PartialEq for ScanCache {
    fn eq(&self, _: &ScanCache) -> bool {
        true
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ExplicitEntry {
    account: Uuid,
    identity: String,
    session_id: String,
    s: ExplicitSession,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct SpendKey {
    account: Uuid,
    date: NaiveDate,
    campaign_id: String,
    advertisement_id: Option<String>,
    source: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SpendRec {
    order: (DateTime<Utc>, DateTime<Utc>, Id),
    cost: Decimal,
    impressions: u64,
    clicks: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Pending {
    account: Uuid,
    from: String,
    to: String,
    linked_at: DateTime<Utc>,
    link_record_id: Id,
    touches: BTreeMap<String, Touch>,
    /// A link notice for the partition of `from` (see [`IdentityTransfer::notice`]); absent
    /// from snapshots of builds before them.
    #[serde(default)]
    notice: bool,
}

#[derive(Clone, Debug, Default)]
struct State {
    watermark: Option<DateTime<Utc>>,
    counters: Counters,
    /// identity key (`{account}:{identity}`) → id → its touches (sorted by `(timestamp, record
    /// id, received_at)`, unique by dedup key) and conversion keys. Serialised as the two maps
    /// it replaced.
    ids: Idents,
    /// previous identity key → the identity key it was linked to.
    links: FastMap<String, Link>,
    /// identity key → identity keys linked to it.
    members: FastMap<String, BTreeSet<String>>,
    /// conversion dedup key (`{account}|{conversion_key}`) → conversion.
    convs: FastIndexMap<Text, ConvState>,
    derived: FastMap<String, DerivedIdent>,
    /// `{identity key}\u{1f}{session_id}` → client session.
    explicit: FastMap<String, ExplicitEntry>,
    /// account → record id of events seen → event time.
    events_seen: FastMap<Uuid, FastMap<Text, DateTime<Utc>>>,
    cells: FastMap<CellKey, Cell>,
    spend: FastMap<SpendKey, SpendRec>,
    /// Keys of the conversions to attribute at the next flush, each once (a conversion's
    /// `dirty` flag says whether it is listed). Serialised sorted, like the set it replaced.
    dirty_convs: Vec<Text>,
    /// Derived identities changed since the last flush, each once (an identity's `scan.dirty`
    /// flag says whether it is listed). Serialised sorted, like the set it replaced.
    dirty_derived: Vec<String>,
    dirty_explicit: FastSet<String>,
    /// Keys of the cells changed since the last flush, each once (the cell's `dirty` flag says
    /// whether it is listed). Serialised as a sequence, like the set it replaced.
    dirty_cells: Vec<CellKey>,
    /// `{from key}\u{1f}{to key}` → touches to send; `{from key}\u{1f}{to key}\u{1f}notice` → a
    /// link notice to send.
    pending: BTreeMap<String, Pending>,
    link_clicks: LinkClicks,
    journeys: Journeys,
    /// Account → digest of the data-driven channel weights its held conversions are credited
    /// by ([`crate::config::Catalog::weight_digests`]). `None` in snapshots of builds that
    /// credited no conversion under `markov` and `shapley`.
    weights_applied: Option<BTreeMap<Uuid, u64>>,
    /// Records waiting for an exchange rate, in arrival order.
    waiting: Vec<Waiting>,
    /// Records given up on since the last flush (see [`Flush::refused`]).
    refused: Vec<RefusedRecord>,
}

fn state_from_msgpack(bytes: &[u8]) -> Result<StateRepr, EngineError> {
    rmp_serde::from_slice(bytes).map_err(|e| EngineError::Snapshot(e.to_string()))
}

/// Snapshots written before the MessagePack codec.
fn state_from_json(bytes: &[u8]) -> Result<StateRepr, EngineError> {
    // Validated as UTF-8 once here, not string by string by the parser.
    let json = std::str::from_utf8(bytes).map_err(|e| EngineError::Snapshot(format!("not UTF-8: {e}")))?;
    serde_json::from_str(json).map_err(|e| EngineError::Snapshot(e.to_string()))
}

/// The state as a snapshot holds it (read by [`Engine::restore`]; [`State`]'s `Serialize` writes
/// the same fields in the same order).
#[derive(Deserialize)]
struct StateRepr {
    watermark: Option<DateTime<Utc>>,
    counters: Counters,
    /// identity key (`{account}:{identity}`) → its touches, sorted by `(timestamp, record id,
    /// received_at)`, unique by dedup key.
    touches: FastMap<String, Vec<Held>>,
    /// previous identity key → the identity key it was linked to.
    links: FastMap<String, Link>,
    /// identity key → identity keys linked to it.
    members: FastMap<String, BTreeSet<String>>,
    /// conversion dedup key (`{account}|{conversion_key}`) → conversion.
    convs: FastMap<Text, ConvState>,
    convs_by_ident: FastMap<String, BTreeSet<Text>>,
    derived: FastMap<String, DerivedIdent>,
    /// `{identity key}\u{1f}{session_id}` → client session.
    explicit: FastMap<String, ExplicitEntry>,
    /// account → record id of events seen → event time.
    events_seen: FastMap<Uuid, FastMap<Text, DateTime<Utc>>>,
    #[serde(with = "vecmap")]
    cells: FastMap<CellKey, Cell>,
    #[serde(with = "vecmap")]
    spend: FastMap<SpendKey, SpendRec>,
    dirty_convs: FastSet<Text>,
    /// Derived identities changed since the last flush, each once (an identity's `scan.dirty`
    /// flag says whether it is listed). Serialised sorted, like the set it replaced.
    dirty_derived: Vec<String>,
    dirty_explicit: FastSet<String>,
    /// Keys of the cells changed since the last flush, each once (the cell's `dirty` flag says
    /// whether it is listed). Serialised as a sequence, like the set it replaced.
    dirty_cells: Vec<CellKey>,
    /// `{from key}\u{1f}{to key}` → touches to send; `{from key}\u{1f}{to key}\u{1f}notice` → a
    /// link notice to send.
    pending: BTreeMap<String, Pending>,
    /// Clicks per short link and day; absent from snapshots of builds before them.
    #[serde(default)]
    link_clicks: LinkClicks,
    /// Journeys per account, day and path; absent from snapshots of builds before them.
    #[serde(default)]
    journeys: Option<Journeys>,
    /// Digests of the channel weights conversions were credited by; absent from snapshots of
    /// builds before per-conversion `markov` and `shapley`.
    #[serde(default)]
    weights_applied: Option<BTreeMap<Uuid, u64>>,
    /// Records waiting for an exchange rate; absent from snapshots of builds before currencies.
    #[serde(default)]
    waiting: Vec<Waiting>,
    #[serde(default)]
    refused: Vec<RefusedRecord>,
}

/// `value` serialised through `f` (a `serialize_with` function of the state's fields).
macro_rules! ser_with {
    ($value:expr, $ty:ty, $f:path) => {{
        struct W<'a>(&'a $ty);
        impl Serialize for W<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $f(self.0, s)
            }
        }
        W($value)
    }};
}

impl Serialize for State {
    /// The fields of [`StateRepr`], in its order, each as its serde attribute writes it.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("StateRepr", 22)?;
        st.serialize_field("watermark", &self.watermark)?;
        st.serialize_field("counters", &self.counters)?;
        st.serialize_field("touches", &self.ids.ser_touches())?;
        st.serialize_field("links", &ser_with!(&self.links, FastMap<String, Link>, ordered::map))?;
        st.serialize_field("members", &ser_with!(&self.members, FastMap<String, BTreeSet<String>>, ordered::map))?;
        st.serialize_field("convs", &ser_with!(&self.convs, FastIndexMap<Text, ConvState>, ordered::index_map))?;
        st.serialize_field("convs_by_ident", &self.ids.ser_convs())?;
        st.serialize_field("derived", &ser_with!(&self.derived, FastMap<String, DerivedIdent>, ordered::map))?;
        st.serialize_field("explicit", &ser_with!(&self.explicit, FastMap<String, ExplicitEntry>, ordered::map))?;
        st.serialize_field("events_seen", &ser_with!(&self.events_seen, FastMap<Uuid, FastMap<Text, DateTime<Utc>>>, ordered::nested))?;
        st.serialize_field("cells", &ser_with!(&self.cells, FastMap<CellKey, Cell>, vecmap::serialize))?;
        st.serialize_field("spend", &ser_with!(&self.spend, FastMap<SpendKey, SpendRec>, vecmap::serialize))?;
        st.serialize_field("dirty_convs", &ser_with!(&self.dirty_convs, Vec<Text>, ordered::vec))?;
        st.serialize_field("dirty_derived", &ser_with!(&self.dirty_derived, Vec<String>, ordered::vec))?;
        st.serialize_field("dirty_explicit", &ser_with!(&self.dirty_explicit, FastSet<String>, ordered::set))?;
        st.serialize_field("dirty_cells", &self.dirty_cells)?;
        st.serialize_field("pending", &self.pending)?;
        st.serialize_field("link_clicks", &self.link_clicks)?;
        st.serialize_field("journeys", &self.journeys)?;
        st.serialize_field("weights_applied", &self.weights_applied)?;
        st.serialize_field("waiting", &self.waiting)?;
        st.serialize_field("refused", &self.refused)?;
        st.end()
    }
}

/// The engine of one partition. See the crate docs for how the runtime drives it.
#[derive(Clone, Debug)]
pub struct Engine {
    cfg: EngineConfig,
    st: State,
    /// Shared strings of the state (not part of the snapshot).
    int: Interner,
    /// Interner size that triggers the next collection.
    gc_at: usize,
    /// Reused buffer for identity keys.
    key_buf: String,
    /// The account whose `{account}:` prefix `key_buf` starts with.
    key_acct: Option<Uuid>,
    /// Exact credits (total 1) of the models whose weights depend only on the path length,
    /// by (model index, length).
    credit_cache: FastMap<(usize, usize), Vec<Decimal>>,
    /// Buffers [`Engine::attribute`] reuses across conversions (empty between calls).
    scratch: Scratch,
    scratch_changed: Vec<(Model, Vec<Credit>)>,
    /// Reused buffers of the derived-session flush: session id, session order.
    key_buf2: String,
    ids_buf: Vec<usize>,
    /// Bytes of the records in `State::waiting` (derived from it, not in the snapshot).
    waiting_bytes: usize,
}

/// Working buffers of [`Engine::attribute`], kept between conversions so that attributing one
/// does not allocate them again (not part of the snapshot).
#[derive(Clone, Debug, Default)]
struct Scratch {
    weights: Vec<f64>,
    credits: Vec<Decimal>,
    revenue: Vec<Decimal>,
    onehot_credits: Vec<Decimal>,
    onehot_revenue: Vec<Decimal>,
    /// The split of equal weights, when a model of the conversion being attributed had them.
    equal_credits: Vec<Decimal>,
    equal_revenue: Vec<Decimal>,
    fps: Vec<u64>,
    contrib: Vec<(CellKey, Decimal, Decimal)>,
}

/// The form of a conversion's stored per-model fingerprints: the one they were first stored in,
/// so that a conversion restored from an older checkpoint compares like with like (a mismatch
/// would emit its unchanged sets again).
#[derive(Clone, Copy, PartialEq)]
enum FpScheme {
    /// Byte-wise FNV-1a over the rows (`ConvState::fingerprints`).
    Fnv,
    /// [`Fingerprint`] over every row's bytes (`ConvState::fp`).
    Rows,
    /// [`Fingerprint`] over the conversion's hash, then per credited touch its hash (record id
    /// and campaign, computed once per conversion), weight and revenue (`ConvState::fq`).
    Touches,
}

const GC_MIN: usize = 4096;

/// [`ik`] into `buf` (cleared first).
fn ik_into(buf: &mut String, account: &Uuid, id: &str) {
    let mut tmp = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let a = account.hyphenated().encode_lower(&mut tmp);
    buf.clear();
    buf.reserve(a.len() + 1 + id.len());
    buf.push_str(a);
    buf.push(':');
    buf.push_str(id);
}

/// Identity key `{account}:{identity}` (also the bus key), built without the formatting machinery.
fn ik(account: &Uuid, id: &str) -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let a = account.hyphenated().encode_lower(&mut buf);
    let mut s = String::with_capacity(a.len() + 1 + id.len());
    s.push_str(a);
    s.push(':');
    s.push_str(id);
    s
}

/// The `pick` of [`remainder_slot`] for a conversion: a hash of its record id (stable across
/// processes and restarts, so recomputing a conversion gives the same rows).
fn remainder_pick(record_id: &str) -> u64 {
    let mut h = Fingerprint::new(false);
    h.bytes(b"remainder");
    h.bytes(record_id.as_bytes());
    h.value()
}

/// The position of the single weight of a one-hot weight vector (one 1.0, the rest 0.0).
/// Whether every weight is the same (bit for bit): such splits depend only on their length.
fn all_equal(w: &[f64]) -> bool {
    w.first().is_some_and(|x| w.iter().all(|y| y.to_bits() == x.to_bits()))
}

fn one_hot(w: &[f64]) -> Option<usize> {
    let mut hot = None;
    for (i, x) in w.iter().enumerate() {
        if *x == 1.0 && hot.is_none() {
            hot = Some(i);
        } else if *x != 0.0 {
            return None;
        }
    }
    hot
}

/// Adds a contribution to `cell` in `contrib` (one entry per cell).
fn add_contrib(contrib: &mut Vec<(CellKey, Decimal, Decimal)>, cell: CellKey, credit: Decimal, revenue: Decimal) {
    match contrib.iter_mut().find(|e| e.0 == cell) {
        Some(e) => {
            add_d(&mut e.1, credit, 1);
            add_d(&mut e.2, revenue, 1);
        }
        None => {
            let (mut a, mut b) = (Decimal::ZERO, Decimal::ZERO);
            add_d(&mut a, credit, 1);
            add_d(&mut b, revenue, 1);
            contrib.push((cell, a, b));
        }
    }
}

/// Inserts `t` into `list` at its place in `(timestamp, record id, received_at)` order (after
/// equal ones); in-order arrival appends.
fn insert_sorted(list: &mut Vec<Held>, t: Held) {
    if list.last().is_none_or(|l| l.order() <= t.order()) {
        list.push(t);
        return;
    }
    let i = list.partition_point(|x| x.order() <= t.order());
    list.insert(i, t);
}

/// Where a conversion at `at` over `touches` counts among the journeys: its UTC day and the
/// channels and campaigns of its touches.
fn journey_key(account: &Uuid, at: DateTime<Utc>, touches: &[&Held]) -> PathKey {
    PathKey {
        account_id: *account,
        date: at.date_naive(),
        channels: Text::from(crate::journeys::path_of(touches.iter().map(|t| t.channel().as_str())).as_str()),
        campaigns: Text::from(
            crate::journeys::path_of(touches.iter().map(|t| t.metric_campaign().unwrap_or(crate::journeys::NO_CAMPAIGN))).as_str(),
        ),
    }
}

/// A touch's full order: time, record id, then arrival ([`Held::order`]'s fields, owned).
type TouchOrder = (DateTime<Utc>, Text, DateTime<Utc>);

/// The day of `at` in `tz` (UTC, the default zone, without the zone machinery).
fn local_date(at: DateTime<Utc>, tz: chrono_tz::Tz) -> NaiveDate {
    if tz == chrono_tz::UTC {
        at.date_naive()
    } else {
        at.with_timezone(&tz).date_naive()
    }
}

fn secs(s: i64) -> Duration {
    Duration::try_seconds(s.max(0)).unwrap_or(Duration::MAX)
}

fn sub(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The identity key an identity key finally resolves to through `links`.
fn resolve_in<'a>(links: &'a FastMap<String, Link>, ident: &'a str) -> &'a str {
    let mut cur = ident;
    let mut seen = 0usize;
    while let Some(l) = links.get(cur) {
        if l.to == ident || seen >= 32 {
            break;
        }
        cur = &l.to;
        seen += 1;
    }
    cur
}

/// `root` and every identity linked to it (transitively) through `members`.
fn group_in(members: &FastMap<String, BTreeSet<String>>, root: &str) -> Vec<String> {
    let mut out = vec![root.to_owned()];
    let mut seen: HashSet<String> = HashSet::new();
    seen.insert(root.to_owned());
    let mut i = 0;
    while let Some(cur) = out.get(i) {
        if out.len() >= MAX_GROUP {
            break;
        }
        if let Some(ms) = members.get(cur) {
            let add: Vec<String> = ms.iter().filter(|m| !seen.contains(*m)).cloned().collect();
            for a in add {
                seen.insert(a.clone());
                out.push(a);
            }
        }
        i += 1;
    }
    out
}

/// What a touch counts in its cell.
enum TouchCount {
    Impression,
    Click,
    Engagement,
}

/// What touch `t` counts in the daily metrics, if anything: touches without a campaign, events
/// and sessions count nothing here.
fn touch_count(t: &Held) -> Option<TouchCount> {
    let count = match t.source {
        TouchSource::Touchpoint if t.view => TouchCount::Impression,
        TouchSource::Touchpoint if t.kind().as_str() == "click" => TouchCount::Click,
        TouchSource::Touchpoint => TouchCount::Engagement,
        TouchSource::LinkClick => TouchCount::Click,
        TouchSource::Event | TouchSource::Session => return None,
    };
    t.metric_campaign().is_some().then_some(count)
}

/// The identity reach counts touch `t` under: the root of the touch's identity through the
/// stitching links (a visitor linked to a customer counts as that customer), without the
/// account prefix of identity keys. `ident` is the touch's identity key.
fn reach_identity(links: &FastMap<String, Link>, acct: &Uuid, ident: &str, t: &Held) -> Text {
    let root = resolve_in(links, ident);
    if root == ident {
        return t.identity.clone();
    }
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let prefix = acct.hyphenated().encode_lower(&mut buf);
    Text::from(root.strip_prefix(&*prefix).and_then(|r| r.strip_prefix(':')).unwrap_or(root))
}

/// The impression/click/engagement counts (and reach, under `counted_as`, see
/// [`reach_identity`]) of touch `t` in its cell, `sign` 1 to add, -1 to remove. Takes the parts
/// of the state it changes, so that the caller can hold others.
fn touch_metrics_in(
    cfg: &EngineConfig,
    cells: &mut FastMap<CellKey, Cell>,
    dirty_cells: &mut Vec<CellKey>,
    acct: &Uuid,
    t: &Held,
    counted_as: &Text,
    sign: i8,
) {
    let (Some(count), Some(campaign)) = (touch_count(t), t.metric_campaign()) else { return };
    with_cell_in(cfg, cells, dirty_cells, acct, campaign, t.advertisement_id().map(Text::as_str), t.at, |cell| match count {
        TouchCount::Impression => {
            add_u(&mut cell.impressions, sign);
            cell.reach_add(counted_as, sign);
        }
        TouchCount::Click => {
            add_u(&mut cell.clicks, sign);
            cell.reach_add(counted_as, sign);
        }
        TouchCount::Engagement => add_u(&mut cell.engagements, sign),
    });
}

/// Moves touch `t`'s place in its cell's reach from identity `from` to `to` (its stitching
/// root changed); impressions and clicks stay as they are.
fn recount_reach_in(
    cfg: &EngineConfig,
    cells: &mut FastMap<CellKey, Cell>,
    dirty_cells: &mut Vec<CellKey>,
    acct: &Uuid,
    t: &Held,
    from: &Text,
    to: &Text,
) {
    if !matches!(touch_count(t), Some(TouchCount::Impression | TouchCount::Click)) {
        return;
    }
    let Some(campaign) = t.metric_campaign() else { return };
    with_cell_in(cfg, cells, dirty_cells, acct, campaign, t.advertisement_id().map(Text::as_str), t.at, |cell| {
        cell.reach_add(from, -1);
        cell.reach_add(to, 1);
    });
}

/// [`Engine::with_cell`] on the parts of the state it uses.
#[allow(clippy::too_many_arguments)]
fn with_cell_in(
    cfg: &EngineConfig,
    cells: &mut FastMap<CellKey, Cell>,
    dirty_cells: &mut Vec<CellKey>,
    acct: &Uuid,
    campaign: &str,
    ad: Option<&str>,
    at: DateTime<Utc>,
    f: impl FnOnce(&mut Cell),
) {
    let tz = cfg.time_zone(acct, campaign);
    let k = CellKeyRef { account_id: acct, campaign_id: campaign, advertisement_id: ad, date: local_date(at, tz) };
    let q: &dyn CellKeyView = &k;
    match cells.get_mut(q) {
        Some(cell) => {
            if !cell.dirty {
                cell.dirty = true;
                dirty_cells.push(k.to_key());
            }
            f(cell)
        }
        None => {
            let mut cell = Cell { dirty: true, ..Cell::default() };
            f(&mut cell);
            let key = k.to_key();
            dirty_cells.push(key.clone());
            cells.insert(key, cell);
        }
    }
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        let mut engine = Engine {
            cfg,
            st: State::default(),
            int: Interner::default(),
            gc_at: GC_MIN,
            key_buf: String::new(),
            key_acct: None,
            credit_cache: FastMap::default(),
            scratch: Scratch::default(),
            scratch_changed: Vec::new(),
            key_buf2: String::new(),
            ids_buf: Vec::new(),
            waiting_bytes: 0,
        };
        engine.apply_channel_weights();
        engine
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Replaces the campaign catalog. Time zones apply to records ingested from now on; new
    /// channel weights of an account credit its held conversions again at the next flush (a
    /// conversion's rows change at most once per refresh of the weights). Returns how many
    /// conversions that marks for the next flush.
    ///
    /// Records waiting for an exchange rate that the new catalog can convert (a new rate, or
    /// a new reporting currency) are applied now; they count among the returned number too.
    pub fn set_catalog(&mut self, catalog: crate::config::Catalog) -> usize {
        self.cfg.catalog = catalog;
        self.apply_channel_weights() + self.release_waiting()
    }

    /// Applies the waiting records the catalog now has a rate for (in arrival order); the
    /// others keep waiting. Returns how many it took off the list.
    fn release_waiting(&mut self) -> usize {
        if self.st.waiting.is_empty() {
            return 0;
        }
        let catalog = &self.cfg.catalog;
        let (ready, still): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.st.waiting)
            .into_iter()
            .partition(|w| catalog.in_reporting_currency(&w.account, Decimal::ONE, w.currency, w.at).is_some());
        self.st.waiting = still;
        self.waiting_bytes = crate::currency::waiting_bytes(&self.st.waiting);
        let released = ready.len();
        for w in ready {
            match Record::from_json(w.record.as_bytes()) {
                Ok(r) => {
                    let res = self.ingest_inner(&r);
                    self.count(res);
                    if res == Ingest::TooLate {
                        // Consumed long ago: only the DLQ can still keep it.
                        self.st.refused.push(RefusedRecord {
                            reason: "too_late: waited for an exchange rate until past the allowed lateness".into(),
                            record: w.record,
                        });
                    }
                }
                Err(e) => self.st.refused.push(RefusedRecord { reason: format!("unreadable: {e}"), record: w.record }),
            }
        }
        released
    }

    /// Holds `r` until a rate converts `currency` at `at`, unless the list is full (by count
    /// or by bytes).
    fn wait_for_rate(&mut self, r: &Record, currency: Currency, at: DateTime<Utc>, spend: bool) -> Ingest {
        if self.st.waiting.len() >= self.cfg.max_waiting_for_rate {
            return Ingest::NoRate;
        }
        let record = String::from_utf8(r.to_json()).unwrap_or_default();
        if self.waiting_bytes.saturating_add(record.len()) > self.cfg.max_waiting_for_rate_bytes {
            return Ingest::NoRate;
        }
        self.waiting_bytes += record.len();
        self.st.waiting.push(Waiting { account: r.meta.account_id, currency, at, spend, record });
        Ingest::Waiting
    }

    /// Gives up on the waiting records that can no longer be applied (older than the allowed
    /// lateness, or a spend day older than the cells kept): they leave with the next flush.
    fn expire_waiting(&mut self) {
        if self.st.waiting.is_empty() {
            return;
        }
        let min_date = self.min_cell_date();
        let waiting = std::mem::take(&mut self.st.waiting);
        for w in waiting {
            let expired = if w.spend { min_date.is_some_and(|m| w.at.date_naive() < m) } else { self.too_late(w.at) };
            if expired {
                self.st.counters.no_rate += 1;
                let reason = format!(
                    "no_exchange_rate: no rate {} -> {} covering {} before the allowed lateness passed",
                    w.currency,
                    self.cfg.catalog.reporting_currency(&w.account),
                    w.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                );
                self.st.refused.push(RefusedRecord { reason, record: w.record });
            } else {
                self.st.waiting.push(w);
            }
        }
        self.waiting_bytes = crate::currency::waiting_bytes(&self.st.waiting);
    }

    /// Records waiting for an exchange rate.
    pub fn waiting_for_rate(&self) -> usize {
        self.st.waiting.len()
    }

    /// Marks for attribution the held conversions of every account whose channel weights
    /// differ from those they were credited by (all of them after a snapshot of a build that
    /// credited none under the data-driven models). Returns how many it marked.
    fn apply_channel_weights(&mut self) -> usize {
        let now = self.cfg.catalog.weight_digests();
        let changed: HashSet<Uuid> = match &self.st.weights_applied {
            Some(before) => before
                .iter()
                .filter(|(a, d)| now.get(*a) != Some(*d))
                .map(|(a, _)| *a)
                .chain(now.iter().filter(|(a, d)| before.get(*a) != Some(*d)).map(|(a, _)| *a))
                .collect(),
            None => self.st.convs.values().map(|c| c.account).collect(),
        };
        let mut keys: Vec<Text> = Vec::new();
        if !changed.is_empty() {
            keys = self.st.convs.iter().filter(|(_, c)| changed.contains(&c.account)).map(|(k, _)| k.clone()).collect();
        }
        let marked = keys.len();
        for k in keys {
            mark_dirty(&mut self.st.convs, &mut self.st.dirty_convs, k);
        }
        self.st.weights_applied = Some(now);
        marked
    }

    pub fn counters(&self) -> &Counters {
        &self.st.counters
    }

    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.st.watermark
    }

    pub fn stats(&self) -> StateStats {
        let mut ids: HashSet<&str> = HashSet::new();
        ids.extend(self.st.ids.live().map(|s| s.key.as_str()));
        ids.extend(self.st.derived.keys().map(String::as_str));
        StateStats {
            identities: ids.len(),
            touches: self.st.ids.live().map(|s| s.touches.len()).sum(),
            conversions: self.st.convs.len(),
            event_points: self.st.derived.values().map(|d| d.points.len()).sum::<usize>()
                + self.st.explicit.values().map(|e| e.s.points.len()).sum::<usize>(),
            explicit_sessions: self.st.explicit.len(),
            links: self.st.links.len(),
            cells: self.st.cells.len(),
            spend_reports: self.st.spend.len(),
            waiting_for_rate: self.st.waiting.len(),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Snapshot

    /// The whole state, versioned: a 13-byte header (`TLES`, format version and partition as u32
    /// little endian, codec byte `2`) then the state as MessagePack compressed with raw DEFLATE
    /// (fast level). The configuration is not included: restore with the same one.
    pub fn snapshot(&self) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER + 4096);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.cfg.partition.to_le_bytes());
        out.push(CODEC_DEFLATE_MSGPACK);
        let enc = flate2::write::DeflateEncoder::new(out, flate2::Compression::fast());
        // The state streams into the compressor through a buffer, so the uncompressed state
        // (many times the snapshot's size, and built by every partition at each flush) is never
        // held whole. The buffer matters: flate2 zero-fills 32 KiB per write call, which made
        // per-token writes cost more than the compression itself.
        let mut buffered = std::io::BufWriter::with_capacity(SNAPSHOT_WRITE_BUFFER, enc);
        // Writing to memory cannot fail, and every type of the state serialises.
        let _ = rmp_serde::encode::write_named(&mut buffered, &self.st);
        let _ = buffered.flush();
        match buffered.into_inner() {
            Ok(enc) => enc.finish().unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Rebuilds an engine from [`Engine::snapshot`] output. Ingesting the records consumed after
    /// the snapshot then gives the same results as an uninterrupted run. Refuses snapshots of
    /// another format version or partition.
    pub fn restore(cfg: EngineConfig, bytes: &[u8]) -> Result<Engine, EngineError> {
        let Some((head, body)) = bytes.split_at_checked(SNAPSHOT_HEADER) else {
            return Err(EngineError::Snapshot("shorter than the snapshot header".into()));
        };
        let word = |i: usize| head.get(i..i + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_le_bytes).unwrap_or(0);
        if head.get(..4) != Some(SNAPSHOT_MAGIC.as_slice()) {
            // Version 1 snapshots were plain JSON with the format name inside.
            let found = if bytes.first() == Some(&b'{') { SNAPSHOT_FORMAT } else { "(unknown)" };
            return Err(EngineError::SnapshotVersion { found: found.into(), version: 1 });
        }
        let (version, partition) = (word(4), word(8));
        if version != SNAPSHOT_VERSION {
            return Err(EngineError::SnapshotVersion { found: SNAPSHOT_FORMAT.into(), version });
        }
        if partition != cfg.partition {
            return Err(EngineError::SnapshotPartition { found: partition, want: cfg.partition });
        }
        let codec = head.get(12).copied();
        if codec != Some(CODEC_DEFLATE_MSGPACK) && codec != Some(CODEC_DEFLATE_JSON) {
            return Err(EngineError::Snapshot(format!("unknown codec {codec:?}")));
        }
        let mut state = Vec::with_capacity(body.len().saturating_mul(8));
        std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(body), &mut state)
            .map_err(|e| EngineError::Snapshot(e.to_string()))?;
        let r = if codec == Some(CODEC_DEFLATE_JSON) { state_from_json(&state)? } else { state_from_msgpack(&state)? };
        let r_dirty_convs = sort_strings(r.dirty_convs.into_iter().collect());
        let journeys_absent = r.journeys.is_none();
        let mut st = State {
            watermark: r.watermark,
            counters: r.counters,
            ids: Idents::from_maps(r.touches, r.convs_by_ident),
            links: r.links,
            members: r.members,
            convs: r.convs.into_iter().collect(),
            derived: r.derived,
            explicit: r.explicit,
            events_seen: r.events_seen,
            cells: r.cells,
            spend: r.spend,
            dirty_convs: Vec::new(),
            dirty_derived: r.dirty_derived,
            dirty_explicit: r.dirty_explicit,
            dirty_cells: r.dirty_cells,
            pending: r.pending,
            link_clicks: r.link_clicks,
            journeys: r.journeys.unwrap_or_default(),
            weights_applied: r.weights_applied,
            waiting: r.waiting,
            refused: r.refused,
        };
        // Share the strings again and restore the list order (snapshots of any list order load).
        let mut int = Interner::default();
        for list in st.ids.live_mut().map(|s| &mut s.touches) {
            for t in list.iter_mut() {
                t.intern(&mut int);
            }
            list.sort_by(|a, b| a.order().cmp(&b.order()));
        }
        for k in r_dirty_convs {
            mark_dirty(&mut st.convs, &mut st.dirty_convs, k);
        }
        for c in st.convs.values_mut() {
            if let Some(id) = st.ids.id(&c.ident) {
                c.ident_id = id;
                if let Some(s) = st.ids.slot(id) {
                    c.ident = s.key.clone();
                }
            }
            c.kind_text = Some(int.get(c.kind.as_str()));
        }
        // A snapshot taken before journeys holds no conversion times: the held conversions'
        // are the ones its touches can still be credited by. (A later snapshot may hold none
        // while conversions wait for a flush: those were judged already.)
        if journeys_absent {
            for (key, c) in &st.convs {
                st.journeys.note_conversion(&c.ident, key, c.at);
            }
        }
        for cell in st.cells.values_mut() {
            let reach = std::mem::take(&mut cell.reach);
            cell.reach = reach.into_iter().map(|(k, v)| (int.get(&k), v)).collect();
            cell.rehash_reach();
        }
        // Flag the listed cells (a key listed twice or without a cell is dropped: flush skips both).
        st.dirty_derived.sort_unstable();
        st.dirty_derived.dedup();
        for k in &st.dirty_derived {
            if let Some(d) = st.derived.get_mut(k) {
                d.scan.dirty = true;
            }
        }
        let cells = &mut st.cells;
        st.dirty_cells.retain(|k| match cells.get_mut(k) {
            Some(c) if !c.dirty => {
                c.dirty = true;
                true
            }
            _ => false,
        });
        let gc_at = GC_MIN.max(2 * int.len());
        let mut engine = Engine {
            cfg,
            st,
            int,
            gc_at,
            key_buf: String::new(),
            key_acct: None,
            credit_cache: FastMap::default(),
            scratch: Scratch::default(),
            scratch_changed: Vec::new(),
            key_buf2: String::new(),
            ids_buf: Vec::new(),
            waiting_bytes: 0,
        };
        engine.waiting_bytes = crate::currency::waiting_bytes(&engine.st.waiting);
        engine.apply_channel_weights();
        engine.release_waiting();
        Ok(engine)
    }

    // ----------------------------------------------------------------------------------------
    // Ingest

    /// Applies one record of any entity topic.
    pub fn ingest(&mut self, r: &Record) -> Ingest {
        self.st.counters.records += 1;
        let res = self.ingest_inner(r);
        self.count(res);
        res
    }

    fn count(&mut self, res: Ingest) {
        let c = &mut self.st.counters;
        match res {
            Ingest::Applied => c.applied += 1,
            Ingest::Duplicate => c.duplicates += 1,
            Ingest::TooLate => c.too_late += 1,
            Ingest::Ignored => c.ignored += 1,
            Ingest::Waiting => c.waited_for_rate += 1,
            Ingest::NoRate => c.no_rate += 1,
        }
    }

    /// Applies one message of `touchline.identities`: a record (identify/alias) or an
    /// [`IdentityTransfer`].
    pub fn ingest_identities_message(&mut self, bytes: &[u8]) -> Result<Ingest, EngineError> {
        if let Ok(t) = IdentityTransfer::from_json(bytes) {
            return Ok(self.ingest_transfer(&t));
        }
        let r = Record::from_json(bytes).map_err(EngineError::Decode)?;
        Ok(self.ingest(&r))
    }

    fn too_late(&self, t: DateTime<Utc>) -> bool {
        self.st.watermark.is_some_and(|w| t < sub(w, self.cfg.lateness()))
    }

    fn ingest_inner(&mut self, r: &Record) -> Ingest {
        let m = &r.meta;
        let acct = m.account_id;
        match &r.body {
            Body::Identify(_) => {
                let (Some(a), Some(c)) = (&m.anonymous_id, &m.customer_id) else { return Ingest::Ignored };
                self.link(&acct, a, c, m.timestamp, &m.record_id, 0)
            }
            Body::Alias(al) => {
                let Some(to) = m.customer_id.as_ref().or(m.anonymous_id.as_ref()) else { return Ingest::Ignored };
                self.link(&acct, &al.previous_id, to, m.timestamp, &m.record_id, 0)
            }
            Body::Spend(s) => self.on_spend(r, s),
            body => {
                if self.too_late(m.timestamp) {
                    return Ingest::TooLate;
                }
                // A conversion's value in the account's reporting currency, or the record
                // waits for a rate before it has any effect.
                let mut converted = None;
                if let Body::Conversion(c) = body {
                    if let (Some(value), Some(currency)) = (c.value, c.currency) {
                        match self.cfg.catalog.in_reporting_currency(&acct, value, currency, m.timestamp) {
                            Some(v) => converted = Some(v),
                            None => return self.wait_for_rate(r, currency, m.timestamp, false),
                        }
                    }
                }
                // A record carrying both ids links them (Segment semantics); the visitor's
                // partition learns the link from a notice (see `link`).
                if let (Some(a), Some(c)) = (&m.anonymous_id, &m.customer_id) {
                    self.link(&acct, a, c, m.timestamp, &m.record_id, 0);
                }
                // The identity (`Record::identity`) and its key, without allocating for the common
                // bodies: the key is built in a reused buffer.
                let owned;
                let identity: &str = match (body, m.customer_id.as_ref().or(m.anonymous_id.as_ref())) {
                    (_, Some(i)) => i.as_str(),
                    (Body::LinkClick(c), None) if c.device_id.is_some() => c.device_id.as_deref().unwrap_or(""),
                    _ => {
                        owned = r.identity();
                        &owned
                    }
                };
                let mut ident = std::mem::take(&mut self.key_buf);
                // The buffer keeps the `{account}:` prefix of the previous record's key.
                const PREFIX: usize = uuid::fmt::Hyphenated::LENGTH + 1;
                if self.key_acct == Some(acct) && ident.len() >= PREFIX && ident.is_char_boundary(PREFIX) {
                    ident.truncate(PREFIX);
                    ident.push_str(identity);
                } else {
                    ik_into(&mut ident, &acct, identity);
                    self.key_acct = Some(acct);
                }
                let res = match body {
                    Body::Event(e) => self.on_event(r, e, identity, &ident),
                    Body::Session(s) => self.on_session(r, s, identity.to_owned(), ident.clone()),
                    Body::Touchpoint(t) => self.on_touchpoint(r, t, identity, &ident),
                    Body::LinkClick(c) => self.on_link_click(r, c, identity, &ident),
                    Body::Conversion(c) => self.on_conversion(r, c, converted, identity, ident.clone()),
                    _ => Ingest::Ignored,
                };
                self.key_buf = ident;
                res
            }
        }
    }

    /// Applies an identity transfer (or a link notice) from another partition.
    pub fn ingest_transfer(&mut self, t: &IdentityTransfer) -> Ingest {
        self.st.counters.transfers_in += 1;
        let acct = t.account_id;
        let (Ok(from), Ok(to)) = (Id::new(t.from.clone()), Id::new(t.to.clone())) else { return Ingest::Ignored };
        let linked = self.link(&acct, &from, &to, t.linked_at, &t.link_record_id, 1);
        if t.touches.is_empty() {
            return linked;
        }
        let cutoff = self.touch_cutoff();
        let mut any = false;
        for touch in &t.touches {
            if cutoff.is_some_and(|c| touch.at < c) {
                continue;
            }
            if touch.identity != t.from && touch.identity != t.to {
                if let Ok(tid) = Id::new(touch.identity.clone()) {
                    self.link(&acct, &tid, &to, t.linked_at, &t.link_record_id, 1);
                }
            }
            let mut touch = Held::from_touch(touch, &mut self.int);
            touch.foreign = true;
            let ident = ik(&acct, &touch.identity);
            if self.on_touch(&acct, &ident, touch) == Ingest::Applied {
                any = true;
            }
        }
        if any {
            Ingest::Applied
        } else {
            Ingest::Duplicate
        }
    }

    fn on_touchpoint(&mut self, r: &Record, t: &Touchpoint, identity: &str, ident: &str) -> Ingest {
        let m = &r.meta;
        let int = &mut self.int;
        let touch = Held::build(Parts {
            id: Text::from(&m.record_id),
            key: None,
            identity: int.get_at(0, identity),
            at: m.timestamp,
            received_at: m.received_at,
            source: TouchSource::Touchpoint,
            view: t.is_view(),
            kind: int.get_at(1, t.kind.as_str()),
            channel: int.get_at(2, t.channel.as_deref().or(t.utm_source.as_deref()).unwrap_or("(none)")),
            campaign_id: int.opt_at(3, t.campaign_id.as_deref()),
            advertisement_id: int.opt_at(4, t.advertisement_id.as_deref()),
            utm_source: int.opt_at(5, t.utm_source.as_deref()),
            utm_medium: int.opt_at(6, t.utm_medium.as_deref()),
            utm_campaign: int.opt_at(7, t.utm_campaign.as_deref()),
            foreign: false,
            hops: 0,
        });
        self.on_touch(&m.account_id, ident, touch)
    }

    fn on_link_click(&mut self, r: &Record, c: &LinkClick, identity: &str, ident: &str) -> Ingest {
        let m = &r.meta;
        let counted = match &c.short_code {
            Some(code) => {
                if !self.st.link_clicks.count(m.account_id, code.as_str(), m.record_id.as_str(), m.timestamp, c.bot) {
                    return Ingest::Duplicate;
                }
                true
            }
            None => false,
        };
        if c.bot || c.campaign_id.is_none() {
            return if counted { Ingest::Applied } else { Ingest::Ignored };
        }
        let int = &mut self.int;
        let touch = Held::build(Parts {
            id: Text::from(&m.record_id),
            key: None,
            identity: int.get_at(0, identity),
            at: m.timestamp,
            received_at: m.received_at,
            source: TouchSource::LinkClick,
            view: false,
            kind: int.get_at(1, "link_click"),
            channel: int.get_at(2, "short_link"),
            campaign_id: int.opt_at(3, c.campaign_id.as_deref()),
            advertisement_id: int.opt_at(4, c.advertisement_id.as_deref()),
            utm_source: None,
            utm_medium: None,
            utm_campaign: None,
            foreign: false,
            hops: 0,
        });
        self.on_touch(&m.account_id, ident, touch)
    }

    #[allow(clippy::too_many_arguments)]
    fn derived_touch(
        int: &mut Interner,
        id: Text,
        r: &Record,
        source: TouchSource,
        at: DateTime<Utc>,
        session_id: Option<&Id>,
        utm: Option<&Utm>,
        campaign_id: Option<&Id>,
        ad: Option<&Id>,
        identity: &str,
    ) -> Held {
        let m = &r.meta;
        let (source_, medium, campaign) = match utm {
            Some(u) => (u.source.as_deref(), u.medium.as_deref(), u.campaign.as_deref()),
            None => (None, None, None),
        };
        let key = session_id.map(|sid| {
            Text::from(format!(
                "s:{sid}|{}|{}|{}|{}",
                source_.unwrap_or(""),
                medium.unwrap_or(""),
                campaign.unwrap_or(""),
                campaign_id.map(Id::as_str).unwrap_or("")
            ))
        });
        Held::build(Parts {
            id,
            key,
            identity: int.get_at(0, identity),
            at,
            received_at: m.received_at,
            source,
            view: false,
            kind: int.get_at(
                1,
                match source {
                    TouchSource::Session => "session",
                    _ => "event",
                },
            ),
            channel: int.get_at(2, source_.unwrap_or("(none)")),
            campaign_id: int.opt_at(3, campaign_id.map(Id::as_str)),
            advertisement_id: int.opt_at(4, ad.map(Id::as_str)),
            utm_source: int.opt_at(5, source_),
            utm_medium: int.opt_at(6, medium),
            utm_campaign: int.opt_at(7, campaign),
            foreign: false,
            hops: 0,
        })
    }

    fn on_event(&mut self, r: &Record, e: &Event, identity: &str, ident: &str) -> Ingest {
        let m = &r.meta;
        let acct = m.account_id;
        let seen = self.st.events_seen.entry(acct).or_default();
        // One probe; the key (allocated before the probe, duplicates are rare) is shared with the
        // event's point.
        let id = match seen.entry(Text::from(&m.record_id)) {
            std::collections::hash_map::Entry::Occupied(_) => return Ingest::Duplicate,
            std::collections::hash_map::Entry::Vacant(v) => {
                let id = v.key().clone();
                v.insert(m.timestamp);
                id
            }
        };
        let p = EventPoint::from_event(m.timestamp, id, e, &mut self.int);
        // Engagement on the event's campaign.
        let campaign = e.campaign_id.as_deref().or(p.utm.as_deref().and_then(|u| u.campaign.as_deref()));
        if let Some(c) = campaign {
            self.with_cell(&acct, c, e.advertisement_id.as_deref(), m.timestamp, |cell| add_u(&mut cell.engagements, 1));
        }
        // Touch.
        if p.utm.is_some() || e.campaign_id.is_some() {
            let t = Self::derived_touch(
                &mut self.int,
                p.id.clone(),
                r,
                TouchSource::Event,
                m.timestamp,
                e.session_id.as_ref(),
                p.utm.as_deref(),
                e.campaign_id.as_ref(),
                e.advertisement_id.as_ref(),
                identity,
            );
            self.on_touch(&acct, ident, t);
        }
        match &e.session_id {
            Some(sid) => {
                let k = format!("{ident}\u{1f}{sid}");
                let entry = self.st.explicit.entry(k.clone()).or_insert_with(|| ExplicitEntry {
                    account: acct,
                    identity: identity.to_owned(),
                    session_id: sid.to_string(),
                    s: ExplicitSession::default(),
                });
                insert_point(&mut entry.s.points, p);
                self.st.dirty_explicit.insert(k);
            }
            None => {
                let newly_dirty = match self.st.derived.get_mut(ident) {
                    Some(d) => {
                        if let Some(i) = crate::session::insert_point_at(&mut d.points, p) {
                            d.scan.clean = d.scan.clean.min(i);
                        }
                        !std::mem::replace(&mut d.scan.dirty, true)
                    }
                    None => {
                        let mut d = DerivedIdent { account: acct, identity: identity.to_owned(), ..DerivedIdent::default() };
                        insert_point(&mut d.points, p);
                        d.scan.dirty = true;
                        self.st.derived.insert(ident.to_owned(), d);
                        true
                    }
                };
                if newly_dirty {
                    self.st.dirty_derived.push(ident.to_owned());
                }
            }
        }
        Ingest::Applied
    }

    fn on_session(&mut self, r: &Record, s: &Session, identity: String, ident: String) -> Ingest {
        let m = &r.meta;
        let acct = m.account_id;
        let k = format!("{ident}\u{1f}{}", s.session_id);
        let entry = self.st.explicit.entry(k.clone()).or_insert_with(|| ExplicitEntry {
            account: acct,
            identity: identity.clone(),
            session_id: s.session_id.to_string(),
            s: ExplicitSession::default(),
        });
        let before = entry.s.record.clone();
        entry.s.merge_record(m.timestamp, &m.record_id, s);
        let changed = before != entry.s.record;
        self.st.dirty_explicit.insert(k);
        let utm = Utm::from_session(s);
        if utm.is_some() || s.campaign_id.is_some() {
            let t = Self::derived_touch(
                &mut self.int,
                Text::from(&m.record_id),
                r,
                TouchSource::Session,
                s.started_at,
                Some(&s.session_id),
                utm.as_ref(),
                s.campaign_id.as_ref(),
                s.advertisement_id.as_ref(),
                &identity,
            );
            self.on_touch(&acct, &ident, t);
        }
        if changed {
            Ingest::Applied
        } else {
            Ingest::Duplicate
        }
    }

    /// `converted`: the value and currency in the account's reporting currency, when the
    /// conversion has both.
    fn on_conversion(
        &mut self,
        r: &Record,
        c: &Conversion,
        converted: Option<(Decimal, Currency)>,
        identity: &str,
        ident: String,
    ) -> Ingest {
        let m = &r.meta;
        let acct = m.account_id;
        // `{account}|{conversion key}`; the conversion key is `order:{kind}:{order id}` or
        // `record:{record id}`.
        const PREFIX: usize = uuid::fmt::Hyphenated::LENGTH + 1;
        // Built in a reused buffer (the derived-session flush's, idle during ingest), then one
        // shared string for the map key, the identity's set and the dirty set.
        let mut buf = std::mem::take(&mut self.key_buf2);
        buf.clear();
        buf.push_str(acct.hyphenated().encode_lower(&mut [0u8; uuid::fmt::Hyphenated::LENGTH]));
        buf.push('|');
        match &c.order_id {
            Some(o) => {
                buf.push_str("order:");
                buf.push_str(c.kind.as_str());
                buf.push(':');
                buf.push_str(o.as_str());
            }
            None => {
                buf.push_str("record:");
                buf.push_str(m.record_id.as_str());
            }
        }
        let key = Text::new(&buf);
        self.key_buf2 = buf;
        // The identity's slot first: its key is the string the conversion keeps.
        let id = self.st.ids.intern(&ident);
        let ident_key = self.st.ids.slot(id).map(|s| s.key.clone()).unwrap_or_else(|| Text::new(&ident));
        // The identity's shared string: its slot's, else the interner's (then kept in the slot).
        let identity = match self.st.ids.slot_mut(id) {
            Some(s) => match &s.identity {
                Some(t) => t.clone(),
                None => {
                    let t = self.int.get_at(0, identity);
                    s.identity = Some(t.clone());
                    t
                }
            },
            None => self.int.get_at(0, identity),
        };
        let conv_ident = ident_key.clone();
        let new = ConvState {
            account: acct,
            key: Text::new(key.get(PREFIX..).unwrap_or_default()),
            record_id: Text::from(&m.record_id),
            identity,
            ident: ident_key.clone(),
            ident_id: id,
            at: m.timestamp,
            received_at: m.received_at,
            kind: c.kind.clone(),
            kind_text: Some(self.int.get_at(9, c.kind.as_str())),
            dirty: false,
            value: converted.map_or(c.value.unwrap_or(Decimal::ZERO), |(v, _)| v),
            currency: converted.map_or(c.currency, |(_, cur)| Some(cur)),
            campaign_id: c.campaign_id.clone(),
            advertisement_id: c.advertisement_id.clone(),
            version: 0,
            fingerprints: Vec::new(),
            fp: Vec::new(),
            fq: Vec::new(),
            applied: Vec::new(),
            journey: None,
        };
        // One probe of the map for both cases.
        match self.st.convs.entry(key.clone()) {
            indexmap::map::Entry::Occupied(mut o) => {
                let old = o.get_mut();
                let wins = (new.at, new.record_id.as_str(), new.received_at) < (old.at, old.record_id.as_str(), old.received_at);
                if !wins {
                    // The slot interned above, if new, holds nothing.
                    self.st.ids.release(id);
                    return Ingest::Duplicate;
                }
                let old_ident = std::mem::replace(&mut old.ident, ident_key);
                old.ident_id = id;
                old.record_id = new.record_id;
                old.identity = new.identity;
                old.at = new.at;
                old.received_at = new.received_at;
                old.value = new.value;
                old.currency = new.currency;
                old.campaign_id = new.campaign_id;
                old.advertisement_id = new.advertisement_id;
                if !old.dirty {
                    old.dirty = true;
                    self.st.dirty_convs.push(key.clone());
                }
                if old_ident.as_str() != ident.as_str() {
                    self.st.journeys.forget_conversion(&old_ident, &key);
                    if let Some(id) = self.st.ids.id(&old_ident) {
                        if let Some(s) = self.st.ids.slot_mut(id) {
                            s.convs.remove(&key);
                        }
                        self.st.ids.release(id);
                    }
                }
            }
            indexmap::map::Entry::Vacant(v) => {
                v.insert(ConvState { dirty: true, ..new });
                self.st.dirty_convs.push(key.clone());
            }
        }
        self.st.journeys.note_conversion(&conv_ident, &key, m.timestamp);
        if let Some(s) = self.st.ids.slot_mut(id) {
            s.convs.insert(key);
        }
        Ingest::Applied
    }

    fn on_spend(&mut self, r: &Record, s: &Spend) -> Ingest {
        let m = &r.meta;
        if let Some(min) = self.min_cell_date() {
            if s.date < min {
                return Ingest::TooLate;
            }
        }
        let key = SpendKey {
            account: m.account_id,
            date: s.date,
            campaign_id: s.campaign_id.to_string(),
            advertisement_id: s.advertisement_id.as_ref().map(|a| a.to_string()),
            source: s.source.clone(),
        };
        let at = spend_rate_time(s.date);
        let Some((cost, _)) = self.cfg.catalog.in_reporting_currency(&m.account_id, s.cost, s.currency, at) else {
            return self.wait_for_rate(r, s.currency, at, true);
        };
        let rec = SpendRec {
            order: (m.timestamp, m.received_at, m.record_id.clone()),
            cost,
            impressions: s.impressions.unwrap_or(0),
            clicks: s.clicks.unwrap_or(0),
        };
        let ck = CellKey {
            account_id: m.account_id,
            campaign_id: key.campaign_id.clone(),
            advertisement_id: key.advertisement_id.clone(),
            date: s.date,
        };
        let old = match self.st.spend.get(&key) {
            Some(old) if old.order >= rec.order => return Ingest::Duplicate,
            old => old.cloned(),
        };
        self.with_cell_key(&ck, |cell| {
            if let Some(o) = &old {
                add_d(&mut cell.cost, o.cost, -1);
                cell.reported_impressions = cell.reported_impressions.saturating_sub(o.impressions);
                cell.reported_clicks = cell.reported_clicks.saturating_sub(o.clicks);
            }
            add_d(&mut cell.cost, rec.cost, 1);
            cell.reported_impressions = cell.reported_impressions.saturating_add(rec.impressions);
            cell.reported_clicks = cell.reported_clicks.saturating_add(rec.clicks);
        });
        self.st.spend.insert(key, rec);
        Ingest::Applied
    }

    // ----------------------------------------------------------------------------------------
    // Touches and identities

    fn on_touch(&mut self, acct: &Uuid, ident: &str, touch: Held) -> Ingest {
        if touch.foreign && self.touch_cutoff().is_some_and(|c| touch.at < c) {
            return Ingest::TooLate;
        }
        // One probe for the identity's id; its touches and conversions are then reached by index
        // (the other parts of the state are borrowed beside them).
        let cfg = &self.cfg;
        let st = &mut self.st;
        let id = st.ids.id(ident);
        let slot = id.and_then(|id| st.ids.slot(id));
        // Dedup against the identity's touches (no allocation on the hit path).
        let key = touch.key().norm();
        let pos = match slot.map(|s| &s.touches) {
            Some(list) => match list.iter().rposition(|t| t.has_key(key)) {
                Some(pos) => match list.get(pos) {
                    Some(old) if touch.wins_over(old) => Some(pos),
                    _ => return Ingest::Duplicate,
                },
                None => None,
            },
            None => None,
        };
        // Conversions this touch can reach, and whether to carry it to the customer's partition.
        let (dirty, transfer) = {
            let root = resolve_in(&st.links, ident);
            // Computed on first use: most touches reach no stored conversion.
            let mut reach_until = None;
            let mut dirty: Vec<Text> = Vec::new();
            let ids = &st.ids;
            let convs = &st.convs;
            let mut visit = |set: Option<&BTreeSet<Text>>| {
                if let Some(set) = set.filter(|s| !s.is_empty()) {
                    let reach_until = *reach_until.get_or_insert_with(|| add(touch.at, secs(cfg.settings(acct).max_lookback_secs())));
                    for ck in set {
                        if let Some(c) = convs.get(ck) {
                            if c.at >= touch.at && c.at <= reach_until {
                                dirty.push(ck.clone());
                            }
                        }
                    }
                }
            };
            if st.members.contains_key(root) {
                for g in group_in(&st.members, root) {
                    visit(ids.convs(&g));
                }
            } else if std::ptr::eq(root, ident) {
                // Not linked: the identity's own conversions, by its id.
                visit(slot.map(|s| &s.convs));
            } else {
                visit(ids.convs(root));
            }
            let transfer = (root != ident && partition_for(root.as_bytes(), cfg.partitions) != cfg.partition && touch.hops < MAX_HOPS)
                .then(|| root.to_owned());
            (dirty, transfer)
        };
        // Stitching does not change within this call: the touch and the one it replaces count
        // under the same root.
        let counted_as = (!touch.foreign).then(|| reach_identity(&st.links, acct, ident, &touch));
        if let Some(counted_as) = &counted_as {
            touch_metrics_in(cfg, &mut st.cells, &mut st.dirty_cells, acct, &touch, counted_as, 1);
        }
        let carried = transfer.as_ref().map(|_| touch.to_touch());
        let id = match id {
            Some(id) => id,
            None => st.ids.intern(ident),
        };
        let old = match st.ids.slot_mut(id) {
            Some(s) => {
                if !touch.foreign && s.identity.is_none() {
                    // A local touch's identity is the one its key was built from.
                    s.identity = Some(touch.identity.clone());
                }
                let list = &mut s.touches;
                if list.capacity() == 0 {
                    // Room for the first few touches (a list grows 1 -> 4 on its second touch
                    // anyway): one reallocation fewer per identity.
                    list.reserve_exact(4);
                }
                let old = pos.filter(|p| *p < list.len()).map(|p| list.remove(p));
                insert_sorted(list, touch);
                old
            }
            None => None,
        };
        if let Some(o) = old.filter(|o| !o.foreign) {
            let counted_as = counted_as.unwrap_or_else(|| reach_identity(&st.links, acct, ident, &o));
            touch_metrics_in(cfg, &mut st.cells, &mut st.dirty_cells, acct, &o, &counted_as, -1);
        }
        for k in dirty {
            mark_dirty(&mut st.convs, &mut st.dirty_convs, k);
        }
        if let (Some(root), Some(touch)) = (transfer, carried) {
            if let Some(link) = self.st.links.get(ident).cloned() {
                self.queue_transfer(acct, ident, &root, &link, std::iter::once(touch));
            }
        }
        Ingest::Applied
    }

    fn partition_of(&self, ident: &str) -> u32 {
        partition_for(ident.as_bytes(), self.cfg.partitions)
    }

    /// The identity key an identity key finally resolves to through links.
    fn resolve(&self, ident: &str) -> String {
        self.resolve_ref(ident).to_owned()
    }

    fn resolve_ref<'a>(&'a self, ident: &'a str) -> &'a str {
        resolve_in(&self.st.links, ident)
    }

    /// `root` and every identity linked to it (transitively).
    fn group(&self, root: &str) -> Vec<String> {
        group_in(&self.st.members, root)
    }

    fn mark_group_dirty(&mut self, root: &str) {
        for g in self.group(root) {
            if let Some(set) = self.st.ids.convs(&g) {
                for k in set {
                    mark_dirty(&mut self.st.convs, &mut self.st.dirty_convs, k.clone());
                }
            }
        }
    }

    /// Links `from` → `to`. The link with the smallest `(timestamp, record id)` wins when an
    /// identity is linked to two customers.
    fn link(&mut self, acct: &Uuid, from: &Id, to: &Id, at: DateTime<Utc>, rid: &Id, hops: u8) -> Ingest {
        if from == to {
            return Ingest::Ignored;
        }
        let fk = ik(acct, from);
        let tk = ik(acct, to);
        let root_before = self.resolve(&fk);
        if let Some(l) = self.st.links.get(&fk) {
            if (l.at, l.rid.as_str()) <= (at, rid.as_str()) {
                return Ingest::Duplicate;
            }
            let old_to = l.to.clone();
            if let Some(ms) = self.st.members.get_mut(&old_to) {
                ms.remove(&fk);
            }
            let old_root = self.resolve(&old_to);
            self.mark_group_dirty(&old_root);
        }
        let link = Link { to: tk.clone(), at, rid: rid.clone() };
        self.st.links.insert(fk.clone(), link.clone());
        self.st.members.entry(tk).or_default().insert(fk.clone());
        let root = self.resolve(&fk);
        self.mark_group_dirty(&root);
        if root != root_before {
            self.recount_reach(acct, &fk, &root_before, &root);
        }
        if root != fk && self.partition_of(&root) != self.cfg.partition && hops < MAX_HOPS {
            let mut touches = Vec::new();
            for g in self.group(&fk) {
                if let Some(list) = self.st.ids.touches(&g) {
                    touches.extend(list.iter().filter(|t| t.hops < MAX_HOPS).map(Held::to_touch));
                }
            }
            self.queue_transfer(acct, &fk, &root, &link, touches.into_iter());
        }
        // A link made here from a record of this partition whose previous identity lives on
        // another partition: a record carrying both ids, keyed by the customer. The visitor's
        // partition holds the visitor's touches and would never learn the link otherwise.
        if hops == 0 && self.partition_of(&fk) != self.cfg.partition {
            self.queue_link_notice(acct, from, to, &fk, &link);
        }
        Ingest::Applied
    }

    /// Queues a link notice `from` → `to` for the partition of `from` (key `from_key`). A later
    /// link of `from` that wins over `link` replaces it.
    fn queue_link_notice(&mut self, acct: &Uuid, from: &Id, to: &Id, from_key: &str, link: &Link) {
        let notice = Pending {
            account: *acct,
            from: from.as_str().to_owned(),
            to: to.as_str().to_owned(),
            linked_at: link.at,
            link_record_id: link.rid.clone(),
            touches: BTreeMap::new(),
            notice: true,
        };
        self.st.pending.insert(format!("{from_key}\u{1f}{}\u{1f}notice", link.to), notice);
    }

    /// Moves the reach of the held local touches of `key` and every identity linked into it from
    /// the old stitching root to the new one, so reach counts each person under the root the
    /// links give now, whichever came first, the touch or the link. Touches no longer held
    /// (evicted past the lookback) keep the root they were counted under.
    fn recount_reach(&mut self, acct: &Uuid, key: &str, root_before: &str, root_after: &str) {
        let strip = |root: &str| -> Text {
            let prefix = format!("{acct}:");
            Text::from(root.strip_prefix(&prefix).unwrap_or(root))
        };
        let (from, to) = (strip(root_before), strip(root_after));
        let st = &mut self.st;
        for g in group_in(&st.members, key) {
            let Some(touches) = st.ids.touches(&g) else { continue };
            for t in touches.iter().filter(|t| !t.foreign) {
                recount_reach_in(&self.cfg, &mut st.cells, &mut st.dirty_cells, acct, t, &from, &to);
            }
        }
    }

    fn queue_transfer(&mut self, acct: &Uuid, from_key: &str, root: &str, link: &Link, touches: impl Iterator<Item = Touch>) {
        let prefix = format!("{acct}:");
        let from = from_key.strip_prefix(&prefix).unwrap_or(from_key).to_owned();
        let to = root.strip_prefix(&prefix).unwrap_or(root).to_owned();
        let p = self.st.pending.entry(format!("{from_key}\u{1f}{root}")).or_insert_with(|| Pending {
            account: *acct,
            from,
            to,
            linked_at: link.at,
            link_record_id: link.rid.clone(),
            touches: BTreeMap::new(),
            notice: false,
        });
        for t in touches {
            match p.touches.get(&t.key) {
                Some(o) if !t.wins_over(o) => {}
                _ => {
                    p.touches.insert(t.key.clone(), t);
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Metrics cells

    fn cell_key(&self, acct: &Uuid, campaign: &str, ad: Option<&str>, at: DateTime<Utc>) -> CellKey {
        let tz = self.cfg.time_zone(acct, campaign);
        CellKey { account_id: *acct, campaign_id: campaign.to_owned(), advertisement_id: ad.map(str::to_owned), date: local_date(at, tz) }
    }

    /// The cell of `campaign`/`ad` on the day of `at` in the campaign's time zone (see
    /// [`Engine::cell_key`]), marked dirty and passed to `f`; allocates a key only for a new cell.
    fn with_cell(&mut self, acct: &Uuid, campaign: &str, ad: Option<&str>, at: DateTime<Utc>, f: impl FnOnce(&mut Cell)) {
        with_cell_in(&self.cfg, &mut self.st.cells, &mut self.st.dirty_cells, acct, campaign, ad, at, f);
    }

    /// [`Engine::cell`] by reference: clones the key only for a new cell or a newly dirty one.
    fn with_cell_key(&mut self, k: &CellKey, f: impl FnOnce(&mut Cell)) {
        match self.st.cells.get_mut(k) {
            Some(cell) => {
                if !cell.dirty {
                    cell.dirty = true;
                    self.st.dirty_cells.push(k.clone());
                }
                f(cell)
            }
            None => {
                let mut cell = Cell { dirty: true, ..Cell::default() };
                f(&mut cell);
                self.st.dirty_cells.push(k.clone());
                self.st.cells.insert(k.clone(), cell);
            }
        }
    }

    fn session_metrics(&mut self, row: &SessionRow, sign: i8) {
        let Some(c) = row.metric_campaign() else { return };
        self.with_cell(&row.account_id, c, row.advertisement_id.as_deref(), row.started_at, |cell| add_u(&mut cell.sessions, sign));
    }

    /// [`Engine::session_metrics`] of a derived session as the state remembers it.
    fn emitted_metrics(&mut self, account: &Uuid, s: &EmittedSession, sign: i8) {
        let Some(c) = s.campaign.as_deref() else { return };
        self.with_cell(account, c, s.advertisement_id.as_deref(), s.started_at, |cell| add_u(&mut cell.sessions, sign));
    }

    // ----------------------------------------------------------------------------------------
    // Flush

    /// Computes everything that changed since the last flush: attribution sets (new versions),
    /// session upserts/deletes, daily partial rows (absolute values) and identity transfers.
    /// Output is sorted deterministically.
    pub fn flush(&mut self) -> Flush {
        let mut out = Flush::default();
        let dirty = sort_strings(std::mem::take(&mut self.st.dirty_convs));
        // Up to one set per model and conversion: reserved once instead of regrown (and moved).
        out.attributions.reserve(dirty.len().saturating_mul(Model::PER_CONVERSION.len()));
        for key in dirty {
            self.attribute(&key, &mut out.attributions);
        }
        out.sessions.reserve(self.st.dirty_derived.len() + self.st.dirty_explicit.len());
        for ident in sort_strings(std::mem::take(&mut self.st.dirty_derived)) {
            self.flush_derived(&ident, &mut out.sessions);
        }
        for k in sorted(std::mem::take(&mut self.st.dirty_explicit)) {
            self.flush_explicit(&k, &mut out.sessions);
        }
        for (_, p) in std::mem::take(&mut self.st.pending) {
            if p.touches.is_empty() && !p.notice {
                continue;
            }
            self.st.counters.transfers_out += 1;
            out.transfers.push(IdentityTransfer {
                v: 1,
                kind: IdentityTransfer::TYPE.to_owned(),
                account_id: p.account,
                from: p.from,
                to: p.to,
                linked_at: p.linked_at,
                link_record_id: p.link_record_id,
                touches: p
                    .touches
                    .into_values()
                    .map(|mut t| {
                        t.hops = t.hops.saturating_add(1);
                        t.foreign = true;
                        t
                    })
                    .collect(),
                notice: p.notice,
            });
        }
        let mut keys = std::mem::take(&mut self.st.dirty_cells);
        keys.sort_unstable();
        out.metrics.reserve(keys.len());
        for ck in keys.drain(..) {
            if let Some(cell) = self.st.cells.get_mut(&ck) {
                cell.dirty = false;
                out.metrics.push(cell.partial(self.cfg.partition, &ck, self.cfg.catalog.reporting_currency(&ck.account_id)));
            }
        }
        // Keep the list's capacity for the next flush.
        self.st.dirty_cells = keys;
        out.link_clicks = self.st.link_clicks.flush(self.cfg.partition);
        out.journeys = self.st.journeys.flush(self.cfg.partition);
        out.refused = std::mem::take(&mut self.st.refused);
        out
    }

    fn flush_derived(&mut self, ident: &str, out: &mut Vec<SessionChange>) {
        let Some(d) = self.st.derived.get_mut(ident) else { return };
        // Taken out while the cells change, put back below (moves, no copies).
        let account = d.account;
        let identity = std::mem::take(&mut d.identity);
        let points = std::mem::take(&mut d.points);
        let mut emitted = std::mem::take(&mut d.sessions);
        let scan = std::mem::take(&mut d.scan);
        let mut bounds = scan.bounds;
        let settings = self.cfg.settings(&account);
        // Resume inside the session holding the last unchanged point (the sessions before it,
        // and their emitted rows, are unchanged); else scan everything.
        let resume = scan.clean.checked_sub(1).filter(|_| scan.clean <= points.len()).and_then(|last| {
            let k = bounds.partition_point(|&(_, end)| end <= last);
            bounds.get(k).map(|&(start, _)| (k, start))
        });
        let first_new = match resume {
            Some((k, start)) => {
                bounds.truncate(k);
                crate::session::session_bounds_from(&points, settings, start, scan.clean, &mut bounds);
                k
            }
            None => {
                bounds.clear();
                crate::session::session_bounds(&points, settings, &mut bounds);
                0
            }
        };
        // Session ids of the new sessions (`derived:{first record id}`), sorted.
        // (Indices of their first points, in a reused buffer.)
        let id_at = |i: usize| points.get(i).map(|p| p.id.as_str()).unwrap_or_default();
        let mut ids = std::mem::take(&mut self.ids_buf);
        ids.clear();
        ids.extend(bounds.iter().map(|&(a, _)| a));
        ids.sort_unstable_by(|&x, &y| id_at(x).cmp(id_at(y)));
        let unique = ids.windows(2).all(|w| w.first().map(|&i| id_at(i)) != w.get(1).map(|&i| id_at(i)));
        if unique {
            // Sessions whose emitted row is unchanged are compared in place, without building
            // their rows; changed or new ones are built, emitted and stored.
            let mut sid = std::mem::take(&mut self.key_buf2);
            for &(a, b) in bounds.get(first_new..).unwrap_or_default() {
                let Some(seg) = points.get(a..b) else { continue };
                let Some(first) = seg.first() else { continue };
                sid.clear();
                sid.push_str("derived:");
                sid.push_str(first.id.as_str());
                match emitted.get_mut(sid.as_str()) {
                    Some(o) if o.matches(account, &identity, seg) => {}
                    Some(o) => {
                        let Some(row) = crate::session::derived_row(account, &identity, seg) else { continue };
                        let old = std::mem::replace(o, EmittedSession::of(&row));
                        self.emitted_metrics(&account, &old, -1);
                        self.session_metrics(&row, 1);
                        out.push(SessionChange::Upsert(row));
                    }
                    None => {
                        let Some(row) = crate::session::derived_row(account, &identity, seg) else { continue };
                        self.session_metrics(&row, 1);
                        emitted.insert(row.session_id.clone(), EmittedSession::of(&row));
                        out.push(SessionChange::Upsert(row));
                    }
                }
            }
            self.key_buf2 = sid;
            // Sessions that no longer exist (in session id order).
            let gone: Vec<String> = emitted
                .keys()
                .filter(|k| k.strip_prefix("derived:").is_none_or(|id| ids.binary_search_by(|&i| id_at(i).cmp(id)).is_err()))
                .cloned()
                .collect();
            for k in gone {
                if let Some(o) = emitted.remove(&k) {
                    self.emitted_metrics(&account, &o, -1);
                    out.push(SessionChange::Delete { account_id: account, identity: identity.clone(), session_id: k });
                }
            }
        } else {
            // Two sessions with one id (a record id reused at two times): the general path.
            let rows: Vec<SessionRow> = bounds
                .iter()
                .filter_map(|&(a, b)| points.get(a..b))
                .filter_map(|seg| crate::session::derived_row(account, &identity, seg))
                .collect();
            let old = std::mem::take(&mut emitted);
            for row in rows {
                let now = EmittedSession::of(&row);
                match old.get(&row.session_id) {
                    Some(o) if o.fingerprint == now.fingerprint => {}
                    o => {
                        if let Some(o) = o {
                            self.emitted_metrics(&account, o, -1);
                        }
                        self.session_metrics(&row, 1);
                        out.push(SessionChange::Upsert(row.clone()));
                    }
                }
                emitted.insert(row.session_id, now);
            }
            for (sid, o) in &old {
                if !emitted.contains_key(sid) {
                    self.emitted_metrics(&account, o, -1);
                    out.push(SessionChange::Delete { account_id: account, identity: identity.clone(), session_id: sid.clone() });
                }
            }
        }
        self.ids_buf = ids;
        if let Some(d) = self.st.derived.get_mut(ident) {
            d.scan = ScanCache { clean: points.len(), bounds, dirty: false };
            d.identity = identity;
            d.points = points;
            d.sessions = emitted;
        }
    }

    fn flush_explicit(&mut self, k: &str, out: &mut Vec<SessionChange>) {
        let Some(e) = self.st.explicit.get(k) else { return };
        let row = e.s.row(e.account, &e.identity, &e.session_id);
        if row == e.s.emitted {
            return;
        }
        let old = e.s.emitted.clone();
        if let Some(o) = &old {
            self.session_metrics(o, -1);
        }
        if let Some(r) = &row {
            self.session_metrics(r, 1);
            out.push(SessionChange::Upsert(r.clone()));
        }
        if let Some(e) = self.st.explicit.get_mut(k) {
            e.s.emitted = row;
        }
    }

    /// The touches of `ident`'s stitched identity in the lookback window of a conversion at
    /// `at`, sorted by `(timestamp, record id)`, one per dedup key. `ident_id` is the id `ident`
    /// had in `State::ids` ([`ConvState::ident_id`]): used without looking the key up again when
    /// that slot's key is still `ident` itself.
    fn window<'a>(&'a self, acct: &Uuid, ident: &Text, ident_id: u32, at: DateTime<Utc>) -> Vec<&'a Held> {
        let s = self.cfg.settings(acct);
        let click_from = sub(at, secs(s.click_lookback_secs));
        let view_from = sub(at, secs(s.view_lookback_secs));
        let root = self.resolve_ref(ident);
        let mut v: Vec<&Held> = Vec::new();
        // Compared in nanoseconds where all of them have one (see `held::nanos`), else by chrono.
        let (at_ns, click_ns, view_ns) = (nanos(at), nanos(click_from), nanos(view_from));
        let by_ns = at_ns != i64::MIN && click_ns != i64::MIN && view_ns != i64::MIN;
        // A view lookback of 0 days turns view-through credit off (as ad platforms read a
        // zero window), rather than crediting impressions at the conversion's very instant.
        let views_count = s.view_lookback_secs > 0;
        let keep = |t: &&Held| {
            if t.view && !views_count {
                false
            } else if by_ns && t.at_ns != i64::MIN {
                t.at_ns <= at_ns && t.at_ns >= if t.view { view_ns } else { click_ns }
            } else {
                t.at <= at && t.at >= if t.view { view_from } else { click_from }
            }
        };
        // One identity's list is unique by dedup key already; only a stitched group can hold a
        // key twice.
        let mut grouped = false;
        if self.st.members.contains_key(root) {
            grouped = true;
            for g in self.group(root) {
                if let Some(list) = self.st.ids.touches(&g) {
                    v.extend(list.iter().filter(keep));
                }
            }
        } else if let Some(list) = match self.st.ids.slot(ident_id) {
            // Not linked (`root` is `ident` itself) and the slot is still this identity's.
            Some(s) if std::ptr::eq(root, ident.as_str()) && s.key.ptr_eq(ident) => Some(&s.touches).filter(|t| !t.is_empty()),
            _ => self.st.ids.touches(root),
        } {
            // One list is sorted already.
            v.reserve_exact(list.len());
            v.extend(list.iter().filter(keep));
        }
        if grouped && v.len() > 1 {
            v.sort_by(|a, b| a.order().cmp(&b.order()));
            let mut keys: FastSet<(bool, &str)> = FastSet::default();
            keys.reserve(v.len());
            v.retain(|t| keys.insert(t.key().norm()));
        }
        v
    }

    fn attribute(&mut self, key: &str, out: &mut Vec<AttributionSet>) {
        // Found once by key; reached by position below.
        let Some((ix, _, c)) = self.st.convs.get_full(key) else { return };
        let settings = self.cfg.settings(&c.account);
        let default_model = settings.default_model;
        let Scratch {
            mut weights,
            mut credits,
            mut revenue,
            onehot_credits: mut oh_credits,
            onehot_revenue: mut oh_revenue,
            equal_credits: mut eq_credits,
            equal_revenue: mut eq_revenue,
            mut fps,
            mut contrib,
        } = std::mem::take(&mut self.scratch);
        let mut changed = std::mem::take(&mut self.scratch_changed);
        changed.clear();
        let touches = self.window(&c.account, &c.ident, c.ident_id, c.at);
        let scheme = if !c.fingerprints.is_empty() {
            FpScheme::Fnv
        } else if !c.fp.is_empty() {
            FpScheme::Rows
        } else {
            FpScheme::Touches
        };
        // A one-hot split is exact: computed at the places revenue is written with.
        let (_, one_hot_dp) = money_places(c.value);
        // Which of tied largest weights takes a split's rounding remainder: a function of the
        // conversion alone, spread evenly over conversions.
        let pick = remainder_pick(c.record_id.as_str());
        // Reused buffers (all empty between calls; put back below).
        // (model, rows) of the models whose fingerprint changed.
        fps.reserve_exact(Model::PER_CONVERSION.len());
        // Default-model contributions per cell (a handful: searched linearly, sorted at the end)
        // are collected in `contrib`.
        // The one-hot split computed first (position, then credits and revenue in `oh_*`).
        let mut onehot: Option<usize> = None;
        let mut new_credits: Vec<((usize, usize), Vec<Decimal>)> = Vec::new();
        let currency = c.currency.as_ref().map(Currency::as_str).unwrap_or("");
        let value_bytes = c.value.serialize();
        let conv_ns = nanos(c.at);
        let conv_micros = c.at.timestamp_micros() as u64;
        // The conversion's part of every model's fingerprint, hashed once (each touch's part is
        // its `Held::fp`).
        let mut conv_fp = 0;
        if scheme == FpScheme::Touches {
            let mut h = Fingerprint::new(false);
            h.bytes(c.record_id.as_bytes());
            h.u64(conv_micros);
            h.bytes(&value_bytes);
            h.bytes(currency.as_bytes());
            conv_fp = h.value();
        }
        for (mi, model) in Model::PER_CONVERSION.into_iter().enumerate() {
            // Fingerprint of the rows, computed before (and without) building them: the same
            // hash as over the built rows.
            let mut h = Fingerprint::new(scheme == FpScheme::Fnv);
            h.u64(model.index() as u64);
            if scheme == FpScheme::Touches {
                h.u64(conv_fp);
            } else {
                h.bytes(c.record_id.as_bytes());
                h.u64(conv_micros);
                h.bytes(&value_bytes);
                h.bytes(currency.as_bytes());
            }
            let is_default = model == default_model;
            if touches.is_empty() {
                h.bytes(DIRECT.as_bytes());
                h.u64(1.0f64.to_bits());
                h.bytes(&value_bytes);
                h.bytes(c.campaign_id.as_deref().unwrap_or("").as_bytes());
                if is_default {
                    if let Some(campaign) = c.campaign_id.as_deref() {
                        let ck = self.cell_key(&c.account, campaign, c.advertisement_id.as_deref(), c.at);
                        add_contrib(&mut contrib, ck, Decimal::ONE, c.value);
                    }
                }
            } else {
                if model.is_data_driven() {
                    channel_weights_into(
                        touches.len(),
                        |i| touches.get(i).map_or("", |t| t.channel().as_str()),
                        self.cfg.catalog.channel_weights.get(&(c.account, model)),
                        &mut weights,
                    );
                } else {
                    weights_into(
                        model,
                        touches.len(),
                        |i| touches.get(i).map_or(0, |t| elapsed_ms(t.at, t.at_ns, c.at, conv_ns)),
                        |i| touches.get(i).is_some_and(|t| t.is_direct()),
                        settings.half_life_secs,
                        &mut weights,
                    );
                }
                // Exact shares. A one-hot split depends on the hot position only through that
                // position (every other share is the same zero): the first one-hot model's split
                // is reused, moved, by the others. Credits (total 1) of linear and position-based
                // depend only on the path length: cached across conversions.
                let hot = one_hot(&weights);
                match (hot, onehot) {
                    (Some(j), Some(i)) if oh_credits.len() == weights.len() && oh_revenue.len() == weights.len() => {
                        credits.clear();
                        credits.extend_from_slice(&oh_credits);
                        credits.swap(i, j);
                        revenue.clear();
                        revenue.extend_from_slice(&oh_revenue);
                        revenue.swap(i, j);
                    }
                    (Some(j), _) => {
                        // Credits (total 1) of a one-hot split are the same for every conversion.
                        static ONE_HOT_CREDITS: std::sync::OnceLock<Option<(Decimal, Decimal)>> = std::sync::OnceLock::new();
                        match ONE_HOT_CREDITS.get_or_init(|| one_hot_shares(Decimal::ONE, 12)) {
                            Some(shares) if weights.len() > 1 => fill_one_hot(weights.len(), j, *shares, &mut credits),
                            _ => split_one_hot_into(weights.len(), j, Decimal::ONE, 12, &mut credits),
                        }
                        split_one_hot_into(weights.len(), j, c.value, one_hot_dp, &mut revenue);
                        if onehot.is_none() {
                            onehot = Some(j);
                            oh_credits.clone_from(&credits);
                            oh_revenue.clone_from(&revenue);
                        }
                    }
                    // Equal weights split alike under every model (linear, and the data-driven
                    // models without channel weights): the split is computed once.
                    _ if !eq_credits.is_empty() && eq_credits.len() == weights.len() && all_equal(&weights) => {
                        credits.clone_from(&eq_credits);
                        revenue.clone_from(&eq_revenue);
                    }
                    _ => {
                        let ck = (model.index(), weights.len());
                        let by_length = hot.is_none() && matches!(model, Model::Linear | Model::PositionBased);
                        match self.credit_cache.get(&ck).filter(|_| by_length) {
                            Some(cr) => {
                                credits.clear();
                                credits.extend_from_slice(cr);
                            }
                            None => {
                                split_exact_into(&weights, Decimal::ONE, 12, &mut credits);
                                if by_length {
                                    new_credits.push((ck, credits.clone()));
                                }
                            }
                        }
                        // The credits, cached or not, hold the remainder on the first tied weight.
                        let slot = remainder_slot(&weights, pick);
                        slot.apply(&mut credits);
                        split_money_into(&weights, c.value, slot, &mut revenue);
                        if all_equal(&weights) {
                            eq_credits.clone_from(&credits);
                            eq_revenue.clone_from(&revenue);
                        }
                    }
                }
                for (i, t) in touches.iter().enumerate() {
                    let w = weights.get(i).copied().unwrap_or(0.0);
                    if w <= 0.0 || w.is_nan() {
                        continue;
                    }
                    let rev = revenue.get(i).copied().unwrap_or(Decimal::ZERO);
                    // The touch's attributed campaign (see `held::attributed_campaign`).
                    let campaign: Option<&str> = t.face.campaign_id.as_deref();
                    // The touch (its hash, or its record id here and its campaign after), then
                    // its shares.
                    match scheme {
                        FpScheme::Touches => h.u64(t.fp),
                        FpScheme::Fnv | FpScheme::Rows => h.bytes(t.id.as_bytes()),
                    }
                    h.u64(w.to_bits());
                    h.bytes(&rev.serialize());
                    if scheme != FpScheme::Touches {
                        h.bytes(campaign.unwrap_or("").as_bytes());
                    }
                    if is_default {
                        if let Some(campaign) = campaign.or(t.utm_campaign.as_deref()) {
                            let ck = self.cell_key(&c.account, campaign, t.advertisement_id().map(Text::as_str), c.at);
                            add_contrib(&mut contrib, ck, credits.get(i).copied().unwrap_or(Decimal::ZERO), rev);
                        }
                    }
                }
            }
            let hv = h.value();
            fps.push(hv);
            let stored = match scheme {
                FpScheme::Fnv => &c.fingerprints,
                FpScheme::Rows => &c.fp,
                FpScheme::Touches => &c.fq,
            };
            if stored.get(mi) == Some(&hv) {
                continue;
            }
            let rows: Vec<Credit> = if touches.is_empty() {
                vec![Credit { touch: 0, weight: 1.0, credit: Decimal::ONE, attributed_revenue: c.value }]
            } else {
                let mut rows = Vec::with_capacity(weights.iter().filter(|w| **w > 0.0).count());
                for (i, &w) in weights.iter().enumerate() {
                    if w <= 0.0 || w.is_nan() {
                        continue;
                    }
                    rows.push(Credit {
                        touch: u32::try_from(i).unwrap_or(u32::MAX),
                        weight: w,
                        credit: credits.get(i).copied().unwrap_or(Decimal::ZERO),
                        attributed_revenue: revenue.get(i).copied().unwrap_or(Decimal::ZERO),
                    });
                }
                rows
            };
            changed.push((model, rows));
        }
        contrib.sort_by(|a, b| a.0.cmp(&b.0));
        // The rows change whenever the touches do, so the journey needs a look only then (or
        // when the conversion has never been counted).
        let journey = (!changed.is_empty() || c.journey.is_none()).then(|| journey_key(&c.account, c.at, &touches));
        // The path as the rows name it, shared by the sets of this conversion (built only when
        // some model's rows changed).
        let table: Option<Box<[Arc<CreditedTouch>]>> = if changed.is_empty() {
            None
        } else if touches.is_empty() {
            Some(Box::from([Arc::new(CreditedTouch::direct(
                c.campaign_id.as_ref().map(Text::from),
                c.advertisement_id.as_ref().map(Text::from),
            ))]))
        } else {
            // Each touch's face, shared: one reference count per touch.
            Some(touches.iter().map(|t| t.face.clone()).collect())
        };
        weights.clear();
        credits.clear();
        revenue.clear();
        oh_credits.clear();
        oh_revenue.clear();
        eq_credits.clear();
        eq_revenue.clear();
        if !new_credits.is_empty() {
            if self.credit_cache.len() > 256 {
                self.credit_cache.clear();
            }
            self.credit_cache.extend(new_credits);
        }
        self.scratch = Scratch {
            weights,
            credits,
            revenue,
            onehot_credits: oh_credits,
            onehot_revenue: oh_revenue,
            equal_credits: eq_credits,
            equal_revenue: eq_revenue,
            fps: Vec::new(),
            contrib: Vec::new(),
        };
        let Some((_, c)) = self.st.convs.get_index_mut(ix) else { return };
        c.dirty = false;
        if let Some(counted) = journey.map(|k| (k, c.value)).filter(|j| c.journey.as_ref() != Some(j)) {
            if let Some((old, revenue)) = c.journey.take() {
                self.st.journeys.remove_conversion(&old, revenue);
            }
            self.st.journeys.add_conversion(&counted.0, counted.1);
            c.journey = Some(counted);
        }
        if let Some(touches) = table {
            c.version += 1;
            // The previous fingerprint list becomes the next call's buffer.
            std::mem::swap(
                match scheme {
                    FpScheme::Fnv => &mut c.fingerprints,
                    FpScheme::Rows => &mut c.fp,
                    FpScheme::Touches => &mut c.fq,
                },
                &mut fps,
            );
            // Shared by the sets of every model: one reference count each.
            let conversion = std::sync::Arc::new(AttributedConversion {
                account_id: c.account,
                conversion_key: c.key.clone(),
                conversion_id: c.record_id.clone(),
                conversion_kind: match &c.kind_text {
                    Some(k) => k.clone(),
                    None => self.int.get(c.kind.as_str()),
                },
                converted_at: c.at,
                identity: c.identity.clone(),
                value: c.value,
                currency: c.currency,
                touches,
            });
            for (model, rows) in changed.drain(..) {
                out.push(AttributionSet { conversion: conversion.clone(), model, version: c.version, credits: rows });
            }
        }
        if c.applied != contrib {
            let old = std::mem::take(&mut c.applied);
            for (ck, cr, rev) in &old {
                self.with_cell_key(ck, |cell| {
                    add_d(&mut cell.conversions, *cr, -1);
                    add_d(&mut cell.revenue, *rev, -1);
                });
            }
            for (ck, cr, rev) in &contrib {
                self.with_cell_key(ck, |cell| {
                    add_d(&mut cell.conversions, *cr, 1);
                    add_d(&mut cell.revenue, *rev, 1);
                });
            }
            if let Some((_, c)) = self.st.convs.get_index_mut(ix) {
                // The replaced list becomes the next call's buffer.
                c.applied = std::mem::replace(&mut contrib, old);
            }
        }
        fps.clear();
        contrib.clear();
        self.scratch.fps = fps;
        self.scratch.contrib = contrib;
        self.scratch_changed = changed;
    }

    // ----------------------------------------------------------------------------------------
    // Watermark and eviction

    fn touch_cutoff(&self) -> Option<DateTime<Utc>> {
        self.st.watermark.map(|w| sub(sub(w, self.cfg.lateness()), secs(self.cfg.max_lookback_secs())))
    }

    fn min_cell_date(&self) -> Option<NaiveDate> {
        self.st.watermark.map(|w| sub(sub(w, self.cfg.lateness()), Duration::days(2)).date_naive())
    }

    /// Advances the watermark (ignored if older than the current one) and evicts what no
    /// accepted record can change any more:
    /// - records older than `watermark − allowed_lateness` are refused from now on ([`Ingest::TooLate`]);
    /// - touches older than that minus the longest lookback; conversions older than the cutoff;
    /// - derived-session chains that ended more than the inactivity timeout before the cutoff,
    ///   client sessions idle for more than the maximum session length before it;
    /// - metric cells, spend reports and link click days dated two days before the cutoff
    ///   (time-zone margin);
    /// - event and link click dedup entries older than the cutoff;
    /// - journey counts of days no conversion or touch held can change (the touches leaving
    ///   are first judged for the non-converting journeys, see [`crate::journeys`]);
    /// - records waiting for an exchange rate that would now be too late: they leave in the
    ///   next flush's [`Flush::refused`].
    ///
    /// Identity links are kept (one small entry per stitched identity).
    pub fn advance_watermark(&mut self, w: DateTime<Utc>) {
        if self.st.watermark.is_some_and(|cur| w <= cur) {
            return;
        }
        self.st.watermark = Some(w);
        self.expire_waiting();
        let cutoff = sub(w, self.cfg.lateness());
        if let Some(tc) = self.touch_cutoff() {
            self.judge_leaving_touches(tc);
            let mut evicted = 0u64;
            for list in self.st.ids.live_mut().map(|s| &mut s.touches) {
                let before = list.len();
                list.retain(|t| t.at >= tc);
                evicted += (before - list.len()) as u64;
            }
            self.st.counters.evicted_touches += evicted;
            for p in self.st.pending.values_mut() {
                p.touches.retain(|_, t| t.at >= tc);
            }
        }
        let gone: Vec<Text> = self.st.convs.iter().filter(|(_, c)| c.at < cutoff && !c.dirty).map(|(k, _)| k.clone()).collect();
        for k in gone {
            if let Some(c) = self.st.convs.swap_remove(&k) {
                self.st.counters.evicted_conversions += 1;
                if let Some(s) = self.st.ids.id(&c.ident).and_then(|id| self.st.ids.slot_mut(id)) {
                    s.convs.remove(&k);
                }
            }
        }
        // Free the ids of identities left with neither touches nor conversions.
        self.st.ids.release_empty();
        // Derived sessions: drop whole gap-separated chains that ended before cutoff − timeout.
        let cfg = &self.cfg;
        self.st.derived.retain(|_, d| {
            if d.scan.dirty {
                return true;
            }
            let timeout = secs(cfg.settings(&d.account).session_timeout_secs);
            let limit = sub(cutoff, timeout);
            let mut cut = 0usize;
            for (i, p) in d.points.iter().enumerate() {
                if p.at >= limit {
                    break;
                }
                let next_gap_ok = d.points.get(i + 1).is_none_or(|n| n.at - p.at >= timeout);
                if next_gap_ok {
                    cut = i + 1;
                }
            }
            if cut > 0 {
                let last = d.points.get(cut - 1).map(|p| p.at);
                d.points.drain(..cut);
                d.scan = ScanCache::default();
                if let Some(last) = last {
                    d.sessions.retain(|_, r| r.started_at > last);
                }
            }
            !d.points.is_empty() || !d.sessions.is_empty()
        });
        let max_session = secs(cfg.max_session_secs());
        let dirty_explicit = &self.st.dirty_explicit;
        self.st.explicit.retain(|k, e| dirty_explicit.contains(k) || e.s.last_activity().is_some_and(|t| t >= sub(cutoff, max_session)));
        self.st.events_seen.retain(|_, m| {
            m.retain(|_, t| *t >= cutoff);
            !m.is_empty()
        });
        self.st.link_clicks.evict(cutoff, self.min_cell_date());
        self.st.journeys.evict(self.min_cell_date(), self.touch_cutoff());
        if let Some(min_date) = self.min_cell_date() {
            self.st.cells.retain(|k, c| k.date >= min_date || c.dirty);
            self.st.spend.retain(|k, _| k.date >= min_date);
        }
        if self.int.len() >= self.gc_at {
            self.int.gc();
            self.gc_at = GC_MIN.max(2 * self.int.len());
        }
    }

    /// Judges every touch about to leave the state (older than `touch_cutoff`) for the
    /// non-converting journeys (see [`crate::journeys`]), root by root in time order, then
    /// counts the journeys no touch can join any more. Touches of identities stitched to a
    /// root on another partition are left to that partition.
    fn judge_leaving_touches(&mut self, touch_cutoff: DateTime<Utc>) {
        // Touches of one root come from several identity slots; ordering them by the touch's
        // full order (time, then record id) keeps a path independent of arrival order when
        // two touches share an instant.
        let mut leaving: Vec<(Text, TouchOrder, Leaving)> = Vec::new();
        for slot in self.st.ids.live() {
            if slot.touches.first().is_none_or(|t| t.at >= touch_cutoff) {
                continue;
            }
            let root = self.resolve_ref(slot.key.as_str());
            if self.cfg.partitions > 1 && self.partition_of(root) != self.cfg.partition {
                continue;
            }
            let Some(account) = slot.key.as_str().get(..36).and_then(|a| Uuid::parse_str(a).ok()) else { continue };
            let s = self.cfg.settings(&account);
            let root = if root == slot.key.as_str() { slot.key.clone() } else { Text::from(root) };
            for t in slot.touches.iter().take_while(|t| t.at < touch_cutoff) {
                let lookback = if t.view { s.view_lookback_secs } else { s.click_lookback_secs };
                leaving.push((
                    root.clone(),
                    (t.at, t.id.clone(), t.received_at),
                    Leaving {
                        account_id: account,
                        at: t.at,
                        channel: t.channel().clone(),
                        campaign: Text::from(t.metric_campaign().unwrap_or(crate::journeys::NO_CAMPAIGN)),
                        lookback: secs(lookback),
                        gap: secs(s.click_lookback_secs),
                    },
                ));
            }
        }
        leaving.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut group: (Option<Text>, Vec<String>) = (None, Vec::new());
        for (root, _, touch) in leaving {
            if group.0.as_ref() != Some(&root) {
                let members =
                    if self.st.members.contains_key(root.as_str()) { self.group(root.as_str()) } else { vec![root.as_str().to_owned()] };
                group = (Some(root.clone()), members);
            }
            let idents: Vec<&str> = group.1.iter().map(String::as_str).collect();
            self.st.journeys.judge(&root, &idents, touch);
        }
        let cfg = &self.cfg;
        self.st.journeys.close_quiet(touch_cutoff, |account| secs(cfg.settings(account).click_lookback_secs));
    }

    // ----------------------------------------------------------------------------------------
    // Paths for the data-driven models

    /// Conversion paths of `account` on this partition for conversions in `[from, to)`, and
    /// non-converting paths (touches in `[from, to)` after an identity's last conversion in the
    /// period, or all of them if it did not convert). A converting path holds the channels of the
    /// touches in the conversion's lookback window (the same touches the heuristic models see).
    /// Identities stitched to a customer on another partition contribute no non-converting path
    /// here (their touches were carried there). Merge the paths of all partitions with
    /// [`aggregate_paths`] and pass them to [`crate::markov`] / [`crate::shapley`].
    pub fn paths(&self, account: Uuid, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<PathCount> {
        let prefix = format!("{account}:");
        let mut roots: BTreeSet<String> = BTreeSet::new();
        for k in self.st.ids.live().map(|s| s.key.as_str()) {
            if k.starts_with(&prefix) {
                roots.insert(self.resolve(k));
            }
        }
        let mut out = Vec::new();
        for root in roots {
            let group = self.group(&root);
            let mut convs: Vec<&ConvState> = group
                .iter()
                .filter_map(|g| self.st.ids.convs(g))
                .flatten()
                .filter_map(|k| self.st.convs.get(k))
                .filter(|c| c.at >= from && c.at < to)
                .collect();
            convs.sort_by(|a, b| (a.at, a.record_id.as_str()).cmp(&(b.at, b.record_id.as_str())));
            convs.dedup_by(|a, b| a.key == b.key);
            let mut last_conv: Option<DateTime<Utc>> = None;
            for c in &convs {
                let channels = self.window(&c.account, &c.ident, c.ident_id, c.at).iter().map(|t| t.channel().to_string()).collect();
                out.push(PathCount {
                    channels,
                    conversions: 1.0,
                    nulls: 0.0,
                    value: rust_decimal::prelude::ToPrimitive::to_f64(&c.value).unwrap_or(0.0),
                });
                last_conv = Some(c.at);
            }
            if self.partition_of(&root) != self.cfg.partition && self.cfg.partitions > 1 {
                continue;
            }
            let mut tail: Vec<&Held> = group
                .iter()
                .filter_map(|g| self.st.ids.touches(g))
                .flatten()
                .filter(|t| t.at >= from && t.at < to && last_conv.is_none_or(|l| t.at > l))
                .collect();
            tail.sort_by(|a, b| (a.at, a.id.as_str()).cmp(&(b.at, b.id.as_str())));
            let mut keys: HashSet<(bool, &str)> = HashSet::new();
            tail.retain(|t| keys.insert(t.key().norm()));
            if !tail.is_empty() {
                out.push(PathCount {
                    channels: tail.iter().map(|t| t.channel().to_string()).collect(),
                    conversions: 0.0,
                    nulls: 1.0,
                    value: 0.0,
                });
            }
        }
        aggregate_paths(out)
    }
}
