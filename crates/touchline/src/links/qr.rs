//! QR codes of a link's short URL, as SVG and PNG (secret key).

use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::manage::secret_own_link;
use super::LinkState;
use crate::reports::error;

/// The QR code of one of the caller's own links (secret key; another account's code answers
/// 404, as if it did not exist).
async fn qr(state: &LinkState, headers: &HeaderMap, peer: SocketAddr, code: &str) -> Result<qrcode::QrCode, Response> {
    secret_own_link(state, headers, peer, code).await?;
    qrcode::QrCode::new(format!("{}/l/{code}", state.base_url()).as_bytes())
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "qr", format!("could not encode the QR code: {e}")))
}

pub(super) async fn qr_svg(
    State(state): State<Arc<LinkState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Response {
    match qr(&state, &headers, peer, &code).await {
        Ok(q) => {
            let svg = q.render::<qrcode::render::svg::Color<'_>>().min_dimensions(256, 256).build();
            ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
        }
        Err(r) => r,
    }
}

pub(super) async fn qr_png(
    State(state): State<Arc<LinkState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Response {
    let q = match qr(&state, &headers, peer, &code).await {
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
