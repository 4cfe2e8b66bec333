//! `touchline demo`: runs the whole pipeline on a fresh data directory, sends a realistic
//! marketing dataset through the HTTP API, waits for the aggregator, and prints the daily
//! campaign report and the attribution models side by side.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{Duration as Days, Utc};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::prelude::ToPrimitive;
use serde_json::{json, Value};
use touchline_collector::{generate_key, hash_key, KeyKind};
use touchline_sql::{Account, Advertisement, ApiKey, Campaign, Link, Store};
use uuid::Uuid;

use crate::app::{open_store, App};
use crate::config::Config;

pub struct DemoArgs {
    /// Keep the demo's data here instead of a temporary directory.
    pub data_dir: Option<PathBuf>,
    pub visitors: usize,
    pub days: i64,
    pub seed: u64,
}

struct DemoAccount {
    id: Uuid,
    name: &'static str,
    write_key: String,
    secret_key: String,
    campaigns: Vec<(&'static str, &'static str)>, // (id, time zone)
    visitors: usize,
}

const CHANNELS: [(&str, &str, &str); 4] =
    [("search", "google", "cpc"), ("social", "facebook", "paid_social"), ("display", "gdn", "display"), ("email", "newsletter", "email")];

pub async fn run(mut config: Config, args: DemoArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    config.data_dir = args.data_dir.clone().unwrap_or_else(|| tmp.path().join("data"));
    config.database_url = None;
    config.http_addr = ([127, 0, 0, 1], 0).into();
    config.aggregator.flush_interval_ms = 300;
    let default_keys = (generate_key(KeyKind::Write), generate_key(KeyKind::Secret));
    config.write_key = Some(default_keys.0.clone());
    config.secret_key = Some(default_keys.1.clone());

    // The catalog: two accounts, campaigns in three time zones, two ads each, a short link each.
    let store = open_store(&config).await?;
    let mut accounts = vec![
        DemoAccount {
            id: Uuid::new_v4(),
            name: "default",
            write_key: default_keys.0,
            secret_key: default_keys.1,
            campaigns: vec![("tet-sale", "Asia/Ho_Chi_Minh"), ("black-friday", "America/New_York"), ("always-on", "UTC")],
            visitors: args.visitors,
        },
        DemoAccount {
            id: Uuid::new_v4(),
            name: "acme",
            write_key: generate_key(KeyKind::Write),
            secret_key: generate_key(KeyKind::Secret),
            campaigns: vec![("spring-launch", "Europe/Paris")],
            visitors: args.visitors / 3,
        },
    ];
    if let Some(existing) = store.load_catalog().await?.accounts.iter().find(|a| a.name == "default") {
        accounts[0].id = existing.id;
    }
    for a in &accounts {
        let mut acc = Account::new(a.id, a.name);
        if a.name == "acme" {
            acc.timezone = "Europe/Paris".into();
            acc.default_attribution_model = "linear".into();
        }
        store.upsert_account(&acc).await?;
        for (kind, key) in [(touchline_sql::KeyKind::Write, &a.write_key), (touchline_sql::KeyKind::Secret, &a.secret_key)] {
            store
                .insert_key(&ApiKey {
                    account_id: a.id,
                    kind,
                    key_hash: hash_key(key),
                    prefix: key.chars().take(10).collect(),
                    revoked: false,
                })
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
            store
                .upsert_link(&Link {
                    account_id: a.id,
                    short_code: format!("{c}-{}", &a.id.simple().to_string()[..6]),
                    target_url: format!("https://shop.example/{c}"),
                    utm_source: Some("touchline".into()),
                    utm_medium: Some("link".into()),
                    utm_campaign: Some((*c).into()),
                    utm_term: None,
                    utm_content: None,
                    campaign_id: Some((*c).into()),
                    advertisement_id: None,
                    deleted: false,
                })
                .await?;
        }
    }
    drop(store);

    let app = App::build(config, crate::app::Role::Serve).await?;
    let stats = app.agg_stats.clone();
    let collector_stats = app.state.clone();
    let store = app.store.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = stop_rx.await;
    }));
    println!(
        "touchline demo: server at {base}, data in {}",
        args.data_dir.as_ref().map_or_else(|| tmp.path().display().to_string(), |d| d.display().to_string())
    );

    let http = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let now = Utc::now();
    let mut sent_items = 0usize;
    for a in &accounts {
        let mut batch: Vec<Value> = Vec::new();
        for v in 0..a.visitors {
            let anon = format!("{}-anon-{v}", a.name);
            let customer = format!("{}-cust-{}", a.name, v % (a.visitors * 2 / 3).max(1));
            let mut t = now - Days::minutes(rng.random_range(60..a_days_minutes(args.days)));
            let touches = rng.random_range(1..=5);
            for k in 0..touches {
                let (camp, _) = a.campaigns[rng.random_range(0..a.campaigns.len())];
                let ad = format!("{camp}-{}", if rng.random_bool(0.5) { "a" } else { "b" });
                let (channel, source, medium) = CHANNELS[rng.random_range(0..CHANNELS.len())];
                let roll: f64 = rng.random();
                if roll < 0.55 {
                    // Ad servers fire an impression pixel.
                    let url = format!(
                        "{base}/p.gif?k={}&t=touchpoint&kind=impression&channel={channel}&cid={camp}&adid={ad}&aid={anon}&ts={}&mid={anon}-imp-{k}",
                        a.write_key,
                        t.timestamp_millis()
                    );
                    let r = http.get(url).send().await?;
                    if r.headers().get("x-touchline-status").is_some_and(|s| s == "stored") {
                        sent_items += 1;
                    }
                } else if roll < 0.9 {
                    // A click follows an impression of the same ad.
                    batch.push(
                        json!({"type": "touchpoint", "kind": "impression", "channel": channel, "campaign_id": camp, "advertisement_id": ad,
                        "anonymous_id": anon, "timestamp": (t - Days::minutes(1)).to_rfc3339(), "message_id": format!("{anon}-imp2-{k}")}),
                    );
                    batch.push(
                        json!({"type": "touchpoint", "kind": "click", "channel": channel, "campaign_id": camp, "advertisement_id": ad,
                        "anonymous_id": anon, "utm_source": source, "utm_medium": medium, "utm_campaign": camp,
                        "timestamp": t.to_rfc3339(), "message_id": format!("{anon}-click-{k}")}),
                    );
                    // The landing page, as analytics.js reports it.
                    batch.push(json!({"type": "page", "anonymousId": anon, "messageId": format!("{anon}-page-{k}"), "name": "Landing",
                        "properties": {"url": format!("https://shop.example/{camp}?utm_source={source}&utm_medium={medium}&utm_campaign={camp}")},
                        "timestamp": (t + Days::seconds(2)).to_rfc3339()}));
                } else {
                    batch.push(json!({"type": "touchpoint", "kind": "email_open", "channel": "email", "campaign_id": camp,
                        "anonymous_id": anon, "timestamp": t.to_rfc3339(), "message_id": format!("{anon}-open-{k}")}));
                }
                t += Days::minutes(rng.random_range(5..600));
            }
            let identified = rng.random_bool(0.45);
            if identified {
                batch.push(json!({"type": "identify", "anonymousId": anon, "userId": customer, "traits": {"plan": "free"},
                    "messageId": format!("{anon}-identify"), "timestamp": t.min(now).to_rfc3339()}));
            }
            if rng.random_bool(0.3) && t < now {
                let revenue = rng.random_range(1500..30000) as f64 / 100.0;
                let who = if identified { json!({"userId": customer}) } else { json!({"anonymousId": anon}) };
                let mut order = json!({"type": "track", "event": "Order Completed", "messageId": format!("{anon}-order"),
                    "properties": {"order_id": format!("{anon}-o1"), "revenue": revenue, "currency": "USD"}, "timestamp": t.to_rfc3339()});
                merge(&mut order, &who);
                batch.push(order);
            } else if identified && rng.random_bool(0.3) {
                batch.push(json!({"type": "conversion", "kind": "signup", "customer_id": customer, "timestamp": t.min(now).to_rfc3339(),
                    "message_id": format!("{anon}-signup")}));
            }
            if batch.len() >= 400 {
                sent_items += post_batch(&http, &base, &a.write_key, &mut batch).await?;
            }
        }
        // Daily spend per ad, as an ad platform would report it.
        for d in 0..=args.days {
            let date = (now - Days::days(d)).date_naive();
            for (camp, _) in &a.campaigns {
                for ad in ["a", "b"] {
                    let cost = rng.random_range(2000..15000) as f64 / 100.0;
                    batch.push(json!({"type": "spend", "date": date.to_string(), "campaign_id": camp, "advertisement_id": format!("{camp}-{ad}"),
                        "cost": cost, "currency": "USD", "source": "ads_api", "impressions": rng.random_range(500..5000), "clicks": rng.random_range(10..200)}));
                }
            }
        }
        sent_items += post_batch(&http, &base, &a.write_key, &mut batch).await?;
    }
    let accepted = collector_stats.stats.records_accepted.load(Ordering::Relaxed);
    println!("sent {sent_items} items ({accepted} records accepted); waiting for the aggregator…");

    // Wait until the aggregator has consumed and checkpointed everything, then one more flush.
    let start = Instant::now();
    loop {
        let done = stats.records.load(Ordering::Relaxed) >= accepted && stats.lag() == 0;
        if done {
            tokio::time::sleep(Duration::from_millis(800)).await;
            if stats.lag() == 0 {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("the aggregator did not catch up within 2 minutes (lag {})", stats.lag());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("aggregated in {:.1} s\n", start.elapsed().as_secs_f64());

    let from = (now - Days::days(args.days + 1)).date_naive();
    let to = (now + Days::days(1)).date_naive();
    for a in &accounts {
        print_report(store.as_ref(), a, from, to).await?;
    }
    println!(
        "Reports over HTTP while it runs: curl -H 'Authorization: Bearer {}' '{base}/v1/reports/campaigns?from={from}&to={to}'",
        accounts[0].secret_key
    );
    let _ = stop_tx.send(());
    let _ = server.await;
    if args.data_dir.is_some() {
        println!("data kept in {}", config_dir(&args));
    }
    Ok(())
}

fn config_dir(args: &DemoArgs) -> String {
    args.data_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default()
}

fn a_days_minutes(days: i64) -> i64 {
    (days * 24 * 60).max(120)
}

fn merge(target: &mut Value, extra: &Value) {
    if let (Some(t), Some(e)) = (target.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            t.insert(k.clone(), v.clone());
        }
    }
}

async fn post_batch(http: &reqwest::Client, base: &str, key: &str, batch: &mut Vec<Value>) -> anyhow::Result<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    let body = json!({ "batch": std::mem::take(batch) });
    let r = http.post(format!("{base}/v1/batch")).bearer_auth(key).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "the collector refused a demo batch: {status} {v}");
    if let Some(rej) = v["rejected"].as_array().filter(|r| !r.is_empty()) {
        anyhow::bail!("the collector rejected demo records: {}", Value::Array(rej.clone()));
    }
    Ok(v["accepted"].as_u64().unwrap_or(0) as usize)
}

