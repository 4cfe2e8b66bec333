//! The embedded durable log: the bus of the single-machine default.
//!
//! Layout under the log directory:
//! ```text
//! LOCK                                  held (flock) while a process has the log open
//! meta.json                             {"format":1,"partitions":8}
//! topics/{topic}/{partition}/{base:020}.log   segments, named by their first offset
//! groups/{group}.json                   committed offsets of a consumer group
//! journal/{seq:020}.wal                 the commit journal (see `journal.rs`)
//! ```
//! Appends queue to one committer (see `commit.rs`): it writes everything queued to the
//! segments and to the journal, fsyncs the journal once (group commit across partitions) and only
//! then acknowledges. Readers see only committed bytes. On open the newest segment of each
//! partition is scanned, a torn tail (a partial or checksum-failing frame left by a crash) is cut
//! off, and what the journal holds past it is written again.

mod commit;
pub mod frame;
mod journal;
pub mod reader;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::{partition_for_key, validate_topic, Bus, BusError, OutRecord, Position, StoredRecord};

/// Settings of the embedded log. Defaults: 8 partitions, 64 MiB segments, 7 days retention.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Partitions of every topic. Fixed when the log is created.
    pub partitions: u32,
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_bytes: u64,
    /// Closed segments whose newest record is older than this are deleted (0 = keep forever).
    pub retention_secs: u64,
    /// Closed segments beyond this total size per partition are deleted, oldest first (0 = no limit).
    pub retention_bytes: u64,
    /// Never delete records a consumer group that committed on the partition has not processed.
    pub retention_keeps_uncommitted: bool,
    /// How often retention runs.
    pub retention_check_secs: u64,
    /// Largest single record (key + value).
    pub max_record_bytes: usize,
    /// Appends waiting for the committer before `append` itself waits (backpressure).
    pub queue_depth: usize,
    /// Bytes of records waiting per partition before `append` itself waits: appends differ in
    /// size by orders of magnitude, so a count alone would not bound memory.
    pub queue_bytes: usize,
    /// The commit journal is retired (every segment it covers fsynced, the file replaced) once
    /// it holds this many bytes. Retiring stalls commits while the segments' dirty pages are
    /// written, so a smaller journal means shorter, more frequent stalls.
    pub journal_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            partitions: 8,
            segment_bytes: 64 * 1024 * 1024,
            retention_secs: 7 * 24 * 3600,
            retention_bytes: 0,
            retention_keeps_uncommitted: true,
            retention_check_secs: 300,
            max_record_bytes: 8 * 1024 * 1024,
            queue_depth: 4096,
            queue_bytes: 64 * 1024 * 1024,
            journal_bytes: 8 * 1024 * 1024,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct MetaFile {
    format: u32,
    partitions: u32,
}

const FORMAT: u32 = 1;
/// One sparse index entry per this many bytes of a segment.
const INDEX_EVERY: u64 = 4096;
/// Bytes read from a segment at a time.
const READ_CHUNK: usize = 1024 * 1024;

/// The embedded log. Cheap to share: wrap it in an `Arc` (as [`EmbeddedLog::open`] does).
pub struct EmbeddedLog {
    dir: PathBuf,
    config: LogConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    groups: Mutex<HashMap<String, BTreeMap<String, u64>>>,
    /// Serialises writes of group files: concurrent commits of one group (one per partition)
    /// must not interleave their temporary files, and the last write must hold the newest map.
    group_write: tokio::sync::Mutex<()>,
    /// Serialises opening topics: two concurrent first appends must not both open (and
    /// recover) the same partition files.
    topic_open: tokio::sync::Mutex<()>,
    /// The committer's queue (see `commit.rs`).
    commits: mpsc::Sender<commit::CommitReq>,
    _lock: File,
}

struct Topic {
    partitions: Vec<Arc<Partition>>,
}

struct Partition {
    topic: String,
    id: u32,
    dir: PathBuf,
    segment_bytes: u64,
    state: Mutex<PartState>,
    /// One past the last committed offset.
    durable: watch::Sender<u64>,
    /// The byte budget of queued appends (`queue_bytes`); each append holds its bytes until
    /// written.
    room: Arc<Semaphore>,
    room_bytes: u32,
}

struct PartState {
    segments: Vec<Segment>,
    active: File,
    next_offset: u64,
    failed: Option<String>,
}

