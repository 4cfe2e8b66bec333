//! The crash tests' dataset: ~3,000 records of one account, deterministic, shuffled across
//! topics, and the results the stores hold for it.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use touchline_bus::{Bus, EmbeddedLog, LogConfig, OutRecord};
use touchline_model::{decode_items, parse_body, DecodeOptions, Expect, RequestCtx};
use touchline_sql::{Account, Store};
use uuid::Uuid;

pub const ACCOUNT: Uuid = Uuid::from_u128(0xc4a5);
pub const PARTITIONS: u32 = 4;

/// A small deterministic generator (64-bit LCG), so every run sees the same dataset.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// ~3,000 records: visitors with impressions and clicks on 5 campaigns, some identify, some
/// convert (some conversions retried), daily spend reports (some revised).
pub fn dataset() -> Vec<Value> {
    let mut g = Lcg(42);
    let mut items = Vec::new();
    let base = DateTime::parse_from_rfc3339("2026-11-15T00:00:00Z").unwrap().with_timezone(&Utc);
    for v in 0..1000 {
        let anon = format!("anon-{v}");
        let mut t = base + chrono::Duration::minutes(g.next(5 * 24 * 60) as i64);
        for k in 0..(1 + g.next(4)) {
            let camp = format!("c{}", g.next(5));
            let kind = if g.next(3) == 0 { "click" } else { "impression" };
            let channel = ["search", "display", "social"][g.next(3) as usize];
            items.push(json!({"type": "touchpoint", "kind": kind, "channel": channel,
                "campaign_id": camp, "advertisement_id": format!("{camp}-ad{}", g.next(2)), "anonymous_id": anon,
                "timestamp": t.to_rfc3339(), "message_id": format!("tp-{v}-{k}")}));
            t += chrono::Duration::minutes(1 + g.next(600) as i64);
        }
        let customer = format!("cust-{}", v % 300);
        if g.next(2) == 0 {
            items.push(json!({"type": "identify", "anonymous_id": anon, "customer_id": customer, "timestamp": t.to_rfc3339(), "message_id": format!("id-{v}")}));
        }
        if g.next(10) < 3 {
            t += chrono::Duration::minutes(5);
            let conv = json!({"type": "conversion", "kind": "purchase", "value": format!("{}.{:02}", 10 + g.next(200), g.next(100)), "currency": "USD",
                "order_id": format!("o-{v}"), "customer_id": customer, "timestamp": t.to_rfc3339(), "message_id": format!("cv-{v}")});
            items.push(conv.clone());
            if g.next(4) == 0 {
                let mut retry = conv;
                retry["message_id"] = json!(format!("cv-{v}-retry"));
                items.push(retry);
            }
        }
    }
    for day in 15..20 {
        for c in 0..5 {
            items.push(json!({"type": "spend", "date": format!("2026-11-{day}"), "campaign_id": format!("c{c}"), "cost": format!("{}.50", 10 + g.next(90)),
                "currency": "USD", "source": "ads", "timestamp": format!("2026-11-{day}T20:00:00Z"), "message_id": format!("sp-{day}-{c}")}));
            if g.next(3) == 0 {
                items.push(json!({"type": "spend", "date": format!("2026-11-{day}"), "campaign_id": format!("c{c}"), "cost": format!("{}.25", 10 + g.next(90)),
                    "currency": "USD", "source": "ads", "timestamp": format!("2026-11-{day}T23:00:00Z"), "message_id": format!("sp-{day}-{c}-rev")}));
            }
        }
    }
    items.extend(link_clicks());
    // Shuffle deterministically: arrival order across topics is not event order.
    for i in (1..items.len()).rev() {
        let j = g.next(i as u64 + 1) as usize;
        items.swap(i, j);
    }
    items
}

/// Clicks of three short links by devices and visitors over five days, a quarter of them bots,
/// some sent twice (a retry with the same message id).
fn link_clicks() -> Vec<Value> {
    let mut g = Lcg(43);
    let base = DateTime::parse_from_rfc3339("2026-11-15T00:00:00Z").unwrap().with_timezone(&Utc);
    let mut items = Vec::new();
    for i in 0..400 {
        let at = base + chrono::Duration::minutes(g.next(5 * 24 * 60) as i64);
        let code = ["spring", "summer", "autumn"][g.next(3) as usize];
        let who = if g.next(2) == 0 {
            json!({"device_id": format!("dev-{}", g.next(150))})
        } else {
            json!({"anonymous_id": format!("anon-{}", g.next(1000))})
        };
        let mut click = json!({"type": "link_click", "short_code": code, "bot": g.next(4) == 0, "timestamp": at.to_rfc3339(), "message_id": format!("lc-{i}")});
        if let (Some(c), Some(w)) = (click.as_object_mut(), who.as_object()) {
            c.extend(w.clone());
        }
        if g.next(10) == 0 {
            items.push(click.clone());
        }
        items.push(click);
    }
    items
}

