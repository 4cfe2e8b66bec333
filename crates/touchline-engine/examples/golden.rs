//! Dumps every output of the engine over deterministic mixed workloads (stitching across
//! partitions, duplicates, shuffled arrival, watermarks, snapshot/restore, the bench workloads)
//! as JSON lines on stdout, and the snapshots' decoded state checksums: run it before and after
//! an internal change and diff the two outputs to check that results are bit-identical.
//! `cargo run --release -p touchline-engine --example golden > out.jsonl`
#![allow(clippy::unwrap_used, dead_code, clippy::manual_is_multiple_of)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../benches/workload/mod.rs"]
mod workload;

use chrono::Duration;
use common::*;
use std::io::Write;
use touchline_engine::*;
use touchline_model::{partition_for, Alias, Body, Identify, LinkClick, Record};

const ANON: [&str; 6] = ["a0", "a1", "a2", "a3", "a4", "a5"];
const CUST: [&str; 3] = ["c0", "c1", "c2"];
const CAMPAIGNS: [Option<&str>; 4] = [Some("k0"), Some("k1"), Some("k2"), None];
const CHANNELS: [&str; 3] = ["search", "social", "email"];

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn build(i: usize, g: &mut Lcg) -> Record {
    let ty = g.below(15);
    let who = g.below(10) as usize;
    let minute = g.below(40 * 24 * 60) as i64;
    let camp = CAMPAIGNS[g.below(4) as usize];
    let x = g.below(1000) as usize;
    let rid = format!("r{i:05}");
    let at = ts("2026-11-10T00:00:00Z") + Duration::minutes(minute);
    let (anon, cust) = match who {
        0..=5 => (Some(ANON[who]), None),
        6..=8 => (None, Some(CUST[who - 6])),
        _ => (Some("a0"), Some("c0")),
    };
    let body = match ty {
        0 | 13 => tp_body("impression", camp, None, Some(CHANNELS[x % 3]), None),
        1 | 14 => tp_body("click", camp, (x % 2 == 0).then_some("ad1"), Some(CHANNELS[x % 3]), None),
        2 => tp_body("cta", camp, None, None, (x % 2 == 0).then_some("google")),
        3 => Body::LinkClick(LinkClick {
            link_id: None,
            short_code: Some(id("lnk")),
            target_url: None,
            referer: None,
            user_agent: None,
            ip: None,
            device_id: None,
            campaign_id: camp.map(id),
            advertisement_id: None,
            bot: x % 5 == 0,
            unique: None,
        }),
        4..=6 => {
            let sid = format!("S{}", x % 3);
            event_body(
                if x % 4 == 0 { "add_to_cart" } else { "page" },
                (x % 2 == 0).then_some(sid.as_str()),
                (x % 3 == 0).then_some((CHANNELS[x % 3], "cpc", if x % 7 == 0 { "autumn" } else { "spring" })),
                if x % 5 == 0 { camp } else { None },
                Some(if x % 11 == 0 { "https://shop.example/p?utm_source=news&utm_campaign=k1" } else { "https://shop.example/p" }),
            )
        }
        7 => {
            session_body(&format!("S{}", x % 3), at, (x % 2 == 0).then(|| at + Duration::minutes(20)), (x % 3 == 0).then_some("newsletter"))
        }
        8 | 9 => conversion_body(
            if x % 7 == 0 { "signup" } else { "purchase" },
            if x % 13 == 0 { None } else { Some(x as i64 * 137) },
            (x % 2 == 0).then(|| format!("o{}", x % 4)).as_deref(),
        ),
        10 => Body::Identify(Identify { traits: Default::default() }),
        11 => Body::Alias(Alias { previous_id: id(ANON[x % 6]) }),
        _ => {
            let date = at.date_naive();
            return spend(&rid, &at.to_rfc3339(), date, camp.unwrap_or("k0"), if x % 2 == 0 { "meta" } else { "google" }, x as i64 * 10);
        }
    };
    let (anon, cust) = match ty {
        10 => (Some(ANON[who % 6]), Some(CUST[x % 3])),
        11 => (None, Some(CUST[x % 3])),
        _ => (anon, cust),
    };
    let mut r = rec(&rid, at, anon, cust, body);
    r.meta.received_at = at + Duration::seconds((x % 60) as i64);
    r
}

