//! Request bodies: read within the size limit and the read timeout, then inflated by their
//! `Content-Encoding` under the same limit.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};

use crate::{ApiError, AppState};

/// Reads the body within the limit and decompresses gzip (by header or magic bytes) or deflate,
/// enforcing the limit on the decompressed size while decompressing.
pub(crate) async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.config.max_body_bytes;
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()) {
        if len > limit {
            return Err(ApiError::TooLarge(format!("request body is {len} bytes, over the limit of {limit} bytes")));
        }
    }
    let timeout_ms = state.config.body_read_timeout_ms;
    let read = tokio::time::timeout(Duration::from_millis(timeout_ms), axum::body::to_bytes(body, limit)).await.map_err(|_| {
        state.stats.body_timeouts.fetch_add(1, Ordering::Relaxed);
        ApiError::BodyTimeout(timeout_ms)
    })?;
    let raw = read.map_err(|e| {
        // The only error to_bytes reports for a well-formed stream is the limit.
        let msg = e.to_string();
        if msg.contains("length limit") {
            ApiError::TooLarge(format!("request body is over the limit of {limit} bytes"))
        } else {
            ApiError::BadRequest(format!("could not read the request body: {msg}"))
        }
    })?;
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_ascii_lowercase());
    decode_content(encoding.as_deref(), raw, limit)
}

/// Decodes a request body by its `Content-Encoding`: `gzip`/`x-gzip` (several members allowed),
/// `deflate` (zlib), or `identity`/none, where a body that starts with gzip's magic bytes is
/// inflated all the same (some SDKs compress without saying so). Never yields more than `limit`
/// bytes: inflating stops at `limit + 1`, so a bomb costs at most that much memory.
pub fn decode_content(encoding: Option<&str>, raw: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let gzip_magic = raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b;
    match encoding {
        Some("gzip") | Some("x-gzip") => inflate(flate2::read::MultiGzDecoder::new(&raw[..]), limit, "gzip"),
        Some("deflate") => inflate(flate2::read::ZlibDecoder::new(&raw[..]), limit, "deflate"),
        Some("identity") | Some("") | None if gzip_magic => inflate(flate2::read::MultiGzDecoder::new(&raw[..]), limit, "gzip"),
        Some("identity") | Some("") | None => Ok(raw),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!("content encoding `{other}` is not supported; use gzip or deflate"))),
    }
}

fn inflate(reader: impl Read, limit: usize, what: &str) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    let mut limited = reader.take(limit as u64 + 1);
    limited.read_to_end(&mut out).map_err(|e| ApiError::BadRequest(format!("body is not valid {what}: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::TooLarge(format!("decompressed body is over the limit of {limit} bytes")));
    }
    Ok(Bytes::from(out))
}
