//! Per-partition checkpoints: the engine snapshot and the next offset of every topic, in one
//! file replaced atomically (write to a temporary file, fsync, rename, fsync the directory).
//!
//! File format: one JSON header line `{"v":1,"epoch":E,"offsets":{…},"snapshot_len":N,
//! "snapshot_crc":C}` then the N snapshot bytes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct Checkpoint {
    pub epoch: u32,
    pub offsets: BTreeMap<String, u64>,
    pub snapshot: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    v: u32,
    epoch: u32,
    offsets: BTreeMap<String, u64>,
    snapshot_len: usize,
    snapshot_crc: u32,
}

fn crc(bytes: &[u8]) -> u32 {
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
    let header = Header { v: 1, epoch: c.epoch, offsets: c.offsets.clone(), snapshot_len: c.snapshot.len(), snapshot_crc: crc(&c.snapshot) };
    let mut bytes = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&c.snapshot);
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
    if header.v != 1 {
        return Err(format!("{}: checkpoint format {} is not supported", path.display(), header.v));
    }
    let snapshot = bytes[nl + 1..].to_vec();
    if snapshot.len() != header.snapshot_len || crc(&snapshot) != header.snapshot_crc {
        return Err(format!("{}: snapshot is damaged (length or checksum mismatch)", path.display()));
    }
    Ok(Some(Checkpoint { epoch: header.epoch, offsets: header.offsets, snapshot }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_damage_and_epochs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let mut offsets = BTreeMap::new();
        offsets.insert("touchline.events".to_owned(), 42u64);
        save(dir.path(), &Checkpoint { epoch: 3, offsets: offsets.clone(), snapshot: b"state\nwith newline".to_vec() }).unwrap();
        let c = load(dir.path()).unwrap().unwrap();
        assert_eq!((c.epoch, c.offsets, c.snapshot), (3, offsets, b"state\nwith newline".to_vec()));
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
