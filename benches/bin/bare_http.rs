//! The bare HTTP baseline of `scripts/bench.sh`: an axum server that answers each shape
//! touchline serves with nothing behind it, so every edge figure is also a ratio to this
//! machine's HTTP ceiling.
//!
//! - anything else (every ingestion `POST`): reads the whole body, answers 204;
//! - `GET /p.gif`: the 43-byte GIF with touchline's no-cache headers;
//! - `GET`/`HEAD /l/{code}`: a 302 to a fixed target;
//! - `POST /v1/links`: 201, so `touchline loadgen`'s redirect setup runs against it too.
//!
//! `touchline-bare [ADDR]` (default 127.0.0.1:0) prints `listening on http://ADDR` and serves
//! until killed.

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

const PIXEL_GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

async fn read_and_204(body: Bytes) -> StatusCode {
    std::hint::black_box(body.len());
    StatusCode::NO_CONTENT
}

async fn gif() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate, private, max-age=0"),
            (header::PRAGMA, "no-cache"),
            (header::EXPIRES, "0"),
        ],
        PIXEL_GIF,
    )
}

async fn found() -> impl IntoResponse {
    (StatusCode::FOUND, [(header::LOCATION, "https://shop.example/lp/1?utm_source=loadgen"), (header::CACHE_CONTROL, "private, max-age=0")])
}

async fn created(body: Bytes) -> impl IntoResponse {
    std::hint::black_box(body.len());
    (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], "{}")
}

fn router() -> Router {
    Router::new()
        .route("/p.gif", get(gif))
        .route("/l/{code}", get(found).head(found))
        .route("/v1/links", post(created))
        .fallback(read_and_204)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router()).await
}
