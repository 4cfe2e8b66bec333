//! One conformance suite for every [`Store`]: Postgres and SQLite must behave alike.
//! Each check takes a freshly migrated, empty store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::*;

fn d(s: &str) -> Decimal {
    s.parse().unwrap_or_default()
}

fn date(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, day).unwrap_or_default()
}

pub fn metric(account: Uuid, campaign: &str, ad: &str, day: u32, impressions: i64) -> DailyMetricRow {
    DailyMetricRow {
        account_id: account,
        campaign_id: campaign.into(),
        advertisement_id: ad.into(),
        metric_date: date(day),
        impressions,
        clicks: impressions / 10,
        reach: impressions / 2,
        frequency: Some(2.0),
        engagements: 3,
        sessions: 4,
        conversions: d("1.5"),
        revenue: d("199.99"),
        cost: d("12.34"),
        currency: Some("USD".into()),
        ctr: if impressions > 0 { Some(0.1) } else { None },
        cpc: if impressions >= 10 { Some(d("1.234")) } else { None },
        cpm: Some(d("0.5")),
        cpa: Some(d("8.226667")),
        roas: Some(16.2),
        utm_source: Some("zalo".into()),
        utm_medium: None,
        utm_campaign: Some("winter".into()),
    }
}

pub fn attribution(account: Uuid, conversion: &str, touch: &str, model: &str, version: i64, weight: f64) -> AttributionRow {
    AttributionRow {
        account_id: account,
        conversion_id: conversion.into(),
        touchpoint_id: touch.into(),
        attribution_model: model.into(),
        version,
        campaign_id: Some(format!("cmp-{touch}")),
        advertisement_id: None,
        customer_id: Some("c-1".into()),
        touchpoint_type: Some("click".into()),
        touchpoint_timestamp: Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).single(),
        channel_id: Some("paid_search".into()),
        conversion_time: Utc.with_ymd_and_hms(2026, 11, 21, 9, 30, 0).single().unwrap_or_default(),
        conversion_value: Some(d("100")),
        currency: Some("USD".into()),
        weight,
        attributed_revenue: Decimal::from_f64_retain(100.0 * weight).unwrap_or_default().round_dp(6).normalize(),
    }
}

async fn two_accounts(store: &dyn Store) -> (Uuid, Uuid) {
    let a = Uuid::from_u128(0xa);
    let b = Uuid::from_u128(0xb);
    store.upsert_account(&Account::new(a, "alpha")).await.expect("account a");
    store.upsert_account(&Account::new(b, "beta")).await.expect("account b");
    (a, b)
}

/// Migrations apply from empty and re-run cleanly.
pub async fn migrations_rerun(store: &dyn Store) {
    store.migrate().await.expect("first migrate");
    store.migrate().await.expect("re-running migrations is a no-op");
}

/// What is written to the catalog comes back from `load_catalog`.
pub async fn catalog_round_trip(store: &dyn Store) {
    let (a, b) = two_accounts(store).await;
    let mut acc = Account::new(a, "alpha");
    acc.timezone = "Asia/Ho_Chi_Minh".into();
    acc.default_attribution_model = "linear".into();
    acc.click_lookback_days = 7;
    store.upsert_account(&acc).await.expect("update account");
    let key = ApiKey { account_id: a, kind: KeyKind::Write, key_hash: "h-write-a".into(), prefix: "tl_wk_abc".into(), revoked: false };
    store.insert_key(&key).await.expect("key");
    store.insert_key(&key).await.expect("same key again is a no-op");
    store
        .insert_key(&ApiKey {
            account_id: b,
            kind: KeyKind::Secret,
            key_hash: "h-secret-b".into(),
            prefix: "tl_sk_x".into(),
            revoked: false,
        })
        .await
        .expect("key b");
    let camp = Campaign {
        account_id: a,
        id: "1042".into(),
        name: Some("Tết sale".into()),
        timezone: "Asia/Ho_Chi_Minh".into(),
        start_date: Some(date(1)),
        end_date: None,
    };
    store.upsert_campaign(&camp).await.expect("campaign");
    let ad =
        Advertisement { account_id: a, id: "ad-7".into(), campaign_id: Some("1042".into()), channel_id: Some("zalo".into()), title: None };
    store.upsert_advertisement(&ad).await.expect("ad");
    let link = Link {
        account_id: a,
        short_code: "tet24".into(),
        target_url: "https://shop.example/tet".into(),
        utm_source: Some("zalo".into()),
        utm_medium: None,
        utm_campaign: Some("tet".into()),
        utm_term: None,
        utm_content: None,
        campaign_id: Some("1042".into()),
        advertisement_id: None,
        deleted: false,
    };
    store.upsert_link(&link).await.expect("link");
    let c = store.load_catalog().await.expect("load");
    assert!(c.version > 0, "triggers bump the catalog version");
    let got = c.accounts.iter().find(|x| x.id == a).expect("account a");
    assert_eq!(got, &acc);
    assert_eq!(c.keys.len(), 2);
    assert!(c.keys.contains(&key));
    assert_eq!(c.campaigns, vec![camp]);
    assert_eq!(c.advertisements, vec![ad]);
    assert_eq!(c.links, vec![link.clone()]);
    assert_eq!(store.find_key("h-write-a").await.expect("find"), Some(key));
    assert_eq!(store.find_key("nope").await.expect("find"), None);
    // Revoking keeps the row but marks it.
    assert_eq!(store.revoke_keys(a, KeyKind::Write, None).await.expect("revoke"), 1);
    assert!(store.find_key("h-write-a").await.expect("find").expect("row kept").revoked);
    // Soft-deleting a link keeps it in the catalog, marked deleted.
    store.upsert_link(&Link { deleted: true, ..link }).await.expect("delete link");
    assert!(store.load_catalog().await.expect("load").links[0].deleted);
}

