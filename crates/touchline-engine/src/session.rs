//! Sessions: derived from events when the client does not send them, and explicit client sessions
//! (a `session` record and/or events carrying a `session_id`), never both for one event.
//!
//! Derived sessions are a pure function of the identity's retained events sorted by
//! `(timestamp, record id)` ([`sessionize`]): a new session starts when the gap to the previous
//! event is `>=` the inactivity timeout, when the event is `>=` the maximum duration after the
//! session's first event, or (if enabled) when the event carries a UTM source/medium/campaign
//! different from the session's entry UTMs. Being a function of the set, the result does not
//! depend on arrival order; a late event can merge or split sessions, in which case the engine
//! emits [`SessionChange::Delete`] for the sessions that no longer exist.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use touchline_model::{Context, Event, Id, Session};
use uuid::Uuid;

use crate::config::AccountSettings;
use crate::text::{Interner, Text};

/// UTM parameters of an event or session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Utm {
    pub fn from_context(c: &Context) -> Option<Utm> {
        // Source, medium or campaign on the context: those (with term and content).
        if c.utm_source.is_some() || c.utm_medium.is_some() || c.utm_campaign.is_some() {
            return Some(Utm {
                source: c.utm_source.clone(),
                medium: c.utm_medium.clone(),
                campaign: c.utm_campaign.clone(),
                term: c.utm_term.clone(),
                content: c.utm_content.clone(),
            });
        }
        // Else all five from the page URL's query, if it names any.
        if c.page_url.as_deref().is_some_and(|p| p.contains("utm_")) {
            let mut c2 = Context { page_url: c.page_url.clone(), ..Context::default() };
            c2.fill_utm_from_url();
            let u =
                Utm { source: c2.utm_source, medium: c2.utm_medium, campaign: c2.utm_campaign, term: c2.utm_term, content: c2.utm_content };
            return u.is_set().then_some(u);
        }
        None
    }

    pub fn from_session(s: &Session) -> Option<Utm> {
        let u = Utm {
            source: s.utm_source.clone(),
            medium: s.utm_medium.clone(),
            campaign: s.utm_campaign.clone(),
            term: s.utm_term.clone(),
            content: s.utm_content.clone(),
        };
        u.is_set().then_some(u)
    }

    /// Source, medium or campaign present (term/content alone do not make a campaign source).
    pub fn is_set(&self) -> bool {
        self.source.is_some() || self.medium.is_some() || self.campaign.is_some()
    }

    fn same_source(&self, other: &Utm) -> bool {
        self.source == other.source && self.medium == other.medium && self.campaign == other.campaign
    }
}

/// What the sessionizer keeps of one event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventPoint {
    pub at: DateTime<Utc>,
    pub id: Text,
    /// Boxed: most events have none, and a point stays small (serialised like `Option<Utm>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm: Option<Box<Utm>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertisement_id: Option<Id>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_page: bool,
}

impl EventPoint {
    /// `id` is the record id (shared with the caller); the page is shared through `int`.
    pub(crate) fn from_event(at: DateTime<Utc>, id: Text, e: &Event, int: &mut Interner) -> EventPoint {
        let name = e.event_name.as_str();
        let is_page = e.context.page_url.is_some()
            || e.context.page_path.is_some()
            || ["page", "screen", "pageview", "page_view", "screen_view"].iter().any(|n| name.eq_ignore_ascii_case(n));
        EventPoint {
            at,
            id,
            utm: Utm::from_context(&e.context).map(Box::new),
            page: int.opt_at(8, e.context.page_url.as_deref().or(e.context.page_path.as_deref())),
            referrer: e.context.referrer.clone(),
            campaign_id: e.campaign_id.clone(),
            advertisement_id: e.advertisement_id.clone(),
            is_page,
        }
    }

    fn key(&self) -> (DateTime<Utc>, &str) {
        (self.at, self.id.as_str())
    }
}

/// Inserts `p` into `points` (sorted by `(timestamp, record id)`); false if that key is present.
pub(crate) fn insert_point(points: &mut Vec<EventPoint>, p: EventPoint) -> bool {
    insert_point_at(points, p).is_some()
}

