//! Per-partition checkpoints: the engine snapshot and the next offset of every topic, saved
//! together, with an epoch bumped every time an owner takes the partition.
//!
//! Two stores behind [`CheckpointStore`]: [`FileCheckpoints`] (one process owns every partition:
//! the embedded log) and [`SqlCheckpoints`] (the SQL store shared by all aggregator instances of
//! a consumer group: Kafka, where partitions move between instances; a save, a base snapshot or
//! a base removal under a superseded epoch is refused, which fences an instance that lost its
//! partition). Both keep base snapshots apart.
//!
//! A checkpoint also carries the *outbox*: the output of the flush that produced its state,
//! which the runtime delivers to the sinks (and the re-key records to the bus) only after the
//! checkpoint is saved, and delivers again when it restores the checkpoint. So the sinks only
//! ever receive results of checkpointed states: a process that dies between a sink write and
//! its checkpoint cannot leave behind an absolute value that the replay, batching records
//! differently, never recomputes (see `tests/partitions_sim.rs`).
//!
//! The engine state is either a snapshot inside the checkpoint or, where the store keeps
//! snapshots apart ([`CheckpointStore::keeps_bases`]), a [`Replay`]: the name of a *base*
//! snapshot taken at an earlier flush and the offsets of every flush since. Restoring one
//! restores the base and feeds the records between those offsets to the engine again,
//! flushing at each (see `replay.rs`), so a checkpoint between two bases costs a few hundred
//! bytes instead of the whole state. The last of those flushes computes the checkpoint's
//! outbox again, so such a checkpoint stores none; one whose state is a snapshot (in it, or
//! a base taken at its own flush) does.
//!
//! Files are replaced atomically (write to a temporary file, fsync, rename, fsync the
//! directory). File format: one JSON header line `{"v":2,"epoch":E,"offsets":{…},"snapshot_len":N,
//! "snapshot_crc":C,"replay":{…}}` then the N payload bytes ([`Checkpoint::payload`]: the
//! engine snapshot, empty when `replay` is there, framed with the outbox when there is one).
//! Version 1 is the same without `replay`. Base snapshots are files `base-{name}` beside it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use touchline_engine::Flush;
use touchline_store::{CheckpointTable, CheckpointWrite};

#[derive(Debug)]
pub struct Checkpoint {
    pub epoch: u32,
    pub offsets: BTreeMap<String, u64>,
    /// The engine snapshot (empty when `replay` says how to rebuild the state).
    pub snapshot: Vec<u8>,
    /// How to rebuild the state from a base snapshot stored apart.
    pub replay: Option<Replay>,
    /// Output of the flush that produced this state, delivered after the save (and again
    /// after a restore).
    pub outbox: Option<Flush>,
}

/// Starts a payload that frames a snapshot with an outbox; a payload without it is a bare
/// engine snapshot (checkpoints written before outboxes existed load unchanged).
const FRAMED: &[u8; 8] = b"TLCKPT2\0";
/// Bytes of JSON handed to the compressor per write while an outbox is encoded.
const OUTBOX_WRITE_BUFFER: usize = 256 * 1024;

impl Checkpoint {
    /// The stored bytes: the snapshot alone, or `FRAMED`, the snapshot length (u64 LE), the
    /// snapshot and the outbox as deflated JSON.
    pub fn payload(&self) -> std::borrow::Cow<'_, [u8]> {
        let Some(outbox) = self.outbox.as_ref().filter(|o| !o.is_empty()) else { return std::borrow::Cow::Borrowed(&self.snapshot) };
        let mut out = Vec::with_capacity(self.snapshot.len() + 4096);
        out.extend_from_slice(FRAMED);
        out.extend_from_slice(&(self.snapshot.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.snapshot);
        // Streamed into the compressor through a buffer, so the uncompressed outbox is never held
        // whole. The buffer matters: flate2 zero-fills its 32 KiB buffer on every write call,
        // which made per-token writes from serde_json cost more than the rest of a replay.
        // Serialising a flush cannot fail (string map keys only) and memory writes do not fail.
        let enc = flate2::write::DeflateEncoder::new(out, flate2::Compression::fast());
        let mut buffered = std::io::BufWriter::with_capacity(OUTBOX_WRITE_BUFFER, enc);
        let _ = serde_json::to_writer(&mut buffered, outbox);
        let _ = std::io::Write::flush(&mut buffered);
        let bytes = buffered.into_inner().ok().and_then(|enc| enc.finish().ok()).unwrap_or_default();
        std::borrow::Cow::Owned(bytes)
    }

