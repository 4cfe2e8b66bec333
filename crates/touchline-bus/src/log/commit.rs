//! The embedded log's one commit pipeline.
//!
//! Every append, whatever partitions its records go to, queues to one committer task. The
//! committer takes everything queued (up to [`MAX_COMMIT_BYTES`]) as one commit:
//!
//! ```text
//! for each partition touched:  encode frames at its next offsets, write them to its segment
//! journal:                     one write of every partition's frames, one fdatasync
//! for each partition touched:  publish (readers see the frames), wake waiting readers
//! every append of the commit:  acknowledged with its offsets
//! ```
//! So an append waits for one fsync at most, shared with every append queued beside it, where a
//! commit per partition made a request spread over many partitions wait for as many fsyncs.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use super::frame;
use super::journal::{self, Journal};
use super::{Partition, Pending};
use crate::BusError;

/// Most bytes of records one commit writes.
pub const MAX_COMMIT_BYTES: usize = 8 * 1024 * 1024;

/// The records of one append that go to one partition.
pub struct Chunk {
    pub part: Arc<Partition>,
    pub records: Vec<(String, Vec<u8>, i64)>,
    /// This chunk's share of the partition's queue budget, given back when it is dropped.
    pub _room: OwnedSemaphorePermit,
}

/// One append: its chunks, their bytes, and where to send each chunk's offsets.
pub struct CommitReq {
    pub chunks: Vec<Chunk>,
    pub bytes: usize,
    pub reply: oneshot::Sender<Result<Vec<Vec<u64>>, BusError>>,
}

/// What the committer keeps between commits. Behind a mutex so that a panicking commit (on a
/// blocking thread) does not take the journal with it.
pub struct Committer {
    journal: Journal,
    journal_dir: std::path::PathBuf,
    /// Partitions written since the current journal started: fsynced before it is retired.
    dirty: Vec<Arc<Partition>>,
    /// Journal bytes at which it is retired.
    rotate_at: u64,
}

impl Committer {
    pub fn new(journal: Journal, journal_dir: std::path::PathBuf, rotate_at: u64) -> Committer {
        Committer { journal, journal_dir, dirty: Vec::new(), rotate_at }
    }

    /// Commits `reqs` as one: see the module documentation. Returns each append's outcome.
    fn commit(&mut self, reqs: &[CommitReq]) -> Vec<Result<Vec<Vec<u64>>, BusError>> {
        let mut outcome: Vec<Result<Vec<Vec<u64>>, BusError>> =
            reqs.iter().map(|r| Ok(r.chunks.iter().map(|c| Vec::with_capacity(c.records.len())).collect())).collect();
        let mut written: Vec<(Arc<Partition>, Pending)> = Vec::new();
        for (part, members) in by_partition(reqs) {
            match write_partition(&part, reqs, &members, &mut outcome) {
                Ok(pending) => written.push((part, pending)),
                Err(e) => fail(&mut outcome, &members, &e),
            }
        }
        let parts = written.iter().map(|(part, p)| (part.topic.as_str(), part.id, &p.buf[..], &p.ends[..]));
        if let Err(e) = self.journal.commit(parts) {
            tracing::error!(error = %e, "log commit failed");
            for (part, p) in &written {
                part.undo(&mut part.lock(), p, &e.to_string());
            }
            let msg = e.to_string();
            return reqs.iter().map(|_| Err(BusError::Unavailable(msg.clone()))).collect();
        }
        for (part, p) in written {
            part.publish(&mut part.lock(), p);
            if !self.dirty.iter().any(|d| Arc::ptr_eq(d, &part)) {
                self.dirty.push(part);
            }
        }
        if self.journal.bytes() >= self.rotate_at {
            if let Err(e) = self.rotate() {
                tracing::warn!(error = %e, "log journal rotation failed; retried after the next commit");
            }
        }
        outcome
    }

