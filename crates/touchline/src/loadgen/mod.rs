//! `touchline loadgen`: HTTP/1.1 keep-alive load against a touchline server (or any server
//! answering the same routes, such as the bare baseline of `scripts/bench.sh`), as fast as it
//! answers or at a fixed rate, over a realistic population; latency into an HDR histogram.

mod client;
mod population;
mod report;
mod shape;
mod template;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::SmallRng;
use rand::SeedableRng;

pub use population::Population;
pub use report::{Latency, Report};
pub use shape::{Mix, Shape};

use client::{run_connection, Pacing, Quota, Window};
use report::ReportHead;
use shape::{MakerSettings, RequestMaker};

/// `touchline loadgen` options.
#[derive(clap::Args, Clone, Debug)]
pub struct LoadgenArgs {
    /// Base URL of the server under load (loopback in tests and benchmarks).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Write key sent with every ingestion request (Bearer) and pixel (`k=`).
    #[arg(long, env = "TOUCHLINE_WRITE_KEY", default_value = "")]
    pub write_key: String,
    /// Secret key, used only to create the short links a redirect mix follows.
    #[arg(long, env = "TOUCHLINE_SECRET_KEY")]
    pub secret_key: Option<String>,
    /// What to send: a shape (batch, single, segment, pixel, redirect), weighted shapes
    /// (`pixel=4,segment=3,redirect=1`) or `realistic`.
    #[arg(long, default_value = "batch")]
    pub mix: Mix,
    /// Records per `batch` request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// Threads of the load generator (the rest of the machine's cores serve).
    #[arg(long, short = 't', default_value_t = 1)]
    pub threads: usize,
    /// Requests per second over all connections; 0 sends as fast as the server answers.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds measured.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many requests over all connections, warm-up included (the duration
    /// still bounds the run).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Seconds sent first and not measured (connections opened, caches warm).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Distinct visitors the records speak for, chosen uniformly per record.
    #[arg(long, default_value_t = 100_000)]
    pub identities: u64,
    /// Campaigns (three ads each) the touchpoints and UTMs name.
    #[arg(long, default_value_t = 20)]
    pub campaigns: u32,
    /// Short links to create (`lg-0`, `lg-1`, …) and follow when the mix has redirects.
    #[arg(long, default_value_t = 50)]
    pub links: usize,
    /// Random seed of the population's draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the load on a runtime of its own with `args.threads` workers, so the generator's share
/// of the machine is what the user asked for.
pub fn run_blocking(args: LoadgenArgs) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    runtime.block_on(run(args))
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<Report> {
    validate(&args)?;
    let (addr, host) = resolve(&args.url).await?;
    let link_codes = if args.mix.has(Shape::Redirect) { create_links(&args).await? } else { Vec::new() };
    let run_id = format!("lg{:08x}", rand::random::<u32>());
    let population = Population { identities: args.identities, campaigns: args.campaigns, run_id };
    let pools = population.pools(&mut SmallRng::seed_from_u64(args.seed), &args.write_key);
    let settings = MakerSettings {
        mix: args.mix.clone(),
        pools: std::sync::Arc::new(pools),
        batch: args.batch,
        write_key: args.write_key.clone(),
        link_codes: std::sync::Arc::new(link_codes),
        host,
        identities: args.identities,
    };
    let now = Instant::now();
    let start = now + Duration::from_millis(50);
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let window = Window { start, measure_from, end: measure_from + Duration::from_secs_f64(args.duration) };
    let quota = std::sync::Arc::new(Quota::new(args.requests));
    let mut tasks = Vec::with_capacity(args.connections);
    for c in 0..args.connections {
        let rng = SmallRng::seed_from_u64(args.seed.wrapping_mul(1_000_003).wrapping_add(c as u64 + 1));
        let mut maker = RequestMaker::new(&settings, c as u64, rng);
        let pacing = pacing_of(&args, c);
        let quota = quota.clone();
        tasks.push(tokio::spawn(async move { run_connection(addr, pacing, window, &quota, move || maker.next()).await }));
    }
    let mut tallies = Vec::with_capacity(tasks.len());
    for t in tasks {
        tallies.push(t.await.context("a load connection task failed")?);
    }
    // A request limit can end the run before its duration.
    let measured = Instant::now().min(window.end).saturating_duration_since(window.measure_from).as_secs_f64();
    let head = ReportHead {
        target: args.url.clone(),
        mix: args.mix.describe(),
        connections: args.connections,
        threads: args.threads,
        rate: (args.rate > 0.0).then_some(args.rate),
    };
    Ok(report::merge(tallies, measured, head))
}

fn validate(args: &LoadgenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!((1..=100_000).contains(&args.batch), "--batch must be 1 to 100000 records");
    anyhow::ensure!(args.duration > 0.0 && args.duration.is_finite(), "--duration must be a positive number of seconds");
    anyhow::ensure!(args.warmup >= 0.0 && args.warmup.is_finite(), "--warmup must be zero or more seconds");
    anyhow::ensure!(args.requests != Some(0), "--requests must be at least 1");
    anyhow::ensure!(args.rate >= 0.0 && args.rate.is_finite(), "--rate must be zero (as fast as possible) or a positive rate");
    let needs_key = [Shape::Batch, Shape::Single, Shape::Segment, Shape::Pixel].iter().any(|s| args.mix.has(*s));
    anyhow::ensure!(
        !needs_key || !args.write_key.is_empty(),
        "--write-key (or TOUCHLINE_WRITE_KEY) is needed for the mix {}",
        args.mix.describe()
    );
    Ok(())
}

/// Connection `c`'s share of a fixed rate: every connection sends at `rate / connections`,
/// staggered so the requests spread evenly over each interval.
fn pacing_of(args: &LoadgenArgs, c: usize) -> Pacing {
    if args.rate <= 0.0 {
        return Pacing::ClosedLoop;
    }
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
    Pacing::Fixed { interval, offset: interval.mul_f64(c as f64 / args.connections as f64) }
}

async fn resolve(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let parsed = url::Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
    anyhow::ensure!(parsed.scheme() == "http", "--url must be http:// (the load generator speaks plain HTTP/1.1)");
    let host = parsed.host_str().context("--url has no host")?.to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} resolves to no address"))?;
    Ok((addr, format!("{host}:{port}")))
}

