//! Daily campaign metrics: per-partition partial rows and their combination into report rows.
//!
//! The engine of partition `p` emits [`DailyPartial`] rows keyed by
//! `(partition, account_id, campaign_id, advertisement_id, date)` with **absolute** values (the
//! current total of that partition), so a sink upserts them idempotently. The report row of a
//! `(account, campaign, ad, date)` is the sum of the partials of all partitions
//! ([`combine_partials`]), after which the ratios are derived ([`DailyReportRow`]).
//!
//! Every count is additive across partitions:
//! - impressions, clicks, engagements, sessions, conversions, revenue: each record / session /
//!   conversion is counted on exactly one partition (touches carried to another partition by an
//!   identity transfer are never counted there).
//! - reach is **not** additive. Each partition counts the distinct people of a cell who had an
//!   impression or a click, a person being the stitching root of the touch's identity: a
//!   visitor linked to a customer (identify/alias) counts as that customer. The exact count goes
//!   out as `reach`, and the people themselves as a [`ReachSketch`] (exact up to
//!   2,048 people, a HyperLogLog above), built at flush from the cell's exact set with a
//!   fixed-key hash, so the same people give the same bytes whatever the arrival order. A day's
//!   reach, and reach over any range of days, is the distinct count of the union of the
//!   sketches ([`touchline_model::ReachUnion`], which states when it is exact): a customer
//!   counted on their own partition and, through a stitched visitor's touch, on the visitor's
//!   partition is one person. A link made on the customer's partition by a record carrying
//!   both ids reaches the visitor's partition as a link notice, so both count the customer.
//!
//!   When the link arrives after the visitor's touches were counted, the engine moves those
//!   touches' reach from the visitor to the customer (see `Engine::recount_reach`) and marks
//!   their cells changed, so the next flush rewrites the cells' partials: the result is the
//!   same whichever came first. Touches the engine no longer holds (evicted once older than
//!   the lookback) keep the identity they were counted under: a link that arrives after that
//!   leaves the visitor counted as a separate person on those days.
//! - cost: spend records are keyed by campaign, so one partition holds a campaign's spend.
//! - frequency, ctr, cpc, cpm, cpa, roas are **not** additive: derive them after summing, with
//!   [`DerivedRatios`], the formula every store publishes with.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use touchline_model::reach::{identity_hash, ReachSketch};
use touchline_model::{Currency, DailyTotals, DerivedRatios, ReachUnion};
use uuid::Uuid;

/// A metrics cell: one campaign/ad/day of one account.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellKey {
    pub account_id: Uuid,
    pub campaign_id: String,
    pub advertisement_id: Option<String>,
    pub date: NaiveDate,
}

/// The fields of a cell key, borrowed: lets the state's maps be probed with a [`CellKeyRef`]
/// (no allocation) as well as with a [`CellKey`]. Both hash and compare through this view.
pub(crate) trait CellKeyView {
    fn view(&self) -> (&Uuid, &str, Option<&str>, NaiveDate);
}

impl CellKeyView for CellKey {
    fn view(&self) -> (&Uuid, &str, Option<&str>, NaiveDate) {
        (&self.account_id, &self.campaign_id, self.advertisement_id.as_deref(), self.date)
    }
}

/// A borrowed [`CellKey`].
pub(crate) struct CellKeyRef<'a> {
    pub account_id: &'a Uuid,
    pub campaign_id: &'a str,
    pub advertisement_id: Option<&'a str>,
    pub date: NaiveDate,
}

impl CellKeyRef<'_> {
    pub fn to_key(&self) -> CellKey {
        CellKey {
            account_id: *self.account_id,
            campaign_id: self.campaign_id.to_owned(),
            advertisement_id: self.advertisement_id.map(str::to_owned),
            date: self.date,
        }
    }
}

impl CellKeyView for CellKeyRef<'_> {
    fn view(&self) -> (&Uuid, &str, Option<&str>, NaiveDate) {
        (self.account_id, self.campaign_id, self.advertisement_id, self.date)
    }
}