/// Repeated flushes leave identical rows; a new flush replaces values, never adds to them.
pub async fn daily_metrics_idempotent(store: &dyn Store) {
    let (a, b) = two_accounts(store).await;
    let rows: Vec<DailyMetricRow> = (0..1200)
        .map(|i| {
            metric(
                if i % 3 == 0 { b } else { a },
                &format!("c{}", i % 200),
                if i % 400 < 200 { "" } else { "ad-1" },
                1 + (i / 400) as u32,
                i as i64,
            )
        })
        .collect();
    let n = store.upsert_daily_metrics(&rows).await.expect("upsert");
    assert_eq!(n, 1200);
    let first = store.daily_metrics(a, date(1), date(30)).await.expect("read");
    assert_eq!(first.len(), 800);
    store.upsert_daily_metrics(&rows).await.expect("same flush again");
    let again = store.daily_metrics(a, date(1), date(30)).await.expect("read");
    assert_eq!(first, again, "a repeated flush changes nothing");
    let mut want: Vec<DailyMetricRow> = rows.iter().filter(|r| r.account_id == a).cloned().collect();
    want.sort_by(|x, y| (x.metric_date, &x.campaign_id, &x.advertisement_id).cmp(&(y.metric_date, &y.campaign_id, &y.advertisement_id)));
    assert_eq!(again, want, "rows read back equal rows written");
    // Absolute values: a later flush with new totals replaces them.
    let mut updated = rows[1].clone();
    updated.impressions = 5;
    updated.cpc = None;
    updated.revenue = d("0");
    store.upsert_daily_metrics(std::slice::from_ref(&updated)).await.expect("update");
    let now = store.daily_metrics(a, updated.metric_date, updated.metric_date).await.expect("read");
    let row = now.iter().find(|r| r.campaign_id == updated.campaign_id && r.advertisement_id == updated.advertisement_id).expect("row");
    assert_eq!(row, &updated);
    // Account isolation on reads.
    let other = store.daily_metrics(b, date(1), date(30)).await.expect("read b");
    assert_eq!(other.len(), 400);
    assert!(other.iter().all(|r| r.account_id == b));
}

