//! Shared by the integration tests: a database per test on the real server, and a generated
//! dataset driven through the real engine.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use touchline_clickhouse::{ClickHouse, ClickHouseConfig};
use touchline_model::Record;
use uuid::Uuid;

/// The server the tests use: `TOUCHLINE_TEST_CLICKHOUSE` or the local default.
pub fn server() -> String {
    std::env::var("TOUCHLINE_TEST_CLICKHOUSE").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// A database of its own for one test, dropped when the test ends (also when it panics).
pub struct TestDb {
    pub ch: ClickHouse,
    pub name: String,
}

impl TestDb {
    /// Connects (the database does not exist yet). Fails the test — never skips it — when the
    /// server is unreachable.
    pub async fn fresh(tag: &str) -> TestDb {
        let name = format!("touchline_t_{tag}_{}", &Uuid::new_v4().simple().to_string()[..10]);
        let cfg = ClickHouseConfig::from_url(server()).with_database(&name);
        let ch = match touchline_clickhouse::connect(&cfg).await {
            Ok(ch) => ch,
            Err(e) => panic!(
                "the ClickHouse test server at {} is unreachable: {e}\n\
                 Run scripts/clickhouse.sh to install and start it (or set TOUCHLINE_TEST_CLICKHOUSE to a running server).",
                server()
            ),
        };
        TestDb { ch, name }
    }

    /// Connects and applies the migrations.
    pub async fn migrated(tag: &str) -> TestDb {
        let db = TestDb::fresh(tag).await;
        touchline_clickhouse::migrate(&db.ch).await.expect("migrate");
        db
    }

    /// Runs a query and returns its TSV output.
    pub async fn tsv(&self, sql: &str) -> String {
        let mut cur = self.ch.client().query_raw(sql).fetch_bytes("TSV").unwrap_or_else(|e| panic!("{sql}: {e}"));
        let bytes = cur.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// A single number.
    pub async fn count(&self, sql: &str) -> u64 {
        let out = self.tsv(sql).await;
        out.trim().parse().unwrap_or_else(|_| panic!("{sql} returned {out:?}"))
    }

    pub async fn exec(&self, sql: &str) {
        self.ch.execute(sql, "test statement").await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop_database(&server(), &self.name);
    }
}

/// `DROP DATABASE` over a plain HTTP/1.0 request: Drop cannot await.
fn drop_database(url: &str, name: &str) {
    let Ok(u) = url::Url::parse(url) else { return };
    let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else { return };
    let body = format!("DROP DATABASE IF EXISTS {name}");
    let req = format!("POST / HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    if let Ok(mut s) = TcpStream::connect((host, port)) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        if s.write_all(req.as_bytes()).is_ok() {
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
}

pub fn account(n: u8) -> Uuid {
    Uuid::from_u128(0xa000 + u128::from(n))
}

/// A small deterministic generator (no dependency, same data on every run).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn ts(base: i64, secs: i64) -> String {
    chrono::DateTime::from_timestamp(base + secs, 123_456_789).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A realistic mix of every entity for two accounts over three days, ordered by time:
/// people with impressions, clicks, page events, sessions, link clicks and conversions
/// (some by order id, some repeated), spend reports (one restated), identify and alias.
pub fn dataset(people: u64, seed: u64) -> Vec<Record> {
    let mut g = Lcg::new(seed);
    let base = 1_772_323_200; // 2026-03-01T00:00:00Z
    let campaigns = [("spring", ["ad1", "ad2"]), ("summer", ["ad3", "ad4"]), ("autumn", ["ad5", "ad6"])];
    let channels = ["paid_social", "email", "display", "search"];
    let mut out: Vec<(i64, serde_json::Value)> = Vec::new();
    let mut n = 0u64;
    let mut rid = |prefix: &str| {
        n += 1;
        format!("{prefix}-{seed}-{n}")
    };
    for p in 0..people {
        let acct = account(1 + (p % 2) as u8);
        let anon = format!("anon-{p}");
        let cust = (p % 3 == 0).then(|| format!("cust-{p}"));
        let mut t = g.below(2 * 86_400) as i64;
        let touches = 1 + g.below(4);
        for _ in 0..touches {
            let (c, ads) = campaigns[g.below(3) as usize];
            let ad = (g.below(4) != 0).then(|| ads[g.below(2) as usize]);
            let kind = ["impression", "click", "impression", "cta"][g.below(4) as usize];
            let mut v = serde_json::json!({"v": 1, "type": "touchpoint", "record_id": rid("tp"), "account_id": acct, "timestamp": ts(base, t),
                "received_at": ts(base, t + 1), "anonymous_id": anon, "kind": kind, "channel": channels[g.below(4) as usize], "campaign_id": c,
                "utm_source": "newsletter"});
            if let Some(ad) = ad {
                v["advertisement_id"] = ad.into();
            }
            if let Some(cu) = &cust {
                v["customer_id"] = cu.clone().into();
            }
            out.push((t, v));
            t += 60 + g.below(3_600) as i64;
            if g.below(2) == 0 {
                out.push((t, serde_json::json!({"v": 1, "type": "event", "record_id": rid("ev"), "account_id": acct, "timestamp": ts(base, t),
                    "received_at": ts(base, t), "anonymous_id": anon, "event_name": "product_viewed", "campaign_id": c,
                    "properties": {"sku": format!("sku-{}", g.below(50)), "price": 19.99},
                    "context": {"page_url": format!("https://shop.example/p/{p}?utm_source=newsletter&utm_campaign={c}"), "user_agent": "Mozilla/5.0", "ip": "203.0.113.9"}})));
                t += 30;
            }
        }
        if g.below(3) == 0 {
            out.push((t, serde_json::json!({"v": 1, "type": "session", "record_id": rid("se"), "account_id": acct, "timestamp": ts(base, t),
                "received_at": ts(base, t), "anonymous_id": anon, "session_id": format!("s-{p}"), "started_at": ts(base, t),
                "ended_at": ts(base, t + 600), "utm_source": "newsletter", "utm_campaign": "spring", "landing_page": "https://shop.example/"})));
        }
        if g.below(4) == 0 {
            out.push((t, serde_json::json!({"v": 1, "type": "link_click", "record_id": rid("lc"), "account_id": acct, "timestamp": ts(base, t),
                "received_at": ts(base, t), "anonymous_id": anon, "short_code": format!("code{}", g.below(3)), "device_id": format!("dev-{p}"),
                "campaign_id": "spring", "bot": g.below(5) == 0, "unique": g.below(2) == 0})));
        }
        if cust.is_some() && g.below(2) == 0 {
            out.push((
                t,
                serde_json::json!({"v": 1, "type": "identify", "record_id": rid("id"), "account_id": acct, "timestamp": ts(base, t),
                "received_at": ts(base, t), "anonymous_id": anon, "customer_id": cust, "traits": {"plan": "pro"}}),
            ));
        }
        if g.below(2) == 0 {
            t += 120;
            let value = format!("{}.{:02}", 5 + g.below(200), g.below(100));
            let mut v = serde_json::json!({"v": 1, "type": "conversion", "record_id": rid("cv"), "account_id": acct, "timestamp": ts(base, t),
                "received_at": ts(base, t), "anonymous_id": anon, "kind": "purchase", "value": value, "currency": "EUR"});
            if g.below(2) == 0 {
                v["order_id"] = format!("o-{p}").into();
            }
            if let Some(cu) = &cust {
                v["customer_id"] = cu.clone().into();
            }
            out.push((t, v.clone()));
            if g.below(5) == 0 {
                // The same order sent again (a client retry with a new message id).
                v["record_id"] = rid("cv").into();
                out.push((t + 5, v));
            }
        }
    }
    for (day, date) in ["2026-03-01", "2026-03-02", "2026-03-03"].iter().enumerate() {
        for (i, (c, ads)) in campaigns.iter().enumerate() {
            for acct in [account(1), account(2)] {
                let t = day as i64 * 86_400 + 80_000 + i as i64;
                let cost = format!("{}.{:02}", 10 + g.below(90), g.below(100));
                out.push((
                    t,
                    serde_json::json!({"v": 1, "type": "spend", "record_id": rid("sp"), "account_id": acct, "timestamp": ts(base, t),
                    "received_at": ts(base, t), "date": date, "campaign_id": c, "advertisement_id": ads[0], "cost": cost, "currency": "EUR",
                    "impressions": 1000 + g.below(500), "clicks": 10 + g.below(50), "source": "meta"}),
                ));
                if day == 1 {
                    // A restated report for the same day and source.
                    out.push((
                        t + 3_600,
                        serde_json::json!({"v": 1, "type": "spend", "record_id": rid("sp"), "account_id": acct,
                        "timestamp": ts(base, t + 3_600), "received_at": ts(base, t + 3_600), "date": date, "campaign_id": c,
                        "advertisement_id": ads[0], "cost": "77.70", "currency": "EUR", "source": "meta"}),
                    ));
                }
            }
        }
    }
    out.sort_by_key(|(t, _)| *t);
    out.into_iter().map(|(_, v)| Record::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_or_else(|e| panic!("{e}: {v}"))).collect()
}
