//! The keys a request carries, as axum extractors: [`WriteKey`] for ingestion, [`SecretKey`] for
//! the calls that read or change an account's data (reports, link management).
//!
//! Both find the collector's [`AppState`] through [`FromRef`] on the router's state, rather than
//! in a request [`axum::Extension`]: a router whose state cannot give the `AppState` does not
//! compile, where a missing extension layer would only show as a 500 at run time. A router of
//! more than the collector derives `FromRef` on a state struct that holds an `Arc<AppState>`.
//!
//! Every failed authentication goes through the collector's checks: it counts against the client
//! address, and an address over its failure limit is answered 429 without a lookup (see
//! [`AppState::authenticate`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::Engine as _;
use uuid::Uuid;

use crate::{client_ip, ApiError, AppState, KeyKind};

/// The key in the `Authorization` header: `Bearer KEY`, or Segment's Basic auth with the key as
/// user name (`KEY:`). `None` without the header; an error when it is there but names no key
/// (another scheme, bad base64, an empty user).
pub fn authorization_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let v = v.to_str().map_err(|_| ApiError::BadKey)?.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(Some(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).map_err(|_| ApiError::BadKey)?;
        let text = String::from_utf8(decoded).map_err(|_| ApiError::BadKey)?;
        let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
        if !user.is_empty() {
            return Ok(Some(user.to_owned()));
        }
    }
    Err(ApiError::BadKey)
}

/// The write key in a query string: `k` (pixels), `writeKey` or `write_key`.
pub fn query_key(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "k" || k == "writeKey" || k == "write_key").map(|(_, v)| v.into_owned())
}

/// The client address of a request, by the collector's rule (see [`client_ip`]).
fn request_ip(state: &AppState, parts: &Parts) -> Result<IpAddr, ApiError> {
    let ConnectInfo(peer) = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .ok_or_else(|| ApiError::Internal("the server did not record the peer address of the connection".into()))?;
    Ok(client_ip(&state.config, &parts.headers, *peer))
}

/// Refuses a request whose key is unusable: 429 while its address is over the failure limit,
/// else `error`, counted against the address.
fn refuse(state: &AppState, ip: IpAddr, error: ApiError) -> ApiError {
    if let Err(throttled) = state.check_auth_throttle(ip) {
        return throttled;
    }
    state.auth_failed(ip);
    error
}

/// The write key an ingestion request carries outside its body (the `Authorization` header, else
/// the query string), so it is checked before the body is read; `None` when only the body can
/// hold it (`writeKey`). An `Authorization` header that names no key is refused (401 `bad_key`)
/// and counted as a failed authentication.
///
/// Ingestion handlers take `Result<WriteKey, ApiError>` and return the error themselves, so the
/// request is counted and its content type checked first, as for every other refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteKey(pub Option<String>);

impl<S> FromRequestParts<S> for WriteKey
where
    Arc<AppState>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match authorization_key(&parts.headers) {
            Ok(Some(key)) => Ok(WriteKey(Some(key))),
            Ok(None) => Ok(WriteKey(query_key(parts.uri.query()))),
            Err(e) => {
                let state = Arc::<AppState>::from_ref(state);
                Err(refuse(&state, request_ip(&state, parts)?, e))
            }
        }
    }
}

/// The account of the secret key in the `Authorization` header (Bearer, or Basic with the key as
/// user name). No usable key answers 401 `missing_key`, an unknown one 401 `bad_key`, a write key
/// 403 `needs_secret_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretKey(pub Uuid);

impl<S> FromRequestParts<S> for SecretKey
where
    Arc<AppState>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = Arc::<AppState>::from_ref(state);
        let ip = request_ip(&state, parts)?;
        let Ok(Some(key)) = authorization_key(&parts.headers) else {
            return Err(refuse(&state, ip, ApiError::MissingSecretKey));
        };
        let info = state.authenticate(ip, &key).await?;
        if info.kind != KeyKind::Secret {
            return Err(ApiError::NeedsSecret);
        }
        Ok(SecretKey(info.account_id))
    }
}

/// axum's `Path`, refusing with an [`ApiError`] (400 `bad_request`) rather than plain text.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// axum's `Query`, refusing with an [`ApiError`] (400 `bad_request`) rather than plain text.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The whole body, within the route's `DefaultBodyLimit`; over it, 413 `too_large` as an
/// [`ApiError`] rather than plain text.
#[derive(Debug)]
pub struct ApiBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(ApiBody(Bytes::from_request(req, state).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(authorization).unwrap_or(HeaderValue::from_static("x")));
        h
    }

    fn basic(text: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(text))
    }

    #[test]
    fn the_authorization_header_names_the_key_by_bearer_or_basic_user() {
        assert_eq!(authorization_key(&HeaderMap::new()).ok(), Some(None));
        assert_eq!(authorization_key(&headers("Bearer tl_wk_a")).ok(), Some(Some("tl_wk_a".into())));
        assert_eq!(authorization_key(&headers("bearer   tl_wk_a ")).ok(), Some(Some("tl_wk_a".into())));
        assert_eq!(authorization_key(&headers(&basic("tl_wk_a:"))).ok(), Some(Some("tl_wk_a".into())));
        assert_eq!(authorization_key(&headers(&basic("tl_wk_a"))).ok(), Some(Some("tl_wk_a".into())));
        for unusable in ["Token tl_wk_a", "Bearer", "Basic !!!", &basic(":password"), &basic("")] {
            assert!(matches!(authorization_key(&headers(unusable)), Err(ApiError::BadKey)), "{unusable}");
        }
    }

    #[test]
    fn the_query_names_the_key_by_any_of_its_three_names() {
        for q in ["k=abc", "writeKey=abc&x=1", "x=1&write_key=abc"] {
            assert_eq!(query_key(Some(q)).as_deref(), Some("abc"), "{q}");
        }
        assert_eq!(query_key(Some("key=abc")), None);
        assert_eq!(query_key(None), None);
    }
}
