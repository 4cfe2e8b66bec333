//! A read-only view of an embedded log that another process may be writing (`touchline tail`).
//! It takes no lock and changes nothing: a frame that is incomplete or fails its checksum at
//! the end of the newest segment is treated as not yet written.

use std::fs;
use std::path::{Path, PathBuf};

use super::frame;
use crate::{BusError, StoredRecord};

pub struct LogReader {
    dir: PathBuf,
}

impl LogReader {
    pub fn new(dir: impl AsRef<Path>) -> Result<LogReader, BusError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.join("meta.json").exists() {
            return Err(BusError::Config(format!("no touchline log at {} (meta.json missing)", dir.display())));
        }
        Ok(LogReader { dir })
    }

    /// Topics present on disk.
    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = fs::read_dir(self.dir.join("topics"))
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        t.sort();
        t
    }

    /// Partitions of a topic present on disk.
    pub fn partitions(&self, topic: &str) -> Vec<u32> {
        let mut p: Vec<u32> = fs::read_dir(self.dir.join("topics").join(topic))
            .map(|rd| rd.filter_map(Result::ok).filter_map(|e| e.file_name().to_string_lossy().parse().ok()).collect())
            .unwrap_or_default();
        p.sort_unstable();
        p
    }

    /// Reads up to `max` records of a partition from offset `from`.
    pub fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<StoredRecord>, BusError> {
        let dir = self.dir.join("topics").join(topic).join(partition.to_string());
        let mut bases: Vec<u64> = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".log").and_then(|b| b.parse().ok()))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(BusError::io(&dir, e)),
        };
        bases.sort_unstable();
        let first = bases.iter().rposition(|&b| b <= from).unwrap_or(0);
        let mut out = Vec::new();
        for base in bases.into_iter().skip(first) {
            let path = dir.join(format!("{base:020}.log"));
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(BusError::io(&path, e)),
            };
            let mut pos = 0;
            while pos < bytes.len() && out.len() < max {
                let frame::Decoded::Frame(f) = frame::decode(&bytes[pos..]) else { break };
                if f.offset >= from {
                    out.push(StoredRecord {
                        topic: topic.to_owned(),
                        partition,
                        offset: f.offset,
                        timestamp_ms: f.timestamp_ms,
                        key: String::from_utf8_lossy(f.key).into_owned(),
                        value: f.value.to_vec(),
                    });
                }
                pos += f.size;
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }
}