fn emit(out: &mut impl Write, tag: &str, f: &Flush) {
    writeln!(out, "{tag} {}", serde_json::to_string(f).unwrap()).unwrap();
}

fn main() {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for seed in 0..40u64 {
        let mut g = Lcg(seed * 7919 + 1);
        let n = 30 + g.below(400) as usize;
        let mut recs: Vec<Record> = (0..n).map(|i| build(i, &mut g)).collect();
        for _ in 0..g.below(10) {
            let k = g.below(n as u64) as usize;
            recs.push(recs[k].clone());
        }
        // Shuffle (Fisher–Yates).
        for i in (1..recs.len()).rev() {
            let j = g.below(i as u64 + 1) as usize;
            recs.swap(i, j);
        }
        let parts = if seed % 2 == 0 { 1 } else { 3 };
        let mut engines: Vec<Engine> =
            (0..parts).map(|p| Engine::new(EngineConfig { partition: p, partitions: parts, ..EngineConfig::default() })).collect();
        let mut max_at = None;
        for (i, r) in recs.iter().enumerate() {
            let p = (partition_for(r.partition_key().as_bytes(), parts)) as usize;
            let res = engines[p].ingest(r);
            writeln!(out, "s{seed} i{i} p{p} {res:?}").unwrap();
            max_at = max_at.max(Some(r.meta.timestamp));
            if g.below(5) == 0 {
                for (q, e) in engines.iter_mut().enumerate() {
                    emit(&mut out, &format!("s{seed} f{i} p{q}"), &e.flush());
                }
            }
            if g.below(100) == 0 {
                if let Some(m) = max_at {
                    for e in engines.iter_mut() {
                        e.advance_watermark(m - Duration::days(10 + g.below(20) as i64));
                    }
                }
            }
            if g.below(30) == 0 {
                for e in engines.iter_mut() {
                    let snap = e.snapshot();
                    let back = Engine::restore(e.config().clone(), &snap).unwrap();
                    // The restored engine's re-snapshot must decode to the same state.
                    writeln!(out, "s{seed} snap {} restore-resnap-eq {}", snap.len(), back.snapshot() == snap).unwrap();
                    *e = back;
                }
            }
        }
        // Deliver transfers until quiet.
        for round in 0..6 {
            let mut transfers = Vec::new();
            for (q, e) in engines.iter_mut().enumerate() {
                let f = e.flush();
                emit(&mut out, &format!("s{seed} end{round} p{q}"), &f);
                transfers.extend(f.transfers);
            }
            if transfers.is_empty() {
                break;
            }
            for t in transfers {
                let p = partition_for(t.partition_key().as_bytes(), parts) as usize;
                let r = engines[p].ingest_identities_message(&t.to_json()).unwrap();
                writeln!(out, "s{seed} deliver p{p} {r:?}").unwrap();
            }
        }
        for (q, e) in engines.iter().enumerate() {
            writeln!(out, "s{seed} stats p{q} {:?} {:?}", e.stats(), e.counters()).unwrap();
            let from = ts("2026-11-01T00:00:00Z");
            let to = ts("2027-01-01T00:00:00Z");
            writeln!(out, "s{seed} paths p{q} {:?}", e.paths(acct(), from, to)).unwrap();
        }
    }
    for (name, recs) in [("events", workload::events(20_000)), ("conversions", workload::paths(2_000))] {
        let mut e = Engine::new(EngineConfig::single());
        for (i, r) in recs.iter().enumerate() {
            e.ingest(r);
            if i % 3_000 == 2_999 {
                emit(&mut out, &format!("{name} f{i}"), &e.flush());
            }
        }
        emit(&mut out, &format!("{name} end"), &e.flush());
        writeln!(out, "{name} stats {:?} snapshot {}", e.stats(), e.snapshot().len()).unwrap();
    }
}
