//! Record builders shared by the integration tests and the proptests.
#![allow(dead_code, clippy::unwrap_used)]

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::Map;
use touchline_model::*;
use uuid::Uuid;

pub fn acct() -> Uuid {
    Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888)
}

pub fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

pub fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn rec(rid: &str, at: DateTime<Utc>, anon: Option<&str>, cust: Option<&str>, body: Body) -> Record {
    Record {
        v: 1,
        meta: Meta {
            record_id: id(rid),
            account_id: acct(),
            timestamp: at,
            received_at: at,
            sent_at: None,
            anonymous_id: anon.map(id),
            customer_id: cust.map(id),
        },
        body,
    }
}

pub fn tp_body(kind: &str, campaign: Option<&str>, ad: Option<&str>, channel: Option<&str>, utm_source: Option<&str>) -> Body {
    Body::Touchpoint(Touchpoint {
        kind: Kind::new(kind).unwrap(),
        channel: channel.map(str::to_owned),
        campaign_id: campaign.map(id),
        advertisement_id: ad.map(id),
        session_id: None,
        utm_source: utm_source.map(str::to_owned),
        utm_medium: None,
        utm_campaign: None,
        utm_term: None,
        utm_content: None,
        referrer: None,
        page_url: None,
        detail: Map::new(),
    })
}

pub fn touchpoint(rid: &str, at: &str, who: (Option<&str>, Option<&str>), kind: &str, campaign: Option<&str>) -> Record {
    rec(rid, ts(at), who.0, who.1, tp_body(kind, campaign, None, Some("paid_social"), None))
}

pub fn event_body(name: &str, session: Option<&str>, utm: Option<(&str, &str, &str)>, campaign: Option<&str>, page: Option<&str>) -> Body {
    let mut ctx = Context::default();
    if let Some((s, m, c)) = utm {
        ctx.utm_source = Some(s.into());
        ctx.utm_medium = Some(m.into());
        ctx.utm_campaign = Some(c.into());
    }
    ctx.page_url = page.map(str::to_owned);
    Body::Event(Event {
        event_name: name.into(),
        session_id: session.map(id),
        campaign_id: campaign.map(id),
        advertisement_id: None,
        properties: Map::new(),
        context: ctx,
    })
}

pub fn event(rid: &str, at: DateTime<Utc>, anon: &str, utm: Option<(&str, &str, &str)>) -> Record {
    rec(rid, at, Some(anon), None, event_body("page", None, utm, None, Some("https://shop.example/p")))
}

pub fn conversion_body(kind: &str, value: Option<i64>, order: Option<&str>) -> Body {
    Body::Conversion(Conversion {
        kind: Kind::new(kind).unwrap(),
        value: value.map(|v| Decimal::new(v, 2)),
        currency: Some(Currency::new("USD").unwrap()),
        order_id: order.map(id),
        campaign_id: None,
        advertisement_id: None,
        session_id: None,
        properties: Map::new(),
    })
}

pub fn conversion(rid: &str, at: &str, who: (Option<&str>, Option<&str>), value: i64, order: Option<&str>) -> Record {
    rec(rid, ts(at), who.0, who.1, conversion_body("purchase", Some(value), order))
}

pub fn identify(rid: &str, at: &str, anon: &str, cust: &str) -> Record {
    rec(rid, ts(at), Some(anon), Some(cust), Body::Identify(Identify { traits: Map::new() }))
}

pub fn spend(rid: &str, at: &str, date: NaiveDate, campaign: &str, source: &str, cost: i64) -> Record {
    rec(
        rid,
        ts(at),
        None,
        None,
        Body::Spend(Spend {
            date,
            campaign_id: id(campaign),
            advertisement_id: None,
            cost: Decimal::new(cost, 2),
            currency: Currency::new("USD").unwrap(),
            impressions: None,
            clicks: None,
            source: source.into(),
        }),
    )
}

pub fn session_body(sid: &str, started: DateTime<Utc>, ended: Option<DateTime<Utc>>, utm_source: Option<&str>) -> Body {
    Body::Session(Session {
        session_id: id(sid),
        started_at: started,
        ended_at: ended,
        device_id: None,
        utm_source: utm_source.map(str::to_owned),
        utm_medium: None,
        utm_campaign: None,
        utm_term: None,
        utm_content: None,
        referrer: None,
        landing_page: Some("https://shop.example/".into()),
        campaign_id: None,
        advertisement_id: None,
        user_agent: None,
        ip: None,
    })
}

/// A link click of `code`, by a bot or not, of `campaign`.
pub fn link_click(code: Option<&str>, bot: bool, campaign: Option<&str>) -> Body {
    Body::LinkClick(LinkClick {
        link_id: None,
        short_code: code.map(id),
        target_url: None,
        referer: None,
        user_agent: None,
        ip: None,
        device_id: None,
        campaign_id: campaign.map(id),
        advertisement_id: None,
        bot,
        unique: None,
    })
}
