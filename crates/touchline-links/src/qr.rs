//! QR codes of a link's short URL, as SVG and PNG (secret key).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use touchline_collector::{ApiError, ApiPath, SecretKey};

use super::manage::own_link;
use super::LinkState;

/// The QR code of one of the caller's own links (another account's code answers 404, as if it
/// did not exist).
fn qr(state: &LinkState, account: uuid::Uuid, code: &str) -> Result<qrcode::QrCode, ApiError> {
    own_link(state, account, code)?;
    qrcode::QrCode::new(format!("{}/l/{code}", state.base_url()).as_bytes())
        .map_err(|e| ApiError::Internal(format!("could not encode the QR code: {e}")))
}

pub(super) async fn qr_svg(
    State(state): State<Arc<LinkState>>,
    SecretKey(account): SecretKey,
    ApiPath(code): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let svg = qr(&state, account, &code)?.render::<qrcode::render::svg::Color<'_>>().min_dimensions(256, 256).build();
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg))
}

pub(super) async fn qr_png(
    State(state): State<Arc<LinkState>>,
    SecretKey(account): SecretKey,
    ApiPath(code): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let q = qr(&state, account, &code)?;
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
        written.map_err(|e| ApiError::Internal(format!("could not encode the PNG: {e}")))?;
    }
    Ok(([(header::CONTENT_TYPE, "image/png")], buf))
}