    /// Retires the journal: fsyncs every segment it covers, starts the next file, deletes it.
    fn rotate(&mut self) -> Result<(), BusError> {
        for part in &self.dirty {
            part.sync()?;
        }
        let next = Journal::create(&self.journal_dir, self.journal.seq() + 1)?;
        self.journal = next;
        self.dirty.clear();
        journal::remove_before(&self.journal_dir, self.journal.seq())
    }
}

/// Where a chunk sits in a commit: (append, chunk of that append).
type ChunkAt = (usize, usize);

/// The partitions `reqs` touch, each with its chunks in queue order.
fn by_partition(reqs: &[CommitReq]) -> Vec<(Arc<Partition>, Vec<ChunkAt>)> {
    let mut out: Vec<(Arc<Partition>, Vec<ChunkAt>)> = Vec::new();
    for (r, req) in reqs.iter().enumerate() {
        for (c, chunk) in req.chunks.iter().enumerate() {
            match out.iter_mut().find(|(p, _)| Arc::ptr_eq(p, &chunk.part)) {
                Some((_, members)) => members.push((r, c)),
                None => out.push((chunk.part.clone(), vec![(r, c)])),
            }
        }
    }
    out
}

/// Encodes the chunks of one partition and writes them to its segment; records each record's
/// offset in `outcome`.
fn write_partition(
    part: &Partition,
    reqs: &[CommitReq],
    members: &[ChunkAt],
    outcome: &mut [Result<Vec<Vec<u64>>, BusError>],
) -> Result<Pending, BusError> {
    let mut st = part.lock();
    if let Some(why) = &st.failed {
        return Err(BusError::Unavailable(format!("partition {}/{} failed earlier: {why}", part.topic, part.id)));
    }
    part.roll_if_full(&mut st)?;
    let mut pending = part.pending(&st);
    // Sized once, like the journal's buffer: growing it frame by frame copied it over and over.
    let records = members.iter().map(|&(r, c)| &reqs[r].chunks[c].records);
    pending.buf.reserve(records.clone().flat_map(|rs| rs.iter()).map(|(k, v, _)| frame::frame_len(k.as_bytes(), v)).sum());
    pending.ends.reserve(records.map(Vec::len).sum());
    for &(r, c) in members {
        for (key, value, ts) in &reqs[r].chunks[c].records {
            let offset = pending.push(&part.topic, part.id, key.as_bytes(), value, *ts)?;
            if let Ok(chunks) = &mut outcome[r] {
                chunks[c].push(offset);
            }
        }
    }
    part.write(&mut st, &pending)?;
    Ok(pending)
}

fn fail(outcome: &mut [Result<Vec<Vec<u64>>, BusError>], members: &[ChunkAt], e: &BusError) {
    tracing::error!(error = %e, "log append failed");
    for &(r, _) in members {
        outcome[r] = Err(BusError::Unavailable(e.to_string()));
    }
}

/// The committer task: takes every append queued, commits them as one on a blocking thread,
/// answers each. Ends when every sender is gone and the queue is empty.
pub async fn run(committer: Committer, mut rx: mpsc::Receiver<CommitReq>) {
    let committer = Arc::new(Mutex::new(committer));
    while let Some(first) = rx.recv().await {
        let mut bytes = first.bytes;
        let mut reqs = vec![first];
        while bytes < MAX_COMMIT_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.bytes;
                    reqs.push(r);
                }
                Err(_) => break,
            }
        }
        let c = committer.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let outcome = c.lock().unwrap_or_else(std::sync::PoisonError::into_inner).commit(&reqs);
            (reqs, outcome)
        })
        .await;
        // A panicking commit drops its appends' reply senders: they answer `Closed`.
        let Ok((reqs, outcome)) = joined else {
            tracing::error!("log commit task failed");
            continue;
        };
        for (req, result) in reqs.into_iter().zip(outcome) {
            let _ = req.reply.send(result);
        }
    }
}
