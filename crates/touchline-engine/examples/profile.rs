//! Runs the bench workloads once each, for profilers (`valgrind --tool=callgrind`, `perf`):
//! `cargo build --release -p touchline-engine --example profile` then
//! `valgrind --tool=callgrind target/release/examples/profile events|conversions`.
//! `attribute` ingests the touches of the conversions workload first, then the conversions in
//! [`attribute`] (`--toggle-collect='profile::attribute'` counts only that part).
#![allow(clippy::unwrap_used, clippy::manual_is_multiple_of)]

// The service binary (crates/touchline) runs with mimalloc as its global allocator; the engine
// is measured and profiled under the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../benches/workload/mod.rs"]
mod workload;

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "events".to_owned());
    let reps: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    if what == "attribute" {
        let (touches, conversions) = workload::paths_split(10_000);
        let mut took = Vec::with_capacity(reps);
        // The state with the touches, built once; each rep attributes on a copy of it (so that a
        // sampling profiler sees mostly the attribution).
        let state = workload::run(&touches);
        for _ in 0..reps {
            let mut e = state.clone();
            let t = std::time::Instant::now();
            attribute(&mut e, &conversions);
            took.push(t.elapsed());
            std::hint::black_box(e.stats());
        }
        // Wall time of the attribution part alone, for quick comparisons (criterion is the
        // reported figure).
        took.sort_unstable();
        if let (Some(min), Some(med)) = (took.first(), took.get(took.len() / 2)) {
            let rate = |d: &std::time::Duration| conversions.len() as f64 / d.as_secs_f64();
            eprintln!("[attribute] {reps} reps: min {min:?} ({:.0}/s), median {med:?} ({:.0}/s)", rate(min), rate(med));
        }
        return;
    }
    let records = if what == "events" { workload::events(100_000) } else { workload::paths(10_000) };
    for _ in 0..reps {
        let e = workload::run(&records);
        std::hint::black_box(e.stats());
        if std::env::var_os("SNAPSHOT").is_some() {
            let t = std::time::Instant::now();
            let snap = e.snapshot();
            let took = t.elapsed();
            let t = std::time::Instant::now();
            let back = touchline_engine::Engine::restore(touchline_engine::EngineConfig::single(), &snap);
            let restored = t.elapsed();
            let ids = e.stats().identities.max(1);
            eprintln!(
                "[{what}] snapshot {} bytes, {ids} identities → {:.0} bytes per identity; snapshot {took:?}, restore {restored:?} ({})",
                snap.len(),
                snap.len() as f64 / ids as f64,
                if back.is_ok() { "ok" } else { "FAILED" }
            );
        }
    }
}

#[inline(never)]
fn attribute(e: &mut touchline_engine::Engine, conversions: &[touchline_model::Record]) {
    workload::run_on(e, conversions);
}