/// Creates (or finds, on a 409) the short links `lg-0 … lg-{n-1}` the redirect shape follows.
async fn create_links(args: &LoadgenArgs) -> anyhow::Result<Vec<String>> {
    let secret = args.secret_key.as_deref().context("a redirect mix needs --secret-key (or TOUCHLINE_SECRET_KEY) to create its links")?;
    let http = reqwest::Client::new();
    let mut codes = Vec::with_capacity(args.links);
    for i in 0..args.links.max(1) {
        let code = format!("lg-{i}");
        let body = serde_json::json!({
            "target_url": format!("https://shop.example/lp/{i}?ref=loadgen"),
            "code": code,
            "campaign_id": format!("c-{}", i % args.campaigns.max(1) as usize),
            "utm_source": "loadgen",
            "utm_medium": "link",
            "utm_campaign": format!("c-{}", i % args.campaigns.max(1) as usize),
        });
        create_link(&http, &args.url, secret, &code, &body).await?;
        codes.push(code);
    }
    Ok(codes)
}

/// One link, retried while the server answers 503 or 429 (a busy store) for up to 30 s.
async fn create_link(http: &reqwest::Client, url: &str, secret: &str, code: &str, body: &serde_json::Value) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .post(format!("{}/v1/links", url.trim_end_matches('/')))
            .bearer_auth(secret)
            .json(body)
            .send()
            .await
            .with_context(|| format!("creating short link {code} at {url}"))?;
        let status = r.status();
        if status.is_success() || status.as_u16() == 409 {
            return Ok(());
        }
        let retryable = matches!(status.as_u16(), 429 | 503);
        let text = r.text().await.unwrap_or_default();
        anyhow::ensure!(retryable && Instant::now() < deadline, "creating short link {code}: {status} {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
