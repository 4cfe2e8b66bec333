//! The commit journal: one file whose single `fdatasync` makes a whole commit durable, whatever
//! the partitions its appends went to.
//!
//! ```text
//! journal/{seq:020}.wal    the current journal; older ones exist only during a rotation
//!
//! a journal is a sequence of entries, each a log frame (see `frame.rs`):
//!   offset = the commit's number, timestamp = 0,
//!   key    = "{topic}/{partition}",
//!   value  = the partition frames that commit wrote to that partition's segment, byte for byte
//! ```
//! A commit writes the partition frames to their segments (no fsync), then its entries to the
//! journal with one `write` and one `fdatasync`, and only then acknowledges. So a crash can lose
//! the tail of a segment that was acknowledged, never of the journal: on open the journal is
//! read back and every frame past a segment's recovered end is written again. A journal that
//! grew past `LogConfig::journal_bytes` is retired once every segment it covers is fsynced.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::frame;
use crate::BusError;

/// Most bytes of partition frames one journal entry carries; a partition's share of a larger
/// commit is split over several entries at frame boundaries.
const ENTRY_BYTES: usize = 16 * 1024 * 1024;

/// One entry read back: the frames a commit wrote to one partition.
#[derive(Debug)]
pub struct Entry {
    pub topic: String,
    pub partition: u32,
    /// Whole partition frames, as written to the segment.
    pub frames: Vec<u8>,
}

/// The open journal: the file appended to and the commit number of the next entry.
pub struct Journal {
    dir: PathBuf,
    seq: u64,
    file: File,
    len: u64,
    next_commit: u64,
}

fn journal_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

fn sync_dir(dir: &Path) -> Result<(), BusError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| BusError::io(dir, e))
}

/// The sequence numbers of the journal files under `dir`, oldest first.
pub fn existing(dir: &Path) -> Result<Vec<u64>, BusError> {
    let mut seqs = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(seqs),
        Err(e) => return Err(BusError::io(dir, e)),
    };
    for entry in entries {
        let name = entry.map_err(|e| BusError::io(dir, e))?.file_name();
        if let Some(seq) = name.to_string_lossy().strip_suffix(".wal").and_then(|s| s.parse::<u64>().ok()) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Every entry of the journal files under `dir`, oldest first. A file is read up to its first
/// torn or corrupt entry: that entry belongs to a commit that was never acknowledged.
pub fn read_all(dir: &Path) -> Result<Vec<Entry>, BusError> {
    let mut out = Vec::new();
    for seq in existing(dir)? {
        let path = journal_path(dir, seq);
        let mut bytes = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| BusError::io(&path, e))?;
        let mut pos = 0;
        while pos < bytes.len() {
            let frame::Decoded::Frame(f) = frame::decode(&bytes[pos..]) else {
                tracing::warn!(path = %path.display(), pos, "journal ends in an unacknowledged commit; it is ignored");
                break;
            };
            match parse_key(f.key) {
                Some((topic, partition)) => out.push(Entry { topic, partition, frames: f.value.to_vec() }),
                None => tracing::error!(path = %path.display(), pos, "journal entry names no partition; skipped"),
            }
            pos += f.size;
        }
    }
    Ok(out)
}

fn parse_key(key: &[u8]) -> Option<(String, u32)> {
    let key = std::str::from_utf8(key).ok()?;
    let (topic, partition) = key.rsplit_once('/')?;
    crate::validate_topic(topic).ok()?;
    Some((topic.to_owned(), partition.parse().ok()?))
}

/// Deletes the journal files numbered below `keep`. Call only once every segment they cover is
/// fsynced.
pub fn remove_before(dir: &Path, keep: u64) -> Result<(), BusError> {
    for seq in existing(dir)?.into_iter().filter(|s| *s < keep) {
        let path = journal_path(dir, seq);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BusError::io(&path, e)),
        }
    }
    sync_dir(dir)
}

