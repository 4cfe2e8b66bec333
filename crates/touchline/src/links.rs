//! Short links: the redirect (`GET /l/{code}`, and `/{code}` on a dedicated short domain) that
//! logs every click without waiting on the bus, and link management with the secret key
//! (create, list with click counts, update, soft delete, QR codes).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use dashmap::DashMap;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::reports::error;
use tokio::sync::mpsc;
use touchline_bus::{Bus, OutRecord};
use touchline_collector::KeyStore;
use touchline_model::{Body as RecordBody, Id, LinkClick, Meta, Record, ENVELOPE_VERSION};
use touchline_sql::{CatalogCache, Link, Store};
use uuid::Uuid;

/// Counters of the click pipeline.
#[derive(Debug, Default)]
pub struct ClickStats {
    pub redirects: AtomicU64,
    pub logged: AtomicU64,
    /// Clicks that overflowed the in-process queue and were appended by a task of their own.
    pub spilled: AtomicU64,
    /// Clicks that could not be appended to the bus after retries (tests keep this at 0).
    pub lost: AtomicU64,
}

pub struct LinkState {
    pub catalog: Arc<CatalogCache>,
    pub store: Arc<dyn Store>,
    /// Where click counts are read (the SQL store or ClickHouse).
    pub results: Arc<dyn crate::results::Results>,
    pub keys: Arc<dyn KeyStore>,
    pub bus: Arc<dyn Bus>,
    /// Base of short URLs, e.g. `https://go.example` (then links are `{base}/l/{code}`).
    base_url: std::sync::RwLock<String>,
    pub stats: Arc<ClickStats>,
    queue: mpsc::Sender<Record>,
    recent: DashMap<(String, String), Instant>,
    /// Target with UTMs merged, per code, valid for one catalog version.
    locations: DashMap<String, (i64, HeaderValue, Arc<str>)>,
}

/// Paths a custom code may not take.
const RESERVED: [&str; 16] = [
    "v1",
    "l",
    "p.gif",
    "healthz",
    "readyz",
    "metrics",
    "openapi.json",
    "api",
    "admin",
    "login",
    "static",
    "assets",
    "favicon.ico",
    "robots.txt",
    "qr",
    "links",
];

const COOKIE: &str = "tl_did";

impl LinkState {
    /// Starts the click drainer: a bounded queue appended to the bus in batches.
    pub fn new(
        catalog: Arc<CatalogCache>,
        store: Arc<dyn Store>,
        results: Arc<dyn crate::results::Results>,
        keys: Arc<dyn KeyStore>,
        bus: Arc<dyn Bus>,
        base_url: String,
    ) -> Arc<LinkState> {
        let (tx, rx) = mpsc::channel(10_000);
        let stats = Arc::new(ClickStats::default());
        tokio::spawn(drain(rx, bus.clone(), stats.clone()));
        Arc::new(LinkState {
            catalog,
            store,
            results,
            keys,
            bus,
            base_url: std::sync::RwLock::new(base_url),
            stats,
            queue: tx,
            recent: DashMap::new(),
            locations: DashMap::new(),
        })
    }

    pub fn base_url(&self) -> String {
        self.base_url.read().map(|b| b.clone()).unwrap_or_default()
    }

    /// Sets the base of short URLs (once the listener's address is known).
    pub fn set_base_url(&self, base: String) {
        if let Ok(mut b) = self.base_url.write() {
            *b = base;
        }
    }
}

