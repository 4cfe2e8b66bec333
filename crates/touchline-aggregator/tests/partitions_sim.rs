//! The aggregator's protocol across partitions, simulated without I/O: one engine per partition,
//! records routed by their bus key, identity transfers appended to the customer's partition as
//! a flush produces them, checkpoints after each flush, and crashes that restore the last
//! checkpoint and replay — in orders chosen by proptest. A checkpoint holds either a full
//! snapshot or, as the runtime writes between full snapshots, the last full snapshot plus the
//! offsets of every flush since: restoring one re-reads those records, flushing at each
//! recorded offset and discarding the output (its sink writes and transfers already happened),
//! except the last flush's, which is the checkpoint's outbox: only a full snapshot stores its
//! outbox, a checkpoint between snapshots has it computed again. Whatever the schedule,
//! what the sinks end up holding (newest attribution version per conversion and model, newest
//! epoch's partial per partition and cell) must equal one engine that saw every record.
//!
//! This is the property the Kafka scale-out test (`crates/touchline/tests/scaleout.rs`) checks
//! with real processes; here thousands of interleavings run in seconds.
#![allow(clippy::unwrap_used, clippy::manual_is_multiple_of)]

#[path = "../../touchline-engine/tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, VecDeque};

use chrono::Duration;
use common::*;
use proptest::prelude::*;
use touchline_engine::{combine_partials, AttributionSet, CellKey, DailyPartial, Engine, EngineConfig, Flush, Model};
use touchline_model::{partition_for, topics, Body, Identify, Record};

const PARTITIONS: u32 = 3;

/// What goes on a partition's `touchline.identities` queue: identify records and transfers.
#[derive(Clone, Debug)]
enum Msg {
    Record(Box<Record>),
    Transfer(Vec<u8>),
}

/// One partition: two input queues (entity records; identities), the engine, its checkpoint.
struct Part {
    queues: [Vec<Msg>; 2],
    offsets: [usize; 2],
    engine: Engine,
    checkpoint: Checkpoint,
    epoch: u64,
}

/// A full snapshot at `base_offsets`, the offsets of each flush since, and the output of the
/// flush that took the snapshot while no flush followed it (the replay of the last flush
/// recomputes it once one has).
#[derive(Clone)]
struct Checkpoint {
    base: Vec<u8>,
    base_offsets: [usize; 2],
    flushes: Vec<[usize; 2]>,
    outbox: Option<Flush>,
}

fn cfg(p: u32) -> EngineConfig {
    EngineConfig { partition: p, partitions: PARTITIONS, allowed_lateness_secs: 20 * 365 * 86_400, ..EngineConfig::default() }
}

#[derive(Default)]
struct Sinks {
    attributions: BTreeMap<(String, Model), (u64, AttributionSet)>,
    partials: BTreeMap<(u32, CellKey), (u64, DailyPartial)>,
}

impl Sinks {
    /// As the SQL and ClickHouse sinks keep rows: the highest version wins.
    fn write(&mut self, epoch: u64, f: &Flush) {
        for s in &f.attributions {
            let v = (epoch << 32) | s.version;
            let k = (s.conversion_key.to_string(), s.model);
            if self.attributions.get(&k).is_none_or(|(old, _)| *old <= v) {
                self.attributions.insert(k, (v, s.clone()));
            }
        }
        for m in &f.metrics {
            let k = (
                m.partition,
                CellKey {
                    account_id: m.account_id,
                    campaign_id: m.campaign_id.clone(),
                    advertisement_id: m.advertisement_id.clone(),
                    date: m.date,
                },
            );
            if self.partials.get(&k).is_none_or(|(old, _)| *old <= epoch) {
                self.partials.insert(k, (epoch, m.clone()));
            }
        }
    }

    fn normalized(&self) -> (Vec<AttributionSet>, Vec<String>) {
        let a = self.attributions.values().map(|(_, s)| AttributionSet { version: 0, ..s.clone() }).collect();
        let parts: Vec<DailyPartial> = self.partials.values().map(|(_, p)| p.clone()).collect();
        (a, report(&parts))
    }
}

