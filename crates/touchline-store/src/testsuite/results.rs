//! The [`ResultSink`](crate::ResultSink) and [`ResultReader`](crate::ResultReader) checks:
//! what a sink writes, read back.

use super::{attribution, d, date, partial, people_partial, ResultStores};
use crate::{AttributionRow, JourneyPartialRow, JourneyPathRow, LinkClickPartialRow, PartialRow};

/// Newer versions of a conversion's attribution replace older rows; stale ones are ignored.
pub async fn attribution_versions(stores: &ResultStores) {
    let (a, _) = stores.two_accounts().await;
    let v1 = vec![attribution(a, "conv-1", "t1", "linear", 1, 0.5), attribution(a, "conv-1", "t2", "linear", 1, 0.5)];
    stores.sink.upsert_attributions(&v1).await.expect("v1");
    assert_eq!(stores.reader.attributions(a, Some("linear")).await.expect("read"), v1);
    stores.sink.upsert_attributions(&v1).await.expect("v1 again");
    assert_eq!(stores.reader.attributions(a, Some("linear")).await.expect("read"), v1, "idempotent");
    // A late touch t0 re-attributes: version 2 has t0 and t2 only.
    let v2 = vec![attribution(a, "conv-1", "t0", "linear", 2, 0.5), attribution(a, "conv-1", "t2", "linear", 2, 0.5)];
    stores.sink.upsert_attributions(&v2).await.expect("v2");
    assert_eq!(stores.reader.attributions(a, Some("linear")).await.expect("read"), v2, "older version's rows are gone");
    // A stale retry of version 1 changes nothing.
    stores.sink.upsert_attributions(&v1).await.expect("stale v1");
    assert_eq!(stores.reader.attributions(a, Some("linear")).await.expect("read"), v2);
    // Other models and conversions are untouched; in one batch the newest version wins.
    let mixed = vec![
        attribution(a, "conv-2", "t9", "first_touch", 1, 1.0),
        attribution(a, "conv-2", "t8", "first_touch", 3, 1.0),
        attribution(a, "conv-1", "t0", "last_touch", 1, 1.0),
    ];
    stores.sink.upsert_attributions(&mixed).await.expect("mixed");
    let all = stores.reader.attributions(a, None).await.expect("all");
    assert_eq!(all.len(), 4);
    assert!(all.iter().any(|r| r.conversion_id == "conv-2" && r.touchpoint_id == "t8" && r.version == 3));
    assert!(!all.iter().any(|r| r.touchpoint_id == "t9"));
    let sum: f64 = all.iter().filter(|r| r.conversion_id == "conv-1" && r.attribution_model == "linear").map(|r| r.weight).sum();
    assert!((sum - 1.0).abs() < 1e-9);
}