/// Newer versions of a conversion's attribution replace older rows; stale ones are ignored.
pub async fn attribution_versions(store: &dyn Store) {
    let (a, _) = two_accounts(store).await;
    let v1 = vec![attribution(a, "conv-1", "t1", "linear", 1, 0.5), attribution(a, "conv-1", "t2", "linear", 1, 0.5)];
    store.upsert_attributions(&v1).await.expect("v1");
    assert_eq!(store.attributions(a, Some("linear")).await.expect("read"), v1);
    store.upsert_attributions(&v1).await.expect("v1 again");
    assert_eq!(store.attributions(a, Some("linear")).await.expect("read"), v1, "idempotent");
    // A late touch t0 re-attributes: version 2 has t0 and t2 only.
    let v2 = vec![attribution(a, "conv-1", "t0", "linear", 2, 0.5), attribution(a, "conv-1", "t2", "linear", 2, 0.5)];
    store.upsert_attributions(&v2).await.expect("v2");
    assert_eq!(store.attributions(a, Some("linear")).await.expect("read"), v2, "older version's rows are gone");
    // A stale retry of version 1 changes nothing.
    store.upsert_attributions(&v1).await.expect("stale v1");
    assert_eq!(store.attributions(a, Some("linear")).await.expect("read"), v2);
    // Other models and conversions are untouched; in one batch the newest version wins.
    let mixed = vec![
        attribution(a, "conv-2", "t9", "first_touch", 1, 1.0),
        attribution(a, "conv-2", "t8", "first_touch", 3, 1.0),
        attribution(a, "conv-1", "t0", "last_touch", 1, 1.0),
    ];
    store.upsert_attributions(&mixed).await.expect("mixed");
    let all = store.attributions(a, None).await.expect("all");
    assert_eq!(all.len(), 4);
    assert!(all.iter().any(|r| r.conversion_id == "conv-2" && r.touchpoint_id == "t8" && r.version == 3));
    assert!(!all.iter().any(|r| r.touchpoint_id == "t9"));
    let sum: f64 = all.iter().filter(|r| r.conversion_id == "conv-1" && r.attribution_model == "linear").map(|r| r.weight).sum();
    assert!((sum - 1.0).abs() < 1e-9);
}

/// Many sets replaced in one call, one of them wider than a statement's chunk of rows: each
/// newer set keeps exactly its own touches, and the same conversion ids in another account are
/// untouched.
pub async fn attribution_bulk_replacement(store: &dyn Store) {
    let (a, b) = two_accounts(store).await;
    let touches = |account, conversion: &str, version, range: std::ops::Range<usize>| -> Vec<AttributionRow> {
        let w = 1.0 / range.len() as f64;
        range.map(|t| attribution(account, conversion, &format!("t{t}"), "linear", version, w)).collect()
    };
    // 300 conversions of 3 touches, and one conversion of 700 touches (more than CHUNK rows).
    let mut v1: Vec<AttributionRow> = (0..300).flat_map(|c| touches(a, &format!("conv-{c}"), 1, 0..3)).collect();
    v1.extend(touches(a, "wide", 1, 0..700));
    let other: Vec<AttributionRow> = (0..300).flat_map(|c| touches(b, &format!("conv-{c}"), 1, 0..3)).collect();
    store.upsert_attributions(&v1).await.expect("v1");
    store.upsert_attributions(&other).await.expect("other account");
    // Version 2: even conversions drop touch t0 and gain t3; the wide one keeps t100..t650.
    let mut v2: Vec<AttributionRow> = (0..300).step_by(2).flat_map(|c| touches(a, &format!("conv-{c}"), 2, 1..4)).collect();
    v2.extend(touches(a, "wide", 2, 100..650));
    store.upsert_attributions(&v2).await.expect("v2");
    let stored = store.attributions(a, Some("linear")).await.expect("read");
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
    assert_eq!(store.attributions(b, Some("linear")).await.expect("other").len(), 900, "the other account is untouched");
}

