//! Segment recovery of the embedded log (`EmbeddedLog::open` on a partition whose segment file
//! holds arbitrary bytes).
//!
//! Once per process a real log is made the way the bus makes one (`EmbeddedLog::open` with one
//! partition, `append` of one record, close): that is the template. Every input is laid into a
//! fresh copy of it, by the first byte's mode:
//!   0  the input replaces segment 00000000000000000000.log
//!   1  the input is appended to that segment, after the real record (offset 0)
//!   2  as 1, after a real record whose frame ends 8 bytes before the scanner's 1 MiB read
//!      chunk, so the input's frames straddle the refill
//!   3  segment 0 keeps the real record; the input is a second (newest) segment with base 1
//!   4  as 3, with the base taken from the next 8 input bytes (u64 LE; 0 means mode 0)
//! then the log is reopened and everything is read.
//!
//! Checks: no panic and no error; the records read are exactly those of the intact frames
//! before the first bad one, as an independent reference parser of the documented frame format
//! finds them (length in range, CRC-32 matches, key inside the frame, offsets going up from the
//! segment's base); the recovered segment was cut to those frames; `end_offset` is one past the
//! last of them; an append after recovery succeeds at that offset, is read back, and survives
//! one more close and reopen together with everything recovered. The one exception: when the
//! partition's next offset is u64::MAX (no offset left, e.g. a segment named
//! 18446744073709551615.log) the append must be refused with `BusError::Unavailable`, not panic.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use touchline_bus::{Bus, BusError, EmbeddedLog, LogConfig, OutRecord, StoredRecord};

const TOPIC: &str = "t";
/// The scanner's read chunk (`READ_CHUNK` in crates/touchline-bus/src/log/mod.rs).
const READ_CHUNK: usize = 1024 * 1024;
const MAX_PAYLOAD: usize = touchline_bus::log::frame::MAX_PAYLOAD;

fn config() -> LogConfig {
    LogConfig { partitions: 1, retention_check_secs: 0, ..LogConfig::default() }
}

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

/// Scratch space: tmpfs when there is one (fsync is free there), else the system temp dir.
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn record(key: &str, value: Vec<u8>, ts: i64) -> OutRecord {
    OutRecord { topic: TOPIC.into(), key: key.into(), value, timestamp_ms: ts }
}

async fn open(dir: &Path) -> std::sync::Arc<EmbeddedLog> {
    // The previous handle's lock goes with its last reference; retry briefly if it lingers.
    for _ in 0..100 {
        match EmbeddedLog::open(dir, config()).await {
            Ok(log) => return log,
            Err(e) if e.to_string().contains("in use") => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => panic!("reopen failed: {e}"),
        }
    }
    panic!("the log stayed locked");
}

struct Template {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// The record in it, as read back.
    first: StoredRecord,
}

fn make_template(value: Vec<u8>) -> Template {
    let dir = tempfile::Builder::new().prefix("tl-fuzz-template").tempdir_in(scratch()).expect("tempdir");
    let root = dir.path().to_path_buf();
    let first = rt().block_on(async {
        let log = open(&root).await;
        let pos = log.append(vec![record("00000000-0000-0000-0000-000000000007:a1", value, 1_795_262_400_000)]).await.expect("append");
        assert_eq!(pos[0].offset, 0);
        let got = log.read(TOPIC, 0, 0, 10, Duration::ZERO).await.expect("read");
        assert_eq!(got.len(), 1);
        got.into_iter().next().expect("one record")
    });
    Template { _dir: dir, root, first }
}

fn small_template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| make_template(br#"{"type":"event","event_name":"view_item","anonymous_id":"a1"}"#.to_vec()))
}

fn big_template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        // frame = 8 prefix + 20 fixed + key + value; end it 8 bytes before READ_CHUNK.
        let key_len = "00000000-0000-0000-0000-000000000007:a1".len();
        let t = make_template(vec![b'x'; READ_CHUNK - 8 - 28 - key_len]);
        assert_eq!(seg_len(&t.root), (READ_CHUNK - 8) as u64);
        t
    })
}

fn part_dir(root: &Path) -> PathBuf {
    root.join("topics").join(TOPIC).join("0")
}

fn seg_path(root: &Path, base: u64) -> PathBuf {
    part_dir(root).join(format!("{base:020}.log"))
}

