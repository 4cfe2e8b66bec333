//! The collector's errors and their HTTP status codes, in one place.

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
    #[error("unknown or revoked key")]
    BadKey,
    #[error("this call needs the account's secret key")]
    NeedsSecret,
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("no record in the request was valid")]
    AllRejected { rejected: Vec<RecordError>, too_large: bool },
    #[error("the bus is unavailable, retry later: {0}")]
    Unavailable(String),
    #[error("over the account's rate limit; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many failed authentications from this address; retry in {retry_after_secs} s")]
    AuthThrottled { retry_after_secs: u64 },
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    #[error("not found")]
    NotFound,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::MissingKey | ApiError::BadKey => StatusCode::UNAUTHORIZED,
            ApiError::NeedsSecret => StatusCode::FORBIDDEN,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::AllRejected { too_large: true, .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::AllRejected { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } | ApiError::AuthThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::MissingKey => "missing_key",
            ApiError::BadKey => "bad_key",
            ApiError::NeedsSecret => "needs_secret_key",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::AllRejected { .. } => "all_rejected",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::AuthThrottled { .. } => "auth_throttled",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::NotFound => "not_found",
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
