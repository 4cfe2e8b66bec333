//! Journeys per account, day and path: the input of the data-driven models (Markov, Shapley),
//! converting and non-converting alike, kept as a result like the daily metrics.
//!
//! The engine of partition `p` counts the journeys it decides per
//! `(account, UTC day, channel path, campaign path)` and emits [`JourneyPartial`]s with the
//! **absolute** counts of that partition, so a store upserts them idempotently and an account's
//! paths over a range are the sums over partitions and days.
//!
//! - A *converting journey* is a conversion with the touches in its lookback windows (the
//!   touches the heuristic models credit), counted on the conversion's day. When a late touch
//!   or a stitch changes those touches, the conversion moves from its old path to the new one.
//! - A *non-converting journey* is a run of touches of one identity (with those stitched to
//!   it) that no conversion credits: a touch is credited when a conversion of the identity
//!   follows it within its lookback window. The run ends at a conversion or at a gap of the
//!   account's click lookback between two of its touches, and counts on the day of its last
//!   touch. A touch is judged when it leaves the state (older than the watermark minus the
//!   allowed lateness minus the longest lookback): by then every conversion that could credit
//!   it has arrived, and the conversion times are kept here until then. A run is counted once
//!   the touch cutoff has passed its last touch by the click lookback, when no touch that
//!   could still join it is accepted any more; so the counts depend on the records only, not
//!   on when the watermark moves.
//!
//! A path keeps the last [`MAX_PATH_TOUCHES`] touches of its journey, each name cut to
//! [`MAX_NAME_BYTES`], so a path's text stays small enough for a key column on every store.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::text::Text;
use crate::util::FastMap;

/// Touches a path keeps at most (the last ones of its journey).
pub const MAX_PATH_TOUCHES: usize = 16;

/// Bytes of one channel or campaign name in a path at most.
pub const MAX_NAME_BYTES: usize = 48;

/// What a path says for a touch without a campaign.
pub const NO_CAMPAIGN: &str = "(none)";

/// One partition's journeys of one account on one UTC day that followed one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyPartial {
    pub partition: u32,
    pub account_id: Uuid,
    pub date: NaiveDate,
    /// Channels of the journey's touches, joined by `touchline_model::results::PATH_SEPARATOR`.
    pub channels: String,
    /// Campaign ids of the same touches ([`NO_CAMPAIGN`] for a touch without one).
    pub campaigns: String,
    pub conversions: u64,
    pub non_conversions: u64,
    /// Revenue of the converting journeys.
    pub revenue: Decimal,
}

/// Where a journey is counted: account, day and path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct PathKey {
    pub account_id: Uuid,
    pub date: NaiveDate,
    pub channels: Text,
    pub campaigns: Text,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counts {
    conversions: u64,
    non_conversions: u64,
    revenue: Decimal,
    /// Listed in `Journeys::dirty` (not in snapshots; restored from that list).
    #[serde(skip)]
    dirty: bool,
}

impl Counts {
    fn is_zero(&self) -> bool {
        self.conversions == 0 && self.non_conversions == 0 && self.revenue.is_zero()
    }
}

/// Touches no conversion credited, gathered into one journey until it can no longer grow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Open {
    account_id: Uuid,
    last: DateTime<Utc>,
    /// The channels and campaigns of its last [`MAX_PATH_TOUCHES`] touches.
    channels: VecDeque<Text>,
    campaigns: VecDeque<Text>,
}

impl Open {
    fn push(&mut self, at: DateTime<Utc>, channel: Text, campaign: Text) {
        if self.channels.len() == MAX_PATH_TOUCHES {
            self.channels.pop_front();
            self.campaigns.pop_front();
        }
        self.channels.push_back(channel);
        self.campaigns.push_back(campaign);
        self.last = at;
    }

    fn key(&self) -> PathKey {
        PathKey {
            account_id: self.account_id,
            date: self.last.date_naive(),
            channels: Text::from(path_of(self.channels.iter().map(Text::as_str)).as_str()),
            campaigns: Text::from(path_of(self.campaigns.iter().map(Text::as_str)).as_str()),
        }
    }
}

/// A touch leaving the state, as [`Journeys::judge`] needs it.
pub(crate) struct Leaving {
    pub account_id: Uuid,
    pub at: DateTime<Utc>,
    pub channel: Text,
    pub campaign: Text,
    /// How long after the touch a conversion still credits it (its class's lookback).
    pub lookback: Duration,
    /// The gap that ends a journey (the account's click lookback).
    pub gap: Duration,
}

