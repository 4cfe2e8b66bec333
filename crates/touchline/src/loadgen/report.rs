//! What a load run measured, merged over its connections, as a table line or JSON.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::client::{new_histogram, ConnectionTally};

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// The result of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub mix: String,
    pub connections: usize,
    pub threads: usize,
    /// Requests per second asked for; `None` when the run went as fast as it could.
    pub rate: Option<f64>,
    pub seconds: f64,
    pub requests: u64,
    pub records: u64,
    /// Requests answered as expected over the whole run, warm-up included.
    pub acknowledged: u64,
    pub errors: u64,
    pub transport_errors: u64,
    /// Unexpected answers by status (0: a pixel the server did not store).
    pub statuses: BTreeMap<u16, u64>,
    pub requests_per_sec: f64,
    pub records_per_sec: f64,
    /// From the intended send time when paced (coordinated omission corrected), from the
    /// actual send otherwise.
    pub latency_us: Latency,
}

/// Merges the tallies of every connection of a run measured over `seconds`.
pub fn merge(tallies: Vec<ConnectionTally>, seconds: f64, head: ReportHead) -> Report {
    let mut histogram = new_histogram();
    let (mut requests, mut records, mut acknowledged, mut errors, mut transport_errors) = (0, 0, 0, 0, 0);
    let mut statuses = BTreeMap::new();
    for t in tallies {
        let _ = histogram.add(&t.histogram);
        requests += t.ok;
        records += t.records;
        acknowledged += t.acknowledged;
        errors += t.errors;
        transport_errors += t.transport_errors;
        for (s, n) in t.statuses {
            *statuses.entry(s).or_insert(0) += n;
        }
    }
    let secs = seconds.max(1e-9);
    Report {
        target: head.target,
        mix: head.mix,
        connections: head.connections,
        threads: head.threads,
        rate: head.rate,
        seconds,
        requests,
        records,
        acknowledged,
        errors,
        transport_errors,
        statuses,
        requests_per_sec: requests as f64 / secs,
        records_per_sec: records as f64 / secs,
        latency_us: Latency::of(&histogram),
    }
}

/// The settings a report repeats.
pub struct ReportHead {
    pub target: String,
    pub mix: String,
    pub connections: usize,
    pub threads: usize,
    pub rate: Option<f64>,
}

impl Report {
    /// A human summary, several lines.
    pub fn text(&self) -> String {
        let l = &self.latency_us;
        let rate = self.rate.map_or_else(|| "as fast as possible".to_owned(), |r| format!("paced at {r:.0} req/s"));
        let mut s = format!(
            "touchline loadgen → {} ({}; {} connections, {} threads, {rate}, {:.1} s measured)\n",
            self.target, self.mix, self.connections, self.threads, self.seconds
        );
        s.push_str(&format!(
            "  {:>12.0} requests/s  {:>12.0} records/s  ({} requests, {} records, {} errors; {} acknowledged with the warm-up)\n",
            self.requests_per_sec, self.records_per_sec, self.requests, self.records, self.errors, self.acknowledged
        ));
        s.push_str(&format!(
            "  latency µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.0}\n",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        ));
        if !self.statuses.is_empty() || self.transport_errors > 0 {
            let by: Vec<String> =
                self.statuses.iter().map(|(s, n)| if *s == 0 { format!("pixel not stored ×{n}") } else { format!("{s} ×{n}") }).collect();
            s.push_str(&format!("  errors: {} transport; {}\n", self.transport_errors, by.join(", ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(latencies: &[u64], errors: u64) -> ConnectionTally {
        let mut histogram = new_histogram();
        for l in latencies {
            histogram.record(*l).expect("in range");
        }
        ConnectionTally {
            histogram,
            ok: latencies.len() as u64,
            records: latencies.len() as u64 * 10,
            acknowledged: latencies.len() as u64 + 5,
            errors,
            statuses: [(503, errors)].into_iter().filter(|(_, n)| *n > 0).collect(),
            transport_errors: 0,
        }
    }

    #[test]
    fn merging_adds_counts_and_pools_latencies() {
        // 100 requests at 1..=100 µs split over two connections: p50 is 50, p99 is 99 (nearest
        // rank over the pooled values, not a mean of per-connection percentiles).
        let a: Vec<u64> = (1..=100).filter(|v| v % 2 == 0).collect();
        let b: Vec<u64> = (1..=100).filter(|v| v % 2 == 1).collect();
        let head = ReportHead { target: "t".into(), mix: "batch".into(), connections: 2, threads: 1, rate: None };
        let r = merge(vec![tally(&a, 3), tally(&b, 0)], 2.0, head);
        assert_eq!(r.requests, 100);
        assert_eq!(r.records, 1_000);
        assert_eq!(r.acknowledged, 110, "warm-up answers (5 per connection) count as acknowledged");
        assert_eq!(r.errors, 3);
        assert_eq!(r.statuses.get(&503), Some(&3));
        assert_eq!(r.requests_per_sec, 50.0);
        assert_eq!(r.records_per_sec, 500.0);
        assert_eq!(r.latency_us.p50, 50);
        assert_eq!(r.latency_us.p99, 99);
        assert_eq!(r.latency_us.max, 100);
        assert!((r.latency_us.mean - 50.5).abs() < 0.01);
    }
}