async fn append_with_retry(bus: &dyn Bus, records: Vec<OutRecord>, stats: &ClickStats) {
    let n = records.len() as u64;
    let mut backoff = Duration::from_millis(50);
    for _ in 0..8 {
        match bus.append(records.clone()).await {
            Ok(_) => {
                stats.logged.fetch_add(n, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "appending link clicks failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    stats.lost.fetch_add(n, Ordering::Relaxed);
    tracing::error!(clicks = n, "link clicks lost after retries");
}

fn out(r: &Record) -> OutRecord {
    OutRecord {
        topic: r.topic().to_owned(),
        key: r.partition_key(),
        value: r.to_json(),
        timestamp_ms: r.meta.received_at.timestamp_millis(),
    }
}

async fn drain(mut rx: mpsc::Receiver<Record>, bus: Arc<dyn Bus>, stats: Arc<ClickStats>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![out(&first)];
        while batch.len() < 1000 {
            match rx.try_recv() {
                Ok(r) => batch.push(out(&r)),
                Err(_) => break,
            }
        }
        append_with_retry(bus.as_ref(), batch, &stats).await;
    }
}

pub fn router(state: Arc<LinkState>, short_domain: bool) -> Router {
    let mut r = Router::new()
        .route("/l/{code}", get(redirect).head(redirect))
        .route("/v1/links", get(list).post(create))
        .route("/v1/links/{code}", get(show).patch(update).delete(remove))
        .route("/v1/links/{code}/qr.svg", get(qr_svg))
        .route("/v1/links/{code}/qr.png", get(qr_png));
    if short_domain {
        r = r.route("/{code}", get(redirect).head(redirect));
    }
    r.with_state(state)
}

/// Link-preview fetchers, crawlers and HTTP tools, matched case-insensitively in the
/// User-Agent.
const BOT_MARKERS: [&str; 30] = [
    "bot",
    "crawler",
    "spider",
    "slurp",
    "facebookexternalhit",
    "facebot",
    "slack",
    "twitterbot",
    "linkedinbot",
    "whatsapp",
    "telegrambot",
    "discordbot",
    "skypeuripreview",
    "embedly",
    "quora link preview",
    "pinterest",
    "vkshare",
    "redditbot",
    "applebot",
    "google-structured-data",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "curl/",
    "wget/",
    "okhttp",
    "axios/",
    "preview",
];

/// Bots, link-preview fetchers and tools (and an empty User-Agent).
pub fn is_bot(user_agent: Option<&str>) -> bool {
    let Some(ua) = user_agent.map(str::trim).filter(|u| !u.is_empty()) else { return true };
    let ua = ua.to_ascii_lowercase();
    BOT_MARKERS.iter().any(|m| ua.contains(m))
}

/// Merges the link's UTM parameters into the target URL, never overriding ones it already has.
pub fn merge_utm(target: &str, link: &Link) -> String {
    let Ok(mut url) = url::Url::parse(target) else { return target.to_owned() };
    let present: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    let add: Vec<(&str, &str)> = [
        ("utm_source", &link.utm_source),
        ("utm_medium", &link.utm_medium),
        ("utm_campaign", &link.utm_campaign),
        ("utm_term", &link.utm_term),
        ("utm_content", &link.utm_content),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (k, v)))
    .filter(|(k, _)| !present.iter().any(|p| p == k))
    .collect();
    if !add.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in add {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

/// Zeroes the host part of an address (last octet of IPv4, last 80 bits of IPv6).
pub fn anonymize_ip(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            std::net::Ipv4Addr::new(o[0], o[1], o[2], 0).to_string()
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
        }
    }
}

fn cookie_device(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == COOKIE && !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then(|| v.to_owned())
    })
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title><meta name=\"robots\" content=\"noindex\"></head>\
         <body style=\"font-family:sans-serif;margin:4em auto;max-width:32em\"><h1>{title}</h1><p>{text}</p></body></html>"
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "private, max-age=0")], html).into_response()
}