fn hash_view<H: std::hash::Hasher>(v: (&Uuid, &str, Option<&str>, NaiveDate), h: &mut H) {
    use std::hash::Hash;
    v.0.hash(h);
    v.1.hash(h);
    v.2.hash(h);
    v.3.hash(h);
}

impl std::hash::Hash for CellKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        hash_view(self.view(), h);
    }
}

impl std::hash::Hash for dyn CellKeyView + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        hash_view(self.view(), h);
    }
}

impl PartialEq for dyn CellKeyView + '_ {
    fn eq(&self, o: &Self) -> bool {
        self.view() == o.view()
    }
}

impl Eq for dyn CellKeyView + '_ {}

impl<'a> std::borrow::Borrow<dyn CellKeyView + 'a> for CellKey {
    fn borrow(&self) -> &(dyn CellKeyView + 'a) {
        self
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cell {
    pub impressions: u64,
    pub clicks: u64,
    pub engagements: u64,
    pub sessions: u64,
    /// Person (stitching root identity) → impressions + clicks counted under them in this cell,
    /// and the person's hash.
    #[serde(serialize_with = "crate::util::ordered::map")]
    pub reach: crate::util::FastMap<crate::text::Text, Reached>,
    pub conversions: Decimal,
    pub revenue: Decimal,
    pub cost: Decimal,
    pub reported_impressions: u64,
    pub reported_clicks: u64,
    /// Whether the cell's key is in the state's dirty list (changed since the last flush). Not
    /// serialised: restore sets it from that list.
    #[serde(skip)]
    pub dirty: bool,
    /// The sorted distinct hashes of `reach`'s people, kept between flushes so that a flush
    /// hashes and sorts only the people who joined since the last one. Not serialised: restore
    /// rebuilds it.
    #[serde(skip)]
    pub reach_built: ReachBuilt,
}

/// A person of a cell's reach: the impressions + clicks counted under them, and their
/// [`identity_hash`], computed once when they join the cell. Serialised as the count alone (the
/// snapshot form of before); restore computes the hash again ([`Cell::rehash_reach`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reached {
    pub touches: u32,
    pub hash: u64,
}

impl Serialize for Reached {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.touches.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Reached {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Reached { touches: u32::deserialize(d)?, hash: 0 })
    }
}

/// The sorted distinct hashes of a cell's people, derived from its reach and never part of the
/// state (any two compare equal). `sorted` is `None` until the next flush builds it from the
/// whole reach: at first, after a restore and after anyone leaves the cell (rare: a touch
/// replaced or recounted under another identity), since hashes are not counted here. While it
/// is built, people who join go to `joined`, which the next flush sorts and merges in. `bytes`
/// is the sketch of `sorted` ([`ReachSketch::bytes_of_sorted`]), kept with it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReachBuilt {
    sorted: Option<Vec<u64>>,
    joined: Vec<u64>,
    bytes: Vec<u8>,
}

impl PartialEq for ReachBuilt {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl ReachBuilt {
    fn join(&mut self, hash: u64) {
        if self.sorted.is_some() {
            self.joined.push(hash);
        }
    }

    fn invalidate(&mut self) {
        self.sorted = None;
        self.joined = Vec::new();
        self.bytes = Vec::new();
    }

    /// The sorted distinct hashes of `reach` and their sketch's bytes, merging in who joined
    /// since the last call.
    fn hashes(&mut self, reach: &crate::util::FastMap<crate::text::Text, Reached>) -> (&[u64], &[u8]) {
        let mut joined = std::mem::take(&mut self.joined);
        let sorted = match self.sorted.take() {
            None => {
                let mut all: Vec<u64> = reach.values().filter(|p| p.touches > 0).map(|p| p.hash).collect();
                all.sort_unstable();
                all.dedup();
                self.bytes = ReachSketch::bytes_of_sorted(&all);
                all
            }
            Some(sorted) if joined.is_empty() => sorted,
            Some(sorted) => {
                joined.sort_unstable();
                joined.dedup();
                let all = merge_sorted(&sorted, &joined);
                ReachSketch::extend_bytes(&mut self.bytes, &all, &joined);
                joined.clear();
                // Keep the buffer for the next joins.
                self.joined = joined;
                all
            }
        };
        (self.sorted.get_or_insert(sorted), &self.bytes)
    }
}

/// The sorted union of two sorted distinct lists.
fn merge_sorted(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
        if x <= y {
            out.push(x);
            i += 1;
            j += usize::from(x == y);
        } else {
            out.push(y);
            j += 1;
        }
    }
    out.extend_from_slice(a.get(i..).unwrap_or_default());
    out.extend_from_slice(b.get(j..).unwrap_or_default());
    out
}

