//! Currencies: exchange rates, the conversion of a record's amount into its account's reporting
//! currency, and the records that wait for a rate.
//!
//! Rules (docs/attribution.md, "Currencies"):
//! - A conversion's value is converted at the rate of its timestamp, a spend report's cost at
//!   the rate of its `date` at 00:00 UTC.
//! - The rate of a pair at a time is the row with the latest `valid_from` at or before it,
//!   unless that row's `valid_until` (exclusive) has passed. The direct pair (from → to) is
//!   used when it covers the time, else the inverse pair (to → from), dividing by its rate.
//! - The converted amount is rounded to the six decimal places every amount in touchline has
//!   (half to even), the places the stores keep: the attribution split and the daily sums
//!   then work on exactly what is stored.
//! - An amount already in the reporting currency, an amount of zero and a conversion without
//!   currency (it has no value) need no rate.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use touchline_model::{round_money, Currency};
use uuid::Uuid;

/// One row of an exchange-rate pair: 1 unit of the pair's `from` is worth `rate` of its `to`
/// from `valid_from` until `valid_until` (exclusive; `None`: until the next row).
#[derive(Clone, Debug, PartialEq)]
pub struct RateRow {
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub rate: Decimal,
}

/// Exchange rates by pair, each pair's rows sorted by `valid_from`. Supplied by the runtime
/// from the catalog table `currency_rates`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rates {
    pairs: HashMap<(Currency, Currency), Vec<RateRow>>,
}

impl Rates {
    /// Adds a row (a row of the same pair and `valid_from` is replaced). A rate that is not
    /// positive, or a pair of one currency, is ignored and returned as `false`.
    pub fn insert(&mut self, from: Currency, to: Currency, row: RateRow) -> bool {
        if from == to || row.rate <= Decimal::ZERO {
            return false;
        }
        let rows = self.pairs.entry((from, to)).or_default();
        match rows.binary_search_by(|r| r.valid_from.cmp(&row.valid_from)) {
            Ok(i) => rows[i] = row,
            Err(i) => rows.insert(i, row),
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The row of `(from, to)` that covers `at`, if any.
    fn covering(&self, from: Currency, to: Currency, at: DateTime<Utc>) -> Option<&RateRow> {
        let rows = self.pairs.get(&(from, to))?;
        let n = rows.partition_point(|r| r.valid_from <= at);
        let row = rows.get(n.checked_sub(1)?)?;
        row.valid_until.is_none_or(|u| at < u).then_some(row)
    }

    /// `amount` of `from` in `to` at `at`, rounded to six places; `None` when no rate covers
    /// `at` (or the product overflows, which amounts below 10^12 and sane rates never do).
    pub fn convert(&self, amount: Decimal, from: Currency, to: Currency, at: DateTime<Utc>) -> Option<Decimal> {
        if from == to || amount.is_zero() {
            return Some(amount);
        }
        let exact = match self.covering(from, to, at) {
            Some(direct) => amount.checked_mul(direct.rate)?,
            None => amount.checked_div(self.covering(to, from, at)?.rate)?,
        };
        Some(round_money(exact).normalize().max(Decimal::ZERO))
    }
}

/// The time whose rate converts a spend report of `date`: 00:00 UTC of that day.
pub fn spend_rate_time(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// A record whose amount waits for an exchange rate (part of the engine state).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Waiting {
    pub account: Uuid,
    /// The currency the record's amount is in.
    pub currency: Currency,
    /// The time whose rate converts it.
    pub at: DateTime<Utc>,
    /// A spend report (its lateness is its day's), else a conversion.
    #[serde(default)]
    pub spend: bool,
    /// The record as the bus carries it (JSON).
    pub record: String,
}

/// A record the engine gives up on, for the runtime's dead-letter queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefusedRecord {
    /// Why, in the DLQ's words (`no_exchange_rate: …`).
    pub reason: String,
    /// The record as the bus carries it (JSON).
    pub record: String,
}

/// Records a partition holds while they wait for a rate, by default: beyond it a record
/// without a rate is refused to the DLQ ([`crate::Ingest::NoRate`]).
pub const DEFAULT_MAX_WAITING_FOR_RATE: usize = 100_000;

/// Bytes of waiting records (their JSON) a partition holds by default: records differ in size
/// by orders of magnitude, so the count alone would not bound memory.
pub const DEFAULT_MAX_WAITING_FOR_RATE_BYTES: usize = 64 << 20;

/// Bytes the waiting records hold (their JSON), as the bound counts them.
pub(crate) fn waiting_bytes(waiting: &[Waiting]) -> usize {
    waiting.iter().map(|w| w.record.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Currency {
        Currency::new(s).unwrap()
    }
    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }
    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }
    fn row(from: &str, until: Option<&str>, rate: &str) -> RateRow {
        RateRow { valid_from: t(from), valid_until: until.map(t), rate: d(rate) }
    }

    #[test]
    fn the_latest_row_covering_the_time_wins() {
        let mut r = Rates::default();
        r.insert(c("EUR"), c("USD"), row("2026-11-01T00:00:00Z", None, "1.10"));
        r.insert(c("EUR"), c("USD"), row("2026-11-10T00:00:00Z", Some("2026-11-11T00:00:00Z"), "1.20"));
        let conv = |at| r.convert(d("100.00"), c("EUR"), c("USD"), t(at));
        assert_eq!(conv("2026-10-31T23:59:59Z"), None, "before the first row");
        // 100.00 × 1.10 = 110.0000
        assert_eq!(conv("2026-11-05T12:00:00Z"), Some(d("110")));
        // 100.00 × 1.20 = 120.0000
        assert_eq!(conv("2026-11-10T00:00:00Z"), Some(d("120")));
        // The 1.20 row ended at 11-11 00:00 (exclusive) and no later row starts: no rate.
        assert_eq!(conv("2026-11-11T00:00:00Z"), None);
    }

    #[test]
    fn the_inverse_pair_divides_and_the_direct_one_is_preferred() {
        let mut r = Rates::default();
        r.insert(c("USD"), c("VND"), row("2026-11-01T00:00:00Z", None, "25400"));
        // 1,000,000 VND / 25,400 = 39.370078740… → 39.370079
        assert_eq!(r.convert(d("1000000"), c("VND"), c("USD"), t("2026-11-02T00:00:00Z")), Some(d("39.370079")));
        r.insert(c("VND"), c("USD"), row("2026-11-01T00:00:00Z", None, "0.00004"));
        // 1,000,000 × 0.00004 = 40
        assert_eq!(r.convert(d("1000000"), c("VND"), c("USD"), t("2026-11-02T00:00:00Z")), Some(d("40")));
    }

    #[test]
    fn nothing_to_convert_needs_no_rate() {
        let r = Rates::default();
        assert_eq!(r.convert(d("12.5"), c("USD"), c("USD"), t("2026-11-02T00:00:00Z")), Some(d("12.5")));
        assert_eq!(r.convert(d("0"), c("EUR"), c("USD"), t("2026-11-02T00:00:00Z")), Some(d("0")));
        assert_eq!(r.convert(d("1"), c("EUR"), c("USD"), t("2026-11-02T00:00:00Z")), None);
    }

    #[test]
    fn bad_rows_are_ignored() {
        let mut r = Rates::default();
        assert!(!r.insert(c("EUR"), c("EUR"), row("2026-11-01T00:00:00Z", None, "1")));
        assert!(!r.insert(c("EUR"), c("USD"), row("2026-11-01T00:00:00Z", None, "0")));
        assert!(r.is_empty());
    }
}