impl Journal {
    /// Starts journal file `seq` under `dir` (created empty; the directory entry is fsynced).
    pub fn create(dir: &Path, seq: u64) -> Result<Journal, BusError> {
        fs::create_dir_all(dir).map_err(|e| BusError::io(dir, e))?;
        let path = journal_path(dir, seq);
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(&path).map_err(|e| BusError::io(&path, e))?;
        sync_dir(dir)?;
        Ok(Journal { dir: dir.to_path_buf(), seq, file, len: 0, next_commit: 0 })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Bytes written to this journal file.
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Appends one commit: for each partition, the frames it wrote there. Returns once the
    /// commit is durable (one `write`, one `fdatasync`). On failure the file is cut back to
    /// what it held before, so a later commit does not follow a torn entry.
    pub fn commit<'a>(&mut self, parts: impl Iterator<Item = (&'a str, u32, &'a [u8], &'a [usize])>) -> Result<(), BusError> {
        let commit = self.next_commit;
        let parts: Vec<(String, &[u8], &[usize])> = parts.map(|(t, p, frames, ends)| (format!("{t}/{p}"), frames, ends)).collect();
        // Sized once: a commit carries up to 8 MiB, and growing the buffer frame by frame
        // copied it several times over.
        let headers: usize =
            parts.iter().map(|(key, frames, _)| (frames.len() / ENTRY_BYTES + 1) * frame::frame_len(key.as_bytes(), &[])).sum();
        let mut buf = Vec::with_capacity(parts.iter().map(|(_, frames, _)| frames.len()).sum::<usize>() + headers);
        for (key, frames, boundaries) in &parts {
            for piece in pieces(frames, boundaries) {
                frame::encode(&mut buf, commit, 0, key.as_bytes(), piece);
            }
        }
        let path = journal_path(&self.dir, self.seq);
        // Written at the journal's known end, not at the file cursor: after a failed write is cut
        // back, the next commit must follow the last good one with no gap.
        if let Err(e) = self.file.write_all_at(&buf, self.len).and_then(|()| self.file.sync_data()) {
            self.file.set_len(self.len).map_err(|undo| {
                BusError::Unavailable(format!("journal {} write failed ({e}) and could not be cut back: {undo}", path.display()))
            })?;
            return Err(BusError::io(&path, e));
        }
        self.len += buf.len() as u64;
        self.next_commit += 1;
        Ok(())
    }
}

/// `frames` cut at frame `boundaries` (the end of each frame) into pieces of at most
/// [`ENTRY_BYTES`], or one frame when a single frame is larger.
fn pieces<'a>(frames: &'a [u8], boundaries: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut start = 0;
    let mut i = 0;
    std::iter::from_fn(move || {
        if start >= frames.len() {
            return None;
        }
        let mut end = start;
        while i < boundaries.len() && (end == start || boundaries[i] - start <= ENTRY_BYTES) {
            end = boundaries[i];
            i += 1;
        }
        if end == start {
            end = frames.len();
        }
        let piece = &frames[start..end];
        start = end;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cut_at_frame_boundaries_within_the_entry_limit() {
        let frames = vec![0u8; 3 * ENTRY_BYTES];
        let half = ENTRY_BYTES / 2;
        let boundaries: Vec<usize> = (1..=6).map(|k| k * half).collect();
        let lens: Vec<usize> = pieces(&frames, &boundaries).map(<[u8]>::len).collect();
        assert_eq!(lens, vec![ENTRY_BYTES, ENTRY_BYTES, ENTRY_BYTES]);
        // One frame larger than the limit is a piece of its own.
        let boundaries = [10, 10 + 2 * ENTRY_BYTES, 3 * ENTRY_BYTES];
        let lens: Vec<usize> = pieces(&frames, &boundaries).map(<[u8]>::len).collect();
        assert_eq!(lens, vec![10, 2 * ENTRY_BYTES, ENTRY_BYTES - 10]);
    }

    /// A failed write is cut back with `set_len`; the next commit must land right after the
    /// last good one, whatever the failed write did to the file cursor.
    #[test]
    fn a_commit_after_a_cut_back_write_follows_the_last_good_one() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), 0).unwrap();
        let mut a = Vec::new();
        frame::encode(&mut a, 1, 1, b"k", b"a");
        let ends = [a.len()];
        j.commit([("t", 0, &a[..], &ends[..])].into_iter()).unwrap();
        // What a write that failed half way leaves behind (the cursor past it), then the cut back.
        j.file.seek(SeekFrom::End(0)).unwrap();
        j.file.write_all(b"half a frame").unwrap();
        j.file.set_len(j.len).unwrap();
        j.commit([("t", 1, &a[..], &ends[..])].into_iter()).unwrap();
        let got: Vec<u32> = read_all(dir.path()).unwrap().iter().map(|e| e.partition).collect();
        assert_eq!(got, vec![0, 1]);
    }

    #[test]
    fn commits_read_back_and_a_torn_entry_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), 3).unwrap();
        let mut a = Vec::new();
        frame::encode(&mut a, 7, 1, b"k", b"first");
        let ends = [a.len()];
        j.commit([("t", 0, &a[..], &ends[..]), ("u.v", 5, &a[..], &ends[..])].into_iter()).unwrap();
        let good = j.bytes();
        j.commit([("t", 1, &a[..], &ends[..])].into_iter()).unwrap();
        drop(j);
        // The second commit torn by a crash.
        let path = journal_path(dir.path(), 3);
        OpenOptions::new().write(true).open(&path).unwrap().set_len(good + 9).unwrap();
        let got = read_all(dir.path()).unwrap();
        let seen: Vec<(&str, u32, &[u8])> = got.iter().map(|e| (e.topic.as_str(), e.partition, &e.frames[..])).collect();
        assert_eq!(seen, vec![("t", 0, &a[..]), ("u.v", 5, &a[..])]);
        remove_before(dir.path(), 4).unwrap();
        assert!(existing(dir.path()).unwrap().is_empty());
    }
}