async fn redirect(
    State(state): State<Arc<LinkState>>,
    Path(code): Path<String>,
    method: Method,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let snap = state.catalog.snapshot();
    let Some(link) = snap.links.get(&code) else {
        return page(StatusCode::NOT_FOUND, "Link not found", "This short link does not exist.");
    };
    if link.deleted {
        return page(StatusCode::GONE, "Link removed", "This short link has been removed.");
    }
    state.stats.redirects.fetch_add(1, Ordering::Relaxed);
    let cached = state.locations.get(&code).filter(|c| c.0 == snap.version).map(|c| (c.1.clone(), c.2.clone()));
    let (location_header, location) = match cached {
        Some(c) => c,
        None => {
            let loc: Arc<str> = merge_utm(&link.target_url, link).into();
            let Ok(hv) = HeaderValue::from_str(&loc) else {
                return page(StatusCode::BAD_GATEWAY, "Bad link target", "This short link's target is not a valid URL.");
            };
            if state.locations.len() > 100_000 {
                state.locations.clear();
            }
            state.locations.insert(code.clone(), (snap.version, hv.clone(), loc.clone()));
            (hv, loc)
        }
    };
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bot = method == Method::HEAD || is_bot(ua.as_deref());
    let existing = cookie_device(&headers);
    let device = existing.clone().unwrap_or_else(|| Uuid::new_v4().simple().to_string());
    let unique = {
        let key = (device.clone(), code.clone());
        let now = Instant::now();
        let fresh = state.recent.get(&key).is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(3600));
        if fresh {
            if state.recent.len() > 200_000 {
                state.recent.retain(|_, t| now.duration_since(*t) < Duration::from_secs(3600));
            }
            state.recent.insert(key, now);
        }
        fresh
    };
    let anonymize = snap.accounts.get(&link.account_id).is_some_and(|a| a.anonymize_ip);
    let ip = if anonymize { anonymize_ip(peer.ip()) } else { peer.ip().to_string() };
    let now = Utc::now();
    let id = |s: &str| Id::new(s).ok();
    let record = Record {
        v: ENVELOPE_VERSION,
        meta: Meta {
            record_id: Id::from_uuid(Uuid::now_v7()),
            account_id: link.account_id,
            timestamp: now,
            received_at: now,
            sent_at: None,
            anonymous_id: id(&device),
            customer_id: None,
        },
        body: RecordBody::LinkClick(LinkClick {
            link_id: None,
            short_code: id(&code),
            target_url: Some(location.to_string()),
            referer: headers.get(header::REFERER).and_then(|v| v.to_str().ok()).map(str::to_owned),
            user_agent: ua,
            ip: Some(ip),
            device_id: id(&device),
            campaign_id: link.campaign_id.as_deref().and_then(id),
            advertisement_id: link.advertisement_id.as_deref().and_then(id),
            bot,
            unique: Some(unique),
        }),
    };
    // The redirect never waits on the bus: queue the click, or spill it to a task of its own.
    if let Err(mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r)) = state.queue.try_send(record) {
        state.stats.spilled.fetch_add(1, Ordering::Relaxed);
        let bus = state.bus.clone();
        let stats = state.stats.clone();
        tokio::spawn(async move { append_with_retry(bus.as_ref(), vec![out(&r)], &stats).await });
    }
    let mut resp = Response::builder().status(StatusCode::FOUND).body(Body::empty()).unwrap_or_default();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, location_header);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=0"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("unsafe-url"));
    if existing.is_none() && !bot {
        let secure = if state.base_url().starts_with("https://") { "; Secure" } else { "" };
        if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}={device}; Max-Age=31536000; Path=/; SameSite=Lax; HttpOnly{secure}")) {
            h.insert(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn secret_account(state: &LinkState, headers: &HeaderMap) -> Result<Uuid, Response> {
    crate::reports::secret_account(state.keys.as_ref(), headers, "link management calls").await
}

fn validate_target(u: &str) -> Result<(), String> {
    let url = url::Url::parse(u).map_err(|e| format!("field `target_url`: {u:?} is not a URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("field `target_url`: scheme `{}` is not allowed; use http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("field `target_url`: the URL has no host".into());
    }
    Ok(())
}

fn validate_code(c: &str) -> Result<(), String> {
    if !(3..=64).contains(&c.len()) || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_') {
        return Err(format!("field `code`: {c:?} must be 3 to 64 characters of letters, digits, '-' or '_'"));
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(c)) {
        return Err(format!("field `code`: {c:?} is reserved"));
    }
    Ok(())
}

fn random_code() -> String {
    const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    Uuid::new_v4().as_bytes().iter().take(7).map(|b| A[(*b as usize) % A.len()] as char).collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkInput {
    target_url: Option<String>,
    code: Option<String>,
    campaign_id: Option<String>,
    advertisement_id: Option<String>,
    utm_source: Option<String>,
    utm_medium: Option<String>,
    utm_campaign: Option<String>,
    utm_term: Option<String>,
    utm_content: Option<String>,
}

fn link_json(state: &LinkState, l: &Link, clicks: Option<(i64, i64)>) -> Value {
    json!({
        "code": l.short_code, "short_url": format!("{}/l/{}", state.base_url(), l.short_code), "target_url": l.target_url,
        "campaign_id": l.campaign_id, "advertisement_id": l.advertisement_id,
        "utm_source": l.utm_source, "utm_medium": l.utm_medium, "utm_campaign": l.utm_campaign, "utm_term": l.utm_term, "utm_content": l.utm_content,
        "deleted": l.deleted,
        "clicks": clicks.map(|c| c.0), "bot_clicks": clicks.map(|c| c.1),
    })
}

fn parse_input(body: &[u8]) -> Result<LinkInput, Response> {
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_request", format!("invalid link JSON: {e}")))
}

async fn save(state: &LinkState, link: &Link) -> Result<(), Response> {
    state
        .store
        .upsert_link(link)
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("the store is unavailable: {e}")))?;
    // This instance serves the change at once; others follow the catalog notification.
    let _ = state.catalog.refresh().await;
    Ok(())
}