struct Segment {
    base: u64,
    path: PathBuf,
    /// Valid (committed) bytes.
    len: u64,
    /// One past the last offset in the segment.
    next: u64,
    /// Timestamp of the newest record (for retention by age).
    max_ts: i64,
    /// Sparse (offset, byte position) index; built lazily for old segments.
    index: Option<Vec<(u64, u64)>>,
}

/// Frames encoded for one partition by one commit: written to the segment, then published
/// once the journal has made them durable.
struct Pending {
    buf: Vec<u8>,
    /// The end of each frame in `buf`.
    ends: Vec<usize>,
    /// The active segment's length before these frames.
    seg_len: u64,
    /// The offset after the last frame.
    next: u64,
    max_ts: i64,
    index: Vec<(u64, u64)>,
    last_indexed: Option<u64>,
}

impl Pending {
    /// Encodes one record at the next offset and returns that offset.
    fn push(&mut self, topic: &str, partition: u32, key: &[u8], value: &[u8], ts: i64) -> Result<u64, BusError> {
        let offset = self.next;
        // Offsets end one short of u64::MAX (see `scan_segment`); nothing is written yet.
        let Some(after) = offset.checked_add(1) else {
            return Err(BusError::Unavailable(format!("partition {topic}/{partition} has no offsets left (next would be {offset})")));
        };
        self.index_at(offset);
        frame::encode(&mut self.buf, offset, ts, key, value);
        self.ends.push(self.buf.len());
        self.max_ts = self.max_ts.max(ts);
        self.next = after;
        Ok(offset)
    }

    /// Adds a frame already encoded (from the journal) at the next offset.
    fn push_frame(&mut self, frame: &[u8], offset: u64, ts: i64) {
        self.index_at(offset);
        self.buf.extend_from_slice(frame);
        self.ends.push(self.buf.len());
        self.max_ts = self.max_ts.max(ts);
        self.next = offset.saturating_add(1);
    }

    fn index_at(&mut self, offset: u64) {
        let pos = self.seg_len + self.buf.len() as u64;
        if self.last_indexed.is_none_or(|l| pos - l >= INDEX_EVERY) {
            self.index.push((offset, pos));
            self.last_indexed = Some(pos);
        }
    }
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn sync_dir(dir: &Path) -> Result<(), BusError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| BusError::io(dir, e))
}

/// What a scan of one segment file found.
struct Scan {
    valid_len: u64,
    next: Option<u64>,
    max_ts: i64,
    index: Vec<(u64, u64)>,
    /// Where and why the scan stopped before the end of the file.
    stopped: Option<(u64, String)>,
}

/// Reads a segment from the start, validating every frame, until the end or the first bad frame.
fn scan_segment(path: &Path, expect_first: u64) -> Result<Scan, BusError> {
    let mut file = File::open(path).map_err(|e| BusError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| BusError::io(path, e))?.len();
    let mut scan = Scan { valid_len: 0, next: None, max_ts: i64::MIN, index: Vec::new(), stopped: None };
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start: u64 = 0; // file position of buf[0]
    let mut pos: u64 = 0;
    let mut expect = expect_first;
    let mut last_indexed: Option<u64> = None;
    loop {
        let rel = (pos - buf_start) as usize;
        match frame::decode(&buf[rel..]) {
            frame::Decoded::Frame(f) => {
                if f.offset < expect {
                    scan.stopped = Some((pos, format!("offset {} follows {}", f.offset, expect.saturating_sub(1))));
                    break;
                }
                // The last offset (u64::MAX) is never written: the one after it could not be
                // represented. A frame claiming it is not one of ours.
                let Some(after) = f.offset.checked_add(1) else {
                    scan.stopped = Some((pos, format!("offset {} is out of range", f.offset)));
                    break;
                };
                if last_indexed.is_none_or(|l| pos - l >= INDEX_EVERY) {
                    scan.index.push((f.offset, pos));
                    last_indexed = Some(pos);
                }
                expect = after;
                scan.next = Some(expect);
                scan.max_ts = scan.max_ts.max(f.timestamp_ms);
                pos += f.size as u64;
                scan.valid_len = pos;
            }
            frame::Decoded::Incomplete { need } => {
                if pos >= file_len {
                    break;
                }
                // Refill: keep the unread tail, read at least the frame (or a chunk).
                let want = need.unwrap_or(frame::PREFIX).max(READ_CHUNK);
                buf.drain(..rel);
                buf_start = pos;
                let have = buf.len();
                let to_read = (want.saturating_sub(have) as u64).min(file_len - (pos + have as u64)) as usize;
                if to_read == 0 {
                    scan.stopped = Some((pos, "the file ends inside a frame".into()));
                    break;
                }
                buf.resize(have + to_read, 0);
                file.seek(SeekFrom::Start(pos + have as u64)).map_err(|e| BusError::io(path, e))?;
                file.read_exact(&mut buf[have..]).map_err(|e| BusError::io(path, e))?;
            }
            frame::Decoded::Corrupt(why) => {
                scan.stopped = Some((pos, why));
                break;
            }
        }
    }
    Ok(scan)
}

