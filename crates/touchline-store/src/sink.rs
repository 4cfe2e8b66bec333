//! The sink seam: every store the aggregator writes a flush to implements [`Sink`]: the SQL
//! stores (`touchline_sql::SqlSink`), ClickHouse and the Parquet warehouse. Here too are the
//! rows a flush becomes ([`attribution_rows`], [`partial_row`]) and the isolation of rows a
//! store refuses ([`write_isolating`]).

use async_trait::async_trait;
use touchline_engine::{AttributionSet, DailyPartial, Flush, JourneyPartial, LinkClickPartial};
use touchline_model::results::{AttributionRow, JourneyPartialRow, LinkClickPartialRow, PartialRow};
use touchline_model::Record;

/// One flush of one partition.
pub struct SinkBatch<'a> {
    pub partition: u32,
    /// Bumped at every start of the partition; see the crate docs on versions.
    pub epoch: u32,
    /// Every record consumed since the last flush (raw tables; insert-or-ignore by record id).
    pub raw: &'a [Record],
    /// The offset of each raw record in its topic (this partition's), in the same order.
    pub raw_offsets: &'a [u64],
    pub flush: &'a Flush,
}

/// A write that did not happen and is worth retrying: the store was unreachable, busy, out of
/// space or timed out. Rows a store refuses as invalid are not errors: they come back as
/// [`RefusedRow`]s, so one bad row never stalls a partition.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// A row a sink refused as invalid (retrying it cannot succeed), bound for `touchline.dlq`.
#[derive(Clone, Debug, PartialEq)]
pub struct RefusedRow {
    pub sink: String,
    /// `raw`, `attribution`, `partial`, `link_clicks` or `journeys`.
    pub kind: &'static str,
    /// The row's identity (record id, conversion/touch/model, or cell), also the DLQ key.
    pub key: String,
    pub row: serde_json::Value,
    /// What the store said.
    pub reason: String,
}

