//! The [`CatalogStore`] checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{date, two_accounts};
use crate::{Account, Advertisement, ApiKey, Campaign, CatalogCache, CatalogStore, ChannelWeights, CurrencyRate, KeyKind, Link};

/// What is written to the catalog comes back from `load_catalog`.
pub async fn catalog_round_trip(store: &dyn CatalogStore) {
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

/// Channel weights come back as written, one set per account and model, replaced by the next,
/// and reach a running cache like any catalog change.
pub async fn channel_weights_round_trip(store: Arc<dyn CatalogStore>) {
    let (a, b) = two_accounts(store.as_ref()).await;
    let cache = CatalogCache::load(store.clone(), Duration::from_secs(60)).await.expect("load cache");
    let _task = cache.spawn_refresh(Duration::from_millis(200));
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&chrono::Utc);
    let markov = ChannelWeights {
        account_id: a,
        model: "markov".into(),
        weights: [("search".to_owned(), 0.625), ("Zalo › OA".to_owned(), 0.375)].into_iter().collect(),
        window_from: date(1),
        window_to: date(30),
        journeys: 40,
        conversions: 8,
        computed_at: at("2026-12-07T02:00:00.123456Z"),
    };
    let shapley = ChannelWeights { model: "shapley".into(), weights: Default::default(), conversions: 0, ..markov.clone() };
    let other = ChannelWeights { account_id: b, ..markov.clone() };
    for w in [&markov, &shapley, &other] {
        store.put_channel_weights(w).await.expect("put weights");
    }
    let newer = ChannelWeights {
        weights: [("email".to_owned(), 1.0)].into_iter().collect(),
        computed_at: at("2026-12-08T02:00:00Z"),
        ..markov.clone()
    };
    store.put_channel_weights(&newer).await.expect("replace weights");
    let mut got = store.load_catalog().await.expect("load").channel_weights;
    got.sort_by(|x, y| (x.account_id, &x.model).cmp(&(y.account_id, &y.model)));
    let mut want = vec![newer.clone(), shapley, other];
    want.sort_by(|x, y| (x.account_id, &x.model).cmp(&(y.account_id, &y.model)));
    assert_eq!(got, want);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.snapshot().channel_weights.get(&(a, "markov".to_owned())) != Some(&newer) {
        assert!(Instant::now() < deadline, "the cache did not see the new weights within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An account's reporting currency and the exchange rates come back as written: a rate keeps
/// every decimal place, the row of the same (from, to, valid_from) is replaced, invalid rates
/// are refused, and a new rate reaches a running cache like any catalog change.
pub async fn currency_rates_round_trip(store: Arc<dyn CatalogStore>) {
    let (a, _) = two_accounts(store.as_ref()).await;
    let mut account = store.load_catalog().await.expect("load").accounts.into_iter().find(|x| x.id == a).expect("account a");
    assert_eq!(account.currency, "USD", "the default reporting currency");
    account.currency = "EUR".into();
    store.upsert_account(&account).await.expect("set currency");
    let got = store.load_catalog().await.expect("load").accounts.into_iter().find(|x| x.id == a).expect("account a");
    assert_eq!(got.currency, "EUR");

    let cache = CatalogCache::load(store.clone(), Duration::from_secs(60)).await.expect("load cache");
    let _task = cache.spawn_refresh(Duration::from_millis(200));
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&chrono::Utc);
    let d = |s: &str| s.parse::<rust_decimal::Decimal>().expect("decimal");
    let eur_usd = CurrencyRate {
        from_currency: "EUR".into(),
        to_currency: "USD".into(),
        rate: d("1.10"),
        valid_from: at("2026-11-20T00:00:00Z"),
        valid_until: Some(at("2026-11-21T00:00:00Z")),
        source: "manual".into(),
    };
    // 1 VND = 0.000039370079 USD: twelve places, all kept.
    let vnd_usd = CurrencyRate {
        from_currency: "VND".into(),
        to_currency: "USD".into(),
        rate: d("0.000039370079"),
        valid_from: at("2026-11-20T00:00:00.123456Z"),
        valid_until: None,
        source: "ecb".into(),
    };
    let gbp_usd = CurrencyRate { from_currency: "GBP".into(), rate: d("1.25"), valid_until: None, ..eur_usd.clone() };
    for x in [&eur_usd, &vnd_usd, &gbp_usd] {
        store.put_currency_rate(x).await.expect("put rate");
    }
    let eur_usd = CurrencyRate { rate: d("1.0825"), ..eur_usd };
    store.put_currency_rate(&eur_usd).await.expect("replace rate");
    for bad in [
        CurrencyRate { rate: d("0"), ..gbp_usd.clone() },
        CurrencyRate { to_currency: "GBP".into(), ..gbp_usd.clone() },
        CurrencyRate { from_currency: "gbp".into(), ..gbp_usd.clone() },
        CurrencyRate { valid_until: Some(gbp_usd.valid_from), ..gbp_usd.clone() },
    ] {
        assert!(store.put_currency_rate(&bad).await.is_err(), "{bad:?} should be refused");
    }
    let got = store.load_catalog().await.expect("load").currency_rates;
    assert_eq!(got, vec![eur_usd.clone(), gbp_usd, vnd_usd], "sorted by (from, to, valid_from)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cache.snapshot().currency_rates.contains(&eur_usd) {
        assert!(Instant::now() < deadline, "the cache did not see the new rate within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Catalog changes reach a running cache without restart; unknown keys are remembered.
pub async fn cache_follows_changes(store: Arc<dyn CatalogStore>) {
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
