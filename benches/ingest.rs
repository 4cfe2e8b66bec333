//! Decode + validate + envelope per record, against a baseline that only parses the same bytes
//! into `serde_json::Value` (the least any JSON collector must do); and the aggregator's read of
//! each envelope back from the bus, against the same baseline.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use touchline_benches::mixed_batch;
use touchline_model::{decode_items, parse_body, DecodeOptions, Expect, Record, RequestCtx};

fn ingest(c: &mut Criterion) {
    let body = mixed_batch(100);
    let opts = DecodeOptions::default();
    let ctx = RequestCtx {
        account_id: uuid::Uuid::from_u128(1),
        received_at: chrono::Utc::now(),
        ip: Some("203.0.113.1".into()),
        user_agent: None,
    };
    let mut g = c.benchmark_group("decode_100_records");
    g.throughput(Throughput::Elements(100));
    g.bench_function("baseline_parse_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(std::hint::black_box(&body)).map(|v| v.is_object()).unwrap_or(false))
    });
    g.bench_function("decode_validate", |b| {
        b.iter(|| {
            let parsed = parse_body(std::hint::black_box(&body), &opts).map_err(|e| e.to_string());
            parsed.map(|p| decode_items(&p, &ctx, Expect::Any, &opts).records.len()).unwrap_or(0)
        })
    });
    g.bench_function("decode_validate_envelope", |b| {
        b.iter_batched(
            || (),
            |()| {
                let parsed = parse_body(std::hint::black_box(&body), &opts).map_err(|e| e.to_string());
                parsed
                    .map(|p| {
                        decode_items(&p, &ctx, Expect::Any, &opts)
                            .records
                            .iter()
                            .map(|r| r.to_json().len() + r.partition_key().len())
                            .sum::<usize>()
                    })
                    .unwrap_or(0)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // The aggregator's side: each record read back from its bus JSON, against parsing the same
    // bytes into `serde_json::Value`.
    let parsed = parse_body(&body, &opts).map_err(|e| e.to_string());
    let envelopes: Vec<Vec<u8>> =
        parsed.map(|p| decode_items(&p, &ctx, Expect::Any, &opts).records.iter().map(|r| r.to_json()).collect()).unwrap_or_default();
    let mut g = c.benchmark_group("bus_decode_100_records");
    g.throughput(Throughput::Elements(envelopes.len() as u64));
    g.bench_function("baseline_parse_value", |b| {
        b.iter(|| envelopes.iter().filter(|e| serde_json::from_slice::<serde_json::Value>(std::hint::black_box(e)).is_ok()).count())
    });
    g.bench_function("record_from_json", |b| {
        b.iter(|| envelopes.iter().filter(|e| Record::from_json(std::hint::black_box(e)).is_ok()).count())
    });
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
