//! The generated marketing dataset of `touchline demo` and `touchline generate`: two accounts,
//! campaigns in three time zones with two ads and a short link each, visitors who see
//! impressions (by pixel), click ads, land on pages, sometimes identify and order, and daily
//! spend per ad. The same seed gives the same shape.

use chrono::{DateTime, Duration as Days, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use touchline_collector::{generate_key, hash_key, KeyKind};
use touchline_sql::{Account, Advertisement, ApiKey, Campaign, Link, Store};
use uuid::Uuid;

/// One tenant of the dataset, with its keys in clear.
pub struct DatasetAccount {
    pub id: Uuid,
    pub name: &'static str,
    pub write_key: String,
    pub secret_key: String,
    /// (campaign id, time zone)
    pub campaigns: Vec<(&'static str, &'static str)>,
    pub visitors: usize,
}

/// What a visitor's client sends: an ad server's pixel (its query string) or a JSON item of a
/// `/v1/batch` request.
pub enum Item {
    Pixel(String),
    Json(Value),
}

const CHANNELS: [(&str, &str, &str); 4] =
    [("search", "google", "cpc"), ("social", "facebook", "paid_social"), ("display", "gdn", "display"), ("email", "newsletter", "email")];

/// The two accounts: `default` (whose keys are given) with `visitors`, and `acme` with a third.
pub fn accounts(default_keys: (String, String), visitors: usize) -> Vec<DatasetAccount> {
    vec![
        DatasetAccount {
            id: Uuid::new_v4(),
            name: "default",
            write_key: default_keys.0,
            secret_key: default_keys.1,
            campaigns: vec![("tet-sale", "Asia/Ho_Chi_Minh"), ("black-friday", "America/New_York"), ("always-on", "UTC")],
            visitors,
        },
        DatasetAccount {
            id: Uuid::new_v4(),
            name: "acme",
            write_key: generate_key(KeyKind::Write),
            secret_key: generate_key(KeyKind::Secret),
            campaigns: vec![("spring-launch", "Europe/Paris")],
            visitors: visitors / 3,
        },
    ]
}

/// Writes the accounts, their keys, campaigns, ads and links to the catalog. An existing
/// account `default` keeps its id.
pub async fn install_catalog(store: &dyn Store, accounts: &mut [DatasetAccount]) -> anyhow::Result<()> {
    if let Some(existing) = store.load_catalog().await?.accounts.iter().find(|a| a.name == "default") {
        if let Some(d) = accounts.iter_mut().find(|a| a.name == "default") {
            d.id = existing.id;
        }
    }
    for a in accounts.iter() {
        install_account(store, a).await?;
    }
    Ok(())
}

async fn install_account(store: &dyn Store, a: &DatasetAccount) -> anyhow::Result<()> {
    let mut acc = Account::new(a.id, a.name);
    if a.name == "acme" {
        acc.timezone = "Europe/Paris".into();
        acc.default_attribution_model = "linear".into();
    }
    store.upsert_account(&acc).await?;
    for (kind, key) in [(touchline_sql::KeyKind::Write, &a.write_key), (touchline_sql::KeyKind::Secret, &a.secret_key)] {
        store
            .insert_key(&ApiKey { account_id: a.id, kind, key_hash: hash_key(key), prefix: key.chars().take(10).collect(), revoked: false })
            .await?;
    }
    for (c, tz) in &a.campaigns {
        store
            .upsert_campaign(&Campaign {
                account_id: a.id,
                id: (*c).into(),
                name: Some(c.replace('-', " ")),
                timezone: (*tz).into(),
                start_date: None,
                end_date: None,
            })
            .await?;
        for ad in ["a", "b"] {
            store
                .upsert_advertisement(&Advertisement {
                    account_id: a.id,
                    id: format!("{c}-{ad}"),
                    campaign_id: Some((*c).into()),
                    channel_id: None,
                    title: None,
                })
                .await?;
        }
        store.upsert_link(&campaign_link(a, c)).await?;
    }
    Ok(())
}

fn campaign_link(a: &DatasetAccount, campaign: &str) -> Link {
    Link {
        account_id: a.id,
        short_code: format!("{campaign}-{}", &a.id.simple().to_string()[..6]),
        target_url: format!("https://shop.example/{campaign}"),
        utm_source: Some("touchline".into()),
        utm_medium: Some("link".into()),
        utm_campaign: Some(campaign.into()),
        utm_term: None,
        utm_content: None,
        campaign_id: Some(campaign.into()),
        advertisement_id: None,
        deleted: false,
    }
}

/// Draws the dataset's items, visitor by visitor.
pub struct Generator {
    rng: StdRng,
    now: DateTime<Utc>,
    days: i64,
}

impl Generator {
    pub fn new(seed: u64, now: DateTime<Utc>, days: i64) -> Self {
        Generator { rng: StdRng::seed_from_u64(seed), now, days }
    }

    /// Everything visitor `v` of account `a` sends: 1–5 touches (impression pixels, ad clicks
    /// with their landing page, email opens), maybe an identify, maybe an order or a signup.
    pub fn visitor(&mut self, a: &DatasetAccount, v: usize) -> Vec<Item> {
        let mut items = Vec::with_capacity(8);
        let anon = format!("{}-anon-{v}", a.name);
        let customer = format!("{}-cust-{}", a.name, v % (a.visitors * 2 / 3).max(1));
        let mut t = self.now - Days::minutes(self.rng.random_range(60..(self.days * 24 * 60).max(120)));
        let touches = self.rng.random_range(1..=5);
        for k in 0..touches {
            self.touch(a, &anon, k, t, &mut items);
            t += Days::minutes(self.rng.random_range(5..600));
        }
        let identified = self.rng.random_bool(0.45);
        if identified {
            items.push(Item::Json(json!({"type": "identify", "anonymousId": anon, "userId": customer, "traits": {"plan": "free"},
                "messageId": format!("{anon}-identify"), "timestamp": t.min(self.now).to_rfc3339()})));
        }
        if self.rng.random_bool(0.3) && t < self.now {
            let revenue = self.rng.random_range(1500..30000) as f64 / 100.0;
            let who = if identified { json!({"userId": customer}) } else { json!({"anonymousId": anon}) };
            let mut order = json!({"type": "track", "event": "Order Completed", "messageId": format!("{anon}-order"),
                "properties": {"order_id": format!("{anon}-o1"), "revenue": revenue, "currency": "USD"}, "timestamp": t.to_rfc3339()});
            merge(&mut order, &who);
            items.push(Item::Json(order));
        } else if identified && self.rng.random_bool(0.3) {
            items.push(Item::Json(json!({"type": "conversion", "kind": "signup", "customer_id": customer,
                "timestamp": t.min(self.now).to_rfc3339(), "message_id": format!("{anon}-signup")})));
        }
        items
    }

    fn touch(&mut self, a: &DatasetAccount, anon: &str, k: usize, t: DateTime<Utc>, items: &mut Vec<Item>) {
        let (camp, _) = a.campaigns[self.rng.random_range(0..a.campaigns.len())];
        let ad = format!("{camp}-{}", if self.rng.random_bool(0.5) { "a" } else { "b" });
        let (channel, source, medium) = CHANNELS[self.rng.random_range(0..CHANNELS.len())];
        let roll: f64 = self.rng.random();
        if roll < 0.55 {
            // Ad servers fire an impression pixel.
            items.push(Item::Pixel(format!(
                "k={}&t=touchpoint&kind=impression&channel={channel}&cid={camp}&adid={ad}&aid={anon}&ts={}&mid={anon}-imp-{k}",
                a.write_key,
                t.timestamp_millis()
            )));
        } else if roll < 0.9 {
            // A click follows an impression of the same ad.
            items.push(Item::Json(json!({"type": "touchpoint", "kind": "impression", "channel": channel, "campaign_id": camp,
                "advertisement_id": ad, "anonymous_id": anon, "timestamp": (t - Days::minutes(1)).to_rfc3339(),
                "message_id": format!("{anon}-imp2-{k}")})));
            items.push(Item::Json(json!({"type": "touchpoint", "kind": "click", "channel": channel, "campaign_id": camp,
                "advertisement_id": ad, "anonymous_id": anon, "utm_source": source, "utm_medium": medium, "utm_campaign": camp,
                "timestamp": t.to_rfc3339(), "message_id": format!("{anon}-click-{k}")})));
            // The landing page, as analytics.js reports it.
            items.push(Item::Json(json!({"type": "page", "anonymousId": anon, "messageId": format!("{anon}-page-{k}"), "name": "Landing",
                "properties": {"url": format!("https://shop.example/{camp}?utm_source={source}&utm_medium={medium}&utm_campaign={camp}")},
                "timestamp": (t + Days::seconds(2)).to_rfc3339()})));
        } else {
            items.push(Item::Json(json!({"type": "touchpoint", "kind": "email_open", "channel": "email", "campaign_id": camp,
                "anonymous_id": anon, "timestamp": t.to_rfc3339(), "message_id": format!("{anon}-open-{k}")})));
        }
    }

    /// Daily spend per ad, as an ad platform reports it, for every day of the range.
    pub fn spend(&mut self, a: &DatasetAccount) -> Vec<Value> {
        let mut rows = Vec::new();
        for d in 0..=self.days {
            let date = (self.now - Days::days(d)).date_naive();
            for (camp, _) in &a.campaigns {
                for ad in ["a", "b"] {
                    let cost = self.rng.random_range(2000..15000) as f64 / 100.0;
                    rows.push(json!({"type": "spend", "date": date.to_string(), "campaign_id": camp,
                        "advertisement_id": format!("{camp}-{ad}"), "cost": cost, "currency": "USD", "source": "ads_api",
                        "impressions": self.rng.random_range(500..5000), "clicks": self.rng.random_range(10..200)}));
                }
            }
        }
        rows
    }
}

fn merge(target: &mut Value, extra: &Value) {
    if let (Some(t), Some(e)) = (target.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            t.insert(k.clone(), v.clone());
        }
    }
}
