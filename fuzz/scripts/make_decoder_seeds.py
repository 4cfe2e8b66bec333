#!/usr/bin/env python3
"""Writes the seed corpora of the decoder fuzz targets (native_json, segment_batch, pixel_query,
beacon_body, compressed_body) from the payloads of the crates' tests
(crates/touchline-model/tests/decode.rs, crates/touchline-collector/tests/http.rs).

The first byte of a native_json / segment_batch / pixel_query / compressed_body input is the
target's selector (see each fuzz_targets/*.rs); beacon_body takes the body as it is.

Run from fuzz/: python3 scripts/make_decoder_seeds.py
"""
import gzip
import json
import os
import zlib

here = os.path.dirname(os.path.abspath(__file__))
corpus = os.path.join(here, "..", "corpus")
WRITE = "tl_wk_test_write_key"


def write(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def j(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


# --- native_json: selector % 9 = 0 Any, 1..8 EntityKind::ALL[n-1] (event, session, touchpoint,
# link_click, conversion, spend, identify, alias); 0x80 = tight limits.
every_entity = {"batch": [
    {"type": "event", "event_name": "view_item", "anonymous_id": "a1", "properties": {"sku": "X"},
     "context": {"page_url": "https://shop.example/p?utm_source=zalo&utm_medium=oa", "library": {"name": "x"}}},
    {"type": "session", "session_id": "s1", "started_at": "2026-11-21T10:00:00Z", "anonymous_id": "a1"},
    {"type": "touchpoint", "kind": "Impression", "campaign_id": 17, "anonymous_id": "a1"},
    {"type": "link_click", "short_code": "abc", "device_id": "d1"},
    {"type": "conversion", "kind": "purchase", "value": 19.99, "currency": "vnd", "order_id": "o-1", "customer_id": "c1"},
    {"type": "spend", "date": "2026-11-20", "campaign_id": "17", "cost": "120.50", "currency": "USD", "source": "google_ads"},
    {"type": "identify", "customer_id": "c1", "anonymous_id": "a1", "traits": {"email": "x@y.z"}},
    {"type": "alias", "customer_id": "c1", "previous_id": "old-1"},
]}
write("native_json", "batch_every_entity", b"\x00" + j(every_entity).encode())
for i, item in enumerate(every_entity["batch"], start=1):
    single = dict(item)
    single.pop("type")
    write("native_json", f"entity_{item['type']}", bytes([i]) + j(single).encode())
write("native_json", "mixed_partial_rejects", b"\x00" + j({"batch": [
    {"type": "event", "event_name": "view", "anonymous_id": "a1", "account_id": "00000000-0000-0000-0000-000000000bad"},
    {"type": "conversion", "kind": "purchase", "value": "abc", "currency": "USD", "customer_id": "u"},
    {"type": "touchpoint", "kind": "impression", "anonymous_id": "a1", "campain_id": "x"},
    {"type": "track", "event": "Signed Up", "userId": "u1"},
    {"type": "identify", "customer_id": "u1", "anonymous_id": "a1"},
]}).encode())
write("native_json", "array_tight_limits", b"\x80" + j([
    {"type": "event", "event_name": "ok", "anonymous_id": "a", "timestamp": "2026-11-21T11:59:00Z"},
    {"type": "event", "event_name": "x" * 300, "anonymous_id": "a"},
]).encode())
write("native_json", "conversion_money_edges", b"\x05" + j(
    {"kind": "purchase", "value": "999999999999.999999", "currency": "USD", "customer_id": "c", "timestamp": 1795262400000}).encode())

# --- segment_batch: selector % 7 = 0..5 track, page, screen, identify, alias, group; 6 Any;
# 0x80 tight limits; 0x40 wrap REST as batch items with sentAt SENT_AT[(sel >> 3) & 7].
sdk_batch = {
    "batch": [
        {"type": "page", "messageId": "ajs-1", "anonymousId": "anon-1", "name": "Home",
         "properties": {"url": "https://shop.example/?utm_source=google&utm_medium=cpc&utm_campaign=bf", "path": "/", "title": "Shop"},
         "context": {"userAgent": "Mozilla/5.0", "locale": "vi-VN", "library": {"name": "analytics.js", "version": "next-1.64.0"},
                     "page": {"url": "https://shop.example/?utm_source=google&utm_medium=cpc&utm_campaign=bf", "referrer": "https://google.com/"}},
         "timestamp": "2026-11-21T11:00:00.000Z", "integrations": {}},
        {"type": "track", "messageId": "ajs-2", "anonymousId": "anon-1", "userId": "u-9", "event": "Order Completed",
         "properties": {"order_id": "50314b8e", "revenue": 25.00, "currency": "EUR"},
         "context": {"campaign": {"name": "bf", "source": "google", "medium": "cpc"}},
         "originalTimestamp": "2026-11-21T11:05:00.000Z"},
        {"type": "identify", "messageId": "ajs-3", "anonymousId": "anon-1", "userId": "u-9", "traits": {"email": "a@b.c"}},
        {"type": "alias", "previousId": "anon-1", "userId": "u-9"},
        {"type": "screen", "userId": "u-9", "name": "Cart"},
        {"type": "group", "userId": "u-9", "groupId": "g-1", "traits": {"plan": "pro"}},
    ],
    "sentAt": "2026-11-21T11:10:00.000Z",
    "writeKey": "wk_123",
}
write("segment_batch", "sdk_batch_any", b"\x06" + j(sdk_batch).encode())
items = ",".join(j(i) for i in sdk_batch["batch"])
write("segment_batch", "wrapped_items_sent_at_sdk", bytes([0x40 | (0 << 3) | 6]) + items.encode())
write("segment_batch", "wrapped_items_sent_at_epoch_ms", bytes([0x40 | (4 << 3) | 6]) + items.encode())
write("segment_batch", "wrapped_track_far_apart", bytes([0x40 | (2 << 3) | 0]) + j(
    {"type": "track", "event": "x", "userId": "u", "timestamp": "2000-01-01T00:00:00Z"}).encode())
node = {"batch": [
    {"type": "track", "event": "Order Completed", "userId": "u-1", "messageId": "node-1",
     "properties": {"order_id": "o-1", "revenue": 42.5, "currency": "EUR"},
     "context": {"library": {"name": "analytics-node", "version": "6.0.0"}},
     "timestamp": "2026-11-21T10:00:00.000Z", "_metadata": {"nodeVersion": "20"}},
    {"type": "identify", "userId": "u-1", "anonymousId": "anon-9", "traits": {"plan": "pro"}, "messageId": "node-2"}],
    "sentAt": "2026-11-21T10:00:01.000Z"}
write("segment_batch", "analytics_node_batch", b"\x06" + j(node).encode())
for sel, name, msg in [
    (0, "track", {"writeKey": WRITE, "userId": "u-1", "event": "Viewed", "timestamp": "2026-11-21T10:00:00.000Z", "sentAt": "2026-11-21T10:00:00.100Z"}),
    (1, "page", {"writeKey": WRITE, "anonymousId": "anon-9", "type": "page", "name": "Home",
                 "properties": {"url": "https://s.example/?utm_source=zalo&utm_campaign=tet"},
                 "context": {"page": {"url": "https://s.example/?utm_source=zalo&utm_campaign=tet", "referrer": ""}, "userAgent": "Mozilla/5.0"},
                 "messageId": "ajs-next-1", "timestamp": "2026-11-21T10:00:00.000Z", "sentAt": "2026-11-21T10:00:00.100Z"}),
    (2, "screen", {"writeKey": WRITE, "userId": "u-1", "name": "Cart"}),
    (3, "identify", {"writeKey": WRITE, "userId": "u-2", "traits": {"email": "x@y.z", "plan": "pro"}}),
    (4, "alias", {"writeKey": WRITE, "userId": "u-1", "previousId": "anon-10"}),
    (5, "group", {"writeKey": WRITE, "userId": "u-1", "groupId": "g", "traits": {"name": "Acme"}}),
]:
    write("segment_batch", f"route_{name}", bytes([sel]) + j(msg).encode())

# --- pixel_query: 0x80 tight limits; REST = query [NUL referer].
for name, q, ref in [
    ("page_view_with_url", "k=wk_1&e=page_view&aid=anon-7&url=https%3A%2F%2Fs.example%2F%3Futm_source%3Dfb&plan=pro&cb=123", None),
    ("referer_as_page_url", f"k={WRITE}&e=page_view&aid=p", "https://shop.example/p?utm_source=zalo&utm_medium=oa"),
    ("touchpoint", f"k={WRITE}&t=touchpoint&kind=impression&cid=c7&adid=ad1&aid=anon-1", "https://news.example/"),
    ("conversion", f"k={WRITE}&t=conversion&kind=purchase&value=19.99&currency=VND&order_id=o-1&uid=c1&ts=1795262400000", None),
    ("bad_type", f"k={WRITE}&t=spend&cost=1", None),
]:
    data = q.encode() + (b"\x00" + ref.encode() if ref is not None else b"")
    write("pixel_query", name, b"\x00" + data)

# --- beacon_body: the body as sent.
write("beacon_body", "beacon_batch", j({"writeKey": WRITE, "batch": [{"type": "event", "event_name": "unload", "anonymous_id": "anon-1"}]}))
write("beacon_body", "ajs_page", j({"writeKey": WRITE, "anonymousId": "anon-9", "type": "page", "name": "Home",
                                   "context": {"page": {"url": "https://s.example/?utm_source=zalo"}}, "sentAt": "2026-11-21T11:59:59.000Z"}))
write("beacon_body", "ajs_track_array", j([{"type": "track", "writeKey": WRITE, "anonymousId": "a", "event": "Add To Cart", "properties": {"sku": "X"}}]))
write("beacon_body", "latin1_not_utf8", b'{"writeKey":"k","type":"event","event_name":"caf\xe9","anonymous_id":"a"}')
write("beacon_body", "bom_prefixed", b"\xef\xbb\xbf" + j({"writeKey": WRITE, "type": "event", "event_name": "x", "anonymous_id": "a"}).encode())

# --- compressed_body: selector & 3 = 0 gzip, 1 deflate (zlib), 2 no encoding (gzip by magic
# bytes), 3 identity; (sel >> 2) & 3 picks the limit (64, 1024, 65536, 5 MiB). REST = the body.
body = j({"batch": [{"type": "event", "event_name": "view_item", "anonymous_id": "a1"}], "writeKey": WRITE}).encode()
write("compressed_body", "gzip_batch", bytes([0 | (3 << 2)]) + gzip.compress(body, mtime=0))
write("compressed_body", "deflate_batch", bytes([1 | (3 << 2)]) + zlib.compress(body))
write("compressed_body", "gzip_by_magic", bytes([2 | (2 << 2)]) + gzip.compress(body, mtime=0))
write("compressed_body", "gzip_two_members", bytes([0 | (2 << 2)]) + gzip.compress(body[:20], mtime=0) + gzip.compress(body[20:], mtime=0))
write("compressed_body", "gzip_over_small_limit", bytes([0 | (0 << 2)]) + gzip.compress(b" " * 100000 + body, mtime=0))
write("compressed_body", "not_gzip", bytes([0 | (3 << 2)]) + b"not gzip")
write("compressed_body", "gzip_truncated", bytes([0 | (3 << 2)]) + gzip.compress(body, mtime=0)[:-6])
