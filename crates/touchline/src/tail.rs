//! `touchline tail`: prints what the embedded log holds, as JSON lines, without stopping a
//! running server (it reads the segment files read-only).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use touchline_bus::{LogReader, StoredRecord};

pub struct TailArgs {
    pub topic: String,
    /// Print only the last `last` records of each partition (all when None).
    pub last: Option<usize>,
    pub follow: bool,
    /// Wrap each value with its partition, offset and key.
    pub meta: bool,
    /// Stop after this many records in total.
    pub limit: Option<usize>,
}

fn line(r: &StoredRecord, meta: bool) -> String {
    let value: serde_json::Value =
        serde_json::from_slice(&r.value).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&r.value).into_owned()));
    if meta {
        serde_json::json!({"partition": r.partition, "offset": r.offset, "key": r.key, "value": value}).to_string()
    } else {
        value.to_string()
    }
}

/// Runs the tail, writing to `out`. Records of all partitions are merged by append time.
pub async fn run(log_dir: &Path, args: TailArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<usize> {
    let reader = LogReader::new(log_dir).with_context(|| format!("reading the log at {}", log_dir.display()))?;
    let partitions = reader.partitions(&args.topic);
    if partitions.is_empty() && !args.follow {
        anyhow::bail!("topic {} holds no records yet (topics: {})", args.topic, reader.topics().join(", "));
    }
    let mut next: Vec<(u32, u64)> = Vec::new();
    let mut batch: Vec<StoredRecord> = Vec::new();
    for p in &partitions {
        let all = reader.read(&args.topic, *p, 0, usize::MAX)?;
        let skip = args.last.map_or(0, |n| all.len().saturating_sub(n));
        next.push((*p, all.last().map_or(0, |r| r.offset + 1)));
        batch.extend(all.into_iter().skip(skip));
    }
    let mut printed = 0usize;
    loop {
        batch.sort_by_key(|r| (r.timestamp_ms, r.partition, r.offset));
        for r in batch.drain(..) {
            if args.limit.is_some_and(|l| printed >= l) {
                return Ok(printed);
            }
            writeln!(out, "{}", line(&r, args.meta))?;
            printed += 1;
        }
        out.flush()?;
        if !args.follow || args.limit.is_some_and(|l| printed >= l) {
            return Ok(printed);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        for p in reader.partitions(&args.topic) {
            let from = next.iter().find(|(q, _)| *q == p).map_or(0, |(_, o)| *o);
            let recs = reader.read(&args.topic, p, from, 10_000)?;
            if let Some(last) = recs.last() {
                let n = last.offset + 1;
                match next.iter_mut().find(|(q, _)| *q == p) {
                    Some(e) => e.1 = n,
                    None => next.push((p, n)),
                }
            }
            batch.extend(recs);
        }
    }
}
