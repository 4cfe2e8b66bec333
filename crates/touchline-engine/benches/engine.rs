//! Throughput of the engine against a baseline measured in the same run (iterate + clone the same
//! records), so the ratio is meaningful on any machine.
//!
//! `cargo bench -p touchline-engine --bench engine`
//!
//! - `events/*`: page events of 2,000 identities (10% with UTMs, 10% with a campaign) plus
//!   impressions: sessionizer + daily metrics (+ flush every 10,000 records).
//! - `conversions/*`: 10-touch paths (impressions and clicks over 9 days) + one conversion per
//!   identity, all six heuristic models; throughput counted in conversions. `ingest_and_…`
//!   ingests the touches too (each conversion carries ten touch ingests with their daily
//!   metrics); `attribute_…_in_state` starts from a state that holds the touches already.
//!
//! Also prints the snapshot size per active identity after each workload.
#![allow(clippy::unwrap_used, clippy::manual_is_multiple_of)]

use std::hint::black_box;

// The service binary (crates/touchline) runs with mimalloc as its global allocator; the engine
// is measured and profiled under the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod workload;
use touchline_model::Record;
use workload::{events, paths, paths_split, run, run_on};

fn report_state(name: &str, records: &[Record]) {
    let e = run(records);
    let stats = e.stats();
    let bytes = e.snapshot().len();
    eprintln!(
        "[{name}] snapshot {bytes} bytes, {} identities → {:.0} bytes per identity ({} touches, {} event points, {} conversions, {} cells)",
        stats.identities,
        bytes as f64 / stats.identities.max(1) as f64,
        stats.touches,
        stats.event_points,
        stats.conversions,
        stats.cells
    );
}

fn bench(c: &mut Criterion) {
    let ev = events(100_000);
    report_state("events", &ev);
    let mut g = c.benchmark_group("events");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ev.len() as u64));
    g.bench_function("baseline_clone", |b| {
        b.iter(|| {
            for r in &ev {
                black_box(r.clone());
            }
        })
    });
    g.bench_function("sessionize_and_metrics", |b| b.iter(|| black_box(run(&ev))));
    g.finish();

    let convs = 10_000;
    let ps = paths(convs);
    report_state("conversions", &ps);
    let mut g = c.benchmark_group("conversions");
    g.sample_size(10);
    g.throughput(Throughput::Elements(convs as u64));
    g.bench_function("baseline_clone", |b| {
        b.iter(|| {
            for r in &ps {
                black_box(r.clone());
            }
        })
    });
    g.bench_function("ingest_and_attribute_6_models_10_touch_paths", |b| b.iter(|| black_box(run(&ps))));
    // The same conversions with their touches already in the state (ingested, flushed, outside
    // the measurement): conversion ingest + attribution under eight models + flush + dropping the
    // output, i.e. the cost a conversion adds on top of its touches.
    let (touches, conversions) = paths_split(convs);
    g.bench_function("baseline_clone_conversions_in_state", |b| {
        b.iter(|| {
            for r in &conversions {
                black_box(r.clone());
            }
        })
    });
    g.bench_function("attribute_6_models_10_touch_paths_in_state", |b| {
        b.iter_batched_ref(|| run(&touches), |e| run_on(e, &conversions), criterion::BatchSize::LargeInput)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
