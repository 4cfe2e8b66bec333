//! The result rows every store holds (daily campaign metrics, attribution credits, and each
//! aggregator partition's partial metrics) and the one definition of the derived ratios.
//!
//! Every store publishes a daily metric row by summing the partial rows of its cell over all
//! partitions ([`publish_cells`]) and deriving the ratios from those sums
//! ([`DerivedRatios::of`]); ClickHouse derives them from its own sums with the same function.
//! So the ratios agree on every backend by construction, not by keeping copies in step.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::reach::ReachSketch;

/// Decimal places of the money ratios (cpc, cpm, cpa), as the `numeric(20, 6)` columns.
pub const RATIO_SCALE: u32 = 6;

/// One row of `campaign_performance_metrics`: absolute values for a (campaign, ad, day).
/// `advertisement_id` is `""` for campaign-level rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DailyMetricRow {
    pub account_id: Uuid,
    pub campaign_id: String,
    pub advertisement_id: String,
    pub metric_date: NaiveDate,
    pub impressions: i64,
    pub clicks: i64,
    pub reach: i64,
    pub frequency: Option<f64>,
    pub engagements: i64,
    pub sessions: i64,
    pub conversions: Decimal,
    pub revenue: Decimal,
    pub cost: Decimal,
    pub currency: Option<String>,
    pub ctr: Option<f64>,
    pub cpc: Option<Decimal>,
    pub cpm: Option<Decimal>,
    pub cpa: Option<Decimal>,
    pub roas: Option<f64>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
}

/// One row of `campaign_attributions`: the credit of one touch for one conversion under one
/// model, at a version. Rows of a newer version of (conversion, model) replace older ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributionRow {
    pub account_id: Uuid,
    pub conversion_id: String,
    pub touchpoint_id: String,
    pub attribution_model: String,
    pub version: i64,
    pub campaign_id: Option<String>,
    pub advertisement_id: Option<String>,
    pub customer_id: Option<String>,
    pub touchpoint_type: Option<String>,
    pub touchpoint_timestamp: Option<DateTime<Utc>>,
    pub channel_id: Option<String>,
    pub conversion_time: DateTime<Utc>,
    pub conversion_value: Option<Decimal>,
    pub currency: Option<String>,
    pub weight: f64,
    pub attributed_revenue: Decimal,
}

/// One partition's absolute daily metrics for a cell (`campaign_metric_partials`).
/// `advertisement_id` is `""` for campaign-level cells.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartialRow {
    pub account_id: Uuid,
    pub campaign_id: String,
    pub advertisement_id: String,
    pub metric_date: NaiveDate,
    pub partition: i32,
    pub impressions: i64,
    pub clicks: i64,
    pub reach: i64,
    pub engagements: i64,
    pub sessions: i64,
    pub conversions: Decimal,
    pub revenue: Decimal,
    pub cost: Decimal,
    pub reported_impressions: i64,
    pub reported_clicks: i64,
    /// The writer's epoch for the partition (bumped by every new owner): a write of an older
    /// epoch than the stored row's is ignored, so a previous owner that still writes after
    /// the partition moved (a revocation that timed out, a paused process) cannot overwrite
    /// its successor's values.
    pub epoch: u32,
    /// The [`ReachSketch`] bytes of the people `reach` counts, stored beside the counts so
    /// reach unions over partitions and days ([`ReachUnion`]). Empty for rows written before
    /// sketches: such a row adds its `reach` as it is.
    #[serde(default)]
    pub reach_sketch: Vec<u8>,
    /// The distinct identity hashes the sketch was built from, for a store that builds its
    /// own distinct-count state from them (ClickHouse's `uniqCombined`). Not stored, and empty
    /// in rows read back from a store.
    #[serde(skip)]
    pub reach_hashes: Vec<u64>,
    /// The currency of `revenue` and `cost` (the account's reporting currency), for a store
    /// without the catalog to publish it (ClickHouse). `None` where a store does not keep it.
    #[serde(default)]
    pub currency: Option<String>,
}

/// One partition's absolute clicks of one short link on one UTC day (`link_click_partials`).
/// A link's clicks are the sum over partitions and days.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClickPartialRow {
    pub account_id: Uuid,
    pub short_code: String,
    pub click_date: NaiveDate,
    pub partition: i32,
    pub human_clicks: i64,
    pub bot_clicks: i64,
    /// As [`PartialRow::epoch`]: a write of an older epoch than the stored row's is ignored.
    pub epoch: u32,
}