/// The journey counts of a partition, what changed since the last flush, and what is needed
/// to judge the touches still held.
#[derive(Clone, Debug, Default)]
pub(crate) struct Journeys {
    paths: FastMap<PathKey, Counts>,
    /// Keys changed since the last flush, each once (its `Counts::dirty` says whether it is
    /// listed).
    dirty: Vec<PathKey>,
    /// Identity key → its conversions (time, key), sorted: kept while a touch they could
    /// credit is held.
    conversions: FastMap<Text, Vec<(DateTime<Utc>, Text)>>,
    /// Root identity key → its open non-converting journey.
    open: FastMap<Text, Open>,
}

impl Journeys {
    /// Counts one converting journey with `revenue` under `key`.
    pub fn add_conversion(&mut self, key: &PathKey, revenue: Decimal) {
        let c = self.entry(key);
        c.conversions = c.conversions.saturating_add(1);
        c.revenue += revenue;
    }

    /// Takes back a converting journey counted under `key` (its touches changed).
    pub fn remove_conversion(&mut self, key: &PathKey, revenue: Decimal) {
        let c = self.entry(key);
        c.conversions = c.conversions.saturating_sub(1);
        c.revenue -= revenue;
    }

    /// Counts one journey that ended without converting.
    pub fn add_non_conversion(&mut self, key: &PathKey) {
        let c = self.entry(key);
        c.non_conversions = c.non_conversions.saturating_add(1);
    }

    /// Records that identity `ident` converted at `at` (conversion `key`, replacing an earlier
    /// time of the same conversion).
    pub fn note_conversion(&mut self, ident: &Text, key: &Text, at: DateTime<Utc>) {
        let list = self.conversions.entry(ident.clone()).or_default();
        list.retain(|(_, k)| k != key);
        let i = list.partition_point(|(t, _)| *t <= at);
        list.insert(i, (at, key.clone()));
    }

    /// Forgets conversion `key` of `ident` (it moved to another identity).
    pub fn forget_conversion(&mut self, ident: &Text, key: &Text) {
        if let Some(list) = self.conversions.get_mut(ident) {
            list.retain(|(_, k)| k != key);
            if list.is_empty() {
                self.conversions.remove(ident);
            }
        }
    }

    /// Whether any of `idents` converted within `[from, to]`.
    fn converted_within<'a>(&self, idents: impl IntoIterator<Item = &'a str>, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        idents.into_iter().any(|id| {
            self.conversions.get(id).is_some_and(|list| {
                let i = list.partition_point(|(t, _)| *t < from);
                list.get(i).is_some_and(|(t, _)| *t <= to)
            })
        })
    }

    /// Judges a touch of `root` (and the identities in `group`) leaving the state: credited by
    /// a conversion, or part of the root's open non-converting journey, which a conversion or
    /// a long gap since its last touch first closes. Touches of one root come in time order.
    pub fn judge(&mut self, root: &Text, group: &[&str], t: Leaving) {
        // A zero lookback (view-through credit off) credits the touch to no conversion.
        if t.lookback > Duration::zero() && self.converted_within(group.iter().copied(), t.at, t.at + t.lookback) {
            return;
        }
        let ends_open = self
            .open
            .get(root)
            .map(|o| o.last + t.gap <= t.at || self.converted_within(group.iter().copied(), o.last + Duration::microseconds(1), t.at));
        if ends_open == Some(true) {
            if let Some(done) = self.open.remove(root) {
                self.add_non_conversion(&done.key());
            }
        }
        match self.open.get_mut(root) {
            Some(o) => o.push(t.at, t.channel, t.campaign),
            None => {
                let mut o = Open { account_id: t.account_id, last: t.at, channels: VecDeque::new(), campaigns: VecDeque::new() };
                o.push(t.at, t.channel, t.campaign);
                self.open.insert(root.clone(), o);
            }
        }
    }

    /// Counts the open journeys no touch can join any more (every touch held is at or after
    /// `touch_cutoff`, later than their last touch by at least `gap_of` their account), and
    /// forgets the conversions that can credit no touch held.
    pub fn close_quiet(&mut self, touch_cutoff: DateTime<Utc>, gap_of: impl Fn(&Uuid) -> Duration) {
        let done: Vec<Text> =
            self.open.iter().filter(|(_, o)| o.last + gap_of(&o.account_id) <= touch_cutoff).map(|(k, _)| k.clone()).collect();
        for o in done.iter().filter_map(|k| self.open.remove(k)).collect::<Vec<_>>() {
            self.add_non_conversion(&o.key());
        }
        self.conversions.retain(|_, list| {
            list.retain(|(t, _)| *t >= touch_cutoff);
            !list.is_empty()
        });
    }

    fn entry(&mut self, key: &PathKey) -> &mut Counts {
        let c = self.paths.entry(key.clone()).or_default();
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(key.clone());
        }
        c
    }

    /// The absolute counts of every path changed since the last call, sorted. A path whose
    /// counts went back to zero is emitted with zeros (the store must forget what it had).
    pub fn flush(&mut self, partition: u32) -> Vec<JourneyPartial> {
        let mut keys = std::mem::take(&mut self.dirty);
        keys.sort_unstable();
        let out = keys
            .iter()
            .filter_map(|k| {
                let c = self.paths.get_mut(k)?;
                c.dirty = false;
                Some(JourneyPartial {
                    partition,
                    account_id: k.account_id,
                    date: k.date,
                    channels: k.channels.as_str().to_owned(),
                    campaigns: k.campaigns.as_str().to_owned(),
                    conversions: c.conversions,
                    non_conversions: c.non_conversions,
                    revenue: c.revenue,
                })
            })
            .collect();
        self.paths.retain(|_, c| !c.is_zero());
        out
    }

    /// Forgets the counts of days that nothing changes any more and that are not waiting for a
    /// flush: before `min_date` (no conversion of theirs is held), before `touch_cutoff` (no
    /// touch of theirs is held) and before the last touch of every open journey.
    pub fn evict(&mut self, min_date: Option<NaiveDate>, touch_cutoff: Option<DateTime<Utc>>) {
        let (Some(min_date), Some(touch_cutoff)) = (min_date, touch_cutoff) else { return };
        let floor = self.open.values().map(|o| o.last.date_naive()).chain([min_date, touch_cutoff.date_naive()]).min().unwrap_or(min_date);
        self.paths.retain(|k, c| k.date >= floor || c.dirty);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.paths.len()
    }
}

