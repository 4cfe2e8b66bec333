//! The redirect: `GET /l/{code}` (and `/{code}` on a short domain) answers a 302 to the link's
//! target with its UTMs merged, sets a first-party device cookie, and queues the click.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use touchline_model::{Body as RecordBody, Id, LinkClick, Meta, Record, ENVELOPE_VERSION};
use touchline_sql::Link;
use uuid::Uuid;

use super::{LinkState, COOKIE};

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

pub(super) async fn redirect(
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
    let Some((location_header, location)) = location_for(&state, &code, link, snap.version) else {
        return page(StatusCode::BAD_GATEWAY, "Bad link target", "This short link's target is not a valid URL.");
    };
    let visit = Visit::of(&headers, &method);
    let anonymize = snap.accounts.get(&link.account_id).is_some_and(|a| a.anonymize_ip);
    let client = touchline_collector::client_ip(&state.collector.config, &headers, peer);
    let ip = if anonymize { touchline_collector::anonymize_ip(client) } else { client }.to_string();
    let unique = state.unique.first_in_window(&visit.device, &code, Instant::now());
    state.clicks.push(&click_record(link, &code, &location, &visit, ip, unique)).await;
    found(&state, location_header, &visit)
}

/// The target with the link's UTMs merged, cached per code for one catalog version.
fn location_for(state: &LinkState, code: &str, link: &Link, version: i64) -> Option<(HeaderValue, Arc<str>)> {
    if let Some(c) = state.locations.get(code).filter(|c| c.0 == version) {
        return Some((c.1.clone(), c.2.clone()));
    }
    let loc: Arc<str> = merge_utm(&link.target_url, link).into();
    let hv = HeaderValue::from_str(&loc).ok()?;
    if state.locations.len() > 100_000 {
        state.locations.clear();
    }
    state.locations.insert(code.to_owned(), (version, hv.clone(), loc.clone()));
    Some((hv, loc))
}

/// Who followed the link, from the request's headers.
struct Visit {
    user_agent: Option<String>,
    referer: Option<String>,
    bot: bool,
    /// The device cookie the browser sent, if any.
    returning: bool,
    device: String,
}

impl Visit {
    fn of(headers: &HeaderMap, method: &Method) -> Visit {
        let header_text = |name: header::HeaderName, max: usize| {
            headers.get(name).and_then(|v| v.to_str().ok()).map(|v| touchline_model::truncate_utf8(v, max).0.to_owned())
        };
        let user_agent = header_text(header::USER_AGENT, touchline_model::limits::MAX_USER_AGENT_BYTES);
        let referer = header_text(header::REFERER, touchline_model::limits::MAX_URL_BYTES);
        let bot = method == Method::HEAD || is_bot(user_agent.as_deref());
        let cookie = cookie_device(headers);
        let returning = cookie.is_some();
        let device = cookie.unwrap_or_else(|| Uuid::new_v4().simple().to_string());
        Visit { user_agent, referer, bot, returning, device }
    }
}

fn click_record(link: &Link, code: &str, location: &str, visit: &Visit, ip: String, unique: bool) -> Record {
    let now = Utc::now();
    let id = |s: &str| Id::new(s).ok();
    Record {
        v: ENVELOPE_VERSION,
        meta: Meta {
            record_id: Id::from_uuid(Uuid::now_v7()),
            account_id: link.account_id,
            timestamp: now,
            received_at: now,
            sent_at: None,
            anonymous_id: id(&visit.device),
            customer_id: None,
        },
        body: RecordBody::LinkClick(LinkClick {
            link_id: None,
            short_code: id(code),
            target_url: Some(location.to_owned()),
            referer: visit.referer.clone(),
            user_agent: visit.user_agent.clone(),
            ip: Some(ip),
            device_id: id(&visit.device),
            campaign_id: link.campaign_id.as_deref().and_then(id),
            advertisement_id: link.advertisement_id.as_deref().and_then(id),
            bot: visit.bot,
            unique: Some(unique),
        }),
    }
}

/// The 302, with the device cookie for a new human visitor.
fn found(state: &LinkState, location: HeaderValue, visit: &Visit) -> Response {
    let mut resp = Response::builder().status(StatusCode::FOUND).body(Body::empty()).unwrap_or_default();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=0"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("unsafe-url"));
    if !visit.returning && !visit.bot {
        let secure = if state.base_url().starts_with("https://") { "; Secure" } else { "" };
        let cookie = format!("{COOKIE}={}; Max-Age=31536000; Path=/; SameSite=Lax; HttpOnly{secure}", visit.device);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.insert(header::SET_COOKIE, v);
        }
    }
    resp
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
}