/// What joins the channels (and the campaigns) of a journey's touches in its path text, as
/// ChannelAttribution writes paths. A `>` inside a name is written as `›`, so the text splits
/// back into the same names.
pub const PATH_SEPARATOR: &str = " > ";

/// One partition's journeys of one account on one UTC day that followed one path
/// (`journey_partials`): a converting journey counts on its conversion's day, a journey that
/// ended without converting on the day of its last touch. Absolute counts; an account's paths
/// over a range are the sums over partitions and days ([`JourneyPathRow`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyPartialRow {
    pub account_id: Uuid,
    pub journey_date: NaiveDate,
    /// The channels of the journey's touches in order, joined by [`PATH_SEPARATOR`].
    pub channels: String,
    /// The campaign ids of the same touches, joined the same way (`(none)` for a touch
    /// without a campaign).
    pub campaigns: String,
    pub partition: i32,
    pub conversions: i64,
    pub non_conversions: i64,
    /// Revenue of the converting journeys, at 6 decimal places.
    pub revenue: Decimal,
    /// As [`PartialRow::epoch`]: a write of an older epoch than the stored row's is ignored.
    pub epoch: u32,
}

/// An account's journeys over a range of days that followed one path: the sums of the
/// [`JourneyPartialRow`]s of every partition and day, the input of the data-driven models.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyPathRow {
    pub channels: String,
    pub campaigns: String,
    pub conversions: i64,
    pub non_conversions: i64,
    pub revenue: Decimal,
}

/// The names of a path text, in order (the inverse of [`path_text`]).
pub fn path_names(path: &str) -> Vec<&str> {
    if path.is_empty() {
        Vec::new()
    } else {
        path.split(PATH_SEPARATOR).collect()
    }
}

/// The path text of `names`: each name with `>` written as `›`, joined by [`PATH_SEPARATOR`].
pub fn path_text<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            out.push_str(PATH_SEPARATOR);
        }
        if name.contains('>') {
            out.push_str(&name.replace('>', "›"));
        } else {
            out.push_str(name);
        }
    }
    out
}

/// The additive totals of one cell, from which the ratios derive. Ratios are not additive:
/// sum the totals first, then derive.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DailyTotals {
    pub impressions: i64,
    pub clicks: i64,
    pub reach: i64,
    pub conversions: Decimal,
    pub revenue: Decimal,
    pub cost: Decimal,
}

/// The derived ratios of a cell; each is `None` when its denominator is not positive.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DerivedRatios {
    /// impressions / reach.
    pub frequency: Option<f64>,
    /// clicks / impressions.
    pub ctr: Option<f64>,
    /// cost / clicks, to [`RATIO_SCALE`] places.
    pub cpc: Option<Decimal>,
    /// cost × 1000 / impressions, to [`RATIO_SCALE`] places.
    pub cpm: Option<Decimal>,
    /// cost / conversions, to [`RATIO_SCALE`] places.
    pub cpa: Option<Decimal>,
    /// revenue / cost.
    pub roas: Option<f64>,
}

impl DerivedRatios {
    /// The ratios of `t`. Counts divide in double precision; money ratios divide exactly and
    /// round half away from zero to six places, as Postgres's `round(numeric, 6)` does; roas
    /// divides the two amounts as doubles, each converted as Postgres casts numeric to double.
    pub fn of(t: &DailyTotals) -> DerivedRatios {
        DerivedRatios {
            frequency: count_ratio(t.impressions, t.reach),
            ctr: count_ratio(t.clicks, t.impressions),
            cpc: money_ratio(t.cost, Decimal::from(t.clicks)),
            cpm: t.cost.checked_mul(Decimal::ONE_THOUSAND).and_then(|c| money_ratio(c, Decimal::from(t.impressions))),
            cpa: money_ratio(t.cost, t.conversions),
            roas: (t.cost > Decimal::ZERO).then(|| decimal_to_f64(t.revenue) / decimal_to_f64(t.cost)),
        }
    }
}

