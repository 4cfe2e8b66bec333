//! What the state remembers of a derived session it emitted. A flush rescans an identity's
//! events and must tell which sessions changed (to emit only those) and which disappeared
//! (to delete them), and take a changed or deleted session's count back out of its metrics
//! cell. Keeping every emitted row whole did that at the price of a dozen strings per session
//! for as long as the identity lives; a fingerprint of the row and the three fields of its
//! cell do the same.

use std::hash::Hasher;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use touchline_model::Id;
use uuid::Uuid;

use crate::session::{EventPoint, SessionRow};
use crate::util::Fnv;

/// A derived session as emitted: its row's fingerprint, and where it counted in the metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EmittedSession {
    pub fingerprint: u64,
    pub started_at: DateTime<Utc>,
    /// The row's metric campaign (campaign id, else utm_campaign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertisement_id: Option<Id>,
}

impl EmittedSession {
    pub fn of(row: &SessionRow) -> EmittedSession {
        EmittedSession {
            fingerprint: row_fingerprint(row),
            started_at: row.started_at,
            campaign: row.metric_campaign().map(str::to_owned),
            advertisement_id: row.advertisement_id.clone(),
        }
    }

    /// Whether the row `derived_row(account, identity, seg)` would build is the one emitted,
    /// without building it.
    pub fn matches(&self, account: Uuid, identity: &str, seg: &[EventPoint]) -> bool {
        segment_fingerprint(account, identity, seg) == Some(self.fingerprint)
    }
}

/// The fields of a derived row, borrowed, in the order both fingerprints hash them.
struct RowView<'a> {
    account: Uuid,
    /// The session id in two pieces (`derived:` and the first record id, or the whole id).
    session_id: (&'a str, &'a str),
    identity: &'a str,
    derived: bool,
    started_at: DateTime<Utc>,
    ended_at: DateTime<Utc>,
    duration_secs: i64,
    page_count: u64,
    event_count: u64,
    utm: [Option<&'a str>; 5],
    landing_page: Option<&'a str>,
    referrer: Option<&'a str>,
    campaign_id: Option<&'a str>,
    advertisement_id: Option<&'a str>,
}

impl RowView<'_> {
    fn fingerprint(&self) -> u64 {
        let mut h = Fnv::new();
        h.bytes(self.account.as_bytes());
        h.write(self.session_id.0.as_bytes());
        h.write(self.session_id.1.as_bytes());
        h.bytes(&[]);
        h.bytes(self.identity.as_bytes());
        h.u64(u64::from(self.derived));
        for t in [self.started_at, self.ended_at] {
            h.bytes(&t.timestamp().to_le_bytes());
            h.u64(u64::from(t.timestamp_subsec_nanos()));
        }
        h.bytes(&self.duration_secs.to_le_bytes());
        h.u64(self.page_count);
        h.u64(self.event_count);
        for field in self.utm.iter().chain(&[self.landing_page, self.referrer, self.campaign_id, self.advertisement_id]) {
            match field {
                Some(s) => {
                    h.u64(1);
                    h.bytes(s.as_bytes());
                }
                None => h.u64(0),
            }
        }
        h.finish()
    }
}

fn row_fingerprint(row: &SessionRow) -> u64 {
    RowView {
        account: row.account_id,
        session_id: ("", &row.session_id),
        identity: &row.identity,
        derived: row.derived,
        started_at: row.started_at,
        ended_at: row.ended_at,
        duration_secs: row.duration_secs,
        page_count: row.page_count,
        event_count: row.event_count,
        utm: [
            row.utm_source.as_deref(),
            row.utm_medium.as_deref(),
            row.utm_campaign.as_deref(),
            row.utm_term.as_deref(),
            row.utm_content.as_deref(),
        ],
        landing_page: row.landing_page.as_deref(),
        referrer: row.referrer.as_deref(),
        campaign_id: row.campaign_id.as_deref(),
        advertisement_id: row.advertisement_id.as_deref(),
    }
    .fingerprint()
}

/// The fingerprint of the row `derived_row` builds for `seg`; `None` for an empty segment.
fn segment_fingerprint(account: Uuid, identity: &str, seg: &[EventPoint]) -> Option<u64> {
    let (first, last) = (seg.first()?, seg.last()?);
    let utm = first.utm.as_deref();
    let u = |f: fn(&crate::session::Utm) -> &Option<String>| utm.and_then(|u| f(u).as_deref());
    Some(
        RowView {
            account,
            session_id: ("derived:", first.id.as_str()),
            identity,
            derived: true,
            started_at: first.at,
            ended_at: last.at,
            duration_secs: (last.at - first.at).num_seconds(),
            page_count: seg.iter().filter(|p| p.is_page).count() as u64,
            event_count: seg.len() as u64,
            utm: [u(|u| &u.source), u(|u| &u.medium), u(|u| &u.campaign), u(|u| &u.term), u(|u| &u.content)],
            landing_page: first.page.as_ref().map(|p| p.as_str()),
            referrer: first.referrer.as_deref(),
            campaign_id: first.campaign_id.as_deref(),
            advertisement_id: first.advertisement_id.as_deref(),
        }
        .fingerprint(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;

    use super::*;
    use crate::session::{derived_row, Utm};
    use crate::text::Text;

    fn point(id: &str, minute: u32, utm_campaign: Option<&str>, page: bool) -> EventPoint {
        EventPoint {
            at: Utc.with_ymd_and_hms(2026, 3, 1, 10, minute, 0).unwrap(),
            id: Text::new(id),
            utm: utm_campaign.map(|c| Box::new(Utm { campaign: Some(c.into()), ..Utm::default() })),
            page: page.then(|| Text::new("/landing")),
            referrer: None,
            campaign_id: None,
            advertisement_id: None,
            is_page: page,
        }
    }

    const A: Uuid = Uuid::from_u128(1);

    #[test]
    fn a_segment_matches_the_row_it_builds_and_no_other() {
        let seg = vec![point("e1", 0, Some("spring"), true), point("e2", 5, None, false)];
        let row = derived_row(A, "visitor", &seg).unwrap();
        let emitted = EmittedSession::of(&row);
        assert!(emitted.matches(A, "visitor", &seg));
        assert_eq!((emitted.campaign.as_deref(), emitted.started_at), (Some("spring"), seg[0].at));
        // Every change the row would show is a mismatch: one more event, a later end, another
        // identity, another account, another first event.
        let longer = vec![seg[0].clone(), seg[1].clone(), point("e3", 9, None, true)];
        assert!(!emitted.matches(A, "visitor", &longer));
        assert!(!emitted.matches(A, "someone", &seg));
        assert!(!emitted.matches(Uuid::from_u128(2), "visitor", &seg));
        let other_first = vec![point("e0", 0, Some("spring"), true), seg[1].clone()];
        assert!(!emitted.matches(A, "visitor", &other_first));
        // A field moved between two strings is a different row.
        let moved = vec![point("e1", 0, Some("spring"), false), seg[1].clone()];
        assert!(!emitted.matches(A, "visitor", &moved));
        assert!(!emitted.matches(A, "visitor", &[]));
    }
}