fn f(d: Option<f64>, digits: usize) -> String {
    d.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

async fn print_report(store: &dyn Store, a: &DemoAccount, from: chrono::NaiveDate, to: chrono::NaiveDate) -> anyhow::Result<()> {
    let rows = store.daily_metrics(a.id, from, to).await?;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "date", "campaign", "ad", "impr", "clicks", "reach", "freq", "eng", "sessions", "conv", "revenue", "cost", "ctr", "cpc", "cpa",
        "roas",
    ]);
    for r in &rows {
        t.add_row([
            r.metric_date.to_string(),
            r.campaign_id.clone(),
            if r.advertisement_id.is_empty() { "–".into() } else { r.advertisement_id.clone() },
            r.impressions.to_string(),
            r.clicks.to_string(),
            r.reach.to_string(),
            f(r.frequency, 2),
            r.engagements.to_string(),
            r.sessions.to_string(),
            f(r.conversions.to_f64(), 2),
            f(r.revenue.to_f64(), 2),
            f(r.cost.to_f64(), 2),
            r.ctr.map_or_else(|| "–".to_owned(), |c| format!("{:.1}%", c * 100.0)),
            f(r.cpc.and_then(|d| d.to_f64()), 2),
            f(r.cpa.and_then(|d| d.to_f64()), 2),
            f(r.roas, 2),
        ]);
    }
    let campaigns: Vec<&str> = a.campaigns.iter().map(|c| c.0).collect();
    println!(
        "Daily campaign report — account `{}` (days in each campaign's time zone: {})",
        a.name,
        a.campaigns.iter().map(|(c, tz)| format!("{c} {tz}")).collect::<Vec<_>>().join(", ")
    );
    println!("{t}\n");

    let models = ["first_touch", "last_touch", "last_non_direct", "linear", "time_decay", "position_based"];
    let mut by: BTreeMap<(String, &str), (f64, f64)> = BTreeMap::new();
    for m in models {
        for r in store.attributions(a.id, Some(m)).await? {
            let e = by.entry((r.campaign_id.unwrap_or_else(|| "(direct)".into()), m)).or_insert((0.0, 0.0));
            e.0 += r.weight;
            e.1 += r.attributed_revenue.to_f64().unwrap_or(0.0);
        }
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["campaign".to_owned()];
    header.extend(models.iter().map(|m| format!("{m}\nconv / revenue")));
    t.set_header(header);
    let mut names: Vec<String> = campaigns.iter().map(|c| (*c).to_owned()).collect();
    names.push("(direct)".into());
    for c in names {
        let mut row = vec![c.clone()];
        for m in models {
            let (conv, rev) = by.get(&(c.clone(), m)).copied().unwrap_or((0.0, 0.0));
            row.push(format!("{conv:.2} / {rev:.0}"));
        }
        t.add_row(row);
    }
    println!("Attribution models compared — account `{}` (conversions credited / revenue, all dates)", a.name);
    println!("{t}\n");
    Ok(())
}