fn count_ratio(numerator: i64, denominator: i64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

fn money_ratio(numerator: Decimal, denominator: Decimal) -> Option<Decimal> {
    if denominator <= Decimal::ZERO {
        return None;
    }
    numerator.checked_div(denominator).map(|q| q.round_dp_with_strategy(RATIO_SCALE, RoundingStrategy::MidpointAwayFromZero).normalize())
}

/// `Decimal → f64` through its shortest decimal text, which Rust parses correctly rounded:
/// the conversion Postgres applies when it casts numeric to double precision.
pub fn decimal_to_f64(d: Decimal) -> f64 {
    d.normalize().to_string().parse().unwrap_or(0.0)
}

impl DailyMetricRow {
    /// A published row of a cell: its totals and the ratios derived from them. Currency and
    /// UTM columns are left empty (they describe a campaign, not a sum).
    pub fn from_totals(account_id: Uuid, campaign_id: String, advertisement_id: String, metric_date: NaiveDate, sums: &CellSums) -> Self {
        let ratios = DerivedRatios::of(&sums.totals);
        DailyMetricRow {
            account_id,
            campaign_id,
            advertisement_id,
            metric_date,
            impressions: sums.totals.impressions,
            clicks: sums.totals.clicks,
            reach: sums.totals.reach,
            frequency: ratios.frequency,
            engagements: sums.engagements,
            sessions: sums.sessions,
            conversions: sums.totals.conversions.normalize(),
            revenue: sums.totals.revenue.normalize(),
            cost: sums.totals.cost.normalize(),
            currency: None,
            ctr: ratios.ctr,
            cpc: ratios.cpc,
            cpm: ratios.cpm,
            cpa: ratios.cpa,
            roas: ratios.roas,
            utm_source: None,
            utm_medium: None,
            utm_campaign: None,
        }
    }
}

/// Everything a published row sums over partitions. `totals.reach` is left at 0 while
/// summing: reach is not additive, it comes from the union ([`CellSums::finish`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CellSums {
    pub totals: DailyTotals,
    pub engagements: i64,
    pub sessions: i64,
    pub reach: ReachUnion,
}

impl CellSums {
    /// Adds one partition's row (of any day); `None` when a count overflows `i64` or money
    /// overflows `Decimal`.
    fn add(&mut self, p: &PartialRow) -> Option<()> {
        self.reach.add(p.metric_date, p.reach, &p.reach_sketch)?;
        let t = &mut self.totals;
        t.impressions = t.impressions.checked_add(p.impressions)?;
        t.clicks = t.clicks.checked_add(p.clicks)?;
        t.conversions = t.conversions.checked_add(p.conversions)?;
        t.revenue = t.revenue.checked_add(p.revenue)?;
        t.cost = t.cost.checked_add(p.cost)?;
        self.engagements = self.engagements.checked_add(p.engagements)?;
        self.sessions = self.sessions.checked_add(p.sessions)?;
        Some(())
    }

    /// The sums with the reach of the union set.
    fn finish(mut self) -> CellSums {
        self.totals.reach = self.reach.reach();
        self
    }
}

/// Reach over a set of partial rows: one cell's partitions (a day), or a campaign's cells over
/// a range of days. Reach is not additive (one person on two days, or stitched to a customer
/// counted on another partition, is one person: with link notices a customer is counted both on
/// their own partition and, through a stitched visitor's touch, on the visitor's), so it is the
/// distinct count of the union of the rows' people:
/// - for the rows of **one day** whose sketches are all exact (each partition reached at most
///   [`crate::reach::EXACT_LIMIT`] people that day), exactly, whatever the union's size: the
///   union of their hashes;
/// - otherwise, the distinct count of the union of the sketches: exact while it holds at most
///   [`crate::reach::EXACT_LIMIT`] people, else the HyperLogLog estimate (relative standard
///   error [`crate::reach::STANDARD_ERROR`]) — over several days, or on a day when some
///   partition reached more than that many people.
///
/// Rows written before sketches (empty `reach_sketch`) or whose sketch does not decode add
/// their `reach` to the count as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReachUnion {
    sketch: ReachSketch,
    /// The first day seen, and whether another day was seen.
    days: Option<(NaiveDate, bool)>,
    /// The sorted distinct union of the hashes of the rows with a sketch, while they are all
    /// of one day and exact (`sketch_only` false); emptied otherwise.
    day_hashes: Vec<u64>,
    /// Whether a row's sketch was dense or a second day was seen: `day_hashes` is not kept.
    sketch_only: bool,
    /// Sum of the `reach` of the rows without a (readable) sketch.
    unsketched_sum: i64,
}

