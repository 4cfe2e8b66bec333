//! One keep-alive HTTP/1.1 connection driven by one task: closed loop (as fast as the server
//! answers) or paced to a schedule, with latency measured from the *intended* send time so a
//! stalled server is not hidden by requests that were never sent (coordinated omission, as
//! wrk2 corrects it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::shape::Prepared;

/// What one connection counted.
pub struct ConnectionTally {
    pub histogram: Histogram<u64>,
    pub ok: u64,
    pub records: u64,
    /// Answers with the expected status over the whole run, warm-up included: what the
    /// server acknowledged, to compare with what it stored.
    pub acknowledged: u64,
    pub errors: u64,
    /// Answers with an unexpected status, by status code.
    pub statuses: std::collections::BTreeMap<u16, u64>,
    pub transport_errors: u64,
}

impl ConnectionTally {
    fn new() -> Self {
        ConnectionTally {
            histogram: new_histogram(),
            ok: 0,
            records: 0,
            acknowledged: 0,
            errors: 0,
            statuses: Default::default(),
            transport_errors: 0,
        }
    }
}

/// Microseconds from 1 µs to 60 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// When to send each request of a connection.
#[derive(Clone, Copy)]
pub enum Pacing {
    /// The next request goes out when the previous answer is in.
    ClosedLoop,
    /// One request every `interval`, the first at `offset` after the start.
    Fixed { interval: Duration, offset: Duration },
}

/// Stop rules and the warm-up whose requests are not counted.
#[derive(Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub measure_from: Instant,
    pub end: Instant,
}

/// How many requests the whole run may send, shared by its connections.
pub struct Quota {
    limit: Option<u64>,
    taken: AtomicU64,
}

impl Quota {
    pub fn new(limit: Option<u64>) -> Quota {
        Quota { limit, taken: AtomicU64::new(0) }
    }

    /// Takes one request; false once the run has sent its limit.
    fn take(&self) -> bool {
        self.limit.is_none_or(|limit| self.taken.fetch_add(1, Ordering::Relaxed) < limit)
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Runs one connection until the window ends; `next_request` builds each request.
pub async fn run_connection(
    addr: SocketAddr,
    pacing: Pacing,
    window: Window,
    quota: &Quota,
    mut next_request: impl FnMut() -> Prepared,
) -> ConnectionTally {
    let mut tally = ConnectionTally::new();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut intended = match pacing {
        Pacing::ClosedLoop => window.start,
        Pacing::Fixed { offset, .. } => window.start + offset,
    };
    tokio::time::sleep_until(window.start.into()).await;
    loop {
        if let Pacing::Fixed { .. } = pacing {
            if intended >= window.end {
                break;
            }
            tokio::time::sleep_until(intended.into()).await;
        }
        let sent_at = Instant::now();
        if sent_at >= window.end || !quota.take() {
            break;
        }
        let started = match pacing {
            Pacing::ClosedLoop => sent_at,
            Pacing::Fixed { .. } => intended,
        };
        let prepared = next_request();
        let outcome = send_one(&mut sender, addr, &prepared).await;
        let done = Instant::now();
        if let Pacing::Fixed { interval, .. } = pacing {
            intended += interval;
        }
        if matches!(outcome, Ok(status) if prepared.expects(status)) {
            tally.acknowledged += 1;
        }
        if started < window.measure_from {
            continue;
        }
        match outcome {
            Ok(status) if prepared.expects(status) => {
                tally.ok += 1;
                tally.records += prepared.records as u64;
                let micros = done.saturating_duration_since(started).as_micros().min(60_000_000) as u64;
                let _ = tally.histogram.record(micros.max(1));
            }
            Ok(status) => {
                tally.errors += 1;
                *tally.statuses.entry(status).or_default() += 1;
            }
            Err(_) => {
                tally.errors += 1;
                tally.transport_errors += 1;
                // A refused or reset connection would otherwise spin; back off briefly.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}

/// Sends one request on the connection (opening it when needed) and drains the answer.
/// A status counts as the answer's, except a pixel whose `X-Touchline-Status` is not `stored`,
/// reported as 0 (the pixel always answers 200).
async fn send_one(sender: &mut Option<SendRequest<Full<Bytes>>>, addr: SocketAddr, prepared: &Prepared) -> std::io::Result<u16> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(connect(addr).await?);
    }
    let Some(s) = sender.as_mut() else { return Err(std::io::Error::other("no connection")) };
    s.ready().await.map_err(std::io::Error::other)?;
    let request: Request<Full<Bytes>> = prepared.request();
    let response = match s.send_request(request).await {
        Ok(r) => r,
        Err(e) => {
            *sender = None;
            return Err(std::io::Error::other(e));
        }
    };
    let status = response.status().as_u16();
    let pixel_refused = response.headers().get("x-touchline-status").is_some_and(|v| v.as_bytes() != b"stored");
    if response.into_body().collect().await.is_err() {
        *sender = None;
        return Err(std::io::Error::other("the answer's body broke off"));
    }
    Ok(if pixel_refused { 0 } else { status })
}