/// Equal states: the same counts, conversions and open journeys, and the same paths waiting
/// for a flush in whatever order they were listed.
impl PartialEq for Journeys {
    fn eq(&self, other: &Journeys) -> bool {
        let listed = |j: &Journeys| {
            let mut d = j.dirty.clone();
            d.sort_unstable();
            d
        };
        self.paths == other.paths && self.conversions == other.conversions && self.open == other.open && listed(self) == listed(other)
    }
}

/// An identity's conversions as [`Journeys`] keeps them.
type ConversionTimes = Vec<(DateTime<Utc>, Text)>;

/// How a snapshot holds [`Journeys`]: sorted lists, so equal states write equal bytes.
#[derive(Default, Serialize, Deserialize)]
struct JourneysRepr {
    paths: Vec<(PathKey, Counts)>,
    dirty: Vec<PathKey>,
    #[serde(default)]
    conversions: Vec<(Text, ConversionTimes)>,
    #[serde(default)]
    open: Vec<(Text, Open)>,
}

/// `map`'s entries sorted by key.
fn sorted<K: Ord + Clone, V: Clone>(map: &FastMap<K, V>) -> Vec<(K, V)> {
    let mut v: Vec<(K, V)> = map.iter().map(|(k, x)| (k.clone(), x.clone())).collect();
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    v
}

impl Serialize for Journeys {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut dirty = self.dirty.clone();
        dirty.sort_unstable();
        JourneysRepr { paths: sorted(&self.paths), dirty, conversions: sorted(&self.conversions), open: sorted(&self.open) }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Journeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Journeys, D::Error> {
        let r = JourneysRepr::deserialize(d)?;
        let mut paths: FastMap<PathKey, Counts> = r.paths.into_iter().collect();
        for k in &r.dirty {
            if let Some(c) = paths.get_mut(k) {
                c.dirty = true;
            }
        }
        Ok(Journeys { paths, dirty: r.dirty, conversions: r.conversions.into_iter().collect(), open: r.open.into_iter().collect() })
    }
}

/// A channel or campaign name as a path writes it: cut to [`MAX_NAME_BYTES`], `>` written as
/// `›` (the names [`touchline_model::results::path_names`] gives back from a path).
pub fn path_name(name: &str) -> std::borrow::Cow<'_, str> {
    let cut = touchline_model::truncate_utf8(name, MAX_NAME_BYTES).0;
    if cut.contains('>') {
        std::borrow::Cow::Owned(cut.replace('>', "›"))
    } else {
        std::borrow::Cow::Borrowed(cut)
    }
}

