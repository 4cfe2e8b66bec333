//! The HTTP/1 accept loop every listener of the binary runs: hyper with the edge's limits.
//!
//! * `header_read_timeout`: hyper's. Its timer starts whenever the connection is ready for a
//!   request head (hyper 1.x `Conn::poll_read_head`, re-armed when a kept-alive connection goes
//!   idle), so it closes a connection that never sends a byte, one that sends a head too slowly,
//!   and a kept-alive connection that sends no next request.
//! * `idle_timeout`: no byte read or written for that long while no handler is running closes
//!   the connection. It covers what the header timer does not: a client that stops reading a
//!   response (writes block), or one that stalls a body nobody reads.
//! * `max_connections`: a connection over the limit is accepted, answered 503 if the socket takes
//!   it at once, and closed. Refusing at once keeps the kernel's accept queue drained, so clients
//!   fail fast (a balancer can retry elsewhere) instead of waiting in a backlog behind slow ones,
//!   and every refusal is counted. Stopping `accept` would instead leave the queue full of
//!   connections whose clients may have given up by the time a slot frees.
//! * Shutdown: stop accepting, let every connection finish its in-flight request, then return.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt as _;

/// The limits of one listener; see [`crate::CollectorConfig`] for their meaning.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub stats: Arc<ConnStats>,
}

/// Connection counters (exported at `/metrics` by the binary).
#[derive(Default, Debug)]
pub struct ConnStats {
    /// Connections open now.
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    /// Connections over `max_connections`, closed at once.
    pub refused: AtomicU64,
    /// Closed for not sending a request head within `header_read_timeout`.
    pub header_timeouts: AtomicU64,
    /// Closed by `idle_timeout`.
    pub idle_closed: AtomicU64,
    /// `accept` failures (file descriptors exhausted, …).
    pub accept_errors: AtomicU64,
}

/// What a refused connection is told, if its socket takes it without waiting.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// Serves `router` on `listener` until `shutdown` completes, with `options`' limits. Handlers
/// see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve_with(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> io::Result<()> {
    let max = options.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let stats = options.stats.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(options.header_read_timeout).max_header_size(options.max_header_bytes);
    let mut last_accept_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if !matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused) {
                        // Out of file descriptors, most likely: wait for connections to close
                        // rather than spin, and say so at most once a second.
                        stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                        if last_accept_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                            tracing::warn!(error = %e, "accept failed");
                            last_accept_log = Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            let _ = stream.try_write(REFUSED);
            drop(stream);
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let conn = connection(http.clone(), stream, peer, router.clone(), stop_rx.clone(), options.idle_timeout, stats.clone());
        tokio::spawn(async move {
            conn.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Each connection holds a slot until it closes: all slots back means all closed.
    let _ = slots.acquire_many(max as u32).await;
    Ok(())
}

/// When the connection last moved a byte, and how many of its requests handlers are working on.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `idle` and no handler runs.
    async fn idle(&self, idle: Duration) {
        loop {
            let deadline = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle;
            if Instant::now() < deadline {
                tokio::time::sleep_until(deadline).await;
            } else if self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            } else {
                // A handler is working (a slow store, a long report): not the client's stall.
                tokio::time::sleep(idle).await;
            }
        }
    }
}

/// Marks a request in flight until its handler finishes (or is dropped with the connection).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

async fn connection(
    http: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
    idle_timeout: Duration,
    stats: Arc<ConnStats>,
) {
    let activity = Arc::new(Activity { opened: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) });
    let io = TokioIo::new(Tracked { io: stream, activity: activity.clone() });
    let per_request = activity.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let router = router.clone();
        let guard = InFlight::new(per_request.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        async move {
            let _guard = guard;
            router.oneshot(req.map(Body::new)).await
        }
    });
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let idle = activity.idle(idle_timeout);
    tokio::pin!(idle);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    if e.is_timeout() {
                        stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(error = %e, %peer, "connection closed with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !draining => {
                // Closes the connection now if idle, else after the response in flight.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            () = &mut idle => {
                stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    stats.open.fetch_sub(1, Ordering::Relaxed);
}

/// A TCP stream that notes when bytes move.
struct Tracked {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