/// The daily report rows (all partitions summed) that have anything in them.
fn report(parts: &[DailyPartial]) -> Vec<String> {
    combine_partials(parts)
        .into_iter()
        .filter(|r| {
            r.impressions + r.clicks + r.reach + r.engagements + r.sessions > 0
                || !r.conversions.is_zero()
                || !r.revenue.is_zero()
                || !r.cost.is_zero()
        })
        .map(|r| {
            format!(
                "{} {:?} {} imp {} clk {} reach {} conv {} rev {} cost {}",
                r.campaign_id,
                r.advertisement_id,
                r.date,
                r.impressions,
                r.clicks,
                r.reach,
                r.conversions.normalize(),
                r.revenue.normalize(),
                r.cost.normalize()
            )
        })
        .collect()
}

fn ingest(engine: &mut Engine, queue: usize, m: &Msg) {
    match m {
        Msg::Record(r) if queue == 1 => {
            engine.ingest_identities_message(&r.to_json()).unwrap();
        }
        Msg::Record(r) => {
            engine.ingest(r);
        }
        Msg::Transfer(bytes) => {
            engine.ingest_identities_message(bytes).unwrap();
        }
    }
}

struct Sim {
    parts: Vec<Part>,
    sinks: Sinks,
}

impl Sim {
    fn new() -> Sim {
        let parts = (0..PARTITIONS)
            .map(|p| {
                let engine = Engine::new(cfg(p));
                let checkpoint = Checkpoint { base: engine.snapshot(), base_offsets: [0, 0], flushes: Vec::new(), outbox: None };
                Part { queues: [Vec::new(), Vec::new()], offsets: [0, 0], engine, checkpoint, epoch: 1 }
            })
            .collect();
        Sim { parts, sinks: Sinks::default() }
    }

    fn arrive(&mut self, r: &Record) {
        let p = partition_for(r.partition_key().as_bytes(), PARTITIONS) as usize;
        let q = usize::from(r.topic() == topics::IDENTITIES);
        self.parts[p].queues[q].push(Msg::Record(Box::new(r.clone())));
    }

    fn read(&mut self, p: usize, q: usize, n: usize) {
        let part = &mut self.parts[p];
        for _ in 0..n {
            let Some(m) = part.queues[q].get(part.offsets[q]) else { return };
            ingest(&mut part.engine, q, m);
            part.offsets[q] += 1;
        }
    }

    /// `flush_cycle`: flush → checkpoint (a full snapshot and the flush's output as outbox when
    /// `full`, else the flush's offsets appended to the last one) → deliver the
    /// outbox (sinks, then transfers). `stop` cuts it short like a crash would: 0 before the
    /// checkpoint, 1 after it, 2 after the sink write, 3 never.
    fn flush(&mut self, p: usize, stop: u8, full: bool) {
        let part = &mut self.parts[p];
        let out = part.engine.flush();
        if stop == 0 {
            return;
        }
        let c = &mut part.checkpoint;
        if full {
            (c.base, c.base_offsets) = (part.engine.snapshot(), part.offsets);
            c.flushes.clear();
            c.outbox = Some(out.clone());
        } else {
            c.flushes.push(part.offsets);
            c.outbox = None;
        }
        if stop > 1 {
            self.deliver(p, &out, stop > 2);
        }
    }

    fn deliver(&mut self, p: usize, out: &Flush, transfers: bool) {
        let epoch = self.parts[p].epoch;
        self.sinks.write(epoch, out);
        if transfers {
            for t in &out.transfers {
                let to = partition_for(t.partition_key().as_bytes(), PARTITIONS) as usize;
                self.parts[to].queues[1].push(Msg::Transfer(t.to_json()));
            }
        }
    }

    /// The process dies: the next owner restores the checkpoint under a new epoch and delivers
    /// its outbox again before reading on.
    fn crash(&mut self, p: usize) {
        let part = &mut self.parts[p];
        let c = &part.checkpoint;
        part.engine = Engine::restore(cfg(p as u32), &c.base).unwrap();
        part.offsets = c.base_offsets;
        // Each recorded flush again, a queue at a time (not in the original interleaving).
        let mut last_output = None;
        for until in &c.flushes {
            for (q, &end) in until.iter().enumerate() {
                for m in &part.queues[q][part.offsets[q]..end] {
                    ingest(&mut part.engine, q, m);
                }
                part.offsets[q] = end;
            }
            last_output = Some(part.engine.flush());
        }
        part.epoch += 1;
        if let Some(out) = part.checkpoint.outbox.clone().or(last_output) {
            self.deliver(p, &out, true);
        }
    }

