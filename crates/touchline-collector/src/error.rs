//! The collector's errors and their HTTP status codes, in one place.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use touchline_model::{BodyError, RecordError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing write key: send `Authorization: Bearer <key>`, Basic auth with the key as user name, or `writeKey` in the body")]
    MissingKey,
    #[error(
        "this call needs the account's secret key: send `Authorization: Bearer <secret key>`, or Basic auth with the key as user name"
    )]
    MissingSecretKey,
    #[error("unknown or revoked key")]
    BadKey,
    #[error("this call needs the account's secret key, not a write key")]
    NeedsSecret,
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("no record in the request was valid")]
    AllRejected { rejected: Vec<RecordError>, too_large: bool },
    #[error("the bus is unavailable, retry later: {0}")]
    Unavailable(String),
    #[error("the store is unavailable, retry later: {0}")]
    StoreUnavailable(String),
    #[error("over the account's rate limit; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many failed authentications from this address; retry in {retry_after_secs} s")]
    AuthThrottled { retry_after_secs: u64 },
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::MissingKey | ApiError::MissingSecretKey | ApiError::BadKey => StatusCode::UNAUTHORIZED,
            ApiError::NeedsSecret | ApiError::QuotaExceeded(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::AllRejected { too_large: true, .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::AllRejected { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) | ApiError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } | ApiError::AuthThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::MissingKey | ApiError::MissingSecretKey => "missing_key",
            ApiError::BadKey => "bad_key",
            ApiError::NeedsSecret => "needs_secret_key",
            ApiError::QuotaExceeded(_) => "quota_exceeded",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::AllRejected { .. } => "all_rejected",
            ApiError::Unavailable(_) | ApiError::StoreUnavailable(_) => "unavailable",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::AuthThrottled { .. } => "auth_throttled",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooManyRecords { .. } => ApiError::TooLarge(e.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

/// Path values that do not parse.
impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::BadRequest(format!("the path: {}", e.body_text()))
    }
}

/// Query strings that do not parse.
impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::BadRequest(format!("the query string: {}", e.body_text()))
    }
}

/// Bodies over the route's limit, or that could not be read.
impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("the body is over this route's limit ({})", e.body_text()))
        } else {
            ApiError::BadRequest(format!("the body could not be read: {}", e.body_text()))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({"success": false, "code": self.code(), "error": self.to_string()});
        if let ApiError::AllRejected { rejected, .. } = &self {
            // Name the first problem in the message itself; list all of them.
            if let Some(first) = rejected.first() {
                body["error"] = json!(format!("no record was valid; {first}"));
            }
            body["rejected"] = json!(rejected);
        }
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::RateLimited { retry_after_secs } | ApiError::AuthThrottled { retry_after_secs } = &self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still come; the connection cannot carry another request.
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer, Basic realm=\"touchline\""));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status, code, `Retry-After` and message of an error as a client sees them.
    async fn seen(e: ApiError) -> (StatusCode, String, Option<String>, String) {
        let resp = e.into_response();
        let status = resp.status();
        let retry = resp.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(body["success"], false, "{body}");
        (status, body["code"].as_str().unwrap_or_default().to_owned(), retry, body["error"].as_str().unwrap_or_default().to_owned())
    }

    #[tokio::test]
    async fn every_variant_has_its_status_code_and_retry_after() {
        let m = || "why".to_owned();
        let cases = [
            (ApiError::BadRequest(m()), 400, "bad_request", None),
            (ApiError::MissingKey, 401, "missing_key", None),
            (ApiError::MissingSecretKey, 401, "missing_key", None),
            (ApiError::BadKey, 401, "bad_key", None),
            (ApiError::NeedsSecret, 403, "needs_secret_key", None),
            (ApiError::QuotaExceeded(m()), 403, "quota_exceeded", None),
            (ApiError::NotFound(m()), 404, "not_found", None),
            (ApiError::BodyTimeout(5), 408, "body_timeout", None),
            (ApiError::Conflict(m()), 409, "conflict", None),
            (ApiError::TooLarge(m()), 413, "too_large", None),
            (ApiError::AllRejected { rejected: vec![], too_large: true }, 413, "all_rejected", None),
            (ApiError::AllRejected { rejected: vec![], too_large: false }, 400, "all_rejected", None),
            (ApiError::UnsupportedMediaType(m()), 415, "unsupported_media_type", None),
            (ApiError::RateLimited { retry_after_secs: 7 }, 429, "rate_limited", Some("7")),
            (ApiError::AuthThrottled { retry_after_secs: 9 }, 429, "auth_throttled", Some("9")),
            (ApiError::Internal(m()), 500, "internal", None),
            (ApiError::Unavailable(m()), 503, "unavailable", Some("1")),
            (ApiError::StoreUnavailable(m()), 503, "unavailable", Some("1")),
        ];
        for (e, status, code, retry) in cases {
            let name = format!("{e:?}");
            let (s, c, r, _) = seen(e).await;
            assert_eq!((s.as_u16(), c.as_str(), r.as_deref()), (status, code, retry), "{name}");
        }
    }

    #[tokio::test]
    async fn messages_name_the_problem_and_401s_say_how_to_authenticate() {
        let (_, _, _, msg) = seen(ApiError::Conflict("field `code`: \"tet\" is taken".into())).await;
        assert_eq!(msg, "field `code`: \"tet\" is taken");
        let (_, _, _, msg) = seen(ApiError::StoreUnavailable("connection refused".into())).await;
        assert!(msg.contains("store") && msg.contains("connection refused"), "{msg}");
        let (_, _, _, msg) = seen(ApiError::MissingSecretKey).await;
        assert!(msg.contains("secret key") && msg.contains("Bearer"), "{msg}");
        let resp = ApiError::BadKey.into_response();
        assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
        let resp = ApiError::BodyTimeout(1).into_response();
        assert_eq!(resp.headers().get(header::CONNECTION).and_then(|v| v.to_str().ok()), Some("close"));
    }
}