/// Many sets replaced in one call, one of them wider than a statement's chunk of rows: each
/// newer set keeps exactly its own touches, and the same conversion ids in another account are
/// untouched.
pub async fn attribution_bulk_replacement(stores: &ResultStores) {
    let (a, b) = stores.two_accounts().await;
    let touches = |account, conversion: &str, version, range: std::ops::Range<usize>| -> Vec<AttributionRow> {
        let w = 1.0 / range.len() as f64;
        range.map(|t| attribution(account, conversion, &format!("t{t}"), "linear", version, w)).collect()
    };
    // 300 conversions of 3 touches, and one conversion of 700 touches (more than CHUNK rows).
    let mut v1: Vec<AttributionRow> = (0..300).flat_map(|c| touches(a, &format!("conv-{c}"), 1, 0..3)).collect();
    v1.extend(touches(a, "wide", 1, 0..700));
    let other: Vec<AttributionRow> = (0..300).flat_map(|c| touches(b, &format!("conv-{c}"), 1, 0..3)).collect();
    stores.sink.upsert_attributions(&v1).await.expect("v1");
    stores.sink.upsert_attributions(&other).await.expect("other account");
    // Version 2: even conversions drop touch t0 and gain t3; the wide one keeps t100..t650.
    let mut v2: Vec<AttributionRow> = (0..300).step_by(2).flat_map(|c| touches(a, &format!("conv-{c}"), 2, 1..4)).collect();
    v2.extend(touches(a, "wide", 2, 100..650));
    stores.sink.upsert_attributions(&v2).await.expect("v2");
    let stored = stores.reader.attributions(a, Some("linear")).await.expect("read");
    let of = |conversion: &str| -> Vec<(String, i64)> {
        let mut t: Vec<(String, i64)> =
            stored.iter().filter(|r| r.conversion_id == conversion).map(|r| (r.touchpoint_id.clone(), r.version)).collect();
        t.sort();
        t
    };
    let expect = |version, range: std::ops::Range<usize>| -> Vec<(String, i64)> {
        let mut t: Vec<(String, i64)> = range.map(|t| (format!("t{t}"), version)).collect();
        t.sort();
        t
    };
    assert_eq!(of("conv-0"), expect(2, 1..4), "a replaced set keeps only its own touches");
    assert_eq!(of("conv-1"), expect(1, 0..3), "a set not replaced is untouched");
    assert_eq!(of("conv-298"), expect(2, 1..4));
    assert_eq!(of("wide"), expect(2, 100..650), "a set wider than a chunk is replaced whole");
    assert_eq!(stored.len(), 150 * 3 + 150 * 3 + 550);
    // Every value reads back as written, fractional weights (1/3, 1/550) included.
    let mut wide: Vec<&AttributionRow> = stored.iter().filter(|r| r.conversion_id == "wide").collect();
    wide.sort_by(|x, y| x.touchpoint_id.cmp(&y.touchpoint_id));
    let mut written: Vec<&AttributionRow> = v2.iter().filter(|r| r.conversion_id == "wide").collect();
    written.sort_by(|x, y| x.touchpoint_id.cmp(&y.touchpoint_id));
    assert_eq!(wide, written);
    let conv_0: Vec<&AttributionRow> = stored.iter().filter(|r| r.conversion_id == "conv-0").collect();
    assert!(conv_0.iter().all(|r| r.weight == 1.0 / 3.0), "{conv_0:?}");
    assert_eq!(stores.reader.attributions(b, Some("linear")).await.expect("other").len(), 900, "the other account is untouched");
}

/// Partials of several partitions publish as their sum with derived ratios; republishing a
/// partition replaces its share; repeating a publish changes nothing; a write of an older
/// epoch than the stored one is ignored.
pub async fn partials_publish_sums(stores: &ResultStores) {
    let (a, _) = stores.two_accounts().await;
    stores
        .sink
        .publish_partials(&[partial(a, "c1", 0, 100, 10, "20", "1", "50"), partial(a, "c2", 0, 0, 0, "0", "0", "0")])
        .await
        .expect("p0");
    stores.sink.publish_partials(&[partial(a, "c1", 1, 300, 30, "60", "1.5", "150")]).await.expect("p1");
    let rows = stores.reader.daily_metrics(a, date(21), date(21)).await.expect("read");
    assert_eq!(rows.len(), 2);
    let c1 = &rows[0];
    assert_eq!((c1.campaign_id.as_str(), c1.impressions, c1.clicks, c1.reach, c1.engagements, c1.sessions), ("c1", 400, 40, 200, 2, 4));
    assert_eq!((c1.cost, c1.conversions, c1.revenue), (d("80"), d("2.5"), d("200")));
    assert_eq!(c1.ctr, Some(0.1));
    assert_eq!(c1.frequency, Some(2.0));
    assert_eq!(c1.cpc, Some(d("2")));
    assert_eq!(c1.cpm, Some(d("200")));
    assert_eq!(c1.cpa, Some(d("32")));
    assert_eq!(c1.roas, Some(2.5));
    let c2 = &rows[1];
    assert_eq!((c2.ctr, c2.cpc, c2.cpm, c2.cpa, c2.roas, c2.frequency), (None, None, None, None, None, None), "no denominator, no ratio");
    // Partition 1 recomputed its share (absolute): the sum follows, it does not grow.
    stores.sink.publish_partials(&[partial(a, "c1", 1, 100, 10, "20", "0.5", "50")]).await.expect("p1 again");
    stores.sink.publish_partials(&[partial(a, "c1", 1, 100, 10, "20", "0.5", "50")]).await.expect("same publish again");
    let rows = stores.reader.daily_metrics(a, date(21), date(21)).await.expect("read");
    assert_eq!((rows[0].impressions, rows[0].clicks, rows[0].cost, rows[0].conversions), (200, 20, d("40"), d("1.5")));
    // A previous owner of partition 1 (epoch 0) writing late is ignored; the next owner
    // (epoch 2) replaces the share.
    stores
        .sink
        .publish_partials(&[PartialRow { epoch: 0, ..partial(a, "c1", 1, 900, 90, "90", "9", "900") }])
        .await
        .expect("stale publish");
    let rows = stores.reader.daily_metrics(a, date(21), date(21)).await.expect("read");
    assert_eq!(
        (rows[0].impressions, rows[0].clicks, rows[0].cost, rows[0].conversions),
        (200, 20, d("40"), d("1.5")),
        "a stale epoch must not overwrite"
    );
    stores.sink.publish_partials(&[PartialRow { epoch: 2, ..partial(a, "c1", 1, 150, 15, "30", "1", "60") }]).await.expect("next owner");
    let rows = stores.reader.daily_metrics(a, date(21), date(21)).await.expect("read");
    assert_eq!((rows[0].impressions, rows[0].clicks, rows[0].cost, rows[0].conversions), (250, 25, d("50"), d("2")));

    // Whole-number operands divide exactly, not as integers: cost 200 over 3 conversions,
    // 3 clicks and 3 impressions. By hand, 200 / 3 = 66.666…, 200 · 1000 / 3 = 66,666.666…,
    // rounded to 6 places.
    stores.sink.publish_partials(&[partial(a, "c3", 0, 3, 3, "200", "3", "100")]).await.expect("whole numbers");
    let rows = stores.reader.daily_metrics(a, date(21), date(21)).await.expect("read");
    let c3 = rows.iter().find(|r| r.campaign_id == "c3").expect("c3");
    assert_eq!((c3.cpa, c3.cpc, c3.cpm), (Some(d("66.666667")), Some(d("66.666667")), Some(d("66666.666667"))), "{c3:?}");
    assert_eq!(c3.roas, Some(0.5));
}