/// Human and bot clicks per short code in the dataset, counted from its items: each message
/// id once.
pub fn expected_link_clicks() -> Vec<(String, i64, i64)> {
    let mut seen = std::collections::HashSet::new();
    let mut counts: std::collections::BTreeMap<String, (i64, i64)> = std::collections::BTreeMap::new();
    for item in dataset().iter().filter(|i| i["type"] == "link_click") {
        if !seen.insert(item["message_id"].as_str().unwrap().to_owned()) {
            continue;
        }
        let c = counts.entry(item["short_code"].as_str().unwrap().to_owned()).or_default();
        if item["bot"] == true {
            c.1 += 1;
        } else {
            c.0 += 1;
        }
    }
    counts.into_iter().map(|(code, (human, bot))| (code, human, bot)).collect()
}

/// The stored clicks per short code of the account, sorted by code.
pub async fn link_clicks_of(s: &dyn touchline_sql::ResultReader) -> Vec<(String, i64, i64)> {
    let mut counts: Vec<(String, i64, i64)> =
        s.link_click_counts(ACCOUNT).await.unwrap().into_iter().map(|(code, (human, bot))| (code, human, bot)).collect();
    counts.sort();
    counts
}

/// The stored journeys of the account over every day of the dataset, by path.
pub async fn journeys_of(s: &dyn touchline_sql::ResultReader) -> Vec<touchline_model::results::JourneyPathRow> {
    let (from, to) = ("2026-01-01".parse().unwrap(), "2027-01-01".parse().unwrap());
    s.journey_paths(ACCOUNT, from, to).await.unwrap()
}

/// Writes the dataset into an embedded log under `data_dir/log`, as the collector would.
pub async fn write_log(data_dir: &Path) -> usize {
    let log =
        EmbeddedLog::open(data_dir.join("log"), LogConfig { partitions: PARTITIONS, retention_check_secs: 0, ..LogConfig::default() })
            .await
            .unwrap();
    let opts = DecodeOptions::default();
    let received = DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z").unwrap().with_timezone(&Utc);
    let items = dataset();
    let mut n = 0;
    for chunk in items.chunks(100) {
        let body = serde_json::to_vec(&json!({ "batch": chunk })).unwrap();
        let parsed = parse_body(&body, &opts).unwrap();
        let ctx = RequestCtx { account_id: ACCOUNT, received_at: received, ip: None, user_agent: None };
        let d = decode_items(&parsed, &ctx, Expect::Any, &opts);
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let out: Vec<OutRecord> = d
            .records
            .iter()
            .map(|r| OutRecord {
                topic: r.topic().into(),
                key: r.partition_key(),
                value: r.to_json(),
                timestamp_ms: r.meta.received_at.timestamp_millis(),
            })
            .collect();
        n += out.len();
        log.append(out).await.unwrap();
    }
    n
}

/// A migrated store with the account and fixed channel weights (so Markov and Shapley split
/// conversions by weights, not linearly). The runs compared keep them: they set
/// [`NO_WEIGHTS_SCHEDULE`], since a refresh in one run and not in another, or at another
/// moment, would credit the conversions it holds differently.
pub async fn prepare_store(db: &str, data_dir: &Path) -> std::sync::Arc<dyn Store> {
    std::fs::create_dir_all(data_dir).unwrap();
    let s = touchline_sql::connect(db).await.unwrap();
    s.migrate().await.unwrap();
    s.upsert_account(&Account::new(ACCOUNT, "default")).await.unwrap();
    for (model, weights) in [
        ("markov", [("search", 0.5), ("display", 0.3), ("social", 0.2)]),
        ("shapley", [("search", 0.2), ("display", 0.2), ("social", 0.6)]),
    ] {
        s.put_channel_weights(&touchline_sql::ChannelWeights {
            account_id: ACCOUNT,
            model: model.into(),
            weights: weights.into_iter().map(|(c, w)| (c.to_owned(), w)).collect(),
            window_from: "2026-08-01".parse().unwrap(),
            window_to: "2026-10-29".parse().unwrap(),
            journeys: 0,
            conversions: 0,
            computed_at: Utc::now(),
        })
        .await
        .unwrap();
    }
    s
}

/// The environment variable, and its value, that turns the channel weights' schedule off.
pub const NO_WEIGHTS_SCHEDULE: (&str, &str) = ("TOUCHLINE_WEIGHTS__REFRESH_SECS", "0");

/// Everything the stores hold for the account, versions left out (they carry the run's epoch).
pub async fn results(s: &dyn Store) -> (Vec<touchline_sql::DailyMetricRow>, Vec<(String, String, String, String, String)>) {
    let metrics = s.daily_metrics(ACCOUNT, "2026-01-01".parse().unwrap(), "2027-01-01".parse().unwrap()).await.unwrap();
    let mut attrs: Vec<_> = s
        .attributions(ACCOUNT, None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| {
            (
                a.conversion_id,
                a.attribution_model,
                a.touchpoint_id,
                format!("{:.9}", a.weight),
                a.attributed_revenue.normalize().to_string(),
            )
        })
        .collect();
    attrs.sort();
    (metrics, attrs)
}
