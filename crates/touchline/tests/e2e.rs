//! The whole pipeline in one process: HTTP → bus → aggregator → stores → reports. A fixed
//! dataset goes in; the reports and the fact tables must hold exactly the numbers worked out
//! by hand below — on the embedded default (log + SQLite), with Postgres, and with Kafka as the
//! bus plus ClickHouse as a second sink (reports then read from ClickHouse, and ClickHouse must
//! hold the same rows as Postgres).

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use touchline::app::App;
use touchline::config::Config;
use touchline_sql::ResultReader;
use touchline_sql::{Account, Campaign, Store};
use uuid::Uuid;

const WRITE: &str = "tl_wk_e2e_write_key_000001";
const SECRET: &str = "tl_sk_e2e_secret_key_00001";
const ACCOUNT: Uuid = Uuid::from_u128(0xe2e);

struct Running {
    base: String,
    store: Arc<dyn Store>,
    clickhouse: Option<touchline_clickhouse::ClickHouseStore>,
    kafka: bool,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Default)]
struct Setup {
    database_url: Option<String>,
    kafka_brokers: Option<String>,
    /// ClickHouse database (at TOUCHLINE_TEST_CLICKHOUSE); reports then read from it.
    clickhouse_database: Option<String>,
}

async fn start(setup: Setup) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let kafka = setup.kafka_brokers.is_some();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        write_key: Some(WRITE.into()),
        secret_key: Some(SECRET.into()),
        database_url: setup.database_url,
        kafka_brokers: setup.kafka_brokers,
        ..Config::default()
    };
    config.kafka.partitions = 4;
    let (key, value) = common::TANSU_ONE_RECORD_PER_BATCH;
    config.kafka.properties.insert(key.into(), value.into());
    if let Some(db) = setup.clickhouse_database {
        config.clickhouse_url = Some(common::clickhouse_url());
        config.clickhouse.database = db;
        config.reports_source = touchline::config::ReportsSource::Clickhouse;
    }
    config.aggregator.flush_interval_ms = 100;
    // The dataset has fixed dates; the server time is today. Accept them however old.
    config.aggregator.allowed_lateness_secs = 20 * 365 * 86_400;
    config.log.partitions = 4;
    // The account and a campaign in Ho Chi Minh City time exist before the server starts.
    let store = touchline::app::open_store(&config).await.unwrap();
    store.upsert_account(&Account::new(ACCOUNT, "default")).await.unwrap();
    store
        .upsert_campaign(&Campaign {
            account_id: ACCOUNT,
            id: "c-hcm".into(),
            name: None,
            timezone: "Asia/Ho_Chi_Minh".into(),
            start_date: None,
            end_date: None,
        })
        .await
        .unwrap();
    let app = App::build(config, touchline::app::Role::Serve).await.unwrap();
    let store = app.store.clone();
    let clickhouse = app.clickhouse.clone().map(touchline_clickhouse::ClickHouseStore::new);
    let (base, tx) = common::serve_on_loopback(app).await;
    Running { base, store, clickhouse, kafka, _dir: dir, _stop: tx }
}

