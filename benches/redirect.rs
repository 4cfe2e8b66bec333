//! Short-link redirect load test (a load generator, not criterion): throughput of touchline's
//! `GET /l/{code}` (catalog lookup, UTM merge, cookie, click queued to the durable log) as a ratio
//! to a bare axum handler answering the same 302, both measured in this run on loopback with the
//! same client; then p99 latency of each at half of its maximum rate.
//!
//! `cargo bench -p touchline-benches --bench redirect` runs 5 s per phase; under `cargo test`
//! (no `--bench` argument) it runs a 0.3 s smoke pass.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hdrhistogram::Histogram;
use touchline::app::App;
use touchline::config::Config;
use touchline_sql::{Account, Link};

const WORKERS: usize = 32;

async fn bare_302() -> impl IntoResponse {
    (StatusCode::FOUND, [(header::LOCATION, "https://shop.example/tet?utm_source=zalo"), (header::CACHE_CONTROL, "private, max-age=0")])
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
    });
    base
}

/// Requests per second with WORKERS closed-loop clients for `dur`.
async fn max_rate(url: &str, dur: Duration) -> f64 {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap_or_else(|e| panic!("{e}"));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let (client, url, done) = (client.clone(), url.to_owned(), done.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < dur {
                if let Ok(r) = client.get(&url).header("user-agent", "Mozilla/5.0 (iPhone) Safari/604.1").send().await {
                    if r.status() == StatusCode::FOUND {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// p50/p99 latency (µs) when requests are paced at `rate` per second for `dur`.
async fn paced(url: &str, rate: f64, dur: Duration) -> (u64, u64) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap_or_else(|e| panic!("{e}"));
    let hist = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new(3).unwrap_or_else(|e| panic!("{e}"))));
    let per_worker = Duration::from_secs_f64(WORKERS as f64 / rate.max(1.0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (client, url, hist) = (client.clone(), url.to_owned(), hist.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = start + per_worker.mul_f64(w as f64 / WORKERS as f64);
            while start.elapsed() < dur {
                tokio::time::sleep_until(next.into()).await;
                next += per_worker;
                let t = Instant::now();
                if client.get(&url).header("user-agent", "Mozilla/5.0 (iPhone) Safari/604.1").send().await.is_ok() {
                    let _ = hist.lock().map(|mut h| h.record(t.elapsed().as_micros() as u64));
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let h = hist.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let dur = if bench { Duration::from_secs(5) } else { Duration::from_millis(300) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut config = Config { data_dir: dir.path().join("data"), ..Config::default() };
        config.log_level = "warn".into();
        let store = touchline::app::open_store(&config).await.unwrap_or_else(|e| panic!("{e}"));
        let account = uuid::Uuid::from_u128(7);
        store.upsert_account(&Account::new(account, "default")).await.unwrap_or_else(|e| panic!("{e}"));
        store
            .upsert_link(&Link {
                account_id: account,
                short_code: "tet".into(),
                target_url: "https://shop.example/tet".into(),
                utm_source: Some("zalo".into()),
                utm_medium: None,
                utm_campaign: None,
                utm_term: None,
                utm_content: None,
                campaign_id: Some("c-tet".into()),
                advertisement_id: None,
                deleted: false,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let app = App::build(config, touchline::app::Role::Serve).await.unwrap_or_else(|e| panic!("{e}"));
        let stats = app.links.stats.clone();
        let touchline_base = serve(app.router()).await;
        let bare_base = serve(Router::new().route("/l/{code}", get(bare_302))).await;

        let bare = max_rate(&format!("{bare_base}/l/tet"), dur).await;
        let ours = max_rate(&format!("{touchline_base}/l/tet"), dur).await;
        let (bare_p50, bare_p99) = paced(&format!("{bare_base}/l/tet"), bare / 2.0, dur).await;
        let (our_p50, our_p99) = paced(&format!("{touchline_base}/l/tet"), ours / 2.0, dur).await;
        // Let the click queue drain, then check nothing was lost.
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!("redirect throughput ({WORKERS} clients, loopback, {:.1} s each):", dur.as_secs_f64());
        println!("  bare axum 302          {bare:>10.0} req/s   p50 {bare_p50:>6} µs  p99 {bare_p99:>6} µs at {:.0} req/s", bare / 2.0);
        println!("  touchline /l/{{code}}    {ours:>10.0} req/s   p50 {our_p50:>6} µs  p99 {our_p99:>6} µs at {:.0} req/s", ours / 2.0);
        println!("  ratio                  {:>10.2}", ours / bare.max(1.0));
        println!(
            "  clicks: {} redirects, {} logged, {} waited for room, {} lost",
            stats.redirects.load(Ordering::Relaxed),
            stats.logged.load(Ordering::Relaxed),
            stats.waited.load(Ordering::Relaxed),
            stats.lost.load(Ordering::Relaxed)
        );
        assert_eq!(stats.lost.load(Ordering::Relaxed), 0, "no click may be lost");
    });
}