impl ReachUnion {
    /// Adds one partial row's reach; `None` when a sum overflows `i64`.
    pub fn add(&mut self, date: NaiveDate, reach: i64, sketch: &[u8]) -> Option<()> {
        self.days = Some(match self.days {
            None => (date, false),
            Some((first, several)) => (first, several || first != date),
        });
        match ReachSketch::from_bytes(sketch) {
            Ok(s) => {
                let several_days = matches!(self.days, Some((_, true)));
                match s.exact_hashes() {
                    Some(hashes) if !self.sketch_only && !several_days => {
                        self.day_hashes = crate::reach::union_sorted(&self.day_hashes, hashes);
                    }
                    _ => {
                        self.sketch_only = true;
                        self.day_hashes = Vec::new();
                    }
                }
                self.sketch.merge(&s);
            }
            Err(_) => self.unsketched_sum = self.unsketched_sum.checked_add(reach)?,
        }
        Some(())
    }

    /// The reach of the rows added (see the type's docs).
    pub fn reach(&self) -> i64 {
        let sketched = if self.sketch_only { self.sketch.count() } else { self.day_hashes.len() as u64 };
        i64::try_from(sketched).unwrap_or(i64::MAX).saturating_add(self.unsketched_sum)
    }

    /// Whether [`ReachUnion::reach`] is an estimate: the union of the sketches holds more than
    /// [`crate::reach::EXACT_LIMIT`] people, and they are of several days or one of them was
    /// dense.
    pub fn is_estimate(&self) -> bool {
        self.sketch_only && !self.sketch.is_exact()
    }
}

/// A cell's totals would not fit: a sum of partials overflowed.
#[derive(Debug, thiserror::Error)]
#[error("the metrics of campaign {campaign_id:?}, advertisement {advertisement_id:?} on {metric_date} overflow when summed")]
pub struct SumOverflow {
    pub campaign_id: String,
    pub advertisement_id: String,
    pub metric_date: NaiveDate,
}

/// The published rows of the cells in `parts`: per (account, campaign, ad, day), the sum of
/// every partition's partial row, with ratios derived from the sums, in the currency the
/// partials carry. Give it every stored partial of each cell (one per partition); rows come
/// out sorted by cell.
pub fn publish_cells(parts: &[PartialRow]) -> Result<Vec<DailyMetricRow>, SumOverflow> {
    type Cell<'a> = (Uuid, &'a str, &'a str, NaiveDate);
    let mut cells: BTreeMap<Cell<'_>, (CellSums, Option<&str>)> = BTreeMap::new();
    for p in parts {
        let (sums, currency) = cells.entry((p.account_id, &p.campaign_id, &p.advertisement_id, p.metric_date)).or_default();
        sums.add(p).ok_or_else(|| SumOverflow {
            campaign_id: p.campaign_id.clone(),
            advertisement_id: p.advertisement_id.clone(),
            metric_date: p.metric_date,
        })?;
        *currency = currency.or(p.currency.as_deref());
    }
    Ok(cells
        .into_iter()
        .map(|((account, campaign, ad, date), (sums, currency))| DailyMetricRow {
            currency: currency.map(str::to_owned),
            ..DailyMetricRow::from_totals(account, campaign.to_owned(), ad.to_owned(), date, &sums.finish())
        })
        .collect())
}

/// The metrics of one campaign/advertisement over a range of days: the sums of its partial
/// rows over every partition and day, reach from the union of their sketches ([`ReachUnion`]),
/// and the ratios derived from those (frequency = impressions / reach over the range).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RangeMetricRow {
    pub account_id: Uuid,
    pub campaign_id: String,
    /// `""` for campaign-level rows.
    pub advertisement_id: String,
    /// The first and last day with a partial row.
    pub first_date: NaiveDate,
    pub last_date: NaiveDate,
    /// Whether `reach` (and so `frequency`) is a HyperLogLog estimate rather than exact.
    pub reach_estimated: bool,
    /// Every total and ratio of the range; its `metric_date` is `first_date`.
    pub metrics: DailyMetricRow,
}