fn dataset() -> Value {
    json!({"batch": [
        // Visitor v1, anonymous: sees an ad, clicks it, identifies as u1; u1 buys (server-side,
        // customer id only).
        {"type": "touchpoint", "kind": "impression", "channel": "display", "campaign_id": "c1", "advertisement_id": "ad1",
         "anonymous_id": "v1", "timestamp": "2026-11-20T10:00:00Z", "message_id": "t1"},
        {"type": "touchpoint", "kind": "click", "channel": "search", "campaign_id": "c1", "advertisement_id": "ad1",
         "anonymous_id": "v1", "timestamp": "2026-11-20T11:00:00Z", "message_id": "t2"},
        {"type": "identify", "anonymous_id": "v1", "customer_id": "u1", "timestamp": "2026-11-20T11:30:00Z", "message_id": "i1"},
        {"type": "conversion", "kind": "purchase", "value": "100", "currency": "USD", "order_id": "o-1",
         "customer_id": "u1", "timestamp": "2026-11-20T12:00:00Z", "message_id": "cv1"},
        // The same order sent again by a retrying server: counted once.
        {"type": "conversion", "kind": "purchase", "value": "100", "currency": "USD", "order_id": "o-1",
         "customer_id": "u1", "timestamp": "2026-11-20T12:00:05Z", "message_id": "cv1-retry"},
        // Visitor v2 clicks campaign c2 and converts anonymously.
        {"type": "touchpoint", "kind": "click", "channel": "search", "campaign_id": "c2",
         "anonymous_id": "v2", "timestamp": "2026-11-20T09:00:00Z", "message_id": "t3"},
        {"type": "conversion", "kind": "lead", "value": "50", "currency": "USD",
         "anonymous_id": "v2", "timestamp": "2026-11-20T10:00:00Z", "message_id": "cv2"},
        // Spend reported for c1/ad1 twice: the later report replaces the first.
        {"type": "spend", "date": "2026-11-20", "campaign_id": "c1", "advertisement_id": "ad1", "cost": "15", "currency": "USD",
         "source": "google_ads", "timestamp": "2026-11-20T20:00:00Z", "message_id": "s1"},
        {"type": "spend", "date": "2026-11-20", "campaign_id": "c1", "advertisement_id": "ad1", "cost": "20", "currency": "USD",
         "source": "google_ads", "timestamp": "2026-11-20T23:00:00Z", "message_id": "s2"},
        // An impression at 18:30 UTC on the 20th is the 21st in Ho Chi Minh City (UTC+7).
        {"type": "touchpoint", "kind": "impression", "channel": "zalo", "campaign_id": "c-hcm",
         "anonymous_id": "v3", "timestamp": "2026-11-20T18:30:00Z", "message_id": "t4"}
    ]})
}