pub(crate) fn add_u(x: &mut u64, sign: i8) {
    if sign >= 0 {
        *x = x.saturating_add(1);
    } else {
        *x = x.saturating_sub(1);
    }
}

pub(crate) fn add_d(x: &mut Decimal, d: Decimal, sign: i8) {
    let r = if sign >= 0 { x.checked_add(d) } else { x.checked_sub(d) };
    if let Some(r) = r {
        *x = r;
    }
}

impl Cell {
    pub fn reach_add(&mut self, identity: &crate::text::Text, sign: i8) {
        if sign >= 0 {
            // One probe: the key is an interned string, so cloning it is a reference count.
            let person = self.reach.entry(identity.clone()).or_insert_with(|| Reached { touches: 0, hash: 0 });
            if person.touches == 0 {
                person.hash = identity_hash(identity.as_str());
                self.reach_built.join(person.hash);
            }
            person.touches += 1;
        } else if let Some(person) = self.reach.get_mut(identity.as_str()) {
            person.touches = person.touches.saturating_sub(1);
            if person.touches == 0 {
                self.reach.remove(identity.as_str());
                self.reach_built.invalidate();
            }
        }
    }

    /// Computes the hashes of the reach's people again (a restored cell holds counts only).
    pub fn rehash_reach(&mut self) {
        for (who, person) in self.reach.iter_mut() {
            person.hash = identity_hash(who.as_str());
        }
        self.reach_built.invalidate();
    }

    /// The distinct hashes ([`identity_hash`]) of the cell's people, ascending. Each person is
    /// hashed once, when they join the cell; a call sorts only who joined since the last one.
    #[cfg(test)]
    pub fn reach_hashes(&mut self) -> &[u64] {
        self.reach_built.hashes(&self.reach).0
    }

    /// The cell's partial of `partition`, its money in `currency` (the account's reporting
    /// currency).
    pub fn partial(&mut self, partition: u32, k: &CellKey, currency: Currency) -> DailyPartial {
        let (hashes, sketch) = self.reach_built.hashes(&self.reach);
        let (reach_hashes, reach_sketch) = (hashes.to_vec(), sketch.to_vec());
        DailyPartial {
            partition,
            account_id: k.account_id,
            campaign_id: k.campaign_id.clone(),
            advertisement_id: k.advertisement_id.clone(),
            date: k.date,
            impressions: self.impressions,
            clicks: self.clicks,
            reach: self.reach.len() as u64,
            engagements: self.engagements,
            sessions: self.sessions,
            conversions: self.conversions.normalize(),
            revenue: self.revenue.normalize(),
            cost: self.cost.normalize(),
            reported_impressions: self.reported_impressions,
            reported_clicks: self.reported_clicks,
            reach_sketch,
            reach_hashes,
            currency: Some(currency),
        }
    }
}

/// One partition's share of one campaign/ad/day, in absolute values. Upsert by
/// `(partition, account_id, campaign_id, advertisement_id, date)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DailyPartial {
    pub partition: u32,
    pub account_id: Uuid,
    pub campaign_id: String,
    /// `None` for campaign-level records (no advertisement).
    pub advertisement_id: Option<String>,
    /// Day in the campaign's time zone (spend: the date the source reported).
    pub date: NaiveDate,
    /// View touches (touchpoints of kind `impression`/`view`).
    pub impressions: u64,
    /// Touchpoints of kind `click` and non-bot link clicks.
    pub clicks: u64,
    /// Distinct people with an impression or a click on this partition (exact; not additive
    /// across partitions or days: union the sketches).
    pub reach: u64,
    /// Other touchpoint kinds (cta, email_open, …) and events that carry the campaign.
    pub engagements: u64,
    /// Sessions (client or derived) whose entry carries the campaign, on their start day.
    pub sessions: u64,
    /// Conversions credited under the account's default model (sum of credits).
    pub conversions: Decimal,
    pub revenue: Decimal,
    /// Sum over sources of the latest spend report per (date, campaign, ad, source).
    pub cost: Decimal,
    /// Impressions/clicks as reported by the ad platforms on spend records.
    pub reported_impressions: u64,
    pub reported_clicks: u64,
    /// The [`ReachSketch`] bytes of the people `reach` counts.
    #[serde(default)]
    pub reach_sketch: Vec<u8>,
    /// Their distinct identity hashes, ascending (what the sketch was built from).
    #[serde(default)]
    pub reach_hashes: Vec<u64>,
    /// The currency of `revenue` and `cost`: the account's reporting currency. `None` in
    /// flushes of builds before currencies.
    #[serde(default)]
    pub currency: Option<Currency>,
}