/// Reach is the distinct count of the union of the stored sketches, per day and over a range:
/// one person on two partitions or two days counts once. By hand:
/// - Nov 20: partition 0 saw ann, bob; partition 1 bob, cat → 3 people, 4 impressions.
/// - Nov 21: partition 0 saw ann, dan; partition 1 first eve, then (rewritten, absolute) eve,
///   fay; a stale owner's write of zed is ignored → ann, dan, eve, fay: 4 people, 4 impressions.
/// - Nov 20–21: ann, bob, cat, dan, eve, fay → 6 people, 8 impressions, frequency 8/6.
pub async fn reach_unions_partitions_and_days(stores: &ResultStores) {
    let (a, _) = stores.two_accounts().await;
    stores
        .sink
        .publish_partials(&[people_partial(a, 0, 20, &["ann", "bob"]), people_partial(a, 0, 21, &["ann", "dan"])])
        .await
        .expect("partition 0");
    stores.sink.publish_partials(&[people_partial(a, 1, 20, &["bob", "cat"]), people_partial(a, 1, 21, &["eve"])]).await.expect("p1");
    stores.sink.publish_partials(&[people_partial(a, 1, 21, &["eve", "fay"])]).await.expect("p1 rewrites its share");
    stores
        .sink
        .publish_partials(&[PartialRow { epoch: 0, ..people_partial(a, 1, 21, &["zed", "eve", "fay"]) }])
        .await
        .expect("stale owner");
    let daily = stores.reader.daily_metrics(a, date(20), date(21)).await.expect("daily");
    let per_day: Vec<(u32, i64, i64)> = daily
        .iter()
        .filter(|r| r.campaign_id == "reach")
        .map(|r| (chrono::Datelike::day(&r.metric_date), r.reach, r.impressions))
        .collect();
    assert_eq!(per_day, vec![(20, 3, 4), (21, 4, 4)]);
    let parts = stores.reader.range_partials(a, date(20), date(21)).await.expect("range partials");
    assert_eq!(parts.len(), 4, "one row per partition and day: {parts:?}");
    let range = touchline_model::summarize_range(&parts).expect("sums");
    let r = range.iter().find(|r| r.campaign_id == "reach").expect("reach row");
    assert_eq!((r.metrics.reach, r.metrics.impressions, r.reach_estimated), (6, 8, false));
    assert_eq!(r.metrics.frequency, Some(8.0 / 6.0));
    assert_eq!((r.first_date, r.last_date), (date(20), date(21)));
    let day21 = stores.reader.range_partials(a, date(21), date(21)).await.expect("one day");
    assert_eq!(touchline_model::summarize_range(&day21).expect("sums")[0].metrics.reach, 4);
}