    /// Splits [`Checkpoint::payload`] bytes into the snapshot and the outbox.
    pub fn split_payload(bytes: Vec<u8>) -> Result<(Vec<u8>, Option<Flush>), String> {
        let Some(rest) = bytes.strip_prefix(FRAMED) else { return Ok((bytes, None)) };
        let len =
            rest.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes).ok_or("checkpoint payload is truncated")?;
        let len = usize::try_from(len).map_err(|_| "checkpoint payload is damaged".to_owned())?;
        let snapshot = rest.get(8..8 + len).ok_or("checkpoint payload is truncated (snapshot)")?.to_vec();
        let mut json = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(&rest[8 + len..]), &mut json)
            .map_err(|e| format!("checkpoint outbox is damaged: {e}"))?;
        let outbox: Flush = serde_json::from_slice(&json).map_err(|e| format!("checkpoint outbox is unreadable: {e}"))?;
        Ok((snapshot, Some(outbox)))
    }
}

/// A state rebuilt from a base snapshot: restore `base` (taken at `from`), then for each entry
/// of `flushes` feed the records up to those offsets and flush, discarding the output (it was
/// delivered when the flush first happened). The checkpoint's offsets are the last entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    /// Name of the base snapshot in the [`CheckpointStore`].
    pub base: String,
    pub base_len: usize,
    pub base_crc: u32,
    /// When the base was taken (Unix milliseconds): a new one is due before the log's
    /// retention could remove the records a restore feeds again.
    pub based_at_ms: i64,
    /// Offsets of the state the base holds.
    pub from: BTreeMap<String, u64>,
    /// Offsets at each flush since the base, oldest first.
    pub flushes: Vec<BTreeMap<String, u64>>,
}

impl Replay {
    /// Whether `snapshot` is this replay's base, as it was written.
    pub fn matches_base(&self, snapshot: &[u8]) -> bool {
        snapshot.len() == self.base_len && crc(snapshot) == self.base_crc
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    v: u32,
    epoch: u32,
    offsets: BTreeMap<String, u64>,
    snapshot_len: usize,
    snapshot_crc: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replay: Option<Replay>,
}

pub(crate) fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().ok_or("checkpoint path has no directory")?;
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("renaming to {}: {e}", path.display()))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("syncing {}: {e}", dir.display()))?;
    Ok(())
}

pub fn save(dir: &Path, c: &Checkpoint) -> Result<(), String> {
    let payload = c.payload();
    let header = Header {
        v: if c.replay.is_some() { 2 } else { 1 },
        epoch: c.epoch,
        offsets: c.offsets.clone(),
        snapshot_len: payload.len(),
        snapshot_crc: crc(&payload),
        replay: c.replay.clone(),
    };
    let mut bytes = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&payload);
    write_atomic(&dir.join("checkpoint"), &bytes)
}

pub fn load(dir: &Path) -> Result<Option<Checkpoint>, String> {
    let path = dir.join("checkpoint");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let nl = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| format!("{} has no header", path.display()))?;
    let header: Header = serde_json::from_slice(&bytes[..nl]).map_err(|e| format!("{}: bad header: {e}", path.display()))?;
    if !matches!(header.v, 1 | 2) {
        return Err(format!("{}: checkpoint format {} is not supported", path.display(), header.v));
    }
    let snapshot = bytes[nl + 1..].to_vec();
    if snapshot.len() != header.snapshot_len || crc(&snapshot) != header.snapshot_crc {
        return Err(format!("{}: snapshot is damaged (length or checksum mismatch)", path.display()));
    }
    let (snapshot, outbox) = Checkpoint::split_payload(snapshot).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(Checkpoint { epoch: header.epoch, offsets: header.offsets, snapshot, replay: header.replay, outbox }))
}

/// Base snapshots of a partition are the files `base-{name}` in its directory.
const BASE_PREFIX: &str = "base-";

pub fn save_base(dir: &Path, name: &str, snapshot: &[u8]) -> Result<(), String> {
    write_atomic(&dir.join(format!("{BASE_PREFIX}{name}")), snapshot)
}

pub fn load_base(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    let path = dir.join(format!("{BASE_PREFIX}{name}"));
    fs::read(&path).map_err(|e| format!("reading the base snapshot {}: {e}", path.display()))
}

/// Removes the partition's base snapshots but `keep` (all of them when `keep` is `None`).
pub fn remove_bases(dir: &Path, keep: Option<&str>) -> Result<(), String> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("reading {}: {e}", dir.display())),
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(name) = file.to_str().and_then(|f| f.strip_prefix(BASE_PREFIX)) else { continue };
        if Some(name) == keep {
            continue;
        }
        match fs::remove_file(e.path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(format!("removing {}: {err}", e.path().display())),
        }
    }
    Ok(())
}