impl DailyPartial {
    /// The report row of this partial alone (the whole truth when there is one partition).
    pub fn report(&self) -> DailyReportRow {
        combine_partials(std::slice::from_ref(self)).into_iter().next().unwrap_or_else(|| DailyReportRow::empty(self))
    }
}

/// A campaign/ad/day over all partitions, with derived ratios (`None` when the denominator is 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DailyReportRow {
    pub account_id: Uuid,
    pub campaign_id: String,
    pub advertisement_id: Option<String>,
    pub date: NaiveDate,
    pub impressions: u64,
    pub clicks: u64,
    pub reach: u64,
    /// impressions / reach.
    pub frequency: Option<f64>,
    pub engagements: u64,
    pub sessions: u64,
    pub conversions: Decimal,
    pub revenue: Decimal,
    pub cost: Decimal,
    /// clicks / impressions.
    pub ctr: Option<f64>,
    /// cost / clicks.
    pub cpc: Option<Decimal>,
    /// cost × 1000 / impressions.
    pub cpm: Option<Decimal>,
    /// cost / conversions.
    pub cpa: Option<Decimal>,
    /// revenue / cost.
    pub roas: Option<f64>,
    pub reported_impressions: u64,
    pub reported_clicks: u64,
}

impl DailyReportRow {
    fn empty(p: &DailyPartial) -> DailyReportRow {
        DailyReportRow {
            account_id: p.account_id,
            campaign_id: p.campaign_id.clone(),
            advertisement_id: p.advertisement_id.clone(),
            date: p.date,
            impressions: 0,
            clicks: 0,
            reach: 0,
            frequency: None,
            engagements: 0,
            sessions: 0,
            conversions: Decimal::ZERO,
            revenue: Decimal::ZERO,
            cost: Decimal::ZERO,
            ctr: None,
            cpc: None,
            cpm: None,
            cpa: None,
            roas: None,
            reported_impressions: 0,
            reported_clicks: 0,
        }
    }

    fn derive(&mut self) {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let ratios = DerivedRatios::of(&DailyTotals {
            impressions: count(self.impressions),
            clicks: count(self.clicks),
            reach: count(self.reach),
            conversions: self.conversions,
            revenue: self.revenue,
            cost: self.cost,
        });
        self.frequency = ratios.frequency;
        self.ctr = ratios.ctr;
        self.cpc = ratios.cpc;
        self.cpm = ratios.cpm;
        self.cpa = ratios.cpa;
        self.roas = ratios.roas;
    }
}