/// Eight partitions write their results at once, as the aggregator's partition tasks do:
/// every write succeeds, nothing is lost to the interleaving, and each published sum adds up
/// every partition's share. Each partition writes a first attribution set per conversion,
/// then replaces half of them, then its partial of one shared cell.
pub async fn concurrent_result_writes(stores: &ResultStores) {
    let (a, _) = stores.two_accounts().await;
    let writers: Vec<_> = (0..8)
        .map(|p: i32| {
            let sink = stores.sink.clone();
            tokio::spawn(async move {
                let set = |c: i32, version, touches: std::ops::Range<i32>| -> Vec<AttributionRow> {
                    let w = 1.0 / touches.len() as f64;
                    touches.map(|t| attribution(a, &format!("p{p}-c{c}"), &format!("t{t}"), "linear", version, w)).collect()
                };
                let first: Vec<AttributionRow> = (0..40).flat_map(|c| set(c, 1, 0..3)).collect();
                sink.upsert_attributions(&first).await.expect("first sets");
                let replaced: Vec<AttributionRow> = (0..40).step_by(2).flat_map(|c| set(c, 2, 2..4)).collect();
                sink.upsert_attributions(&replaced).await.expect("replacements");
                let impressions = i64::from(p + 1) * 100;
                sink.publish_partials(&[partial(a, "shared", p, impressions, 0, "0", "0", "0")]).await.expect("partial");
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer task");
    }
    let stored = stores.reader.attributions(a, Some("linear")).await.expect("read");
    // Per partition: 20 sets replaced by 2 touches, 20 kept with 3.
    assert_eq!(stored.len(), 8 * (20 * 2 + 20 * 3));
    for p in 0..8 {
        let touches = |c: i32| -> Vec<(String, i64)> {
            stored.iter().filter(|r| r.conversion_id == format!("p{p}-c{c}")).map(|r| (r.touchpoint_id.clone(), r.version)).collect()
        };
        assert_eq!(touches(0), vec![("t2".to_owned(), 2), ("t3".to_owned(), 2)], "partition {p}");
        assert_eq!(touches(1), vec![("t0".to_owned(), 1), ("t1".to_owned(), 1), ("t2".to_owned(), 1)], "partition {p}");
    }
    let rows = stores.reader.daily_metrics(a, date(21), date(21)).await.expect("read");
    // 100 + 200 + … + 800.
    assert_eq!(rows.iter().find(|r| r.campaign_id == "shared").map(|r| r.impressions), Some(3600));
}

fn clicks(account: uuid::Uuid, code: &str, day: u32, partition: i32, human: i64, bot: i64, epoch: u32) -> LinkClickPartialRow {
    LinkClickPartialRow {
        account_id: account,
        short_code: code.to_owned(),
        click_date: date(day),
        partition,
        human_clicks: human,
        bot_clicks: bot,
        epoch,
    }
}

/// A link's clicks are the sum of every partition's count on every day; a partition's newer
/// count replaces its older one (absolute values), a repeated write changes nothing, a write
/// of an older epoch is ignored, and accounts see only their own links.
pub async fn link_clicks_sum_partitions_and_days(stores: &ResultStores) {
    let (a, b) = stores.two_accounts().await;
    let first = [clicks(a, "spring", 20, 0, 3, 1, 1), clicks(a, "spring", 21, 0, 2, 0, 1), clicks(a, "autumn", 21, 0, 1, 0, 1)];
    stores.sink.publish_link_clicks(&first).await.expect("partition 0");
    stores
        .sink
        .publish_link_clicks(&[clicks(a, "spring", 21, 1, 4, 2, 1), clicks(b, "spring", 21, 1, 50, 5, 1)])
        .await
        .expect("partition 1");
    let counts = stores.reader.link_click_counts(a).await.expect("read");
    // spring: 3 + 2 + 4 human, 1 + 0 + 2 bot; autumn: 1 human.
    assert_eq!(counts.get("spring"), Some(&(9, 3)));
    assert_eq!(counts.get("autumn"), Some(&(1, 0)));
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert_eq!(stores.reader.link_click_counts(b).await.expect("read b").get("spring"), Some(&(50, 5)));
    // Partition 1 counted two more clicks on the 21st: its share becomes 6, not 4 + 6.
    stores.sink.publish_link_clicks(&[clicks(a, "spring", 21, 1, 6, 2, 1)]).await.expect("recount");
    stores.sink.publish_link_clicks(&[clicks(a, "spring", 21, 1, 6, 2, 1)]).await.expect("same write again");
    assert_eq!(stores.reader.link_click_counts(a).await.expect("read").get("spring"), Some(&(11, 3)));
    // A previous owner of partition 1 writing late is ignored; the next owner replaces it.
    stores.sink.publish_link_clicks(&[clicks(a, "spring", 21, 1, 99, 99, 0)]).await.expect("stale owner");
    assert_eq!(stores.reader.link_click_counts(a).await.expect("read").get("spring"), Some(&(11, 3)), "a stale epoch must not overwrite");
    stores.sink.publish_link_clicks(&[clicks(a, "spring", 21, 1, 7, 2, 2)]).await.expect("next owner");
    assert_eq!(stores.reader.link_click_counts(a).await.expect("read").get("spring"), Some(&(12, 3)));
}

#[allow(clippy::too_many_arguments)]
fn journey(
    account: uuid::Uuid,
    day: u32,
    channels: &str,
    campaigns: &str,
    partition: i32,
    conversions: i64,
    non_conversions: i64,
    revenue: &str,
    epoch: u32,
) -> JourneyPartialRow {
    JourneyPartialRow {
        account_id: account,
        journey_date: date(day),
        channels: channels.to_owned(),
        campaigns: campaigns.to_owned(),
        partition,
        conversions,
        non_conversions,
        revenue: d(revenue),
        epoch,
    }
}

fn path(channels: &str, campaigns: &str, conversions: i64, non_conversions: i64, revenue: &str) -> JourneyPathRow {
    JourneyPathRow { channels: channels.to_owned(), campaigns: campaigns.to_owned(), conversions, non_conversions, revenue: d(revenue) }
}

/// An account's paths over a range are the sums of every partition's journeys on every day of
/// the range (inclusive), sorted by channels then campaigns in byte order; a partition's newer
/// counts replace its older ones (absolute values), a repeated write changes nothing, a write
/// of an older epoch is ignored, accounts see only their own journeys, and a path whose sums
/// went back to zero is left out.
pub async fn journeys_publish_sums(stores: &ResultStores) {
    let (a, b) = stores.two_accounts().await;
    const SEARCH: &str = "email > search";
    const SEARCH_CAMPAIGNS: &str = "c1 > c2";
    let partition_0 = [
        journey(a, 19, SEARCH, SEARCH_CAMPAIGNS, 0, 5, 5, "100", 1),
        journey(a, 20, SEARCH, SEARCH_CAMPAIGNS, 0, 2, 1, "30.5", 1),
        journey(a, 21, SEARCH, SEARCH_CAMPAIGNS, 0, 1, 0, "10.123456", 1),
        journey(a, 21, "email", "(none)", 0, 0, 3, "0", 1),
        journey(a, 22, "email", "c9", 0, 1, 0, "2", 1),
    ];
    stores.sink.publish_journeys(&partition_0).await.expect("partition 0");
    let partition_1 = [
        journey(a, 21, SEARCH, SEARCH_CAMPAIGNS, 1, 1, 2, "4.25", 1),
        journey(a, 22, "email", "(none)", 1, 0, 1, "0", 1),
        journey(a, 23, "social", "c3", 1, 1, 0, "7", 1),
        journey(b, 21, SEARCH, SEARCH_CAMPAIGNS, 1, 50, 50, "500", 1),
    ];
    stores.sink.publish_journeys(&partition_1).await.expect("partition 1");
    let paths = |from: u32, to: u32, account: uuid::Uuid| async move {
        stores.reader.journey_paths(account, date(from), date(to)).await.expect("read journeys")
    };
    // The 19th and the 23rd are outside; "(none)" sorts before "c9" by bytes.
    // email: 3 + 1 non-conversions. email > search: 2 + 1 + 1 conversions, 1 + 0 + 2
    // non-conversions, 30.5 + 10.123456 + 4.25 revenue.
    assert_eq!(
        paths(20, 22, a).await,
        vec![path("email", "(none)", 0, 4, "0"), path("email", "c9", 1, 0, "2"), path(SEARCH, SEARCH_CAMPAIGNS, 4, 3, "44.873456")]
    );
    assert_eq!(paths(22, 22, a).await, vec![path("email", "(none)", 0, 1, "0"), path("email", "c9", 1, 0, "2")], "one day");
    assert_eq!(paths(23, 30, a).await, vec![path("social", "c3", 1, 0, "7")]);
    assert!(paths(1, 18, a).await.is_empty(), "no journeys before the 19th");
    assert_eq!(paths(1, 30, b).await, vec![path(SEARCH, SEARCH_CAMPAIGNS, 50, 50, "500")], "account b sees its own only");
    // Partition 1 recounted the 21st: its share becomes 2 conversions, not 1 + 2.
    let recount = [journey(a, 21, SEARCH, SEARCH_CAMPAIGNS, 1, 2, 2, "9.25", 1)];
    stores.sink.publish_journeys(&recount).await.expect("recount");
    stores.sink.publish_journeys(&recount).await.expect("same write again");
    let search = |rows: Vec<JourneyPathRow>| rows.into_iter().find(|r| r.channels == SEARCH);
    assert_eq!(search(paths(20, 22, a).await), Some(path(SEARCH, SEARCH_CAMPAIGNS, 5, 3, "49.873456")));
    // A previous owner of partition 1 writing late is ignored; the next owner replaces it.
    stores.sink.publish_journeys(&[journey(a, 21, SEARCH, SEARCH_CAMPAIGNS, 1, 99, 99, "999", 0)]).await.expect("stale owner");
    assert_eq!(search(paths(20, 22, a).await), Some(path(SEARCH, SEARCH_CAMPAIGNS, 5, 3, "49.873456")), "a stale epoch must not overwrite");
    stores.sink.publish_journeys(&[journey(a, 21, SEARCH, SEARCH_CAMPAIGNS, 1, 0, 0, "0", 2)]).await.expect("next owner");
    assert_eq!(search(paths(20, 22, a).await), Some(path(SEARCH, SEARCH_CAMPAIGNS, 3, 1, "40.623456")));
    // The conversion of the 22nd moved to another path: the emptied one disappears.
    stores.sink.publish_journeys(&[journey(a, 22, "email", "c9", 0, 0, 0, "0", 1)]).await.expect("emptied path");
    assert_eq!(
        paths(20, 22, a).await,
        vec![path("email", "(none)", 0, 4, "0"), path(SEARCH, SEARCH_CAMPAIGNS, 3, 1, "40.623456")],
        "a path whose counts are zero is left out"
    );
}

/// Clearing results (before a replay) removes every account's attributions, daily metrics,
/// link clicks and journeys, and results written afterwards read back alone.
pub async fn clear_results_forgets_every_result(stores: &ResultStores) {
    let (a, b) = stores.two_accounts().await;
    for account in [a, b] {
        stores.sink.upsert_attributions(&[attribution(account, "conv-1", "t1", "linear", 7, 1.0)]).await.expect("attribution");
        stores.sink.publish_partials(&[partial(account, "c1", 0, 100, 10, "20", "1", "50")]).await.expect("partial");
        stores.sink.publish_link_clicks(&[clicks(account, "spring", 21, 0, 5, 1, 3)]).await.expect("link clicks");
        stores.sink.publish_journeys(&[journey(account, 21, "email", "(none)", 0, 1, 2, "5", 3)]).await.expect("journeys");
    }
    stores.sink.clear_results().await.expect("clear");
    for account in [a, b] {
        assert!(stores.reader.attributions(account, None).await.expect("read").is_empty(), "attributions of {account} cleared");
        assert!(stores.reader.daily_metrics(account, date(1), date(30)).await.expect("read").is_empty(), "metrics of {account} cleared");
        assert!(stores.reader.link_click_counts(account).await.expect("read").is_empty(), "link clicks of {account} cleared");
        assert!(stores.reader.journey_paths(account, date(1), date(30)).await.expect("read").is_empty(), "journeys of {account} cleared");
    }
    // A replay starts over at lower versions; they are not hidden by the cleared rows.
    let again = attribution(a, "conv-1", "t2", "linear", 1, 1.0);
    stores.sink.upsert_attributions(std::slice::from_ref(&again)).await.expect("attribution after clear");
    stores.sink.publish_partials(&[partial(a, "c1", 0, 40, 4, "8", "1", "10")]).await.expect("partial after clear");
    assert_eq!(stores.reader.attributions(a, None).await.expect("read"), vec![again]);
    let rows = stores.reader.daily_metrics(a, date(21), date(21)).await.expect("read");
    assert_eq!(rows.iter().map(|r| (r.impressions, r.cost)).collect::<Vec<_>>(), vec![(40, d("8"))]);
    stores.sink.publish_journeys(&[journey(a, 21, "email", "(none)", 0, 0, 1, "0", 1)]).await.expect("journeys after clear");
    assert_eq!(stores.reader.journey_paths(a, date(21), date(21)).await.expect("read"), vec![path("email", "(none)", 0, 1, "0")]);
}
