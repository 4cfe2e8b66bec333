//! The synthetic audience a load run speaks for: many visitors, campaigns with ads, UTM
//! sources, pages and browsers, drawn into templates whose holes each request fills.

use rand::rngs::SmallRng;
use rand::Rng;

use super::template::Template;

/// Traffic sources as (channel, utm_source, utm_medium).
const SOURCES: [(&str, &str, &str); 6] = [
    ("search", "google", "cpc"),
    ("social", "facebook", "paid_social"),
    ("display", "gdn", "display"),
    ("email", "newsletter", "email"),
    ("social", "zalo", "oa"),
    ("affiliate", "partner", "referral"),
];

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
];

const REFERRERS: [&str; 4] = ["https://www.google.com/", "https://m.facebook.com/", "https://zalo.me/", ""];

const EVENTS: [&str; 5] = ["page_view", "product_viewed", "product_added", "search", "checkout_started"];

/// Who and what the generated records are about.
#[derive(Clone, Debug)]
pub struct Population {
    /// Distinct anonymous visitors; each record picks one uniformly.
    pub identities: u64,
    /// Campaigns, each with `ADS_PER_CAMPAIGN` ads.
    pub campaigns: u32,
    /// A prefix that makes this run's message ids unique across runs.
    pub run_id: String,
}

const ADS_PER_CAMPAIGN: u32 = 3;

/// Distinct record texts drawn per shape; holes make every sent record unique anyway.
const POOL: usize = 512;

/// One draw of what a record is about (the visitor is a hole, filled per request).
struct Draw {
    campaign: u32,
    ad: u32,
    source: (&'static str, &'static str, &'static str),
    product: u32,
}

/// The templates of every shape, drawn once per run.
pub struct Pools {
    pub native: Vec<Template>,
    pub single: Vec<Template>,
    pub segment: Vec<(&'static str, Template)>,
    pub pixel: Vec<Template>,
}

impl Population {
    fn draw(&self, rng: &mut SmallRng) -> Draw {
        Draw {
            campaign: rng.random_range(0..self.campaigns.max(1)),
            ad: rng.random_range(0..ADS_PER_CAMPAIGN),
            source: SOURCES[rng.random_range(0..SOURCES.len())],
            product: rng.random_range(0..5_000),
        }
    }

    /// A user agent string for request headers.
    pub fn user_agent(rng: &mut SmallRng) -> &'static str {
        USER_AGENTS[rng.random_range(0..USER_AGENTS.len())]
    }

    pub fn pools(&self, rng: &mut SmallRng, write_key: &str) -> Pools {
        Pools {
            native: (0..POOL).map(|_| self.native_record(rng)).collect(),
            single: (0..POOL).map(|_| self.single_event(rng)).collect(),
            segment: (0..POOL).map(|i| self.segment_message(rng, i)).collect(),
            pixel: (0..POOL).map(|_| self.pixel_query(rng, write_key)).collect(),
        }
    }

    fn message_id(&self, t: &mut Template) {
        t.lit(&self.run_id).lit("-").seq();
    }

    fn utm_query(d: &Draw) -> String {
        format!("utm_source={}&utm_medium={}&utm_campaign=c-{}", d.source.1, d.source.2, d.campaign)
    }

