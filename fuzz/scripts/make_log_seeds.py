#!/usr/bin/env python3
"""Writes the seed corpora of the log_frame and log_recovery fuzz targets.

Frames follow crates/touchline-bus/src/log/frame.rs:
  len: u32 LE | crc: u32 LE | offset: u64 LE | timestamp_ms: i64 LE | key_len: u32 LE | key | value
`len` counts the bytes after crc; crc is CRC-32 (IEEE, as zlib.crc32) over them.
Keys and values are the ones the embedded log really holds: "{account}:{identity}" keys and
record JSON values (as in crates/touchline-bus/tests/embedded_log.rs and the model's tests).

Run from fuzz/: python3 scripts/make_log_seeds.py
"""
import os
import struct
import zlib

ACCT = "00000000-0000-0000-0000-000000000007"
EVENT = ('{"type":"event","event_name":"view_item","anonymous_id":"a1","properties":{"sku":"X"},'
         '"context":{"page_url":"https://shop.example/p?utm_source=zalo&utm_medium=oa"}}')
CONV = ('{"type":"conversion","kind":"purchase","value":"19.99","currency":"VND","order_id":"o-1",'
        '"customer_id":"c1"}')


def frame(offset, ts, key, value):
    key = key.encode() if isinstance(key, str) else key
    value = value.encode() if isinstance(value, str) else value
    payload = struct.pack("<QqI", offset, ts, len(key)) + key + value
    return struct.pack("<II", len(payload), zlib.crc32(payload) & 0xFFFFFFFF) + payload


def frames(start, items):
    return b"".join(frame(start + i, ts, k, v) for i, (ts, k, v) in enumerate(items))


def write(dir_, name, data):
    os.makedirs(dir_, exist_ok=True)
    with open(os.path.join(dir_, name), "wb") as f:
        f.write(data)


here = os.path.dirname(os.path.abspath(__file__))
corpus = os.path.join(here, "..", "corpus")
ts = 1_795_262_400_000  # 2026-11-21T12:00:00Z
items = [
    (ts, f"{ACCT}:a1", EVENT),
    (ts + 1, f"{ACCT}:c1", CONV),
    (-7, "acct:user", '{"v":1}'),
    (9, "", ""),
]
three = frames(0, items[:3])

# log_frame: raw bytes, decoded frame after frame.
d = os.path.join(corpus, "log_frame")
write(d, "one_event", frame(0, ts, f"{ACCT}:a1", EVENT))
write(d, "segment_of_four", frames(0, items))
write(d, "empty_key_and_value", frame(43, 9, "", ""))
write(d, "torn_tail", three + frame(3, ts, "acct:a", "value-0150-" + "x" * 40)[:-5])
write(d, "bad_crc_after_two", frames(0, items[:2]) + b"\x1c\x00\x00\x00\xde\xad\xbe\xef" + b"\x00" * 20)
# A frame with a valid crc whose key_len (99) runs past its payload.
bad_key = struct.pack("<QqI", 0, 0, 99)
write(d, "key_longer_than_frame", struct.pack("<II", len(bad_key), zlib.crc32(bad_key)) + bad_key)

# log_recovery: first byte picks the mode (see fuzz_targets/log_recovery.rs), the rest is the
# segment file (modes 0-3) or a u64 LE base followed by the segment file (mode 4).
d = os.path.join(corpus, "log_recovery")
write(d, "m0_whole_segment", b"\x00" + three)
write(d, "m0_torn_tail", b"\x00" + three + frame(3, ts, "acct:a", "value")[:-3])
write(d, "m1_after_real_record", b"\x01" + frames(1, items[:2]))
write(d, "m1_offset_goes_back", b"\x01" + frame(0, ts, "acct:a", "dup"))
write(d, "m1_garbage_tail", b"\x01" + frame(1, ts, "acct:a", "ok") + b"\xff" * 12)
write(d, "m2_across_read_chunk", b"\x02" + frames(1, items))
write(d, "m3_second_segment", b"\x03" + frames(1, items[:3]))
write(d, "m3_second_segment_torn", b"\x03" + frames(1, items[:2])[:-1])
write(d, "m4_base_1000", b"\x04" + struct.pack("<Q", 1000) + frames(1000, items[:2]))
write(d, "m4_base_high", b"\x04" + struct.pack("<Q", 2**63) + frames(2**63, items[:1]))