    fn pending(&self) -> bool {
        self.parts.iter().any(|p| (0..2).any(|q| p.offsets[q] < p.queues[q].len()))
    }

    /// Reads everything and flushes until no partition has anything left (transfers included).
    fn settle(&mut self) {
        for _ in 0..20 {
            for p in 0..self.parts.len() {
                self.read(p, 0, usize::MAX);
                self.read(p, 1, usize::MAX);
                self.flush(p, 3, false);
            }
            if !self.pending() {
                return;
            }
        }
        panic!("transfers did not settle");
    }
}

/// The scale-out dataset's shape: anonymous visitors with touches, some identified to a
/// customer (several visitors per customer) by an identify or by a touch that carries both ids,
/// conversions sent server-side with only the customer id (some retried), conversions of
/// anonymous visitors, spend.
#[derive(Clone, Debug)]
enum Spec {
    Touch {
        anon: usize,
        minute: i64,
        campaign: usize,
        click: bool,
    },
    /// A touch sent with the visitor's anonymous id and their customer id: keyed by the
    /// customer, it links the two on the customer's partition, which must tell the visitor's.
    TouchKnown {
        anon: usize,
        minute: i64,
        campaign: usize,
        click: bool,
    },
    Identify {
        anon: usize,
        minute: i64,
    },
    Convert {
        customer: usize,
        minute: i64,
        order: usize,
        retry: bool,
    },
    ConvertAnon {
        anon: usize,
        minute: i64,
    },
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        4 => (0usize..8, 0i64..4 * 24 * 60, 0usize..3, any::<bool>()).prop_map(|(anon, minute, campaign, click)| Spec::Touch { anon, minute, campaign, click }),
        2 => (0usize..8, 0i64..4 * 24 * 60).prop_map(|(anon, minute)| Spec::Identify { anon, minute }),
        // Visitors 6 and 7 are never identified (see `records`).
        1 => (0usize..6, 0i64..4 * 24 * 60, 0usize..3, any::<bool>()).prop_map(|(anon, minute, campaign, click)| Spec::TouchKnown { anon, minute, campaign, click }),
        2 => (0usize..3, 0i64..4 * 24 * 60, 0usize..4, any::<bool>()).prop_map(|(customer, minute, order, retry)| Spec::Convert { customer, minute, order, retry }),
        // Visitors 6 and 7 are never identified (see `records`).
        1 => (6usize..8, 0i64..4 * 24 * 60).prop_map(|(anon, minute)| Spec::ConvertAnon { anon, minute }),
    ]
}