fn seg_len(root: &Path) -> u64 {
    std::fs::metadata(seg_path(root, 0)).expect("segment 0").len()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Rec {
    offset: u64,
    ts: i64,
    key: String,
    value: Vec<u8>,
}

impl From<&StoredRecord> for Rec {
    fn from(r: &StoredRecord) -> Rec {
        Rec { offset: r.offset, ts: r.timestamp_ms, key: r.key.clone(), value: r.value.clone() }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Independent reading of a segment of base `base`: the intact frames before the first bad one
/// and the bytes they take. Returns also the offset after the last one (the segment's next).
fn reference(bytes: &[u8], base: u64) -> (Vec<Rec>, usize, u64) {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut expect = base;
    while bytes.len() - pos >= 8 {
        let len = u32_at(bytes, pos) as usize;
        if !(20..=MAX_PAYLOAD).contains(&len) || bytes.len() - pos - 8 < len {
            break;
        }
        let body = &bytes[pos + 8..pos + 8 + len];
        if crc32fast::hash(body) != u32_at(bytes, pos + 4) {
            break;
        }
        let offset = u64_at(body, 0);
        let ts = u64_at(body, 8) as i64;
        let key_len = u32_at(body, 16) as usize;
        if key_len > len - 20 || offset < expect {
            break;
        }
        let Some(next) = offset.checked_add(1) else { break };
        out.push(Rec {
            offset,
            ts,
            key: String::from_utf8_lossy(&body[20..20 + key_len]).into_owned(),
            value: body[20 + key_len..].to_vec(),
        });
        expect = next;
        pos += 8 + len;
    }
    (out, pos, expect)
}

async fn read_all(log: &EmbeddedLog) -> Vec<Rec> {
    let got = log.read(TOPIC, 0, 0, usize::MAX, Duration::ZERO).await.unwrap_or_else(|e| panic!("read after recovery failed: {e}"));
    got.iter().map(Rec::from).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mode = mode % 5;
    let (base, contents) = match mode {
        4 if rest.len() >= 8 => (u64_at(rest, 0), &rest[8..]),
        4 => return,
        3 => (1, rest),
        _ => (0, rest),
    };
    let tpl = if mode == 2 { big_template() } else { small_template() };
    let dir = tempfile::Builder::new().prefix("tl-fuzz-log").tempdir_in(scratch()).expect("tempdir");
    let root = dir.path();
    copy_tree(&tpl.root, root);
    let first = Rec::from(&tpl.first);
    let seg0 = std::fs::read(seg_path(root, 0)).expect("segment 0");

    // What must come back, and the recovered segment's file.
    let (expected, recovered_path, recovered_len, next) = if base == 0 && matches!(mode, 0 | 4) {
        std::fs::write(seg_path(root, 0), contents).expect("write segment");
        let (recs, len, next) = reference(contents, 0);
        (recs, seg_path(root, 0), len, next)
    } else if mode == 1 || mode == 2 {
        let mut all = seg0.clone();
        all.extend_from_slice(contents);
        std::fs::write(seg_path(root, 0), &all).expect("write segment");
        let (recs, len, next) = reference(&all, 0);
        assert_eq!(recs.first(), Some(&first), "the reference parser must read the real record");
        (recs, seg_path(root, 0), len, next)
    } else {
        std::fs::write(seg_path(root, base), contents).expect("write segment");
        let (recs, len, next) = reference(contents, base);
        let mut all = vec![first];
        all.extend(recs);
        (all, seg_path(root, base), len, next)
    };

    rt().block_on(async {
        let log = open(root).await;
        let got = read_all(&log).await;
        assert_eq!(got, expected, "records after recovery (mode {mode}, base {base})");
        let on_disk = std::fs::metadata(&recovered_path).expect("recovered segment").len();
        assert_eq!(on_disk, recovered_len as u64, "the recovered segment must be cut to its intact frames");
        assert_eq!(log.end_offset(TOPIC, 0).await.expect("end offset"), next, "end offset after recovery");

        if next == u64::MAX {
            // No offset is left (a segment named or ending at the last one): the append must be
            // refused cleanly, and everything recovered stays readable.
            let refused = log.append(vec![record("acct:after", b"after recovery".to_vec(), 7)]).await;
            assert!(matches!(refused, Err(BusError::Unavailable(_))), "append with no offsets left: {refused:?}");
            assert_eq!(read_all(&log).await, expected);
            return;
        }

        // An append after recovery lands right after the intact records and reads back.
        let pos = log
            .append(vec![record("acct:after", b"after recovery".to_vec(), 7)])
            .await
            .unwrap_or_else(|e| panic!("append after recovery failed: {e}"));
        assert_eq!(pos[0].offset, next, "offset of the first append after recovery");
        let after = Rec { offset: next, ts: 7, key: "acct:after".into(), value: b"after recovery".to_vec() };
        let tail = log.read(TOPIC, 0, next, 10, Duration::ZERO).await.expect("read the append");
        assert_eq!(tail.iter().map(Rec::from).collect::<Vec<_>>(), vec![after]);
        drop(log);

        // And it all survives a close and reopen.
        let log = open(root).await;
        let again = read_all(&log).await;
        assert_eq!(again.len(), expected.len() + 1);
        assert_eq!(&again[..expected.len()], &expected[..]);
        assert_eq!(again[expected.len()].offset, next);
        drop(log);
    });
});