/// [`insert_point`], returning the index `p` was inserted at.
pub(crate) fn insert_point_at(points: &mut Vec<EventPoint>, p: EventPoint) -> Option<usize> {
    // In-order arrival (the common case): append.
    if points.last().is_none_or(|l| l.at < p.at || (l.at == p.at && l.id < p.id)) {
        points.push(p);
        return Some(points.len() - 1);
    }
    match points.binary_search_by(|q| q.key().cmp(&p.key())) {
        Ok(_) => None,
        Err(i) => {
            points.insert(i, p);
            Some(i)
        }
    }
}

/// One session as emitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    pub account_id: Uuid,
    /// The client's session id, or `derived:{record id of the first event}` for derived sessions.
    pub session_id: String,
    pub identity: String,
    pub derived: bool,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub duration_secs: i64,
    pub page_count: u64,
    pub event_count: u64,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub landing_page: Option<String>,
    pub referrer: Option<String>,
    pub campaign_id: Option<Id>,
    pub advertisement_id: Option<Id>,
}

impl SessionRow {
    /// Campaign key for daily metrics: campaign id, else utm_campaign.
    pub fn metric_campaign(&self) -> Option<&str> {
        self.campaign_id.as_deref().or(self.utm_campaign.as_deref())
    }
}

/// A session output: upsert by `(account_id, identity, session_id)`, or delete a derived session
/// that a late event merged into another or split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // Public type matched by the sinks; upserts dominate anyway.
pub enum SessionChange {
    Upsert(SessionRow),
    Delete { account_id: Uuid, identity: String, session_id: String },
}

fn secs(s: i64) -> Duration {
    Duration::try_seconds(s.max(0)).unwrap_or(Duration::MAX)
}

fn nanos(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

fn nanos_of(d: Duration) -> i128 {
    i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos())
}

/// Derived sessions of one identity's events (sorted by `(timestamp, record id)`).
pub fn sessionize(account: Uuid, identity: &str, points: &[EventPoint], s: &AccountSettings) -> Vec<SessionRow> {
    let mut bounds = Vec::new();
    session_bounds(points, s, &mut bounds);
    bounds.into_iter().filter_map(|(a, b)| points.get(a..b)).filter_map(|seg| derived_row(account, identity, seg)).collect()
}

/// The derived sessions of `points` (sorted by `(timestamp, record id)`) as index ranges
/// `[start, end)`, appended to `out` in order: what [`sessionize`] builds rows of.
pub(crate) fn session_bounds(points: &[EventPoint], s: &AccountSettings, out: &mut Vec<(usize, usize)>) {
    session_bounds_from(points, s, 0, 1, out);
}

/// [`session_bounds`] resumed at index `from` inside the session that starts at `start`
/// (`start < from`): appends that session's range and the following ones. The result is the
/// full computation's when `start` is where that computation starts a session and no session
/// starts in `start + 1 .. from` (a session's decisions depend only on its own points and the
/// one before).
pub(crate) fn session_bounds_from(points: &[EventPoint], s: &AccountSettings, start: usize, from: usize, out: &mut Vec<(usize, usize)>) {
    // Exact integer nanoseconds (i128: no overflow over chrono's whole range), computed once per
    // point instead of two `DateTime` subtractions per point.
    let timeout = nanos_of(secs(s.session_timeout_secs));
    let max = nanos_of(secs(s.session_max_secs));
    let (Some(first), Some(before)) = (points.get(start), from.checked_sub(1).and_then(|b| points.get(b))) else { return };
    let mut start = start;
    let mut entry_utm = first.utm.as_deref();
    let mut start_ns = nanos(first.at);
    let mut prev_ns = nanos(before.at);
    for (i, p) in points.iter().enumerate().skip(from) {
        let ns = nanos(p.at);
        let split = ns - prev_ns >= timeout
            || ns - start_ns >= max
            || (s.split_session_on_utm_change && p.utm.as_deref().is_some_and(|u| !entry_utm.is_some_and(|f| f.same_source(u))));
        if split {
            out.push((start, i));
            start = i;
            start_ns = ns;
            entry_utm = p.utm.as_deref();
        }
        prev_ns = ns;
    }
    out.push((start, points.len()));
}