/// Increments and durably stores the partition's epoch; returns the new one.
pub fn bump_epoch(dir: &Path) -> Result<u32, String> {
    let path = dir.join("epoch");
    let current = match fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u32>().map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let next = current.checked_add(1).ok_or("epoch overflow")?;
    write_atomic(&path, next.to_string().as_bytes())?;
    Ok(next)
}

/// Where checkpoints of one consumer group live.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    /// Takes `partition` for this owner: bumps and returns its epoch.
    async fn acquire(&self, partition: u32) -> Result<u32, String>;
    async fn load(&self, partition: u32) -> Result<Option<Checkpoint>, String>;
    /// Saves `c` (written under `c.epoch`); an error when a newer owner took the partition.
    async fn save(&self, partition: u32, c: &Checkpoint) -> Result<(), String>;
    /// Forgets every checkpoint (before a replay); epochs keep growing.
    async fn clear(&self) -> Result<(), String>;
    /// Whether base snapshots can be stored apart from checkpoints, so that checkpoints in
    /// between hold a [`Replay`] rather than the whole state.
    fn keeps_bases(&self) -> bool {
        false
    }
    /// Stores a base snapshot durably under `name`, written under `epoch`; an error when a
    /// newer owner took the partition.
    async fn save_base(&self, partition: u32, _epoch: u32, name: &str, _snapshot: &[u8]) -> Result<(), String> {
        Err(format!("this checkpoint store keeps no base snapshots (partition {partition}, {name})"))
    }
    async fn load_base(&self, partition: u32, name: &str) -> Result<Vec<u8>, String> {
        Err(format!("this checkpoint store keeps no base snapshots (partition {partition}, {name})"))
    }
    /// Removes every base snapshot of `partition` but `keep`, under `epoch`; an error (and
    /// nothing removed) when a newer owner took the partition.
    async fn remove_bases_except(&self, _partition: u32, _epoch: u32, _keep: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Checkpoints as files under `dir/p{partition}/`.
pub struct FileCheckpoints {
    pub dir: PathBuf,
}

impl FileCheckpoints {
    fn part(&self, p: u32) -> PathBuf {
        self.dir.join(format!("p{p}"))
    }
}

#[async_trait]
impl CheckpointStore for FileCheckpoints {
    async fn acquire(&self, partition: u32) -> Result<u32, String> {
        bump_epoch(&self.part(partition))
    }
    async fn load(&self, partition: u32) -> Result<Option<Checkpoint>, String> {
        load(&self.part(partition))
    }
    async fn save(&self, partition: u32, c: &Checkpoint) -> Result<(), String> {
        save(&self.part(partition), c)
    }
    fn keeps_bases(&self) -> bool {
        true
    }
    /// One process owns every partition of the embedded log: epochs fence nothing here.
    async fn save_base(&self, partition: u32, _epoch: u32, name: &str, snapshot: &[u8]) -> Result<(), String> {
        save_base(&self.part(partition), name, snapshot)
    }
    async fn load_base(&self, partition: u32, name: &str) -> Result<Vec<u8>, String> {
        load_base(&self.part(partition), name)
    }
    async fn remove_bases_except(&self, partition: u32, _epoch: u32, keep: &str) -> Result<(), String> {
        remove_bases(&self.part(partition), Some(keep))
    }
    async fn clear(&self) -> Result<(), String> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("reading {}: {e}", self.dir.display())),
        };
        for e in entries.flatten() {
            let path = e.path().join("checkpoint");
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("removing {}: {e}", path.display())),
            }
            remove_bases(&e.path(), None)?;
        }
        Ok(())
    }
}

/// Checkpoints in the SQL store's `aggregator_checkpoints` table, shared by every instance.
pub struct SqlCheckpoints {
    pub store: Arc<dyn CheckpointTable>,
    pub group: String,
}