/// A destination for results. Writes must be idempotent: the runtime repeats a batch after a
/// crash or a failed write. Rows the store refuses as invalid are returned, the rest written.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    fn name(&self) -> &str;
    async fn write(&self, batch: &SinkBatch<'_>) -> Result<Vec<RefusedRow>, SinkError>;

    /// Called when `partition` starts reading at `offsets` (its checkpoint's, or a replay's
    /// start), before anything is written: a sink that is not idempotent by row removes the raw
    /// records it holds at or past them, since the partition is about to write them again.
    async fn resume(&self, _partition: u32, _offsets: &std::collections::BTreeMap<String, u64>) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Writes `rows` with `write`. When the store refuses a batch as invalid (`refused` says which
/// errors mean that), the batch is split in halves until the refused rows stand alone, and
/// every other row is written: `k` bad rows among `n` cost about `2k log2 n` extra writes.
/// Any other error stops the write, to be retried as a whole (writes are idempotent).
pub async fn write_isolating<'r, T, E, F, Fut>(
    rows: &'r [T],
    mut write: F,
    refused: impl Fn(&E) -> bool,
) -> Result<Vec<(&'r T, String)>, SinkError>
where
    F: FnMut(&'r [T]) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut out = Vec::new();
    let mut pending = vec![rows];
    while let Some(part) = pending.pop() {
        if part.is_empty() {
            continue;
        }
        match write(part).await {
            Ok(()) => {}
            Err(e) if refused(&e) => {
                if let [row] = part {
                    out.push((row, e.to_string()));
                } else {
                    let (a, b) = part.split_at(part.len() / 2);
                    pending.push(b);
                    pending.push(a);
                }
            }
            Err(e) => return Err(SinkError(e.to_string())),
        }
    }
    Ok(out)
}

impl RefusedRow {
    pub fn raw(sink: &str, r: &Record, reason: String) -> RefusedRow {
        RefusedRow {
            sink: sink.to_owned(),
            kind: "raw",
            key: format!("{}:{}", r.meta.account_id, r.meta.record_id),
            row: serde_json::from_slice(&r.to_json()).unwrap_or(serde_json::Value::Null),
            reason,
        }
    }

    pub fn attribution(sink: &str, a: &AttributionRow, reason: String) -> RefusedRow {
        let key = format!("{}:{}:{}:{}", a.account_id, a.conversion_id, a.touchpoint_id, a.attribution_model);
        RefusedRow::result(sink, "attribution", key, a, reason)
    }

    pub fn partial(sink: &str, p: &PartialRow, reason: String) -> RefusedRow {
        let key = format!("{}:{}:{}:{}:{}", p.account_id, p.campaign_id, p.advertisement_id, p.metric_date, p.partition);
        RefusedRow::result(sink, "partial", key, p, reason)
    }

    pub fn link_clicks(sink: &str, p: &LinkClickPartialRow, reason: String) -> RefusedRow {
        let key = format!("{}:{}:{}:{}", p.account_id, p.short_code, p.click_date, p.partition);
        RefusedRow::result(sink, "link_clicks", key, p, reason)
    }

    pub fn journeys(sink: &str, p: &JourneyPartialRow, reason: String) -> RefusedRow {
        let key = format!("{}:{}:{}:{}:{}", p.account_id, p.journey_date, p.channels, p.campaigns, p.partition);
        RefusedRow::result(sink, "journeys", key, p, reason)
    }

    /// A refused result row, carried as its JSON.
    fn result(sink: &str, kind: &'static str, key: String, row: &impl serde::Serialize, reason: String) -> RefusedRow {
        RefusedRow { sink: sink.to_owned(), kind, key, row: serde_json::to_value(row).unwrap_or(serde_json::Value::Null), reason }
    }
}

/// The sink version of an engine attribution version: later epochs supersede earlier ones.
pub fn sink_version(epoch: u32, engine_version: u64) -> i64 {
    (i64::from(epoch) << 32) | (engine_version & 0xffff_ffff) as i64
}

pub fn attribution_rows(set: &AttributionSet, epoch: u32) -> Vec<AttributionRow> {
    set.rows()
        .map(|r| AttributionRow {
            account_id: set.account_id,
            conversion_id: set.conversion_key.to_string(),
            touchpoint_id: r.touchpoint.to_string(),
            attribution_model: set.model.as_str().to_owned(),
            version: sink_version(epoch, set.version),
            campaign_id: r.campaign_id.as_ref().map(ToString::to_string),
            advertisement_id: r.advertisement_id.as_ref().map(ToString::to_string),
            customer_id: Some(set.identity.to_string()),
            touchpoint_type: Some(r.touch_kind.to_string()),
            touchpoint_timestamp: r.touched_at,
            channel_id: Some(r.channel.to_string()),
            conversion_time: set.converted_at,
            conversion_value: Some(set.value),
            currency: set.currency.map(|c| c.to_string()),
            weight: r.weight,
            attributed_revenue: r.attributed_revenue,
        })
        .collect()
}

/// Attribution rows a sink builds and writes at a time: a flush of a replay holds hundreds of
/// thousands, each with a dozen strings, and building them all at once made them the largest
/// allocation of a flush.
pub const ATTRIBUTION_ROWS_PER_WRITE: usize = 10_000;

/// The rows of `sets`, a chunk at a time: whole sets (a set is the replacement unit of its
/// conversion and model), at most `max_rows` rows per chunk unless one set alone has more.
pub fn attribution_chunks(sets: &[AttributionSet], epoch: u32, max_rows: usize) -> impl Iterator<Item = Vec<AttributionRow>> + '_ {
    chunks_by_weight(sets, |s| s.credits.len(), max_rows).map(move |chunk| chunk.iter().flat_map(|s| attribution_rows(s, epoch)).collect())
}

/// Consecutive runs of `items` whose weights sum to at most `max`; an item heavier than `max`
/// makes a run alone.
fn chunks_by_weight<T>(items: &[T], weight: impl Fn(&T) -> usize, max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut sum = 0usize;
        let take = rest
            .iter()
            .position(|item| {
                sum = sum.saturating_add(weight(item));
                sum > max
            })
            .map_or(rest.len(), |i| i.max(1));
        let (run, tail) = rest.split_at(take);
        rest = tail;
        Some(run)
    })
}

/// The row of a partial written under `epoch` (see [`PartialRow::epoch`]).
pub fn partial_row(p: &DailyPartial, epoch: u32) -> PartialRow {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    PartialRow {
        account_id: p.account_id,
        campaign_id: p.campaign_id.clone(),
        advertisement_id: p.advertisement_id.clone().unwrap_or_default(),
        metric_date: p.date,
        partition: p.partition as i32,
        impressions: i(p.impressions),
        clicks: i(p.clicks),
        reach: i(p.reach),
        engagements: i(p.engagements),
        sessions: i(p.sessions),
        conversions: p.conversions,
        revenue: p.revenue,
        cost: p.cost,
        reported_impressions: i(p.reported_impressions),
        reported_clicks: i(p.reported_clicks),
        epoch,
        reach_sketch: p.reach_sketch.clone(),
        reach_hashes: p.reach_hashes.clone(),
        currency: p.currency.map(|c| c.as_str().to_owned()),
    }
}