pub(crate) fn derived_row(account: Uuid, identity: &str, seg: &[EventPoint]) -> Option<SessionRow> {
    let first = seg.first()?;
    let last = seg.last()?;
    let utm = first.utm.as_deref().cloned().unwrap_or_default();
    Some(SessionRow {
        account_id: account,
        session_id: format!("derived:{}", first.id),
        identity: identity.to_owned(),
        derived: true,
        started_at: first.at,
        ended_at: last.at,
        duration_secs: (last.at - first.at).num_seconds(),
        page_count: seg.iter().filter(|p| p.is_page).count() as u64,
        event_count: seg.len() as u64,
        utm_source: utm.source,
        utm_medium: utm.medium,
        utm_campaign: utm.campaign,
        utm_term: utm.term,
        utm_content: utm.content,
        landing_page: first.page.as_deref().map(str::to_owned),
        referrer: first.referrer.clone(),
        campaign_id: first.campaign_id.clone(),
        advertisement_id: first.advertisement_id.clone(),
    })
}

/// A client session: the merged `session` records (if any) and the events that name it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExplicitSession {
    /// The session record with the greatest `(timestamp, record id)` supplies the descriptive
    /// fields; `started_at` is the minimum and `ended_at` the maximum over all its records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<SessionRecord>,
    #[serde(default)]
    pub points: Vec<EventPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitted: Option<SessionRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub order: (DateTime<Utc>, Id),
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    pub session: Session,
}

impl ExplicitSession {
    /// Merges one `session` record (idempotent, order independent).
    pub fn merge_record(&mut self, at: DateTime<Utc>, id: &Id, s: &Session) {
        let ended = s.ended_at;
        match &mut self.record {
            None => {
                self.record = Some(SessionRecord { order: (at, id.clone()), started_at: s.started_at, ended_at: ended, session: s.clone() })
            }
            Some(r) => {
                r.started_at = r.started_at.min(s.started_at);
                r.ended_at = match (r.ended_at, ended) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                if (at, id) > (r.order.0, &r.order.1) {
                    r.order = (at, id.clone());
                    r.session = s.clone();
                }
            }
        }
    }

    pub fn last_activity(&self) -> Option<DateTime<Utc>> {
        let r = self.record.as_ref().map(|r| r.ended_at.unwrap_or(r.started_at));
        let p = self.points.last().map(|p| p.at);
        r.max(p)
    }

    /// The row for this session.
    pub fn row(&self, account: Uuid, identity: &str, session_id: &str) -> Option<SessionRow> {
        let first = self.points.first();
        let last = self.points.last();
        let started = match (&self.record, first) {
            (Some(r), Some(f)) => r.started_at.min(f.at),
            (Some(r), None) => r.started_at,
            (None, Some(f)) => f.at,
            (None, None) => return None,
        };
        let ended =
            [self.record.as_ref().and_then(|r| r.ended_at), last.map(|p| p.at)].into_iter().flatten().max().unwrap_or(started).max(started);
        let (utm, landing, referrer, campaign_id, ad_id) = match &self.record {
            Some(r) => {
                let s = &r.session;
                (
                    Utm::from_session(s).or_else(|| first.and_then(|f| f.utm.as_deref().cloned())).unwrap_or_default(),
                    s.landing_page.clone().or_else(|| first.and_then(|f| f.page.as_deref().map(str::to_owned))),
                    s.referrer.clone().or_else(|| first.and_then(|f| f.referrer.clone())),
                    s.campaign_id.clone().or_else(|| first.and_then(|f| f.campaign_id.clone())),
                    s.advertisement_id.clone().or_else(|| first.and_then(|f| f.advertisement_id.clone())),
                )
            }
            None => (
                first.and_then(|f| f.utm.as_deref().cloned()).unwrap_or_default(),
                first.and_then(|f| f.page.as_deref().map(str::to_owned)),
                first.and_then(|f| f.referrer.clone()),
                first.and_then(|f| f.campaign_id.clone()),
                first.and_then(|f| f.advertisement_id.clone()),
            ),
        };
        Some(SessionRow {
            account_id: account,
            session_id: session_id.to_owned(),
            identity: identity.to_owned(),
            derived: false,
            started_at: started,
            ended_at: ended,
            duration_secs: (ended - started).num_seconds(),
            page_count: self.points.iter().filter(|p| p.is_page).count() as u64,
            event_count: self.points.len() as u64,
            utm_source: utm.source,
            utm_medium: utm.medium,
            utm_campaign: utm.campaign,
            utm_term: utm.term,
            utm_content: utm.content,
            landing_page: landing,
            referrer,
            campaign_id,
            advertisement_id: ad_id,
        })
    }
}