#[async_trait]
impl CheckpointStore for SqlCheckpoints {
    async fn acquire(&self, partition: u32) -> Result<u32, String> {
        self.store.checkpoint_acquire(&self.group, partition).await.map_err(|e| e.to_string())
    }
    async fn load(&self, partition: u32) -> Result<Option<Checkpoint>, String> {
        let Some(c) = self.store.checkpoint_load(&self.group, partition).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let offsets =
            serde_json::from_str(&c.offsets_json).map_err(|e| format!("checkpoint of partition {partition}: bad offsets: {e}"))?;
        let (snapshot, outbox) = Checkpoint::split_payload(c.snapshot).map_err(|e| format!("checkpoint of partition {partition}: {e}"))?;
        let replay = c
            .replay_json
            .map(|j| serde_json::from_str(&j))
            .transpose()
            .map_err(|e| format!("checkpoint of partition {partition}: bad replay: {e}"))?;
        Ok(Some(Checkpoint { epoch: c.epoch, offsets, snapshot, replay, outbox }))
    }
    async fn save(&self, partition: u32, c: &Checkpoint) -> Result<(), String> {
        let offsets = serde_json::to_string(&c.offsets).map_err(|e| e.to_string())?;
        let replay = c.replay.as_ref().map(serde_json::to_string).transpose().map_err(|e| e.to_string())?;
        let payload = c.payload();
        let write = CheckpointWrite { epoch: c.epoch, offsets_json: &offsets, snapshot: &payload, replay_json: replay.as_deref() };
        if self.store.checkpoint_save(&self.group, partition, write).await.map_err(|e| e.to_string())? {
            Ok(())
        } else {
            Err(superseded(partition, c.epoch, "saving the checkpoint"))
        }
    }
    async fn clear(&self) -> Result<(), String> {
        self.store.checkpoint_clear(&self.group).await.map(|_| ()).map_err(|e| e.to_string())
    }
    fn keeps_bases(&self) -> bool {
        true
    }
    async fn save_base(&self, partition: u32, epoch: u32, name: &str, snapshot: &[u8]) -> Result<(), String> {
        if self.store.checkpoint_save_base(&self.group, partition, epoch, name, snapshot).await.map_err(|e| e.to_string())? {
            Ok(())
        } else {
            Err(superseded(partition, epoch, "saving a base snapshot"))
        }
    }
    async fn load_base(&self, partition: u32, name: &str) -> Result<Vec<u8>, String> {
        self.store
            .checkpoint_load_base(&self.group, partition, name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("partition {partition}: the base snapshot {name} its checkpoint names is not stored"))
    }
    async fn remove_bases_except(&self, partition: u32, epoch: u32, keep: &str) -> Result<(), String> {
        if self.store.checkpoint_remove_bases_except(&self.group, partition, epoch, keep).await.map_err(|e| e.to_string())? {
            Ok(())
        } else {
            Err(superseded(partition, epoch, "removing old base snapshots"))
        }
    }
}

fn superseded(partition: u32, epoch: u32, what: &str) -> String {
    format!("partition {partition} was taken over by another aggregator (epoch {epoch} superseded); not {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_damage_and_epochs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let mut offsets = BTreeMap::new();
        offsets.insert("touchline.events".to_owned(), 42u64);
        save(
            dir.path(),
            &Checkpoint { epoch: 3, offsets: offsets.clone(), snapshot: b"state\nwith newline".to_vec(), replay: None, outbox: None },
        )
        .unwrap();
        let c = load(dir.path()).unwrap().unwrap();
        assert_eq!((c.epoch, c.offsets.clone(), c.snapshot, c.outbox), (3, offsets.clone(), b"state\nwith newline".to_vec(), None));
        // With an outbox: both come back.
        let outbox = touchline_engine::Flush {
            transfers: vec![touchline_engine::IdentityTransfer {
                v: 1,
                kind: touchline_engine::IdentityTransfer::TYPE.into(),
                account_id: uuid::Uuid::from_u128(7),
                from: "anon".into(),
                to: "cust".into(),
                linked_at: chrono::Utc::now(),
                link_record_id: touchline_model::Id::new("r1").unwrap(),
                touches: Vec::new(),
                notice: false,
            }],
            journeys: vec![touchline_engine::JourneyPartial {
                partition: 0,
                account_id: uuid::Uuid::from_u128(7),
                date: chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
                channels: "email > search".into(),
                campaigns: "(none) > spring".into(),
                conversions: 2,
                non_conversions: 1,
                revenue: "12.345678".parse().unwrap(),
            }],
            ..touchline_engine::Flush::default()
        };
        save(
            dir.path(),
            &Checkpoint { epoch: 4, offsets: offsets.clone(), snapshot: b"s2".to_vec(), replay: None, outbox: Some(outbox.clone()) },
        )
        .unwrap();
        let c = load(dir.path()).unwrap().unwrap();
        assert_eq!((c.epoch, c.snapshot, c.outbox), (4, b"s2".to_vec(), Some(outbox)));
        let path = dir.path().join("checkpoint");
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(load(dir.path()).unwrap_err().contains("damaged"));
        assert_eq!(bump_epoch(dir.path()).unwrap(), 1);
        assert_eq!(bump_epoch(dir.path()).unwrap(), 2);
    }
}
