//! Clicks per short link and day: what the link listing shows, kept as a result like the
//! daily metrics instead of a scan of raw rows.
//!
//! The engine of partition `p` counts the `link_click` records it holds per
//! `(account, short code, UTC day)`, human and bot apart, and emits [`LinkClickPartial`]s with
//! the **absolute** counts of that partition, so a store upserts them idempotently and the
//! link's clicks are the sum over partitions and days. The sum is exact: a record lives on one
//! partition (the bus key is its identity), and each partition counts a record id once, for as
//! long as a record of that time is still accepted (the dedup entries age out with the allowed
//! lateness, like the event dedup entries).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::text::Text;
use crate::util::{FastMap, FastSet};

/// One partition's clicks of one short link on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClickPartial {
    pub partition: u32,
    pub account_id: Uuid,
    pub short_code: String,
    pub date: NaiveDate,
    pub human_clicks: u64,
    pub bot_clicks: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct DayKey {
    account_id: Uuid,
    short_code: Text,
    date: NaiveDate,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counts {
    human: u64,
    bot: u64,
}

/// The click counts of a partition, their dedup entries and what changed since the last flush.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LinkClicks {
    days: FastMap<DayKey, Counts>,
    /// account → record id of clicks counted → click time.
    seen: FastMap<Uuid, FastMap<Text, DateTime<Utc>>>,
    dirty: FastSet<DayKey>,
}

impl LinkClicks {
    /// Counts one click of `code`; false when this record id was counted already.
    pub fn count(&mut self, account: Uuid, code: &str, record_id: &str, at: DateTime<Utc>, bot: bool) -> bool {
        let seen = self.seen.entry(account).or_default();
        if seen.contains_key(record_id) {
            return false;
        }
        seen.insert(Text::new(record_id), at);
        let key = DayKey { account_id: account, short_code: Text::new(code), date: at.date_naive() };
        let counts = self.days.entry(key.clone()).or_default();
        if bot {
            counts.bot = counts.bot.saturating_add(1);
        } else {
            counts.human = counts.human.saturating_add(1);
        }
        self.dirty.insert(key);
        true
    }

    /// The absolute counts of every day changed since the last call, sorted.
    pub fn flush(&mut self, partition: u32) -> Vec<LinkClickPartial> {
        let mut keys: Vec<DayKey> = std::mem::take(&mut self.dirty).into_iter().collect();
        keys.sort_unstable();
        keys.into_iter()
            .filter_map(|k| {
                let c = self.days.get(&k)?;
                Some(LinkClickPartial {
                    partition,
                    account_id: k.account_id,
                    short_code: k.short_code.as_str().to_owned(),
                    date: k.date,
                    human_clicks: c.human,
                    bot_clicks: c.bot,
                })
            })
            .collect()
    }

    /// Forgets dedup entries older than `cutoff` (no record that old is accepted any more) and
    /// the counts of days before `min_date` that are not waiting for a flush.
    pub fn evict(&mut self, cutoff: DateTime<Utc>, min_date: Option<NaiveDate>) {
        self.seen.retain(|_, m| {
            m.retain(|_, t| *t >= cutoff);
            !m.is_empty()
        });
        if let Some(min_date) = min_date {
            let dirty = &self.dirty;
            self.days.retain(|k, _| k.date >= min_date || dirty.contains(k));
        }
    }

    #[cfg(test)]
    fn days(&self) -> usize {
        self.days.len()
    }
}

/// An account's counted record ids with their click times, sorted.
type SeenIds = Vec<(Text, DateTime<Utc>)>;

/// How a snapshot holds [`LinkClicks`]: sorted lists, so equal states write equal bytes.
#[derive(Default, Serialize, Deserialize)]
struct LinkClicksRepr {
    days: Vec<(DayKey, Counts)>,
    seen: Vec<(Uuid, SeenIds)>,
    dirty: Vec<DayKey>,
}

impl Serialize for LinkClicks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut days: Vec<(DayKey, Counts)> = self.days.iter().map(|(k, c)| (k.clone(), *c)).collect();
        days.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut seen: Vec<(Uuid, SeenIds)> = self
            .seen
            .iter()
            .map(|(a, m)| {
                let mut ids: SeenIds = m.iter().map(|(id, t)| (id.clone(), *t)).collect();
                ids.sort_unstable();
                (*a, ids)
            })
            .collect();
        seen.sort_unstable_by_key(|(a, _)| *a);
        let mut dirty: Vec<DayKey> = self.dirty.iter().cloned().collect();
        dirty.sort_unstable();
        LinkClicksRepr { days, seen, dirty }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for LinkClicks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<LinkClicks, D::Error> {
        let r = LinkClicksRepr::deserialize(d)?;
        Ok(LinkClicks {
            days: r.days.into_iter().collect(),
            seen: r.seen.into_iter().map(|(a, ids)| (a, ids.into_iter().collect::<FastMap<_, _>>())).collect(),
            dirty: r.dirty.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;

    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
    }

    const A: Uuid = Uuid::from_u128(1);

    #[test]
    fn counts_each_record_once_per_day_and_kind() {
        let mut lc = LinkClicks::default();
        assert!(lc.count(A, "spring", "r1", at(1, 10), false));
        assert!(lc.count(A, "spring", "r2", at(1, 23), true));
        assert!(!lc.count(A, "spring", "r1", at(1, 10), false), "a repeated record id is not counted again");
        assert!(lc.count(A, "spring", "r3", at(2, 0), false));
        let out = lc.flush(4);
        let got: Vec<(NaiveDate, u64, u64, u32)> = out.iter().map(|p| (p.date, p.human_clicks, p.bot_clicks, p.partition)).collect();
        assert_eq!(got, vec![(at(1, 0).date_naive(), 1, 1, 4), (at(2, 0).date_naive(), 1, 0, 4)]);
        assert!(lc.flush(4).is_empty(), "nothing changed since the last flush");
    }

    #[test]
    fn a_flush_carries_absolute_counts() {
        let mut lc = LinkClicks::default();
        lc.count(A, "x", "r1", at(1, 1), false);
        lc.flush(0);
        lc.count(A, "x", "r2", at(1, 2), false);
        assert_eq!(lc.flush(0)[0].human_clicks, 2);
    }

    #[test]
    fn eviction_keeps_days_waiting_for_a_flush_and_forgets_old_record_ids() {
        let mut lc = LinkClicks::default();
        lc.count(A, "x", "r1", at(1, 1), false);
        lc.evict(at(5, 0), Some(at(4, 0).date_naive()));
        assert_eq!(lc.days(), 1, "a day not yet flushed stays");
        assert_eq!(lc.flush(0).len(), 1);
        lc.evict(at(5, 0), Some(at(4, 0).date_naive()));
        assert_eq!(lc.days(), 0);
        assert!(lc.count(A, "x", "r1", at(1, 1), false), "the dedup entry aged out");
    }

    #[test]
    fn a_snapshot_round_trips_and_is_the_same_for_equal_states() {
        let mut a = LinkClicks::default();
        let mut b = LinkClicks::default();
        for (id, code) in [("r1", "x"), ("r2", "y"), ("r3", "x")] {
            a.count(A, code, id, at(1, 1), false);
        }
        for (id, code) in [("r3", "x"), ("r2", "y"), ("r1", "x")] {
            b.count(A, code, id, at(1, 1), false);
        }
        let (ja, jb) = (serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        assert_eq!(ja, jb);
        let back: LinkClicks = serde_json::from_str(&ja).unwrap();
        assert_eq!(back.days, a.days);
        assert_eq!(back.seen, a.seen);
    }
}
