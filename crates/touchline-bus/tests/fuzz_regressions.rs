//! Inputs the `log_frame` / `log_recovery` fuzz targets (fuzz/, issue 17) found or were shown to
//! break, fed through the same path the target takes: a real log with one record, the input laid
//! into its partition directory, reopen (recovery), read everything, append.
//!
//! The inputs are the files under fuzz/regressions/log_recovery/: the first byte is the
//! target's mode (1: appended to segment 0 after the real record; 4: a u64 LE segment base, then
//! that segment's bytes), as documented in fuzz/fuzz_targets/log_recovery.rs.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use touchline_bus::log::frame;
use touchline_bus::{Bus, BusError, EmbeddedLog, LogConfig, OutRecord};

const TOPIC: &str = "t";

fn config() -> LogConfig {
    LogConfig { partitions: 1, retention_check_secs: 0, ..LogConfig::default() }
}

fn record(key: &str, value: &[u8]) -> OutRecord {
    OutRecord { topic: TOPIC.into(), key: key.into(), value: value.to_vec(), timestamp_ms: 1_795_262_400_000 }
}

fn segment(root: &Path, base: u64) -> PathBuf {
    root.join("topics").join(TOPIC).join("0").join(format!("{base:020}.log"))
}

async fn open(dir: &Path) -> Arc<EmbeddedLog> {
    EmbeddedLog::open(dir, config()).await.unwrap_or_else(|e| panic!("open/recovery failed: {e}"))
}

/// Makes a real log holding one record at offset 0, closes it, and lays `input` into it as the
/// fuzz target does.
async fn lay_out(dir: &Path, input: &[u8]) {
    {
        let log = open(dir).await;
        let pos = log.append(vec![record("acct:a1", b"{\"type\":\"event\"}")]).await.unwrap();
        assert_eq!(pos[0].offset, 0);
    }
    let (&mode, rest) = input.split_first().unwrap();
    match mode % 5 {
        1 => {
            let mut seg = std::fs::read(segment(dir, 0)).unwrap();
            seg.extend_from_slice(rest);
            std::fs::write(segment(dir, 0), seg).unwrap();
        }
        4 => {
            let base = u64::from_le_bytes(rest[..8].try_into().unwrap());
            assert_ne!(base, 0);
            std::fs::write(segment(dir, base), &rest[8..]).unwrap();
        }
        m => panic!("mode {m} is not used by these inputs"),
    }
}

async fn read_all(log: &EmbeddedLog) -> Vec<(u64, Vec<u8>)> {
    let got = log.read(TOPIC, 0, 0, usize::MAX, Duration::ZERO).await.unwrap();
    got.into_iter().map(|r| (r.offset, r.value)).collect()
}

/// fuzz/regressions/log_recovery/segment_base_u64_max (found by `log_recovery`, minimised):
/// mode 4, base u64::MAX, no bytes: an empty newest segment named 18446744073709551615.log.
/// Recovery gives the partition next offset u64::MAX; the first append computed `next += 1`
/// in `Partition::write_group`, which panicked on overflow ("attempt to add with overflow",
/// log/mod.rs) in a debug build, failing the append with `Closed`, and in a release build
/// wrapped to 0: the record was written and acknowledged at offset u64::MAX, the end offset
/// went back to 0 (nothing readable), and the next reopen cut the acknowledged record away.
/// Now the append is refused (`Unavailable`) with nothing written, and the log stays usable.
#[tokio::test]
async fn append_is_refused_cleanly_when_no_offset_is_left() {
    let input = include_bytes!("../../../fuzz/regressions/log_recovery/segment_base_u64_max");
    let dir = tempfile::tempdir().unwrap();
    lay_out(dir.path(), input).await;

    let log = open(dir.path()).await;
    assert_eq!(read_all(&log).await, vec![(0, b"{\"type\":\"event\"}".to_vec())]);
    assert_eq!(log.end_offset(TOPIC, 0).await.unwrap(), u64::MAX);
    for _ in 0..2 {
        // Twice: the partition's writer must survive the first refusal.
        match log.append(vec![record("acct:after", b"after")]).await {
            Err(BusError::Unavailable(why)) => assert!(why.contains("no offsets left"), "{why}"),
            other => panic!("append with no offset left must be refused as unavailable, got {other:?}"),
        }
    }
    assert_eq!(log.end_offset(TOPIC, 0).await.unwrap(), u64::MAX);
    assert_eq!(std::fs::metadata(segment(dir.path(), u64::MAX)).unwrap().len(), 0, "nothing was written");
    drop(log);
    let log = open(dir.path()).await;
    assert_eq!(read_all(&log).await.len(), 1);
}

/// fuzz/regressions/log_recovery/frame_offset_u64_max (made by hand from the same finding, and
/// reproduced with the `log_recovery` target): mode 1, a frame with a valid checksum and offset
/// u64::MAX after the real record. `scan_segment` computed `f.offset + 1` and panicked on
/// overflow while opening the partition (the open failed: "opening topic failed"), or in a
/// release build wrapped the partition's next offset to 0. Such a frame cannot be one the log
/// wrote: recovery now cuts it as a torn tail and the partition goes on at offset 1.
#[tokio::test]
async fn frame_with_the_last_offset_is_cut_by_recovery() {
    let input = include_bytes!("../../../fuzz/regressions/log_recovery/frame_offset_u64_max");
    let dir = tempfile::tempdir().unwrap();
    lay_out(dir.path(), input).await;
    let intact = frame::frame_len(b"acct:a1", b"{\"type\":\"event\"}") as u64;

    let log = open(dir.path()).await;
    assert_eq!(read_all(&log).await, vec![(0, b"{\"type\":\"event\"}".to_vec())]);
    assert_eq!(std::fs::metadata(segment(dir.path(), 0)).unwrap().len(), intact, "the bad frame is cut");
    assert_eq!(log.end_offset(TOPIC, 0).await.unwrap(), 1);
    let pos = log.append(vec![record("acct:after", b"after")]).await.unwrap();
    assert_eq!(pos[0].offset, 1);
    drop(log);
    let log = open(dir.path()).await;
    let all = read_all(&log).await;
    assert_eq!(all.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(all[1].1, b"after");
}