    /// One native record of the mix a server-side SDK sends: mostly page and product events,
    /// ad touchpoints, some purchases and identifies.
    pub fn native_record(&self, rng: &mut SmallRng) -> Template {
        let d = self.draw(rng);
        let mut t = Template::default();
        let roll: u32 = rng.random_range(0..100);
        if roll < 60 {
            let event = EVENTS[rng.random_range(0..EVENTS.len())];
            let referrer = REFERRERS[rng.random_range(0..REFERRERS.len())];
            let ua = Self::user_agent(rng);
            t.lit(&format!(r#"{{"type":"event","event_name":"{event}","anonymous_id":"v-"#)).visitor().lit(r#"","message_id":""#);
            self.message_id(&mut t);
            t.lit(r#"","timestamp":""#).time().lit(&format!(
                r#"","properties":{{"product_id":"p-{}","price":59.9,"category":"shoes"}},"context":{{"page_url":"https://shop.example/p/{}?{}","referrer":"{referrer}","user_agent":"{ua}","locale":"vi-VN"}}}}"#,
                d.product,
                d.product,
                Self::utm_query(&d)
            ));
        } else if roll < 90 {
            let kind = if rng.random_bool(0.8) { "impression" } else { "click" };
            t.lit(&format!(
                r#"{{"type":"touchpoint","kind":"{kind}","channel":"{}","campaign_id":"c-{}","advertisement_id":"c-{}-ad-{}","anonymous_id":"v-"#,
                d.source.0, d.campaign, d.campaign, d.ad
            ))
            .visitor()
            .lit(r#"","message_id":""#);
            self.message_id(&mut t);
            t.lit(r#"","timestamp":""#)
                .time()
                .lit(&format!(r#"","utm_source":"{}","utm_medium":"{}","utm_campaign":"c-{}"}}"#, d.source.1, d.source.2, d.campaign));
        } else if roll < 95 {
            let cents: u32 = rng.random_range(1_500..30_000);
            t.lit(r#"{"type":"conversion","kind":"purchase","anonymous_id":"v-"#).visitor().lit(r#"","message_id":""#);
            self.message_id(&mut t);
            t.lit(r#"","timestamp":""#).time().lit(&format!(
                r#"","value":"{}.{:02}","currency":"USD","order_id":""#,
                cents / 100,
                cents % 100
            ));
            t.lit(&self.run_id).lit("-o-").seq().lit(r#""}"#);
        } else {
            t.lit(r#"{"type":"identify","anonymous_id":"v-"#)
                .visitor()
                .lit(r#"","customer_id":"cust-"#)
                .customer()
                .lit(r#"","message_id":""#);
            self.message_id(&mut t);
            t.lit(r#"","timestamp":""#).time().lit(r#"","traits":{"plan":"free"}}"#);
        }
        t
    }

    /// One native page event, the single-record shape (`POST /v1/events`).
    pub fn single_event(&self, rng: &mut SmallRng) -> Template {
        let d = self.draw(rng);
        let referrer = REFERRERS[rng.random_range(0..REFERRERS.len())];
        let mut t = Template::default();
        t.lit(r#"{"event_name":"page_view","anonymous_id":"v-"#).visitor().lit(r#"","message_id":""#);
        self.message_id(&mut t);
        t.lit(r#"","timestamp":""#).time().lit(&format!(
            r#"","context":{{"page_url":"https://shop.example/p/{}?{}","referrer":"{referrer}","locale":"vi-VN"}}}}"#,
            d.product,
            Self::utm_query(&d)
        ));
        t
    }

    /// One Segment message and its route: `track`, `page` and `identify` in turn, as
    /// analytics.js sends them.
    pub fn segment_message(&self, rng: &mut SmallRng, i: usize) -> (&'static str, Template) {
        let d = self.draw(rng);
        let mut t = Template::default();
        match i % 3 {
            0 => {
                t.lit(r#"{"event":"Product Viewed","anonymousId":"v-"#).visitor().lit(r#"","messageId":""#);
                self.message_id(&mut t);
                t.lit(r#"","timestamp":""#).time().lit(r#"","sentAt":""#).time().lit(&format!(
                    r#"","properties":{{"product_id":"p-{}","price":59.9}},"context":{{"campaign":{{"source":"{}","medium":"{}","name":"c-{}"}},"page":{{"url":"https://shop.example/p/{}"}}}}}}"#,
                    d.product, d.source.1, d.source.2, d.campaign, d.product
                ));
                ("/v1/track", t)
            }
            1 => {
                t.lit(r#"{"name":"Product","anonymousId":"v-"#).visitor().lit(r#"","messageId":""#);
                self.message_id(&mut t);
                t.lit(r#"","timestamp":""#).time().lit(r#"","sentAt":""#).time().lit(&format!(
                    r#"","properties":{{"url":"https://shop.example/p/{}?{}","referrer":"https://www.google.com/"}}}}"#,
                    d.product,
                    Self::utm_query(&d)
                ));
                ("/v1/page", t)
            }
            _ => {
                t.lit(r#"{"userId":"cust-"#).customer().lit(r#"","anonymousId":"v-"#).visitor().lit(r#"","messageId":""#);
                self.message_id(&mut t);
                t.lit(r#"","timestamp":""#).time().lit(r#"","traits":{"plan":"free"}}"#);
                ("/v1/identify", t)
            }
        }
    }

    /// A pixel URL (path and query) for an ad server's impression, with a cache buster.
    pub fn pixel_query(&self, rng: &mut SmallRng, write_key: &str) -> Template {
        let d = self.draw(rng);
        let mut t = Template::default();
        t.lit(&format!(
            "/p.gif?k={write_key}&t=touchpoint&kind=impression&channel={}&cid=c-{}&adid=c-{}-ad-{}&aid=v-",
            d.source.0, d.campaign, d.campaign, d.ad
        ))
        .visitor()
        .lit("&mid=");
        self.message_id(&mut t);
        t.lit("&ts=").millis().lit(&format!("&{}&url=https%3A%2F%2Fnews.example%2Farticle%2F{}&cb=", Self::utm_query(&d), d.product)).seq();
        t
    }
}

#[cfg(test)]
mod tests {
    use super::super::template::Filler;
    use super::*;
    use rand::SeedableRng;

    fn population() -> Population {
        Population { identities: 1_000, campaigns: 5, run_id: "t".into() }
    }

    fn ctx() -> touchline_model::RequestCtx {
        touchline_model::RequestCtx {
            account_id: uuid::Uuid::from_u128(1),
            received_at: chrono::Utc::now(),
            ip: Some("127.0.0.1".into()),
            user_agent: None,
        }
    }

    fn filled(t: &Template, f: &mut Filler, rng: &mut SmallRng) -> String {
        let mut out = Vec::new();
        f.write(t, rng, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn every_generated_body_is_json_the_decoder_accepts() {
        let p = population();
        let mut rng = SmallRng::seed_from_u64(1);
        let pools = p.pools(&mut rng, "wk_test");
        let mut f = Filler::new(0, p.identities);
        f.set_now(chrono::Utc::now());
        let opts = touchline_model::DecodeOptions::default();
        let items: Vec<String> = pools.native.iter().map(|t| filled(t, &mut f, &mut rng)).collect();
        let body = format!(r#"{{"batch":[{}]}}"#, items.join(","));
        let parsed = touchline_model::parse_body(body.as_bytes(), &opts).expect("batch parses");
        let decoded = touchline_model::decode_items(&parsed, &ctx(), touchline_model::Expect::Any, &opts);
        assert!(decoded.rejected.is_empty(), "rejected: {:?}", decoded.rejected);
        assert_eq!(decoded.accepted_items, pools.native.len());

        let expect = touchline_model::Expect::Entity(touchline_model::EntityKind::Event);
        for t in &pools.single {
            let single = filled(t, &mut f, &mut rng);
            let parsed = touchline_model::parse_body(single.as_bytes(), &opts).expect("single parses");
            let decoded = touchline_model::decode_items(&parsed, &ctx(), expect, &opts);
            assert!(decoded.rejected.is_empty(), "rejected: {:?}", decoded.rejected);
        }

        for (path, t) in &pools.segment {
            let msg = filled(t, &mut f, &mut rng);
            let parsed = touchline_model::parse_body(msg.as_bytes(), &opts).expect("segment parses");
            let st = match *path {
                "/v1/track" => touchline_model::SegmentType::Track,
                "/v1/page" => touchline_model::SegmentType::Page,
                _ => touchline_model::SegmentType::Identify,
            };
            let decoded = touchline_model::decode_items(&parsed, &ctx(), touchline_model::Expect::Segment(st), &opts);
            assert!(decoded.rejected.is_empty(), "{path} rejected: {:?}", decoded.rejected);
        }

        for t in &pools.pixel {
            let q = filled(t, &mut f, &mut rng);
            let query = q.strip_prefix("/p.gif?").expect("pixel path");
            let (key, result) = touchline_model::decode_pixel(query, None, &ctx(), &opts);
            assert_eq!(key.as_deref(), Some("wk_test"));
            assert_eq!(result.expect("pixel decodes").len(), 1);
        }
    }

    #[test]
    fn message_ids_do_not_repeat_within_a_run() {
        let p = population();
        let mut rng = SmallRng::seed_from_u64(2);
        let pools = p.pools(&mut rng, "wk");
        let mut f = Filler::new(7, p.identities);
        let ids: std::collections::HashSet<String> = (0..2_000)
            .map(|i| {
                let v: serde_json::Value =
                    serde_json::from_str(&filled(&pools.native[i % pools.native.len()], &mut f, &mut rng)).expect("json");
                v["message_id"].as_str().expect("id").to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 2_000);
    }
}