impl Partition {
    fn open(topic: &str, id: u32, dir: PathBuf, config: &LogConfig) -> Result<Arc<Partition>, BusError> {
        fs::create_dir_all(&dir).map_err(|e| BusError::io(&dir, e))?;
        let mut bases: Vec<u64> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| BusError::io(&dir, e))? {
            let entry = entry.map_err(|e| BusError::io(&dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = name.strip_suffix(".log").and_then(|b| b.parse::<u64>().ok()) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments: Vec<Segment> = Vec::new();
        let count = bases.len();
        for (i, base) in bases.iter().copied().enumerate() {
            let path = segment_path(&dir, base);
            let is_last = i + 1 == count;
            if is_last {
                let scan = scan_segment(&path, base)?;
                let file_len = fs::metadata(&path).map_err(|e| BusError::io(&path, e))?.len();
                if scan.valid_len < file_len {
                    let why = scan.stopped.as_ref().map(|(_, w)| w.as_str()).unwrap_or("incomplete frame");
                    tracing::warn!(path = %path.display(), valid = scan.valid_len, file_len, why, "cutting torn tail of log segment");
                    let f = OpenOptions::new().write(true).open(&path).map_err(|e| BusError::io(&path, e))?;
                    f.set_len(scan.valid_len).map_err(|e| BusError::io(&path, e))?;
                    f.sync_all().map_err(|e| BusError::io(&path, e))?;
                }
                segments.push(Segment {
                    base,
                    next: scan.next.unwrap_or(base),
                    len: scan.valid_len,
                    max_ts: scan.max_ts,
                    index: Some(scan.index),
                    path,
                });
            } else {
                let len = fs::metadata(&path).map_err(|e| BusError::io(&path, e))?.len();
                let next = bases[i + 1];
                // Age of a closed segment: its file's modification time is when its last record
                // was written; exact timestamps are read when its index is built.
                let max_ts = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(i64::MAX);
                segments.push(Segment { base, path, len, next, max_ts, index: None });
            }
        }
        if segments.is_empty() {
            let path = segment_path(&dir, 0);
            // Never truncate: only the first opener of a partition gets here, but a file that
            // exists must keep what it holds.
            OpenOptions::new().create(true).append(true).open(&path).map_err(|e| BusError::io(&path, e))?;
            sync_dir(&dir)?;
            segments.push(Segment { base: 0, path, len: 0, next: 0, max_ts: i64::MIN, index: Some(Vec::new()) });
        }
        let last = segments.last().ok_or(BusError::Closed)?;
        let next_offset = last.next;
        let active = OpenOptions::new().append(true).open(&last.path).map_err(|e| BusError::io(&last.path, e))?;
        let (durable, _) = watch::channel(next_offset);
        let part = Arc::new(Partition {
            topic: topic.to_owned(),
            id,
            dir,
            segment_bytes: config.segment_bytes.max(1024),
            state: Mutex::new(PartState { segments, active, next_offset, failed: None }),
            durable,
            room: Arc::new(Semaphore::new(config.queue_bytes.clamp(1, u32::MAX as usize))),
            room_bytes: u32::try_from(config.queue_bytes.max(1)).unwrap_or(u32::MAX),
        });
        Ok(part)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PartState> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than stopping would: keep serving.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts encoding frames that follow everything this partition holds.
    fn pending(&self, st: &PartState) -> Pending {
        let seg = st.segments.last();
        Pending {
            buf: Vec::new(),
            ends: Vec::new(),
            seg_len: seg.map_or(0, |s| s.len),
            next: st.next_offset,
            max_ts: i64::MIN,
            index: Vec::new(),
            last_indexed: seg.and_then(|s| s.index.as_ref()).and_then(|i| i.last()).map(|e| e.1),
        }
    }

    /// Rolls to a new segment when the active one is full. Only the committer calls it.
    fn roll_if_full(&self, st: &mut PartState) -> Result<(), BusError> {
        if st.segments.last().is_some_and(|s| s.len >= self.segment_bytes) {
            self.roll(st)?;
        }
        Ok(())
    }

    /// Writes encoded frames to the active segment, without fsync (the journal makes them
    /// durable). On failure the file is cut back to what it held; if even that fails, the
    /// partition refuses appends until the log is reopened.
    fn write(&self, st: &mut PartState, p: &Pending) -> Result<(), BusError> {
        let path = st.segments.last().map(|s| s.path.clone()).unwrap_or_default();
        if let Err(e) = st.active.write_all(&p.buf) {
            self.undo(st, p, &e.to_string());
            return Err(BusError::io(&path, e));
        }
        Ok(())
    }

    /// Cuts the active segment back to before `p` (its commit failed).
    fn undo(&self, st: &mut PartState, p: &Pending, why: &str) {
        if st.active.set_len(p.seg_len).is_err() {
            st.failed = Some(format!("write failed and could not be undone: {why}"));
        }
    }

    /// Makes frames written by a durable commit readable.
    fn publish(&self, st: &mut PartState, p: Pending) {
        st.next_offset = p.next;
        if let Some(seg) = st.segments.last_mut() {
            seg.len = p.seg_len + p.buf.len() as u64;
            seg.next = p.next;
            seg.max_ts = seg.max_ts.max(p.max_ts);
            if let Some(ix) = seg.index.as_mut() {
                ix.extend(p.index);
            }
        }
        self.durable.send_replace(p.next);
    }

    /// Writes again the frames of a journal entry that this partition lost in a crash: those
    /// from its recovered end on. Runs while the log opens, before anyone appends.
    fn restore(&self, frames: &[u8]) -> Result<u64, BusError> {
        let mut st = self.lock();
        self.roll_if_full(&mut st)?;
        let mut p = self.pending(&st);
        let mut pos = 0;
        while let frame::Decoded::Frame(f) = frame::decode(&frames[pos..]) {
            if f.offset > p.next {
                tracing::error!(topic = %self.topic, partition = self.id, expected = p.next, found = f.offset, "journal entry skips offsets; the rest of it is not restored");
                break;
            }
            if f.offset == p.next {
                p.push_frame(&frames[pos..pos + f.size], f.offset, f.timestamp_ms);
            }
            pos += f.size;
        }
        let restored = p.ends.len() as u64;
        if restored > 0 {
            self.write(&mut st, &p)?;
            self.publish(&mut st, p);
        }
        Ok(restored)
    }

    /// fsyncs the active segment, so the journal entries covering it may be deleted.
    fn sync(&self) -> Result<(), BusError> {
        let st = self.lock();
        let path = st.segments.last().map(|s| s.path.clone()).unwrap_or_default();
        st.active.sync_data().map_err(|e| BusError::io(&path, e))
    }

    fn roll(&self, st: &mut PartState) -> Result<(), BusError> {
        // Only the active segment may hold bytes that only the journal has made durable.
        let old = st.segments.last().map(|s| s.path.clone()).unwrap_or_default();
        st.active.sync_data().map_err(|e| BusError::io(&old, e))?;
        let base = st.next_offset;
        let path = segment_path(&self.dir, base);
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| BusError::io(&path, e))?;
        sync_dir(&self.dir)?;
        st.active = file;
        st.segments.push(Segment { base, path, len: 0, next: base, max_ts: i64::MIN, index: Some(Vec::new()) });
        Ok(())
    }

    fn start_offset(&self) -> u64 {
        self.lock().segments.first().map_or(0, |s| s.base)
    }

    /// Reads records from `from` (only committed ones). Runs on a blocking thread.
    fn read_blocking(&self, from: u64, max: usize) -> Result<Vec<StoredRecord>, BusError> {
        let durable_end = *self.durable.borrow();
        // Plan under the lock: which segments, from which byte, up to which byte.
        let mut plan: Vec<(PathBuf, u64, u64)> = Vec::new();
        {
            let mut st = self.lock();
            let first = st.segments.iter().rposition(|s| s.base <= from).unwrap_or(0);
            for (i, seg) in st.segments.iter_mut().enumerate().skip(first) {
                if seg.index.is_none() {
                    let scan = scan_segment(&seg.path, seg.base)?;
                    if let Some((pos, why)) = &scan.stopped {
                        tracing::error!(path = %seg.path.display(), pos, why, "corrupt frame inside a closed log segment; records after it are skipped");
                    }
                    seg.len = scan.valid_len;
                    seg.max_ts = scan.max_ts;
                    seg.index = Some(scan.index);
                }
                let start = if i == first {
                    let ix = seg.index.as_deref().unwrap_or(&[]);
                    match ix.partition_point(|&(o, _)| o <= from) {
                        0 => 0,
                        n => ix[n - 1].1,
                    }
                } else {
                    0
                };
                plan.push((seg.path.clone(), start, seg.len));
            }
        }
        let mut out = Vec::new();
        for (path, start, end) in plan {
            if out.len() >= max {
                break;
            }
            let mut file = match File::open(&path) {
                Ok(f) => f,
                // Removed by retention between planning and reading.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(BusError::io(&path, e)),
            };
            let mut pos = start;
            let mut buf: Vec<u8> = Vec::new();
            let mut rel = 0usize;
            while pos < end && out.len() < max {
                match frame::decode(&buf[rel..]) {
                    frame::Decoded::Frame(f) => {
                        if f.offset >= durable_end {
                            return Ok(out);
                        }
                        if f.offset >= from {
                            out.push(StoredRecord {
                                topic: self.topic.clone(),
                                partition: self.id,
                                offset: f.offset,
                                timestamp_ms: f.timestamp_ms,
                                key: String::from_utf8_lossy(f.key).into_owned(),
                                value: f.value.to_vec(),
                            });
                        }
                        pos += f.size as u64;
                        rel += f.size;
                    }
                    frame::Decoded::Incomplete { need } => {
                        let want = need.unwrap_or(frame::PREFIX).max(READ_CHUNK) as u64;
                        let have = (buf.len() - rel) as u64;
                        let to_read = want.saturating_sub(have).min(end - pos - have);
                        if to_read == 0 {
                            return Err(BusError::Corrupt {
                                path: path.display().to_string(),
                                position: pos,
                                why: "the segment ends inside a frame".into(),
                            });
                        }
                        buf.drain(..rel);
                        rel = 0;
                        let old = buf.len();
                        buf.resize(old + to_read as usize, 0);
                        file.seek(SeekFrom::Start(pos + have)).map_err(|e| BusError::io(&path, e))?;
                        file.read_exact(&mut buf[old..]).map_err(|e| BusError::io(&path, e))?;
                    }
                    frame::Decoded::Corrupt(why) => {
                        return Err(BusError::Corrupt { path: path.display().to_string(), position: pos, why });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Deletes closed segments by age and size. `keep_from`: offsets at or after it are kept.
    fn enforce_retention(&self, now_ms: i64, cfg: &LogConfig, keep_from: Option<u64>) -> Result<usize, BusError> {
        let mut st = self.lock();
        let mut total: u64 = st.segments.iter().map(|s| s.len).sum();
        let mut removed = 0;
        while st.segments.len() > 1 {
            let seg = &st.segments[0];
            let too_old = cfg.retention_secs > 0 && seg.max_ts < now_ms.saturating_sub((cfg.retention_secs as i64).saturating_mul(1000));
            let too_big = cfg.retention_bytes > 0 && total > cfg.retention_bytes;
            let consumed = keep_from.is_none_or(|k| seg.next <= k);
            if !(too_old || too_big) || !consumed {
                break;
            }
            if let Err(e) = fs::remove_file(&seg.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(BusError::io(&seg.path, e));
                }
            }
            total -= seg.len;
            st.segments.remove(0);
            removed += 1;
        }
        Ok(removed)
    }
}

impl EmbeddedLog {
    /// Opens (or creates) the log under `dir`, recovering every partition, and starts its
    /// committer and retention tasks. Must be called inside a tokio runtime.
    pub async fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Arc<EmbeddedLog>, BusError> {
        let dir = dir.as_ref().to_path_buf();
        let cfg = config.clone();
        let (log, commits) = tokio::task::spawn_blocking(move || EmbeddedLog::open_blocking(dir, cfg))
            .await
            .map_err(|e| BusError::Unavailable(format!("opening the log failed: {e}")))??;
        let log = Arc::new(log);
        // Recover existing topics now, so their torn tails are cut before anyone reads.
        let existing: Vec<String> = match fs::read_dir(log.dir.join("topics")) {
            Ok(rd) => rd.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        for t in existing {
            if validate_topic(&t).is_ok() {
                log.topic(&t).await?;
            }
        }
        let committer = log.recover_journal().await?;
        tokio::spawn(commit::run(committer, commits));
        if config.retention_check_secs > 0 {
            let weak = Arc::downgrade(&log);
            tokio::spawn(retention_loop(weak, Duration::from_secs(config.retention_check_secs)));
        }
        Ok(log)
    }

    /// Writes again what the journal holds past each partition's recovered end, fsyncs those
    /// partitions, and starts a new journal in place of the old.
    async fn recover_journal(&self) -> Result<commit::Committer, BusError> {
        let dir = self.dir.join("journal");
        let read_dir = dir.clone();
        let rotate_at = self.config.journal_bytes.max(1);
        let entries = tokio::task::spawn_blocking(move || journal::read_all(&read_dir))
            .await
            .map_err(|e| BusError::Unavailable(format!("reading the log journal failed: {e}")))??;
        let mut targets = Vec::with_capacity(entries.len());
        for entry in entries {
            match self.topic(&entry.topic).await?.partitions.get(entry.partition as usize) {
                Some(part) => targets.push((part.clone(), entry.frames)),
                None => {
                    tracing::error!(topic = %entry.topic, partition = entry.partition, "journal entry for a partition the log does not have; skipped")
                }
            }
        }
        let joined = tokio::task::spawn_blocking(move || -> Result<commit::Committer, BusError> {
            let mut touched: Vec<Arc<Partition>> = Vec::new();
            let mut restored = 0;
            for (part, frames) in targets {
                restored += part.restore(&frames)?;
                if !touched.iter().any(|t| Arc::ptr_eq(t, &part)) {
                    touched.push(part);
                }
            }
            for part in &touched {
                part.sync()?;
            }
            if restored > 0 {
                tracing::warn!(records = restored, "restored acknowledged records from the log journal after a crash");
            }
            let seq = journal::existing(&dir)?.last().map_or(0, |s| s + 1);
            let fresh = journal::Journal::create(&dir, seq)?;
            journal::remove_before(&dir, seq)?;
            Ok(commit::Committer::new(fresh, dir, rotate_at))
        })
        .await;
        joined.map_err(|e| BusError::Unavailable(format!("recovering the log journal failed: {e}")))?
    }

    fn open_blocking(dir: PathBuf, config: LogConfig) -> Result<(EmbeddedLog, mpsc::Receiver<commit::CommitReq>), BusError> {
        if config.partitions == 0 {
            return Err(BusError::Config("log partitions must be at least 1".into()));
        }
        fs::create_dir_all(dir.join("topics")).map_err(|e| BusError::io(&dir, e))?;
        fs::create_dir_all(dir.join("groups")).map_err(|e| BusError::io(&dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(|e| BusError::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(BusError::Config(format!("the log at {} is in use by another process", dir.display())));
        }
        let meta_path = dir.join("meta.json");
        match fs::read(&meta_path) {
            Ok(bytes) => {
                let meta: MetaFile =
                    serde_json::from_slice(&bytes).map_err(|e| BusError::Config(format!("{} is unreadable: {e}", meta_path.display())))?;
                if meta.format != FORMAT {
                    return Err(BusError::Config(format!(
                        "{} has log format {}; this build reads format {FORMAT}",
                        meta_path.display(),
                        meta.format
                    )));
                }
                if meta.partitions != config.partitions {
                    return Err(BusError::Config(format!(
                        "the log at {} has {} partitions but the configuration asks for {}; partitions cannot change once records are written",
                        dir.display(),
                        meta.partitions,
                        config.partitions
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let meta = serde_json::to_vec(&MetaFile { format: FORMAT, partitions: config.partitions }).unwrap_or_default();
                write_atomic(&meta_path, &meta)?;
            }
            Err(e) => return Err(BusError::io(&meta_path, e)),
        }
        let mut groups = HashMap::new();
        for entry in fs::read_dir(dir.join("groups")).map_err(|e| BusError::io(&dir, e))? {
            let entry = entry.map_err(|e| BusError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(group) = name.strip_suffix(".json") {
                let bytes = fs::read(entry.path()).map_err(|e| BusError::io(entry.path(), e))?;
                let offsets: BTreeMap<String, u64> = serde_json::from_slice(&bytes)
                    .map_err(|e| BusError::Config(format!("{} is unreadable: {e}", entry.path().display())))?;
                groups.insert(decode_group(group), offsets);
            }
        }
        let (commits, queue) = mpsc::channel(config.queue_depth.max(1));
        let log = EmbeddedLog {
            dir,
            config,
            topics: RwLock::new(HashMap::new()),
            groups: Mutex::new(groups),
            group_write: tokio::sync::Mutex::new(()),
            topic_open: tokio::sync::Mutex::new(()),
            commits,
            _lock: lock,
        };
        Ok((log, queue))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The topics that hold records (or were read).
    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).keys().cloned().collect();
        t.sort();
        t
    }

    async fn topic(&self, name: &str) -> Result<Arc<Topic>, BusError> {
        if let Some(t) = self.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(name) {
            return Ok(t.clone());
        }
        validate_topic(name)?;
        let _opening = self.topic_open.lock().await;
        if let Some(t) = self.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(name) {
            return Ok(t.clone());
        }
        let dir = self.dir.join("topics").join(name);
        let cfg = self.config.clone();
        let topic_name = name.to_owned();
        let opened = tokio::task::spawn_blocking(move || {
            (0..cfg.partitions).map(|p| Partition::open(&topic_name, p, dir.join(p.to_string()), &cfg)).collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| BusError::Unavailable(format!("opening topic failed: {e}")))??;
        let mut topics = self.topics.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let t = Arc::new(Topic { partitions: opened });
        topics.insert(name.to_owned(), t.clone());
        Ok(t)
    }

    async fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>, BusError> {
        let t = self.topic(topic).await?;
        t.partitions.get(partition as usize).cloned().ok_or_else(|| BusError::NoSuchPartition {
            topic: topic.to_owned(),
            partition,
            partitions: self.config.partitions,
        })
    }

    /// Runs retention once on every partition; returns the number of segments deleted.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize, BusError> {
        let topics: Vec<(String, Arc<Topic>)> =
            self.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut removed = 0;
        for (name, t) in topics {
            for p in &t.partitions {
                let keep_from = if self.config.retention_keeps_uncommitted { self.min_committed(&name, p.id) } else { None };
                let p = p.clone();
                let cfg = self.config.clone();
                removed += tokio::task::spawn_blocking(move || p.enforce_retention(now_ms, &cfg, keep_from))
                    .await
                    .map_err(|e| BusError::Unavailable(e.to_string()))??;
            }
        }
        Ok(removed)
    }

    fn min_committed(&self, topic: &str, partition: u32) -> Option<u64> {
        let key = group_key(topic, partition);
        self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().filter_map(|offs| offs.get(&key).copied()).min()
    }
}

async fn retention_loop(log: Weak<EmbeddedLog>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(log) = log.upgrade() else { return };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        match log.enforce_retention(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(segments = n, "log retention removed segments"),
            Err(e) => tracing::warn!(error = %e, "log retention failed"),
        }
    }
}

fn group_key(topic: &str, partition: u32) -> String {
    format!("{topic}/{partition}")
}

/// Group names may hold any character; file names get a hex encoding of unsafe bytes.
fn encode_group(group: &str) -> String {
    let mut s = String::new();
    for b in group.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02x}"));
        }
    }
    s
}

fn decode_group(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            if let Ok(b) = u8::from_str_radix(&name[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BusError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| BusError::io(&tmp, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| BusError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| BusError::io(path, e))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

#[async_trait]
impl Bus for EmbeddedLog {
    fn partitions(&self) -> u32 {
        self.config.partitions
    }

    async fn append(&self, records: Vec<OutRecord>) -> Result<Vec<Position>, BusError> {
        // Group by (topic, partition), keeping each record's place in the input.
        let mut groups: BTreeMap<(String, u32), (Vec<usize>, Vec<(String, Vec<u8>, i64)>, usize)> = BTreeMap::new();
        let n = records.len();
        for (i, r) in records.into_iter().enumerate() {
            let size = r.key.len() + r.value.len();
            if size > self.config.max_record_bytes {
                return Err(BusError::TooLarge { size, limit: self.config.max_record_bytes });
            }
            validate_topic(&r.topic)?;
            let p = partition_for_key(&r.key, self.config.partitions);
            let g = groups.entry((r.topic, p)).or_default();
            g.0.push(i);
            g.2 += frame::frame_len(r.key.as_bytes(), &r.value);
            g.1.push((r.key, r.value, r.timestamp_ms));
        }
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let mut chunks = Vec::with_capacity(groups.len());
        let mut places = Vec::with_capacity(groups.len());
        let mut total = 0;
        for ((topic, p), (idx, records, bytes)) in groups {
            let part = self.partition(&topic, p).await?;
            // An append larger than the whole budget takes all of it (and waits for it). Rooms
            // are taken in (topic, partition) order and given back by the committer alone, so
            // two appends never wait on each other.
            let weight = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, part.room_bytes);
            let room = part.room.clone().acquire_many_owned(weight).await.map_err(|_| BusError::Closed)?;
            chunks.push(commit::Chunk { part, records, _room: room });
            places.push((p, idx));
            total += bytes;
        }
        let (reply, rx) = oneshot::channel();
        self.commits.send(commit::CommitReq { chunks, bytes: total, reply }).await.map_err(|_| BusError::Closed)?;
        let offsets = rx.await.map_err(|_| BusError::Closed)??;
        let mut out = vec![Position { partition: 0, offset: 0 }; n];
        for ((p, idx), offs) in places.into_iter().zip(offsets) {
            for (i, off) in idx.into_iter().zip(offs) {
                out[i] = Position { partition: p, offset: off };
            }
        }
        Ok(out)
    }

    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize, wait: Duration) -> Result<Vec<StoredRecord>, BusError> {
        let part = self.partition(topic, partition).await?;
        let mut rx = part.durable.subscribe();
        if *rx.borrow_and_update() <= from && !wait.is_zero() {
            let _ = tokio::time::timeout(wait, rx.wait_for(|end| *end > from)).await;
        }
        if *part.durable.borrow() <= from || max == 0 {
            return Ok(Vec::new());
        }
        let p = part.clone();
        tokio::task::spawn_blocking(move || p.read_blocking(from, max)).await.map_err(|e| BusError::Unavailable(e.to_string()))?
    }

    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, BusError> {
        Ok(self.partition(topic, partition).await?.start_offset())
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, BusError> {
        Ok(*self.partition(topic, partition).await?.durable.borrow())
    }

    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<(), BusError> {
        if group.is_empty() {
            return Err(BusError::Config("consumer group name must not be empty".into()));
        }
        validate_topic(topic)?;
        let _writing = self.group_write.lock().await;
        let bytes = {
            let mut groups = self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let offs = groups.entry(group.to_owned()).or_default();
            offs.insert(group_key(topic, partition), next_offset);
            serde_json::to_vec_pretty(offs).unwrap_or_default()
        };
        let path = self.dir.join("groups").join(format!("{}.json", encode_group(group)));
        tokio::task::spawn_blocking(move || write_atomic(&path, &bytes)).await.map_err(|e| BusError::Unavailable(e.to_string()))?
    }

    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, BusError> {
        Ok(self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(group)
            .and_then(|o| o.get(&group_key(topic, partition)).copied()))
    }

    async fn ready(&self) -> Result<(), BusError> {
        let topics: Vec<Arc<Topic>> = self.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect();
        if self.commits.is_closed() {
            return Err(BusError::Closed);
        }
        for t in topics {
            for p in &t.partitions {
                if let Some(why) = &p.lock().failed {
                    return Err(BusError::Unavailable(format!("{}/{}: {why}", p.topic, p.id)));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_round_trip_through_file_names() {
        for g in ["aggregator", "a/b c", "ü%x", "%zz"] {
            assert_eq!(decode_group(&encode_group(g)), g);
        }
    }
}
