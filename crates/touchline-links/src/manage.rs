//! Link management with the secret key: create, list with click counts, show, update and soft
//! delete.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use touchline_collector::{ApiBody, ApiError, ApiPath, SecretKey};
use touchline_sql::Link;
use uuid::Uuid;

use super::LinkState;

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

use touchline_model::limits::MAX_UTM_CHARS;

/// Every field of a link's input within its limits: sizes, no control characters, ids as
/// record ids are. The catalog holds every link in memory and copies the UTMs into each
/// click, so nothing here may grow without bound.
fn validate_fields(input: &LinkInput) -> Result<(), String> {
    if let Some(t) = &input.target_url {
        if t.len() > touchline_model::limits::MAX_URL_BYTES {
            return Err(format!("field `target_url`: {} bytes, over the limit of {}", t.len(), touchline_model::limits::MAX_URL_BYTES));
        }
        validate_target(t)?;
    }
    for (field, v) in [
        ("utm_source", &input.utm_source),
        ("utm_medium", &input.utm_medium),
        ("utm_campaign", &input.utm_campaign),
        ("utm_term", &input.utm_term),
        ("utm_content", &input.utm_content),
    ] {
        let Some(v) = v else { continue };
        let n = v.chars().count();
        if n > MAX_UTM_CHARS {
            return Err(format!("field `{field}`: {n} characters, over the limit of {MAX_UTM_CHARS}"));
        }
        if v.chars().any(char::is_control) {
            return Err(format!("field `{field}`: must not contain control characters"));
        }
    }
    for (field, v) in [("campaign_id", &input.campaign_id), ("advertisement_id", &input.advertisement_id)] {
        if let Some(v) = v {
            touchline_model::Id::new(v.as_str()).map_err(|m| format!("field `{field}`: identifier {m}"))?;
        }
    }
    Ok(())
}

/// Refuses a new link past the account's quota (deleted links count: they keep their code).
fn check_quota(state: &LinkState, account: Uuid) -> Result<(), ApiError> {
    let held = state.catalog.snapshot().links.values().filter(|l| l.account_id == account).count();
    if held >= state.config.max_per_account {
        return Err(ApiError::QuotaExceeded(format!(
            "this account holds {held} links, the limit (links.max_per_account) is {}",
            state.config.max_per_account
        )));
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

/// The account's clicks per code; `None` (shown as `null`) when the results cannot be read,
/// so the links still list.
async fn click_counts(state: &LinkState, account: Uuid) -> Option<std::collections::HashMap<String, (i64, i64)>> {
    match state.results.link_click_counts(account).await {
        Ok(counts) => Some(counts),
        Err(e) => {
            tracing::warn!(error = %e, %account, "reading link click counts failed");
            None
        }
    }
}

fn parse_input(body: &[u8]) -> Result<LinkInput, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid link JSON: {e}")))
}

async fn save(state: &LinkState, link: &Link) -> Result<(), ApiError> {
    state.store.upsert_link(link).await.map_err(|e| ApiError::StoreUnavailable(e.to_string()))?;
    // This instance serves the change at once; others follow the catalog notification.
    let _ = state.catalog.refresh().await;
    Ok(())
}

fn taken(code: &str) -> ApiError {
    ApiError::Conflict(format!("field `code`: {code:?} is taken"))
}

/// The code of a new link: the one asked for, if valid and free, else a random free one.
fn new_code(state: &LinkState, asked: Option<&str>) -> Result<String, ApiError> {
    let snap = state.catalog.snapshot();
    if let Some(c) = asked {
        validate_code(c).map_err(ApiError::BadRequest)?;
        if snap.links.contains_key(c) {
            return Err(taken(c));
        }
        return Ok(c.to_owned());
    }
    let mut c = random_code();
    while snap.links.contains_key(&c) {
        c = random_code();
    }
    Ok(c)
}

pub(super) async fn create(
    State(state): State<Arc<LinkState>>,
    SecretKey(account): SecretKey,
    ApiBody(body): ApiBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = parse_input(&body)?;
    let target = input.target_url.clone().ok_or_else(|| ApiError::BadRequest("field `target_url`: required".into()))?;
    validate_fields(&input).map_err(ApiError::BadRequest)?;
    check_quota(&state, account)?;
    let code = new_code(&state, input.code.as_deref())?;
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
    save(&state, &link).await?;
    // The upsert never takes over another account's code: check who owns it now.
    match state.catalog.snapshot().links.get(&link.short_code) {
        Some(l) if l.account_id == account => Ok((StatusCode::CREATED, Json(link_json(&state, l, Some((0, 0)))))),
        _ => Err(taken(&link.short_code)),
    }
}

/// The caller's own link `code`; another account's code answers 404, as if it did not exist.
pub(super) fn own_link(state: &LinkState, account: Uuid, code: &str) -> Result<Link, ApiError> {
    match state.catalog.snapshot().links.get(code) {
        Some(l) if l.account_id == account => Ok(l.clone()),
        _ => Err(ApiError::NotFound(format!("no link {code:?} in this account"))),
    }
}

pub(super) async fn list(State(state): State<Arc<LinkState>>, SecretKey(account): SecretKey) -> Json<Value> {
    let counts = click_counts(&state, account).await;
    let snap = state.catalog.snapshot();
    let mut links: Vec<&Link> = snap.links.values().filter(|l| l.account_id == account).collect();
    links.sort_by(|a, b| a.short_code.cmp(&b.short_code));
    let rows: Vec<Value> =
        links.into_iter().map(|l| link_json(&state, l, counts.as_ref().map(|c| c.get(&l.short_code).copied().unwrap_or((0, 0))))).collect();
    Json(json!({ "links": rows }))
}

pub(super) async fn show(
    State(state): State<Arc<LinkState>>,
    SecretKey(account): SecretKey,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let link = own_link(&state, account, &code)?;
    let counts = click_counts(&state, account).await;
    Ok(Json(link_json(&state, &link, counts.map(|c| c.get(&code).copied().unwrap_or((0, 0))))))
}

pub(super) async fn update(
    State(state): State<Arc<LinkState>>,
    SecretKey(account): SecretKey,
    ApiPath(code): ApiPath<String>,
    ApiBody(body): ApiBody,
) -> Result<Json<Value>, ApiError> {
    let mut link = own_link(&state, account, &code)?;
    let input = parse_input(&body)?;
    if input.code.as_deref().is_some_and(|c| c != code) {
        return Err(ApiError::BadRequest("field `code`: a link's code cannot change".into()));
    }
    validate_fields(&input).map_err(ApiError::BadRequest)?;
    if let Some(t) = input.target_url {
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
    save(&state, &link).await?;
    Ok(Json(link_json(&state, &link, None)))
}

pub(super) async fn remove(
    State(state): State<Arc<LinkState>>,
    SecretKey(account): SecretKey,
    ApiPath(code): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let link = own_link(&state, account, &code)?;
    save(&state, &Link { deleted: true, ..link }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