async fn get(base: &str, path: &str) -> Value {
    let r = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// Polls a report until `check` passes (results are eventually consistent) or 60 s pass.
async fn eventually(base: &str, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = get(base, path).await;
        if check(&v) {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{path} never reached the expected state; last: {v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn row<'a>(rows: &'a Value, campaign: &str) -> Option<&'a Value> {
    rows["rows"].as_array()?.iter().find(|r| r["campaign_id"] == campaign)
}

async fn run_pipeline(setup: Setup) {
    let s = start(setup).await;
    let r = reqwest::Client::new().post(format!("{}/v1/batch", s.base)).bearer_auth(WRITE).json(&dataset()).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let path = "/v1/reports/campaigns?from=2026-11-19&to=2026-11-22";
    let report = eventually(&s.base, path, |v| {
        row(v, "c1").is_some_and(|r| r["conversions"] == 1.0 && r["cost"] == 20.0 && r["impressions"] == 1)
            && row(v, "c2").is_some_and(|r| r["conversions"] == 1.0)
            && row(v, "c-hcm").is_some()
    })
    .await;
    // c1/ad1 on 2026-11-20 (UTC campaign): 1 impression, 1 click, reach 1 (v1), conversion of
    // u1 credited under last_touch to the click, revenue 100, cost 20 (the later report).
    let c1 = row(&report, "c1").unwrap();
    assert_eq!(c1["advertisement_id"], "ad1");
    assert_eq!(c1["date"], "2026-11-20");
    assert_eq!((c1["impressions"].as_i64(), c1["clicks"].as_i64(), c1["reach"].as_i64()), (Some(1), Some(1), Some(1)));
    assert_eq!((c1["revenue"].as_f64(), c1["cost"].as_f64()), (Some(100.0), Some(20.0)));
    assert_eq!(c1["ctr"].as_f64(), Some(1.0), "1 click / 1 impression");
    assert_eq!(c1["cpc"].as_f64(), Some(20.0), "20 / 1 click");
    assert_eq!(c1["cpm"].as_f64(), Some(20_000.0), "20 × 1000 / 1 impression");
    assert_eq!(c1["cpa"].as_f64(), Some(20.0), "20 / 1 conversion");
    assert_eq!(c1["roas"].as_f64(), Some(5.0), "100 / 20");
    // c2: a click and a 50 lead, no spend: roas has no denominator.
    let c2 = row(&report, "c2").unwrap();
    assert_eq!(c2["advertisement_id"], Value::Null);
    assert_eq!((c2["clicks"].as_i64(), c2["impressions"].as_i64()), (Some(1), Some(0)));
    assert_eq!(c2["revenue"].as_f64(), Some(50.0));
    assert_eq!((c2["ctr"].clone(), c2["roas"].clone(), c2["cpm"].clone()), (Value::Null, Value::Null, Value::Null));
    // The Ho Chi Minh City impression lands on the 21st.
    let hcm = row(&report, "c-hcm").unwrap();
    assert_eq!((hcm["date"].as_str(), hcm["impressions"].as_i64()), (Some("2026-11-21"), Some(1)));
    assert_eq!(report["rows"].as_array().unwrap().len(), 3);

    // Attribution: u1's purchase under linear splits between the impression (display) and the
    // click (search) of c1/ad1; v2's lead goes to c2. Revenue is conserved: 150 in total.
    let linear = eventually(&s.base, "/v1/reports/attribution?model=linear&from=2026-11-19&to=2026-11-22", |v| {
        v["rows"].as_array().is_some_and(|r| r.len() == 3)
    })
    .await;
    let find =
        |v: &Value, c: &str, ch: &str| v["rows"].as_array().unwrap().iter().find(|r| r["campaign_id"] == c && r["channel"] == ch).cloned();
    let disp = find(&linear, "c1", "display").expect("display row");
    let srch = find(&linear, "c1", "search").expect("search row");
    assert_eq!((disp["conversions"].as_f64(), disp["revenue"].as_f64()), (Some(0.5), Some(50.0)));
    assert_eq!((srch["conversions"].as_f64(), srch["revenue"].as_f64()), (Some(0.5), Some(50.0)));
    let c2a = find(&linear, "c2", "search").expect("c2 row");
    assert_eq!((c2a["conversions"].as_f64(), c2a["revenue"].as_f64()), (Some(1.0), Some(50.0)));
    let last = get(&s.base, "/v1/reports/attribution?model=last_touch&from=2026-11-19&to=2026-11-22").await;
    let total: f64 = last["rows"].as_array().unwrap().iter().map(|r| r["revenue"].as_f64().unwrap()).sum();
    assert_eq!(total, 150.0);
    assert!(find(&last, "c1", "display").is_none(), "last touch credits the click, not the impression");

    // Data-driven models over the period's journeys: the two converting paths, [display,
    // search] (100) and [search] (50); no journey has ended without converting yet (with 20
    // years of allowed lateness none can be decided). Shapley on channel sets: v({search}) = 1, v({display, search}) = 2, so search gets
    // (1 + 2) / 2 = 1.5 and display 0.5; revenue (50 + 150) / 2 = 100 and 50. Markov on the
    // converting chain: removing display leaves P(conv) = 0.5 (effect 0.5), removing search
    // leaves 0 (effect 1); normalised over 2 conversions: display 2/3, search 4/3, revenue 50/100.
    let channel = |v: &Value, ch: &str| v["rows"].as_array().unwrap().iter().find(|r| r["channel"] == ch).cloned().unwrap();
    let sh = get(&s.base, "/v1/reports/attribution?model=shapley&from=2026-11-19&to=2026-11-22").await;
    assert_eq!((sh["paths"].as_u64(), sh["details"]["method"].as_str()), (Some(2), Some("exact")), "{sh}");
    assert_eq!((channel(&sh, "search")["conversions"].as_f64(), channel(&sh, "search")["revenue"].as_f64()), (Some(1.5), Some(100.0)));
    assert_eq!((channel(&sh, "display")["conversions"].as_f64(), channel(&sh, "display")["revenue"].as_f64()), (Some(0.5), Some(50.0)));
    let mk = get(&s.base, "/v1/reports/attribution?model=markov&from=2026-11-19&to=2026-11-22").await;
    assert_eq!(
        (channel(&mk, "display")["removal_effect"].as_f64(), channel(&mk, "search")["removal_effect"].as_f64()),
        (Some(0.5), Some(1.0)),
        "{mk}"
    );
    assert!((channel(&mk, "display")["conversions"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert!((channel(&mk, "search")["revenue"].as_f64().unwrap() - 100.0).abs() < 1e-6);
    // Order 2: the states are "display search" and "search". Removing display removes the
    // first (P = 1/2, effect 0.5), removing search removes both (effect 1): the same credits.
    let mk2 = get(&s.base, "/v1/reports/attribution?model=markov&order=2&from=2026-11-19&to=2026-11-22").await;
    assert_eq!(mk2["details"]["order"].as_u64(), Some(2), "{mk2}");
    assert_eq!(
        (channel(&mk2, "display")["removal_effect"].as_f64(), channel(&mk2, "search")["removal_effect"].as_f64()),
        (Some(0.5), Some(1.0)),
        "{mk2}"
    );

    // Conversion paths: u1's journey display > search on c1 (100) and v2's search on c2 (50),
    // one converted journey each; by campaign, u1's touches were both on c1.
    let by_channel = get(&s.base, "/v1/reports/paths?from=2026-11-19&to=2026-11-22").await;
    let brief = |v: &Value| -> Vec<(String, i64, i64, f64)> {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let path: Vec<&str> = r["path"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
                (
                    path.join(" > "),
                    r["conversions"].as_i64().unwrap(),
                    r["non_conversions"].as_i64().unwrap(),
                    r["revenue"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(by_channel["journeys"].as_i64(), Some(2), "{by_channel}");
    assert_eq!(brief(&by_channel), vec![("display > search".into(), 1, 0, 100.0), ("search".into(), 1, 0, 50.0)], "{by_channel}");
    let by_campaign = get(&s.base, "/v1/reports/paths?by=campaign&from=2026-11-19&to=2026-11-22").await;
    assert_eq!(brief(&by_campaign), vec![("c1 > c1".into(), 1, 0, 100.0), ("c2".into(), 1, 0, 50.0)], "{by_campaign}");

    // Per conversion: the channel weights from those journeys are the credits above over their
    // total. Markov: display (2/3) / 2 = 1/3, search 2/3. Shapley: display 0.5 / 2 = 1/4,
    // search 3/4. u1's purchase (display, then search, both c1/ad1) splits 100 by them; v2's
    // lead has only search.
    let reader: &dyn ResultReader = match &s.clickhouse {
        Some(ch) => ch,
        None => s.store.as_ref(),
    };
    let weights = touchline::weights::refresh(
        s.store.as_ref(),
        reader,
        ACCOUNT,
        "2026-11-22".parse().unwrap(),
        &touchline::weights::WeightsConfig::default(),
    )
    .await
    .unwrap();
    let share = |w: &touchline_sql::ChannelWeights, ch: &str| w.weights.get(ch).copied().unwrap_or(f64::NAN);
    assert_eq!((weights[0].model.as_str(), weights[0].journeys, weights[0].conversions), ("markov", 2, 2));
    assert!((share(&weights[0], "display") - 1.0 / 3.0).abs() < 1e-9 && (share(&weights[0], "search") - 2.0 / 3.0).abs() < 1e-9);
    assert!((share(&weights[1], "display") - 0.25).abs() < 1e-9 && (share(&weights[1], "search") - 0.75).abs() < 1e-9);
    for (model, display) in [("markov", 1.0 / 3.0), ("shapley", 0.25)] {
        let path = format!("/v1/reports/attribution?model={model}&basis=conversions&from=2026-11-19&to=2026-11-22");
        let per_conversion = eventually(&s.base, &path, |v| {
            find(v, "c1", "display").is_some_and(|r| (r["conversions"].as_f64().unwrap_or(0.0) - display).abs() < 1e-6)
        })
        .await;
        assert_eq!(per_conversion["basis"], "conversions");
        let (d, sr, c2) = (
            find(&per_conversion, "c1", "display").unwrap(),
            find(&per_conversion, "c1", "search").unwrap(),
            find(&per_conversion, "c2", "search").unwrap(),
        );
        assert!((d["revenue"].as_f64().unwrap() - 100.0 * display).abs() < 1e-6, "{per_conversion}");
        assert!((sr["conversions"].as_f64().unwrap() - (1.0 - display)).abs() < 1e-6, "{per_conversion}");
        assert!((sr["revenue"].as_f64().unwrap() - 100.0 * (1.0 - display)).abs() < 1e-6, "{per_conversion}");
        assert_eq!((c2["conversions"].as_f64(), c2["revenue"].as_f64()), (Some(1.0), Some(50.0)));
    }

    // The fact table holds the same numbers as the report.
    let rows = s.store.daily_metrics(ACCOUNT, "2026-11-20".parse().unwrap(), "2026-11-20".parse().unwrap()).await.unwrap();
    let f1 = rows.iter().find(|r| r.campaign_id == "c1").unwrap();
    assert_eq!((f1.impressions, f1.clicks, f1.reach, f1.revenue.to_string(), f1.cost.to_string()), (1, 1, 1, "100".into(), "20".into()));
    let attrs = s.store.attributions(ACCOUNT, Some("linear")).await.unwrap();
    let u1: Vec<_> = attrs.iter().filter(|a| a.customer_id.as_deref() == Some("u1")).collect();
    assert_eq!(u1.len(), 2, "one row per touch of u1's purchase (the retry is the same order)");
    assert!((u1.iter().map(|a| a.weight).sum::<f64>() - 1.0).abs() < 1e-9);

    // Reports need the secret key.
    let r = reqwest::Client::new().get(format!("{}{path}", s.base)).bearer_auth(WRITE).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = reqwest::Client::new().get(format!("{}/v1/reports/attribution?model=nope", s.base)).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = reqwest::Client::new()
        .get(format!("{}/v1/reports/attribution?model=markov&order=4", s.base))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = reqwest::Client::new().get(format!("{}/v1/reports/campaigns?from=yesterday", s.base)).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // /readyz shows the bus; on Kafka the collector's spill is idle (every record went straight
    // to the broker), and /metrics says the same.
    let ready = get(&s.base, "/readyz").await;
    let metrics = reqwest::Client::new().get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    if s.kafka {
        assert_eq!(
            (ready["bus_details"]["kind"].as_str(), ready["bus_details"]["spill"]["state"].as_str()),
            (Some("kafka"), Some("direct")),
            "{ready}"
        );
        assert!(
            metrics.contains("\ntouchline_spill_backlog_records 0\n") && metrics.contains("\ntouchline_spill_records_total 0\n"),
            "{metrics}"
        );
    } else {
        assert_eq!(ready["bus_details"], Value::Null, "{ready}");
    }

    check_reach_over_a_range(&s).await;

    // With ClickHouse as a second sink it holds exactly the SQL store's rows (the sinks are
    // written one after the other, so the last flush may reach ClickHouse a moment later).
    if let Some(ch) = &s.clickhouse {
        let (from, to) = ("2026-11-01".parse().unwrap(), "2026-11-30".parse().unwrap());
        let started = Instant::now();
        loop {
            let ch_attrs = common::sorted_attributions(ch.attributions(ACCOUNT, None).await.unwrap());
            let sql_attrs = common::sorted_attributions(s.store.attributions(ACCOUNT, None).await.unwrap());
            if ch_attrs == sql_attrs || started.elapsed() > Duration::from_secs(30) {
                assert_eq!(ch_attrs, sql_attrs);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(ch.daily_metrics(ACCOUNT, from, to).await.unwrap(), s.store.daily_metrics(ACCOUNT, from, to).await.unwrap());
        assert!(ch.attributions(ACCOUNT, Some("markov")).await.unwrap().len() == 3, "u1's two touches and v2's one");
    }
}

/// Campaign `c-range` (UTC) over December 1–3. Visitor `r-a1` is customer `r-u1`: the link
/// comes from a click that carries both ids, keyed by the customer, on another partition than
/// the visitor's impression of the day before.
fn range_dataset() -> Value {
    let imp = |who: (&str, &str), at: &str, id: &str| {
        let mut v = json!({"type": "touchpoint", "kind": "impression", "channel": "display", "campaign_id": "c-range",
                           "timestamp": at, "message_id": id});
        v[who.0] = Value::from(who.1);
        v
    };
    json!({"batch": [
        // Dec 1: r-a1 (who is r-u1) and r-b.
        imp(("anonymous_id", "r-a1"), "2026-12-01T10:00:00Z", "rg1"),
        imp(("anonymous_id", "r-b"), "2026-12-01T11:00:00Z", "rg2"),
        // Dec 2: a click with both ids (links r-a1 to r-u1), r-b again, r-u1 alone.
        {"type": "touchpoint", "kind": "click", "channel": "search", "campaign_id": "c-range",
         "anonymous_id": "r-a1", "customer_id": "r-u1", "timestamp": "2026-12-02T09:00:00Z", "message_id": "rg3"},
        imp(("anonymous_id", "r-b"), "2026-12-02T10:00:00Z", "rg4"),
        imp(("customer_id", "r-u1"), "2026-12-02T11:00:00Z", "rg5"),
        // Dec 3: r-c.
        imp(("anonymous_id", "r-c"), "2026-12-03T10:00:00Z", "rg6"),
        {"type": "spend", "date": "2026-12-01", "campaign_id": "c-range", "cost": "10", "currency": "USD",
         "source": "google_ads", "timestamp": "2026-12-01T23:00:00Z", "message_id": "rs1"},
        {"type": "spend", "date": "2026-12-03", "campaign_id": "c-range", "cost": "5", "currency": "USD",
         "source": "google_ads", "timestamp": "2026-12-03T23:00:00Z", "message_id": "rs2"}
    ]})
}

/// `group=campaign` answers reach and frequency of the range from the union of the people of
/// every day and partition; the daily rows' reach does not add up to it.
async fn check_reach_over_a_range(s: &Running) {
    // The case this checks needs the visitor and the customer on different partitions (4, see
    // `start`): only a link notice then tells the visitor's partition who r-a1 is.
    let partition = |who: &str| touchline_model::partition_for(format!("{ACCOUNT}:{who}").as_bytes(), 4);
    assert_ne!(partition("r-a1"), partition("r-u1"), "the dataset no longer spans two partitions");
    let r = reqwest::Client::new().post(format!("{}/v1/batch", s.base)).bearer_auth(WRITE).json(&range_dataset()).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // People by day: Dec 1 {r-u1, r-b}, Dec 2 {r-u1, r-b}, Dec 3 {r-c}: daily reach 2, 2, 1
    // (5 summed), range reach 3. Impressions 2 + 2 + 1 = 5, one click, cost 10 + 5 = 15.
    // frequency = impressions / reach = 5/3; cpm = 15 × 1000 / 5 = 3000; cpc = 15 / 1.
    let path = "/v1/reports/campaigns?from=2026-12-01&to=2026-12-03&group=campaign";
    let report = eventually(&s.base, path, |v| {
        row(v, "c-range").is_some_and(|r| r["impressions"] == 5 && r["clicks"] == 1 && r["cost"] == 15.0 && r["reach"] == 3)
    })
    .await;
    assert_eq!(report["rows"].as_array().unwrap().len(), 1, "{report}");
    let c = row(&report, "c-range").unwrap();
    assert_eq!((c["first_date"].as_str(), c["last_date"].as_str()), (Some("2026-12-01"), Some("2026-12-03")));
    assert_eq!(c["reach_estimated"], false);
    assert_eq!(c["advertisement_id"], Value::Null);
    assert!((c["frequency"].as_f64().unwrap() - 5.0 / 3.0).abs() < 1e-9, "{c}");
    assert_eq!((c["cpm"].as_f64(), c["cpc"].as_f64()), (Some(3000.0), Some(15.0)));

    // Dec 1–2 only: {r-u1, r-b}, 4 impressions: frequency 2.
    let first_two = get(&s.base, "/v1/reports/campaigns?from=2026-12-01&to=2026-12-02&group=campaign").await;
    let c = row(&first_two, "c-range").unwrap();
    assert_eq!((c["impressions"].as_i64(), c["reach"].as_i64(), c["frequency"].as_f64()), (Some(4), Some(2), Some(2.0)));

    let daily = get(&s.base, "/v1/reports/campaigns?from=2026-12-01&to=2026-12-03").await;
    let mut reach_by_day: Vec<(&str, i64)> = daily["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["campaign_id"] == "c-range")
        .map(|r| (r["date"].as_str().unwrap(), r["reach"].as_i64().unwrap()))
        .collect();
    reach_by_day.sort_unstable();
    assert_eq!(reach_by_day, vec![("2026-12-01", 2), ("2026-12-02", 2), ("2026-12-03", 1)]);

    let week = "/v1/reports/campaigns?from=2026-12-01&to=2026-12-03&group=week";
    let r = reqwest::Client::new().get(format!("{}{week}", s.base)).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_on_the_embedded_default() {
    run_pipeline(Setup::default()).await;
}

/// The same pipeline with Postgres as the fact-table store (a database of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_with_postgres() {
    let (url, name) = common::postgres_database("e2e").await;
    run_pipeline(Setup { database_url: Some(url), ..Setup::default() }).await;
    common::drop_postgres_database(&name).await;
}

/// The same pipeline on Kafka (a tansu broker of the test's own) with Postgres, and ClickHouse
/// as a second sink that the reports read from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_with_kafka_and_clickhouse() {
    let broker = common::Broker::start();
    let (url, name) = common::postgres_database("e2e_kafka").await;
    let ch_db = common::clickhouse_database("e2e");
    run_pipeline(Setup { database_url: Some(url), kafka_brokers: Some(broker.addr.clone()), clickhouse_database: Some(ch_db.clone()) })
        .await;
    common::drop_postgres_database(&name).await;
    common::drop_clickhouse_database(&ch_db).await;
}
