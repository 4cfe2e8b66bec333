//! Short links over real HTTP: management with the secret key, the redirect (UTM merge, 404,
//! 410, device cookie), bot and preview detection, QR codes, and clicks reaching the metrics.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};
use touchline::app::App;
use touchline::config::Config;
use touchline_sql::{Account, Store};
use uuid::Uuid;

const WRITE: &str = "tl_wk_links_write_key_0001";
const SECRET: &str = "tl_sk_links_secret_key_001";
const ACCOUNT: Uuid = Uuid::from_u128(0x11c);

struct Running {
    base: String,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    links: Arc<touchline_links::LinkState>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        Config { data_dir: dir.path().join("data"), write_key: Some(WRITE.into()), secret_key: Some(SECRET.into()), ..Config::default() };
    config.aggregator.flush_interval_ms = 100;
    config.aggregator.allowed_lateness_secs = 20 * 365 * 86_400;
    let store = touchline::app::open_store(&config).await.unwrap();
    store.upsert_account(&Account::new(ACCOUNT, "default")).await.unwrap();
    let app = App::build(config, touchline::app::Role::Serve).await.unwrap();
    let (store, links) = (app.store.clone(), app.links.clone());
    let (base, tx) = common::serve_on_loopback(app).await;
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    Running { base, http, store, links, _dir: dir, _stop: tx }
}

impl Running {
    async fn api(&self, method: reqwest::Method, path: &str, key: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn click(&self, code: &str, ua: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut r = self.http.get(format!("{}/l/{code}", self.base)).header("user-agent", ua);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send().await.unwrap()
    }
}

const HUMAN_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const HUMAN_CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

/// Real User-Agent strings of link-preview fetchers and crawlers.
const BOTS: [&str; 10] = [
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Twitterbot/1.0",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "WhatsApp/2.23.20.0",
    "TelegramBot (like TwitterBot)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
    "",
];

#[test]
fn user_agent_table() {
    for ua in BOTS {
        assert!(touchline_links::is_bot(Some(ua)), "{ua:?} is a bot or preview fetcher");
    }
    for ua in [
        HUMAN_IPHONE,
        HUMAN_CHROME,
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    ] {
        assert!(!touchline_links::is_bot(Some(ua)), "{ua:?} is a person");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_redirect_count_and_qr() {
    let s = start().await;
    // Management needs the secret key.
    let body = json!({"target_url": "https://shop.example/tet?ref=sms", "code": "tet26", "campaign_id": "c-tet", "utm_source": "zalo", "utm_campaign": "tet"});
    assert_eq!(s.api(reqwest::Method::POST, "/v1/links", WRITE, Some(body.clone())).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.api(reqwest::Method::POST, "/v1/links", "nope", Some(body.clone())).await.0, StatusCode::UNAUTHORIZED);
    let (st, created) = s.api(reqwest::Method::POST, "/v1/links", SECRET, Some(body.clone())).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    assert_eq!(created["short_url"], format!("{}/l/tet26", s.base));
    assert_eq!(s.api(reqwest::Method::POST, "/v1/links", SECRET, Some(body)).await.0, StatusCode::CONFLICT);
    let (st, e) =
        s.api(reqwest::Method::POST, "/v1/links", SECRET, Some(json!({"target_url": "https://x.example", "code": "healthz"}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("reserved"));
    let (st, e) = s.api(reqwest::Method::POST, "/v1/links", SECRET, Some(json!({"target_url": "javascript:alert(1)"}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("target_url"));
    let (st, random) =
        s.api(reqwest::Method::POST, "/v1/links", SECRET, Some(json!({"target_url": "https://shop.example/?utm_source=mail"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    let random_code = random["code"].as_str().unwrap().to_owned();
    assert_eq!(random_code.len(), 7);

    // Redirect: UTMs merged without overriding, no caching, a device cookie set once.
    let r = s.click("tet26", HUMAN_IPHONE, None).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["location"], "https://shop.example/tet?ref=sms&utm_source=zalo&utm_campaign=tet");
    assert_eq!(r.headers()["cache-control"], "private, max-age=0");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("tl_did=") && cookie.contains("SameSite=Lax") && cookie.contains("Max-Age=31536000"), "{cookie}");
    let device = cookie.split(';').next().unwrap().to_owned();
    let again = s.click("tet26", HUMAN_IPHONE, Some(&device)).await;
    assert!(again.headers().get("set-cookie").is_none(), "the cookie is set once");
    let r = s.click(&random_code, HUMAN_CHROME, None).await;
    assert_eq!(r.headers()["location"], "https://shop.example/?utm_source=mail", "the target's own utm_source wins");
    // Bots and previews are redirected but flagged; HEAD is a bot too.
    for ua in BOTS {
        assert_eq!(s.click("tet26", ua, None).await.status(), StatusCode::FOUND);
    }
    let head = s.http.head(format!("{}/l/tet26", s.base)).header("user-agent", HUMAN_CHROME).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::FOUND);
    // Unknown and deleted codes.
    let r = s.click("nope-nope", HUMAN_CHROME, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("not exist"));
    assert_eq!(s.api(reqwest::Method::DELETE, &format!("/v1/links/{random_code}"), SECRET, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(s.click(&random_code, HUMAN_CHROME, None).await.status(), StatusCode::GONE);
    // Update the target.
    let (st, _) = s.api(reqwest::Method::PATCH, "/v1/links/tet26", SECRET, Some(json!({"target_url": "https://shop.example/tet2"}))).await;
    assert_eq!(st, StatusCode::OK);
    let r = s.click("tet26", HUMAN_CHROME, Some(&device)).await;
    assert_eq!(r.headers()["location"], "https://shop.example/tet2?utm_source=zalo&utm_campaign=tet");

    // QR codes decode to the short URL.
    let png = s.http.get(format!("{}/v1/links/tet26/qr.png", s.base)).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    let bytes = png.bytes().await.unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    let (_, content) = grids[0].decode().unwrap();
    assert_eq!(content, format!("{}/l/tet26", s.base));
    let svg = s.http.get(format!("{}/v1/links/tet26/qr.svg", s.base)).bearer_auth(SECRET).send().await.unwrap().text().await.unwrap();
    assert!(svg.contains("<svg"));

    // Every click is counted for its link: 3 human clicks of tet26 (the second iPhone click
    // counts though it is not unique), 11 bot/HEAD ones; the human ones are click touches of
    // campaign c-tet in the metrics.
    let start = Instant::now();
    loop {
        let (_, list) = s.api(reqwest::Method::GET, "/v1/links", SECRET, None).await;
        let tet = list["links"].as_array().unwrap().iter().find(|l| l["code"] == "tet26").unwrap().clone();
        if tet["clicks"] == 3 && tet["bot_clicks"] == 11 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "click counts never settled: {tet}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.links.stats.lost.load(Ordering::Relaxed), 0);
    let today = chrono::Utc::now().date_naive();
    let start = Instant::now();
    loop {
        let rows = s.store.daily_metrics(ACCOUNT, today - chrono::Duration::days(1), today + chrono::Duration::days(1)).await.unwrap();
        if rows.iter().filter(|r| r.campaign_id == "c-tet").map(|r| r.clicks).sum::<i64>() == 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "clicks never reached the metrics: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