/// The [`RangeMetricRow`]s of `parts` (every stored partial of every partition and day of the
/// range), one per (account, campaign, advertisement), sorted by that key.
pub fn summarize_range(parts: &[PartialRow]) -> Result<Vec<RangeMetricRow>, SumOverflow> {
    let mut groups: BTreeMap<(Uuid, &str, &str), (CellSums, NaiveDate, NaiveDate)> = BTreeMap::new();
    for p in parts {
        let (sums, first, last) = groups
            .entry((p.account_id, &p.campaign_id, &p.advertisement_id))
            .or_insert_with(|| (CellSums::default(), p.metric_date, p.metric_date));
        *first = (*first).min(p.metric_date);
        *last = (*last).max(p.metric_date);
        sums.add(p).ok_or_else(|| SumOverflow {
            campaign_id: p.campaign_id.clone(),
            advertisement_id: p.advertisement_id.clone(),
            metric_date: p.metric_date,
        })?;
    }
    Ok(groups
        .into_iter()
        .map(|((account, campaign, ad), (sums, first, last))| {
            let reach_estimated = sums.reach.is_estimate();
            RangeMetricRow {
                account_id: account,
                campaign_id: campaign.to_owned(),
                advertisement_id: ad.to_owned(),
                first_date: first,
                last_date: last,
                reach_estimated,
                metrics: DailyMetricRow::from_totals(account, campaign.to_owned(), ad.to_owned(), first, &sums.finish()),
            }
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn path_text_splits_back_into_its_names() {
        let names = ["google/cpc", "email", "a>b"];
        let text = path_text(names);
        assert_eq!(text, "google/cpc > email > a›b");
        assert_eq!(path_names(&text), vec!["google/cpc", "email", "a›b"]);
        assert_eq!(path_text([]), "");
        assert!(path_names("").is_empty());
    }

    fn totals(impressions: i64, clicks: i64, reach: i64, conversions: &str, revenue: &str, cost: &str) -> DailyTotals {
        DailyTotals { impressions, clicks, reach, conversions: d(conversions), revenue: d(revenue), cost: d(cost) }
    }

    #[test]
    fn cost_200_over_3_conversions_is_66_666667() {
        // 200 / 3 = 66.6666…: the sixth place rounds up. Whole-number operands must not
        // divide as integers (66).
        let r = DerivedRatios::of(&totals(0, 0, 0, "3", "0", "200"));
        assert_eq!(r.cpa, Some(d("66.666667")));
    }

    #[test]
    fn money_ratios_round_half_away_from_zero() {
        // 0.0000005 per click is exactly half a unit of the sixth place: away from zero
        // gives 0.000001, half-to-even would give 0.
        let r = DerivedRatios::of(&totals(0, 2, 0, "0", "0", "0.000001"));
        assert_eq!(r.cpc, Some(d("0.000001")));
        // 2.5 µ per impression × 1000 = 0.0025, exact.
        let r = DerivedRatios::of(&totals(4, 0, 0, "0", "0", "0.00001"));
        assert_eq!(r.cpm, Some(d("0.0025")));
    }

    #[test]
    fn every_ratio_by_hand() {
        // 1000 impressions, 50 clicks, 400 people, 4 conversions, revenue 250.50, cost 100.
        let r = DerivedRatios::of(&totals(1000, 50, 400, "4", "250.50", "100"));
        assert_eq!(r.frequency, Some(2.5));
        assert_eq!(r.ctr, Some(0.05));
        assert_eq!(r.cpc, Some(d("2")));
        assert_eq!(r.cpm, Some(d("100")));
        assert_eq!(r.cpa, Some(d("25")));
        assert_eq!(r.roas, Some(2.505));
    }

    #[test]
    fn no_ratio_without_a_positive_denominator() {
        let r = DerivedRatios::of(&totals(0, 0, 0, "0", "10", "0"));
        assert_eq!(r, DerivedRatios::default());
        let r = DerivedRatios::of(&totals(5, 0, 0, "-1", "10", "-3"));
        assert_eq!((r.cpa, r.roas, r.frequency), (None, None, None));
    }

    fn partial(partition: i32, campaign: &str, impressions: i64, cost: &str) -> PartialRow {
        PartialRow {
            account_id: Uuid::nil(),
            campaign_id: campaign.into(),
            advertisement_id: String::new(),
            metric_date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            partition,
            impressions,
            clicks: impressions / 10,
            reach: impressions / 2,
            engagements: 1,
            sessions: 2,
            conversions: d("1"),
            revenue: d("0.10"),
            cost: d(cost),
            reported_impressions: 0,
            reported_clicks: 0,
            epoch: 1,
            reach_sketch: Vec::new(),
            reach_hashes: Vec::new(),
            currency: None,
        }
    }

    #[test]
    fn a_cell_sums_its_partitions_then_derives() {
        // Two partitions of cell a: 100 + 300 impressions, cost 0.10 + 0.20 (exactly 0.3,
        // which f64 would not give), 2 conversions: cpa 0.15, cpm 0.75.
        let rows = publish_cells(&[partial(0, "a", 100, "0.10"), partial(1, "b", 10, "1"), partial(1, "a", 300, "0.20")]).unwrap();
        assert_eq!(rows.len(), 2);
        let a = &rows[0];
        assert_eq!((a.campaign_id.as_str(), a.impressions, a.clicks, a.reach), ("a", 400, 40, 200));
        assert_eq!((a.cost, a.conversions, a.revenue, a.engagements, a.sessions), (d("0.3"), d("2"), d("0.2"), 2, 4));
        assert_eq!((a.cpa, a.cpm, a.cpc), (Some(d("0.15")), Some(d("0.75")), Some(d("0.0075"))));
        assert_eq!(rows[1].campaign_id, "b");
    }

    #[test]
    fn an_overflowing_sum_names_its_cell() {
        let e = publish_cells(&[partial(0, "a", i64::MAX, "0"), partial(1, "a", 1, "0")]).unwrap_err();
        assert!(e.to_string().contains("campaign \"a\""), "{e}");
    }

    fn day(n: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, n).unwrap()
    }

    /// A partial of campaign "a" on day `date` whose people are `people`.
    fn people_row(partition: i32, date: NaiveDate, people: &[String]) -> PartialRow {
        let sketch = ReachSketch::of_identities(people.iter().map(String::as_str));
        PartialRow {
            metric_date: date,
            impressions: people.len() as i64,
            reach: sketch.count() as i64,
            reach_sketch: sketch.to_bytes(),
            ..partial(partition, "a", 0, "0")
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn one_person_on_two_partitions_of_a_day_is_one() {
        // Partition 0 counted ann and bob (bob a visitor stitched to customer bob), partition 1
        // counted bob and cat: the day reached 3 people, not 2 + 2.
        let rows =
            publish_cells(&[people_row(0, day(1), &names(&["ann", "bob"])), people_row(1, day(1), &names(&["bob", "cat"]))]).unwrap();
        assert_eq!((rows.len(), rows[0].reach, rows[0].impressions), (1, 3, 4));
        assert_eq!(rows[0].frequency, Some(4.0 / 3.0));
    }

    #[test]
    fn three_people_over_two_days_with_one_in_common() {
        // Day 1: ann, bob; day 2: bob, cat. Each day reached 2, the two days 3 (not 4), with 4
        // impressions: frequency 4/3 over the range, 1 on each day.
        let parts = [people_row(0, day(1), &names(&["ann", "bob"])), people_row(0, day(2), &names(&["bob", "cat"]))];
        let daily = publish_cells(&parts).unwrap();
        assert_eq!(daily.iter().map(|r| r.reach).collect::<Vec<_>>(), vec![2, 2]);
        let range = summarize_range(&parts).unwrap();
        assert_eq!(range.len(), 1);
        let r = &range[0];
        assert_eq!((r.first_date, r.last_date, r.reach_estimated), (day(1), day(2), false));
        assert_eq!((r.metrics.reach, r.metrics.impressions, r.metrics.frequency), (3, 4, Some(4.0 / 3.0)));
    }

    #[test]
    fn a_row_without_a_sketch_adds_its_reach() {
        // Written before sketches: 5 people nobody can dedupe, plus ann from a sketched row.
        let legacy = PartialRow { reach: 5, ..partial(1, "a", 0, "0") };
        let rows = publish_cells(&[legacy, people_row(0, day(1), &names(&["ann"]))]).unwrap();
        assert_eq!(rows[0].reach, 6);
    }

    #[test]
    fn a_large_day_stays_exact_and_a_large_range_is_estimated_within_the_bound() {
        // 2,000 people on each of two partitions, disjoint: 4,000, past the exact limit.
        let first: Vec<String> = (0..2000).map(|i| format!("p{i}")).collect();
        let second: Vec<String> = (2000..4000).map(|i| format!("p{i}")).collect();
        let one_day = publish_cells(&[people_row(0, day(1), &first), people_row(1, day(1), &second)]).unwrap();
        assert_eq!(one_day[0].reach, 4000, "one day: the union of the partitions' hashes");
        let range = summarize_range(&[people_row(0, day(1), &first), people_row(0, day(2), &second)]).unwrap();
        let r = &range[0];
        assert!(r.reach_estimated);
        // Within 5 standard errors (1.04/√2¹⁴ each) of the true 4,000.
        let bound = 5.0 * crate::reach::STANDARD_ERROR * 4000.0;
        assert!((r.metrics.reach as f64 - 4000.0).abs() <= bound, "{} vs 4000 ± {bound}", r.metrics.reach);
    }

    #[test]
    fn a_large_day_counts_a_person_on_two_partitions_once() {
        // 2,000 people on each of two partitions, 1,000 of them on both (customers counted on
        // their own partition and, through a stitched visitor, on the visitor's): 3,000 people,
        // past the exact limit, counted exactly from the hashes (the sum would say 4,000).
        let first: Vec<String> = (0..2000).map(|i| format!("p{i}")).collect();
        let second: Vec<String> = (1000..3000).map(|i| format!("p{i}")).collect();
        let rows = publish_cells(&[people_row(0, day(1), &first), people_row(1, day(1), &second)]).unwrap();
        assert_eq!(rows[0].reach, 3000);
        let mut union = ReachUnion::default();
        for p in [people_row(1, day(1), &second), people_row(0, day(1), &first)] {
            union.add(p.metric_date, p.reach, &p.reach_sketch).unwrap();
        }
        assert_eq!((union.reach(), union.is_estimate()), (3000, false));
    }

    #[test]
    fn a_day_with_a_dense_partition_is_the_estimate_of_the_union() {
        // Partition 0 reached 3,000 people (a dense sketch), partition 1 1,000 of the same:
        // 3,000 people, estimated, not 4,000.
        let first: Vec<String> = (0..3000).map(|i| format!("p{i}")).collect();
        let second: Vec<String> = (2000..3000).map(|i| format!("p{i}")).collect();
        let mut union = ReachUnion::default();
        for p in [people_row(0, day(1), &first), people_row(1, day(1), &second)] {
            union.add(p.metric_date, p.reach, &p.reach_sketch).unwrap();
        }
        assert!(union.is_estimate());
        let bound = 5.0 * crate::reach::STANDARD_ERROR * 3000.0;
        assert!((union.reach() as f64 - 3000.0).abs() <= bound, "{} vs 3000 ± {bound}", union.reach());
    }

    proptest! {
        /// cpa × conversions is within half a unit of the sixth place (times conversions) of
        /// the cost: the rounding is to the nearest.
        #[test]
        fn cpa_is_the_nearest_six_place_quotient(cost in 0i64..10_000_000_000, conv in 1i64..1_000_000) {
            let cost = Decimal::new(cost, 2);
            let conversions = Decimal::new(conv, 2);
            let cpa = DerivedRatios::of(&DailyTotals { conversions, cost, ..DailyTotals::default() }).cpa.unwrap();
            let half_unit = Decimal::new(5, 7) * conversions;
            prop_assert!((cpa * conversions - cost).abs() <= half_unit, "cpa {cpa} × {conversions} vs {cost}");
            prop_assert!(cpa.scale() <= RATIO_SCALE);
        }

        #[test]
        fn decimal_to_f64_is_correctly_rounded(m in any::<i64>(), scale in 0u32..=12) {
            let v = Decimal::new(m, scale);
            let expect: f64 = format!("{v}").parse().unwrap();
            prop_assert_eq!(decimal_to_f64(v), expect);
        }

        /// Summing partials in any order gives the same published row.
        #[test]
        fn publishing_does_not_depend_on_row_order(costs in proptest::collection::vec(0i64..1_000_000, 1..8)) {
            let parts: Vec<PartialRow> =
                costs.iter().enumerate().map(|(i, c)| partial(i as i32, "a", *c, &Decimal::new(*c, 3).to_string())).collect();
            let mut reversed = parts.clone();
            reversed.reverse();
            prop_assert_eq!(publish_cells(&parts).unwrap(), publish_cells(&reversed).unwrap());
        }
    }
}