async fn create(State(state): State<Arc<LinkState>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let account = match secret_account(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let input = match parse_input(&body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let Some(target) = input.target_url.clone() else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "field `target_url`: required");
    };
    if let Err(m) = validate_target(&target) {
        return error(StatusCode::BAD_REQUEST, "bad_request", m);
    }
    let code = match &input.code {
        Some(c) => {
            if let Err(m) = validate_code(c) {
                return error(StatusCode::BAD_REQUEST, "bad_request", m);
            }
            if state.catalog.snapshot().links.contains_key(c) {
                return error(StatusCode::CONFLICT, "conflict", format!("field `code`: {c:?} is taken"));
            }
            c.clone()
        }
        None => {
            let snap = state.catalog.snapshot();
            let mut c = random_code();
            while snap.links.contains_key(&c) {
                c = random_code();
            }
            c
        }
    };
    let link = Link {
        account_id: account,
        short_code: code,
        target_url: target,
        utm_source: input.utm_source,
        utm_medium: input.utm_medium,
        utm_campaign: input.utm_campaign,
        utm_term: input.utm_term,
        utm_content: input.utm_content,
        campaign_id: input.campaign_id,
        advertisement_id: input.advertisement_id,
        deleted: false,
    };
    if let Err(r) = save(&state, &link).await {
        return r;
    }
    // The upsert never takes over another account's code: check who owns it now.
    match state.catalog.snapshot().links.get(&link.short_code) {
        Some(l) if l.account_id == account => (StatusCode::CREATED, Json(link_json(&state, l, Some((0, 0))))).into_response(),
        _ => error(StatusCode::CONFLICT, "conflict", format!("field `code`: {:?} is taken", link.short_code)),
    }
}

fn own_link(state: &LinkState, account: Uuid, code: &str) -> Result<Link, Response> {
    match state.catalog.snapshot().links.get(code) {
        Some(l) if l.account_id == account => Ok(l.clone()),
        _ => Err(error(StatusCode::NOT_FOUND, "not_found", format!("no link {code:?} in this account"))),
    }
}