/// The path text of `names`: the last [`MAX_PATH_TOUCHES`], each cut to [`MAX_NAME_BYTES`].
pub(crate) fn path_of<'a>(names: impl DoubleEndedIterator<Item = &'a str>) -> String {
    let mut last: Vec<&str> = names.rev().take(MAX_PATH_TOUCHES).collect();
    last.reverse();
    touchline_model::results::path_text(last.into_iter().map(|n| touchline_model::truncate_utf8(n, MAX_NAME_BYTES).0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const A: Uuid = Uuid::from_u128(1);

    fn key(day: u32, channels: &str) -> PathKey {
        PathKey {
            account_id: A,
            date: NaiveDate::from_ymd_opt(2026, 3, day).unwrap(),
            channels: Text::new(channels),
            campaigns: Text::new(NO_CAMPAIGN),
        }
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    /// Day `n` after 2026-03-01, at midnight UTC.
    fn day(n: i64) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, 1, 0, 0, 0).unwrap() + Duration::days(n)
    }

    fn at(n: u32, hour: u32) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, n, hour, 0, 0).unwrap()
    }

    const CLICK: i64 = 30;

    /// A click-class touch of channel `channel` on day `n` (lookback and gap 30 days).
    fn click(n: i64, channel: &str) -> Leaving {
        Leaving {
            account_id: A,
            at: day(n),
            channel: Text::new(channel),
            campaign: Text::new(NO_CAMPAIGN),
            lookback: Duration::days(CLICK),
            gap: Duration::days(CLICK),
        }
    }

    /// (channels, day, conversions, non-conversions) of a flush.
    fn rows(j: &mut Journeys) -> Vec<(String, i64, u64, u64)> {
        j.flush(0).into_iter().map(|p| (p.channels, (p.date - day(0).date_naive()).num_days(), p.conversions, p.non_conversions)).collect()
    }

    fn judge_all(j: &mut Journeys, touches: Vec<Leaving>) {
        let root = Text::new("r");
        for t in touches {
            j.judge(&root, &["r"], t);
        }
    }

    #[test]
    fn touches_a_later_conversion_credits_are_no_journey_of_their_own() {
        let mut j = Journeys::default();
        j.note_conversion(&Text::new("r"), &Text::new("k1"), day(5));
        judge_all(&mut j, vec![click(1, "email"), click(3, "search"), click(10, "display")]);
        j.close_quiet(day(39), |_| Duration::days(CLICK));
        assert!(rows(&mut j).is_empty(), "the display touch could still be joined until day 40");
        j.close_quiet(day(40), |_| Duration::days(CLICK));
        // Email (day 1) and search (day 3) are within 30 days before the day-5 conversion; the
        // display touch of day 10 has no conversion after it.
        assert_eq!(rows(&mut j), vec![("display".into(), 10, 0, 1)]);
    }

    #[test]
    fn a_gap_of_the_click_lookback_splits_journeys() {
        let mut j = Journeys::default();
        judge_all(&mut j, vec![click(1, "email"), click(20, "search"), click(50, "email"), click(79, "display")]);
        j.close_quiet(day(200), |_| Duration::days(CLICK));
        // 1 → 20 is 19 days (one journey), 20 → 50 is 30 days (a new one), 50 → 79 is 29 days.
        assert_eq!(rows(&mut j), vec![("email > search".into(), 20, 0, 1), ("email > display".into(), 79, 0, 1)]);
    }

    #[test]
    fn a_conversion_between_two_uncredited_touches_splits_them() {
        let mut j = Journeys::default();
        // The day-1 impression is 4 days before the conversion, past its one-day lookback; the
        // day-6 click comes after it. Five days apart, they would be one journey without it.
        j.note_conversion(&Text::new("r"), &Text::new("k1"), day(5));
        judge_all(&mut j, vec![Leaving { lookback: Duration::days(1), ..click(1, "display") }, click(6, "search")]);
        j.close_quiet(day(200), |_| Duration::days(CLICK));
        assert_eq!(rows(&mut j), vec![("display".into(), 1, 0, 1), ("search".into(), 6, 0, 1)]);
    }

    #[test]
    fn an_impression_is_credited_only_within_the_view_lookback() {
        let mut j = Journeys::default();
        j.note_conversion(&Text::new("r"), &Text::new("k1"), day(3));
        let view = |n, lookback| Leaving { lookback: Duration::days(lookback), ..click(n, "display") };
        judge_all(&mut j, vec![view(1, 1), click(2, "search")]);
        j.close_quiet(day(200), |_| Duration::days(CLICK));
        // The day-1 impression is two days before the conversion, past its one-day lookback.
        assert_eq!(rows(&mut j), vec![("display".into(), 1, 0, 1)]);
    }

    #[test]
    fn a_conversion_of_a_stitched_identity_credits_the_group() {
        let mut j = Journeys::default();
        j.note_conversion(&Text::new("customer"), &Text::new("k1"), day(5));
        j.judge(&Text::new("customer"), &["customer", "visitor"], click(1, "email"));
        j.judge(&Text::new("visitor"), &["visitor"], click(2, "search"));
        j.close_quiet(day(200), |_| Duration::days(CLICK));
        assert_eq!(rows(&mut j), vec![("search".into(), 2, 0, 1)], "only the unstitched visitor's touch is uncredited");
    }

    #[test]
    fn a_moved_conversion_is_judged_at_its_new_time_and_identity() {
        let mut j = Journeys::default();
        let (r, k) = (Text::new("r"), Text::new("k1"));
        j.note_conversion(&r, &k, day(100));
        j.note_conversion(&r, &k, day(5));
        j.forget_conversion(&Text::new("other"), &k);
        judge_all(&mut j, vec![click(1, "email")]);
        j.close_quiet(day(200), |_| Duration::days(CLICK));
        assert!(rows(&mut j).is_empty(), "the conversion's time is day 5 now, which credits day 1");
    }

    #[test]
    fn a_flush_carries_absolute_counts_of_the_changed_paths() {
        let mut j = Journeys::default();
        j.add_conversion(&key(1, "email > search"), d("10.5"));
        j.add_non_conversion(&key(1, "email"));
        let out = j.flush(3);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].channels.as_str(), out[0].conversions, out[0].non_conversions), ("email", 0, 1));
        assert_eq!((out[1].conversions, out[1].revenue, out[1].partition), (1, d("10.5"), 3));
        assert!(j.flush(3).is_empty(), "nothing changed since the last flush");
        j.add_conversion(&key(1, "email > search"), d("2"));
        let out = j.flush(3);
        assert_eq!((out.len(), out[0].conversions, out[0].revenue), (1, 2, d("12.5")));
    }

    #[test]
    fn a_conversion_that_changes_path_moves_and_the_emptied_path_is_emitted_as_zero() {
        let mut j = Journeys::default();
        j.add_conversion(&key(1, "email"), d("5"));
        j.flush(0);
        j.remove_conversion(&key(1, "email"), d("5"));
        j.add_conversion(&key(1, "search > email"), d("5"));
        let out = j.flush(0);
        let got: Vec<(&str, u64, Decimal)> = out.iter().map(|p| (p.channels.as_str(), p.conversions, p.revenue)).collect();
        assert_eq!(got, vec![("email", 0, d("0")), ("search > email", 1, d("5"))]);
        assert_eq!(j.len(), 1, "the zeroed path is forgotten once emitted");
    }

    #[test]
    fn eviction_keeps_days_waiting_for_a_flush() {
        let mut j = Journeys::default();
        j.add_non_conversion(&key(1, "email"));
        let (min_date, cutoff) = (NaiveDate::from_ymd_opt(2026, 3, 5), at(4, 0));
        j.evict(min_date, Some(cutoff));
        assert_eq!(j.len(), 1);
        assert_eq!(j.flush(0).len(), 1);
        j.evict(min_date, Some(cutoff));
        assert_eq!(j.len(), 0);
    }

    #[test]
    fn paths_keep_the_last_touches_with_short_names() {
        let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        let p = path_of(names.iter().map(String::as_str));
        assert!(p.starts_with("c4 > c5"), "{p}");
        assert!(p.ends_with("c19"));
        let long = "x".repeat(100);
        assert_eq!(path_of([long.as_str()].into_iter()).len(), MAX_NAME_BYTES);
    }

    #[test]
    fn a_snapshot_round_trips() {
        let mut j = Journeys::default();
        j.add_conversion(&key(2, "a > b"), d("1.25"));
        j.add_non_conversion(&key(1, "a"));
        let bytes = serde_json::to_vec(&j).unwrap();
        let back: Journeys = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, j);
        assert_eq!(serde_json::to_vec(&back).unwrap(), bytes);
    }
}
