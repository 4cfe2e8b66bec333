//! Shared inputs of the benchmarks.

use serde_json::{json, Value};

/// A realistic mixed batch of `n` records, as SDKs send it.
pub fn mixed_batch(n: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..n)
        .map(|i| match i % 4 {
            0 => json!({"type": "event", "event_name": "page_view", "anonymous_id": format!("anon-{i}"), "message_id": format!("m-{i}"),
                        "timestamp": "2026-11-21T10:00:00Z",
                        "properties": {"title": "Winter sale", "category": "shoes", "price": 59.9},
                        "context": {"page_url": "https://shop.example/sale?utm_source=zalo&utm_medium=oa&utm_campaign=winter",
                                    "referrer": "https://zalo.me/", "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", "locale": "vi-VN"}}),
            1 => json!({"type": "touchpoint", "kind": "impression", "anonymous_id": format!("anon-{i}"), "campaign_id": "cmp-1042", "advertisement_id": "ad-7",
                        "channel": "display", "timestamp": "2026-11-21T09:59:00Z"}),
            2 => json!({"type": "track", "event": "Product Viewed", "anonymousId": format!("anon-{i}"), "messageId": format!("ajs-{i}"),
                        "properties": {"product_id": "p-1", "price": 59.9}, "context": {"campaign": {"source": "google", "medium": "cpc", "name": "winter"}},
                        "timestamp": "2026-11-21T10:00:01Z"}),
            _ => json!({"type": "conversion", "kind": "purchase", "customer_id": format!("cust-{i}"), "value": "119.80", "currency": "VND", "order_id": format!("o-{i}")}),
        })
        .collect();
    serde_json::to_vec(&json!({"batch": items})).unwrap_or_default()
}