async fn list(State(state): State<Arc<LinkState>>, headers: HeaderMap) -> Response {
    let account = match secret_account(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let counts = state.results.link_click_counts(account).await.ok().flatten();
    let snap = state.catalog.snapshot();
    let mut links: Vec<&Link> = snap.links.values().filter(|l| l.account_id == account).collect();
    links.sort_by(|a, b| a.short_code.cmp(&b.short_code));
    let rows: Vec<Value> =
        links.into_iter().map(|l| link_json(&state, l, counts.as_ref().map(|c| c.get(&l.short_code).copied().unwrap_or((0, 0))))).collect();
    Json(json!({ "links": rows })).into_response()
}

async fn show(State(state): State<Arc<LinkState>>, Path(code): Path<String>, headers: HeaderMap) -> Response {
    let account = match secret_account(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match own_link(&state, account, &code) {
        Ok(l) => {
            let counts = state.results.link_click_counts(account).await.ok().flatten();
            Json(link_json(&state, &l, counts.map(|c| c.get(&code).copied().unwrap_or((0, 0))))).into_response()
        }
        Err(r) => r,
    }
}

async fn update(State(state): State<Arc<LinkState>>, Path(code): Path<String>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let account = match secret_account(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut link = match own_link(&state, account, &code) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let input = match parse_input(&body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if input.code.as_deref().is_some_and(|c| c != code) {
        return error(StatusCode::BAD_REQUEST, "bad_request", "field `code`: a link's code cannot change");
    }
    if let Some(t) = input.target_url {
        if let Err(m) = validate_target(&t) {
            return error(StatusCode::BAD_REQUEST, "bad_request", m);
        }
        link.target_url = t;
    }
    for (slot, v) in [
        (&mut link.utm_source, input.utm_source),
        (&mut link.utm_medium, input.utm_medium),
        (&mut link.utm_campaign, input.utm_campaign),
        (&mut link.utm_term, input.utm_term),
        (&mut link.utm_content, input.utm_content),
        (&mut link.campaign_id, input.campaign_id),
        (&mut link.advertisement_id, input.advertisement_id),
    ] {
        if v.is_some() {
            *slot = v;
        }
    }
    match save(&state, &link).await {
        Ok(()) => Json(link_json(&state, &link, None)).into_response(),
        Err(r) => r,
    }
}

async fn remove(State(state): State<Arc<LinkState>>, Path(code): Path<String>, headers: HeaderMap) -> Response {
    let account = match secret_account(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let link = match own_link(&state, account, &code) {
        Ok(l) => l,
        Err(r) => return r,
    };
    match save(&state, &Link { deleted: true, ..link }).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

fn qr(state: &LinkState, code: &str) -> Result<qrcode::QrCode, Response> {
    if !state.catalog.snapshot().links.contains_key(code) {
        return Err(error(StatusCode::NOT_FOUND, "not_found", format!("no link {code:?}")));
    }
    qrcode::QrCode::new(format!("{}/l/{code}", state.base_url()).as_bytes())
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "qr", format!("could not encode the QR code: {e}")))
}

async fn qr_svg(State(state): State<Arc<LinkState>>, Path(code): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = secret_account(&state, &headers).await {
        return r;
    }
    match qr(&state, &code) {
        Ok(q) => {
            let svg = q.render::<qrcode::render::svg::Color<'_>>().min_dimensions(256, 256).build();
            ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
        }
        Err(r) => r,
    }
}

async fn qr_png(State(state): State<Arc<LinkState>>, Path(code): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = secret_account(&state, &headers).await {
        return r;
    }
    let q = match qr(&state, &code) {
        Ok(q) => q,
        Err(r) => return r,
    };
    // 8 pixels per module and a 4-module quiet zone, as a greyscale PNG.
    let (scale, quiet) = (8usize, 4usize);
    let n = q.width();
    let side = (n + 2 * quiet) * scale;
    let colors = q.to_colors();
    let mut pixels = vec![255u8; side * side];
    for y in 0..n {
        for x in 0..n {
            if colors[y * n + x] == qrcode::Color::Dark {
                for dy in 0..scale {
                    let row = ((y + quiet) * scale + dy) * side;
                    let start = row + (x + quiet) * scale;
                    pixels[start..start + scale].fill(0);
                }
            }
        }
    }
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let written = enc.write_header().and_then(|mut w| w.write_image_data(&pixels));
        if let Err(e) = written {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "qr", format!("could not encode the PNG: {e}"));
        }
    }
    ([(header::CONTENT_TYPE, "image/png")], buf).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(utm: &[(&str, &str)]) -> Link {
        let g = |k: &str| utm.iter().find(|(a, _)| *a == k).map(|(_, v)| (*v).to_owned());
        Link {
            account_id: Uuid::nil(),
            short_code: "abc".into(),
            target_url: String::new(),
            utm_source: g("utm_source"),
            utm_medium: g("utm_medium"),
            utm_campaign: g("utm_campaign"),
            utm_term: None,
            utm_content: None,
            campaign_id: None,
            advertisement_id: None,
            deleted: false,
        }
    }

    #[test]
    fn utm_merge_never_overrides() {
        let l = link(&[("utm_source", "zalo"), ("utm_campaign", "tet")]);
        assert_eq!(merge_utm("https://shop.example/p", &l), "https://shop.example/p?utm_source=zalo&utm_campaign=tet");
        assert_eq!(
            merge_utm("https://shop.example/p?utm_source=mail&x=1", &l),
            "https://shop.example/p?utm_source=mail&x=1&utm_campaign=tet"
        );
        assert_eq!(merge_utm("https://shop.example/p#frag", &l), "https://shop.example/p?utm_source=zalo&utm_campaign=tet#frag");
        assert_eq!(merge_utm("https://shop.example/p", &link(&[])), "https://shop.example/p");
    }

    #[test]
    fn codes_and_targets_are_validated() {
        assert!(validate_code("tet-2026").is_ok());
        assert!(validate_code("v1").unwrap_err().contains("reserved") || validate_code("v1").unwrap_err().contains("3 to 64"));
        assert!(validate_code("healthz").unwrap_err().contains("reserved"));
        assert!(validate_code("a/b").is_err());
        assert!(validate_target("javascript:alert(1)").unwrap_err().contains("http or https"));
        assert!(validate_target("ftp://x.example/").is_err());
        assert!(validate_target("https://x.example/a?b=c").is_ok());
    }

    #[test]
    fn ips_are_anonymised() {
        assert_eq!(anonymize_ip("203.0.113.77".parse().unwrap()), "203.0.113.0");
        assert_eq!(anonymize_ip("2001:db8:1:2:3:4:5:6".parse().unwrap()), "2001:db8:1::");
    }
}