/// Sums partial rows (any partitions, any cells) into report rows, one per
/// `(account, campaign, ad, date)`, sorted by that key, with reach from the union of the
/// cell's sketches. Give it the *latest* partial of each `(partition, cell)`.
pub fn combine_partials(parts: &[DailyPartial]) -> Vec<DailyReportRow> {
    let mut m: std::collections::BTreeMap<CellKey, DailyReportRow> = std::collections::BTreeMap::new();
    let mut reach: std::collections::BTreeMap<CellKey, ReachUnion> = std::collections::BTreeMap::new();
    for p in parts {
        let k = CellKey {
            account_id: p.account_id,
            campaign_id: p.campaign_id.clone(),
            advertisement_id: p.advertisement_id.clone(),
            date: p.date,
        };
        let people = i64::try_from(p.reach).unwrap_or(i64::MAX);
        reach.entry(k.clone()).or_default().add(p.date, people, &p.reach_sketch);
        let r = m.entry(k).or_insert_with(|| DailyReportRow::empty(p));
        r.impressions = r.impressions.saturating_add(p.impressions);
        r.clicks = r.clicks.saturating_add(p.clicks);
        r.engagements = r.engagements.saturating_add(p.engagements);
        r.sessions = r.sessions.saturating_add(p.sessions);
        r.reported_impressions = r.reported_impressions.saturating_add(p.reported_impressions);
        r.reported_clicks = r.reported_clicks.saturating_add(p.reported_clicks);
        add_d(&mut r.conversions, p.conversions, 1);
        add_d(&mut r.revenue, p.revenue, 1);
        add_d(&mut r.cost, p.cost, 1);
    }
    m.into_iter()
        .map(|(k, mut r)| {
            r.reach = reach.get(&k).map_or(0, |u| u64::try_from(u.reach()).unwrap_or(0));
            r.derive();
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::FastMap;

    /// A borrowed key finds the cell of the owned key (same hash, same equality).
    #[test]
    fn borrowed_cell_keys_find_owned_ones() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap_or_default();
        let acct = Uuid::from_u128(7);
        let mut m: FastMap<CellKey, u32> = FastMap::default();
        for (i, ad) in [None, Some("ad-1"), Some("")].into_iter().enumerate() {
            let r = CellKeyRef { account_id: &acct, campaign_id: "camp", advertisement_id: ad, date };
            m.insert(r.to_key(), i as u32);
        }
        for (i, ad) in [None, Some("ad-1"), Some("")].into_iter().enumerate() {
            let r = CellKeyRef { account_id: &acct, campaign_id: "camp", advertisement_id: ad, date };
            let q: &dyn CellKeyView = &r;
            assert_eq!(m.get(q), Some(&(i as u32)));
        }
        let other = CellKeyRef { account_id: &acct, campaign_id: "campad-1", advertisement_id: None, date };
        let q: &dyn CellKeyView = &other;
        assert_eq!(m.get(q), None);
    }

    /// The hashes kept between flushes are always those of the cell's people now, whatever
    /// joined or left in between.
    #[test]
    fn kept_reach_hashes_follow_joins_and_leaves() {
        let people: Vec<crate::text::Text> = ["ann", "bob", "cat", "dan", "eve"].into_iter().map(crate::text::Text::from).collect();
        let whole = |cell: &Cell| {
            let mut h: Vec<u64> = cell.reach.keys().map(|k| identity_hash(k.as_str())).collect();
            h.sort_unstable();
            h
        };
        let mut cell = Cell::default();
        // (person, sign) steps, with a flush (reach_hashes) after each.
        let steps = [(0, 1), (1, 1), (0, 1), (2, 1), (3, 1), (1, -1), (4, 1), (0, -1), (1, 1), (0, -1), (3, 1)];
        for (who, sign) in steps {
            let Some(person) = people.get(who) else { continue };
            cell.reach_add(person, sign);
            if who % 2 == 0 {
                let want = whole(&cell);
                assert_eq!(cell.reach_hashes(), want.as_slice());
            }
        }
        let want = whole(&cell);
        assert_eq!(cell.reach_hashes(), want.as_slice());
        assert_eq!(cell.reach.len(), 4);
        let mut restored: Cell = serde_json::from_str(&serde_json::to_string(&cell).unwrap_or_default()).unwrap_or_default();
        restored.rehash_reach();
        assert_eq!(restored.reach_hashes(), want.as_slice());
        assert_eq!(restored.reach.values().map(|p| p.touches).sum::<u32>(), 5);
    }

    #[test]
    fn merging_sorted_hashes_keeps_them_sorted_and_distinct() {
        assert_eq!(merge_sorted(&[1, 3, 5], &[2, 3, 6, 7]), vec![1, 2, 3, 5, 6, 7]);
        assert_eq!(merge_sorted(&[], &[4]), vec![4]);
        assert_eq!(merge_sorted(&[4], &[]), vec![4]);
    }
}