fn records(specs: &[Spec]) -> Vec<Record> {
    let base = ts("2026-11-10T00:00:00Z");
    let at = |m: i64| (base + Duration::minutes(m)).to_rfc3339();
    let mut out = Vec::new();
    let mut identified = [false; 8];
    for (i, s) in specs.iter().enumerate() {
        let rid = format!("r{i:03}");
        match *s {
            Spec::Touch { anon, minute, campaign, click } | Spec::TouchKnown { anon, minute, campaign, click } => {
                // The customer of visitor `anon` is the one its identify names.
                let customer = matches!(s, Spec::TouchKnown { .. }).then(|| format!("c{}", anon % 3));
                let mut r = rec(
                    &rid,
                    ts(&at(minute)),
                    Some(&format!("a{anon}")),
                    customer.as_deref(),
                    tp_body(
                        if click { "click" } else { "impression" },
                        Some(&format!("k{campaign}")),
                        Some(&format!("k{campaign}-ad{}", i % 2)),
                        Some(["search", "social", "email"][i % 3]),
                        None,
                    ),
                );
                r.meta.received_at = base + Duration::days(30);
                out.push(r);
            }
            Spec::Identify { anon, minute } => {
                // One identify per visitor (a visitor linked to two customers is another story);
                // visitors 6 and 7 stay anonymous: a conversion sent with only the anonymous id
                // of a visitor stitched to a customer sees the touches on its own partition, not
                // those of the customer's other visitors (a documented limitation).
                if anon >= 6 || std::mem::replace(&mut identified[anon], true) {
                    continue;
                }
                let mut r = rec(
                    &rid,
                    ts(&at(minute)),
                    Some(&format!("a{anon}")),
                    Some(&format!("c{}", anon % 3)),
                    Body::Identify(Identify { traits: Default::default() }),
                );
                r.meta.received_at = base + Duration::days(30);
                out.push(r);
            }
            Spec::Convert { customer, minute, order, retry } => {
                // Order ids are per customer: the same order under two identities is the
                // documented cross-partition limitation, not what is tested here.
                let order = format!("o-{customer}-{order}");
                let mut r = conversion(&rid, &at(minute), (None, Some(&format!("c{customer}"))), 1000 + i as i64, Some(&order));
                r.meta.received_at = base + Duration::days(30);
                if retry {
                    let mut again = r.clone();
                    again.meta.record_id = id(&format!("{rid}-retry"));
                    out.push(again);
                }
                out.push(r);
            }
            Spec::ConvertAnon { anon, minute } => {
                let mut r = conversion(&rid, &at(minute), (Some(&format!("a{anon}")), None), 500 + i as i64, None);
                r.meta.received_at = base + Duration::days(30);
                out.push(r);
            }
        }
    }
    out
}

/// One engine over every record: the reference.
fn reference(records: &[Record]) -> (Vec<AttributionSet>, Vec<String>) {
    let mut e = Engine::new(EngineConfig { allowed_lateness_secs: 20 * 365 * 86_400, ..EngineConfig::single() });
    let mut sinks = Sinks::default();
    for r in records {
        if r.topic() == topics::IDENTITIES {
            e.ingest_identities_message(&r.to_json()).unwrap();
        } else {
            e.ingest(r);
        }
    }
    sinks.write(1, &e.flush());
    sinks.normalized()
}

/// One step of a schedule: (operation, partition, amount).
type Step = (u8, u8, u8);

fn run(records: &[Record], order: &[usize], steps: &[Step]) -> (Vec<AttributionSet>, Vec<String>) {
    let mut sim = Sim::new();
    let mut next = VecDeque::from(order.to_vec());
    for &(op, p, n) in steps {
        let p = usize::from(p) % sim.parts.len();
        let n = usize::from(n % 8) + 1;
        match op % 8 {
            0 | 1 => {
                for _ in 0..n {
                    if let Some(i) = next.pop_front() {
                        sim.arrive(&records[i]);
                    }
                }
            }
            2 | 3 => sim.read(p, usize::from(n % 2 == 0), n),
            4 => sim.flush(p, 3, n % 3 == 0),
            5 => sim.crash(p),
            // Crash in the middle of a flush cycle.
            6 => {
                sim.flush(p, (n % 3) as u8, n % 2 == 0);
                sim.crash(p);
            }
            _ => {
                sim.read(p, 0, n);
                sim.read(p, 1, n);
            }
        }
    }
    while let Some(i) = next.pop_front() {
        sim.arrive(&records[i]);
    }
    sim.settle();
    sim.sinks.normalized()
}

fn arb_case() -> impl Strategy<Value = (Vec<Record>, Vec<usize>, Vec<Step>)> {
    prop::collection::vec(arb_spec(), 1..40).prop_flat_map(|specs| {
        let recs = records(&specs);
        let n = recs.len();
        (Just(recs), Just((0..n).collect::<Vec<usize>>()).prop_shuffle(), prop::collection::vec(any::<Step>(), 0..120))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn partitions_with_crashes_equal_one_engine((recs, order, steps) in arb_case()) {
        let expected = reference(&recs);
        let got = run(&recs, &order, &steps);
        prop_assert_eq!(&got.1, &expected.1, "daily report");
        prop_assert_eq!(got.0.len(), expected.0.len(), "attribution sets");
        for (g, e) in got.0.iter().zip(&expected.0) {
            prop_assert_eq!(g, e);
        }
    }
}