/// The row of a link click partial written under `epoch`.
pub fn link_click_row(p: &LinkClickPartial, epoch: u32) -> LinkClickPartialRow {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    LinkClickPartialRow {
        account_id: p.account_id,
        short_code: p.short_code.clone(),
        click_date: p.date,
        partition: p.partition as i32,
        human_clicks: i(p.human_clicks),
        bot_clicks: i(p.bot_clicks),
        epoch,
    }
}

/// The row of a journey partial written under `epoch`: revenue at the 6 places every store
/// keeps, so a store that rounds and one that does not hold the same value.
pub fn journey_row(p: &JourneyPartial, epoch: u32) -> JourneyPartialRow {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    JourneyPartialRow {
        account_id: p.account_id,
        journey_date: p.date,
        channels: p.channels.clone(),
        campaigns: p.campaigns.clone(),
        partition: p.partition as i32,
        conversions: i(p.conversions),
        non_conversions: i(p.non_conversions),
        revenue: p.revenue.round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointAwayFromZero),
        epoch,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn runs_keep_items_whole_and_under_the_weight() {
        let runs: Vec<&[usize]> = chunks_by_weight(&[3, 4, 2, 9, 1, 1, 12, 5], |w| *w, 9).collect();
        // By hand: 3+4+2 = 9; 9; 1+1 (12 would make 14); 12 alone (heavier than 9); 5.
        assert_eq!(runs, vec![&[3, 4, 2][..], &[9], &[1, 1], &[12], &[5]]);
        assert_eq!(chunks_by_weight(&[] as &[usize], |w| *w, 9).count(), 0);
    }

    #[derive(Debug)]
    enum Fail {
        Refused,
        Down,
    }

    impl std::fmt::Display for Fail {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    /// A store that refuses any batch holding a negative number, and records what it stored.
    async fn run(rows: &[i32], down_on_call: Option<usize>) -> (Result<Vec<i32>, SinkError>, Vec<i32>, usize) {
        let stored = std::sync::Mutex::new(Vec::new());
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let result = write_isolating(
            rows,
            |part: &[i32]| {
                let n = calls.fetch_add(1, Ordering::Relaxed);
                let outcome = if Some(n) == down_on_call {
                    Err(Fail::Down)
                } else if part.iter().any(|v| *v < 0) {
                    Err(Fail::Refused)
                } else {
                    stored.lock().map(|mut s| s.extend_from_slice(part)).ok();
                    Ok(())
                };
                async move { outcome }
            },
            |e| matches!(e, Fail::Refused),
        )
        .await
        .map(|v| v.into_iter().map(|(r, _)| *r).collect());
        let mut s = stored.into_inner().unwrap_or_default();
        s.sort_unstable();
        (result, s, calls.into_inner())
    }

    #[tokio::test]
    async fn refused_rows_are_isolated_and_the_rest_written() {
        let rows: Vec<i32> = (0..64).map(|i| if i == 5 || i == 40 { -i } else { i }).collect();
        let (refused, stored, calls) = run(&rows, None).await;
        assert_eq!(refused.expect("no transient error"), vec![-5, -40]);
        let expected: Vec<i32> = (0..64).filter(|i| *i != 5 && *i != 40).collect();
        assert_eq!(stored, expected);
        // Two bad rows in 64: the whole batch, then at most 2 per level for 6 levels below it.
        assert!(calls <= 1 + 2 * 2 * 6, "{calls} writes");
    }

    #[tokio::test]
    async fn a_clean_batch_is_one_write_and_an_empty_one_none() {
        let (refused, stored, calls) = run(&[1, 2, 3], None).await;
        assert_eq!((refused.expect("ok"), stored, calls), (vec![], vec![1, 2, 3], 1));
        let (refused, _, calls) = run(&[], None).await;
        assert_eq!((refused.expect("ok"), calls), (vec![], 0));
    }

    #[tokio::test]
    async fn a_transient_error_fails_the_whole_write() {
        let (refused, _, _) = run(&[1, -2, 3, 4], Some(1)).await;
        assert!(refused.is_err(), "a store that went down mid-way is retried, not dead-lettered");
    }
}