/// Catalog changes reach a running cache without restart; unknown keys are remembered.
pub async fn cache_follows_changes(store: Arc<dyn Store>) {
    let (a, _) = two_accounts(store.as_ref()).await;
    let cache = CatalogCache::load(store.clone(), Duration::from_secs(60)).await.expect("load cache");
    let _task = cache.spawn_refresh(Duration::from_millis(200));
    assert!(cache.lookup_key_hash("h-new").await.is_none());
    // A key added behind the cache's back is found by the direct lookup despite the negative
    // entry only once the catalog reloads (the negative TTL is long here).
    store
        .insert_key(&ApiKey { account_id: a, kind: KeyKind::Write, key_hash: "h-new".into(), prefix: "tl_wk_n".into(), revoked: false })
        .await
        .expect("key");
    store
        .upsert_campaign(&Campaign {
            account_id: a,
            id: "c-tz".into(),
            name: None,
            timezone: "Europe/Paris".into(),
            start_date: None,
            end_date: None,
        })
        .await
        .expect("campaign");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snap = cache.snapshot();
        if snap.keys.contains_key("h-new") && snap.campaign_timezone(a, "c-tz") == "Europe/Paris" {
            break;
        }
        assert!(Instant::now() < deadline, "the cache did not see the change within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cache.lookup_key_hash("h-new").await.map(|k| k.account_id), Some(a));
    // Revocation reaches the cache too.
    store.revoke_keys(a, KeyKind::Write, None).await.expect("revoke");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.snapshot().keys.contains_key("h-new") {
        assert!(Instant::now() < deadline, "revocation not seen within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cache.lookup_key_hash("h-new").await.is_none(), "a revoked key is refused");
    assert_eq!(cache.snapshot().campaign_timezone(a, "unknown"), "UTC");
}

#[allow(clippy::too_many_arguments)]
fn partial(
    account: Uuid,
    campaign: &str,
    partition: i32,
    impressions: i64,
    clicks: i64,
    cost: &str,
    conversions: &str,
    revenue: &str,
) -> PartialRow {
    PartialRow {
        account_id: account,
        campaign_id: campaign.into(),
        advertisement_id: String::new(),
        metric_date: date(21),
        partition,
        impressions,
        clicks,
        reach: impressions / 2,
        engagements: 1,
        sessions: 2,
        conversions: d(conversions),
        revenue: d(revenue),
        cost: d(cost),
        reported_impressions: 0,
        reported_clicks: 0,
        epoch: 1,
    }
}

/// Partials of several partitions publish as their sum with derived ratios; republishing a
/// partition replaces its share; repeating a publish changes nothing; a write of an older
/// epoch than the stored one is ignored.
pub async fn partials_publish_sums(store: &dyn Store) {
    let (a, _) = two_accounts(store).await;
    store.publish_partials(&[partial(a, "c1", 0, 100, 10, "20", "1", "50"), partial(a, "c2", 0, 0, 0, "0", "0", "0")]).await.expect("p0");
    store.publish_partials(&[partial(a, "c1", 1, 300, 30, "60", "1.5", "150")]).await.expect("p1");
    let rows = store.daily_metrics(a, date(21), date(21)).await.expect("read");
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
    store.publish_partials(&[partial(a, "c1", 1, 100, 10, "20", "0.5", "50")]).await.expect("p1 again");
    store.publish_partials(&[partial(a, "c1", 1, 100, 10, "20", "0.5", "50")]).await.expect("same publish again");
    let rows = store.daily_metrics(a, date(21), date(21)).await.expect("read");
    assert_eq!((rows[0].impressions, rows[0].clicks, rows[0].cost, rows[0].conversions), (200, 20, d("40"), d("1.5")));
    // A previous owner of partition 1 (epoch 0) writing late is ignored; the next owner
    // (epoch 2) replaces the share.
    store.publish_partials(&[PartialRow { epoch: 0, ..partial(a, "c1", 1, 900, 90, "90", "9", "900") }]).await.expect("stale publish");
    let rows = store.daily_metrics(a, date(21), date(21)).await.expect("read");
    assert_eq!(
        (rows[0].impressions, rows[0].clicks, rows[0].cost, rows[0].conversions),
        (200, 20, d("40"), d("1.5")),
        "a stale epoch must not overwrite"
    );
    store.publish_partials(&[PartialRow { epoch: 2, ..partial(a, "c1", 1, 150, 15, "30", "1", "60") }]).await.expect("next owner");
    let rows = store.daily_metrics(a, date(21), date(21)).await.expect("read");
    assert_eq!((rows[0].impressions, rows[0].clicks, rows[0].cost, rows[0].conversions), (250, 25, d("50"), d("2")));

    // Whole-number operands divide exactly, not as integers: cost 200 over 3 conversions,
    // 3 clicks and 3 impressions. By hand, 200 / 3 = 66.666…, 200 · 1000 / 3 = 66,666.666…,
    // rounded to 6 places.
    store.publish_partials(&[partial(a, "c3", 0, 3, 3, "200", "3", "100")]).await.expect("whole numbers");
    let rows = store.daily_metrics(a, date(21), date(21)).await.expect("read");
    let c3 = rows.iter().find(|r| r.campaign_id == "c3").expect("c3");
    assert_eq!((c3.cpa, c3.cpc, c3.cpm), (Some(d("66.666667")), Some(d("66.666667")), Some(d("66666.666667"))), "{c3:?}");
    assert_eq!(c3.roas, Some(0.5));
}

/// Eight partitions write their results at once, as the aggregator's partition tasks do:
/// every write succeeds, nothing is lost to the interleaving, and each published sum adds up
/// every partition's share. Each partition writes a first attribution set per conversion,
/// then replaces half of them, then its partial of one shared cell.
pub async fn concurrent_result_writes(store: Arc<dyn Store>) {
    let (a, _) = two_accounts(store.as_ref()).await;
    let writers: Vec<_> = (0..8)
        .map(|p: i32| {
            let store = store.clone();
            tokio::spawn(async move {
                let set = |c: i32, version, touches: std::ops::Range<i32>| -> Vec<AttributionRow> {
                    let w = 1.0 / touches.len() as f64;
                    touches.map(|t| attribution(a, &format!("p{p}-c{c}"), &format!("t{t}"), "linear", version, w)).collect()
                };
                let first: Vec<AttributionRow> = (0..40).flat_map(|c| set(c, 1, 0..3)).collect();
                store.upsert_attributions(&first).await.expect("first sets");
                let replaced: Vec<AttributionRow> = (0..40).step_by(2).flat_map(|c| set(c, 2, 2..4)).collect();
                store.upsert_attributions(&replaced).await.expect("replacements");
                let impressions = i64::from(p + 1) * 100;
                store.publish_partials(&[partial(a, "shared", p, impressions, 0, "0", "0", "0")]).await.expect("partial");
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer task");
    }
    let stored = store.attributions(a, Some("linear")).await.expect("read");
    // Per partition: 20 sets replaced by 2 touches, 20 kept with 3.
    assert_eq!(stored.len(), 8 * (20 * 2 + 20 * 3));
    for p in 0..8 {
        let touches = |c: i32| -> Vec<(String, i64)> {
            stored.iter().filter(|r| r.conversion_id == format!("p{p}-c{c}")).map(|r| (r.touchpoint_id.clone(), r.version)).collect()
        };
        assert_eq!(touches(0), vec![("t2".to_owned(), 2), ("t3".to_owned(), 2)], "partition {p}");
        assert_eq!(touches(1), vec![("t0".to_owned(), 1), ("t1".to_owned(), 1), ("t2".to_owned(), 1)], "partition {p}");
    }
    let rows = store.daily_metrics(a, date(21), date(21)).await.expect("read");
    // 100 + 200 + … + 800.
    assert_eq!(rows.iter().find(|r| r.campaign_id == "shared").map(|r| r.impressions), Some(3600));
}

/// Shared aggregator checkpoints: epochs grow per take-over, a save under a superseded epoch
/// is refused and leaves the newer owner's checkpoint alone, clear keeps the epoch.
pub async fn checkpoints_fence_old_owners(store: &dyn Store) {
    let g = format!("g-{}", Uuid::new_v4());
    assert_eq!(store.checkpoint_load(&g, 3).await.expect("checkpoint call"), None);
    let first = store.checkpoint_acquire(&g, 3).await.expect("checkpoint call");
    let second = store.checkpoint_acquire(&g, 3).await.expect("checkpoint call");
    assert_eq!(second, first + 1);
    assert_eq!(store.checkpoint_acquire(&g, 4).await.expect("checkpoint call"), 1, "epochs are per partition");
    let newer = StoredCheckpoint { epoch: second, offsets_json: r#"{"touchline.events":7}"#.into(), snapshot: vec![0, 1, 2, 255] };
    assert!(store.checkpoint_save(&g, 3, newer.epoch, &newer.offsets_json, &newer.snapshot).await.expect("checkpoint call"));
    let stale = StoredCheckpoint { epoch: first, offsets_json: "{}".into(), snapshot: vec![9] };
    assert!(
        !store.checkpoint_save(&g, 3, stale.epoch, &stale.offsets_json, &stale.snapshot).await.expect("checkpoint call"),
        "a fenced owner must not overwrite"
    );
    assert_eq!(store.checkpoint_load(&g, 3).await.expect("checkpoint call"), Some(newer));
    assert_eq!(store.checkpoint_load(&g, 4).await.expect("checkpoint call"), None, "acquired but never saved");
    assert!(store.checkpoint_clear(&g).await.expect("checkpoint call") >= 1);
    assert_eq!(store.checkpoint_load(&g, 3).await.expect("checkpoint call"), None);
    assert_eq!(store.checkpoint_acquire(&g, 3).await.expect("checkpoint call"), second + 1, "clear keeps epochs");
}
