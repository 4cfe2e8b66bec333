//! The conversion-paths report (`GET /v1/reports/paths`): an account's journeys over a range
//! grouped by their channel path or their campaign path, the most frequent first, with how
//! many converted, how many did not, the revenue and the conversion rate — GA4's "conversion
//! paths", over the journeys touchline keeps (docs/api.md).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use touchline_model::results::path_names;
use touchline_sql::JourneyPathRow;

/// Paths a report lists when the query names no limit, and the most it may ask for.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1_000;

/// Which path of a journey the report groups by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PathsBy {
    Channel,
    Campaign,
}

impl PathsBy {
    pub fn parse(s: Option<&str>) -> Result<PathsBy, String> {
        match s {
            None | Some("channel") => Ok(PathsBy::Channel),
            Some("campaign") => Ok(PathsBy::Campaign),
            Some(other) => Err(format!("query parameter `by`: {other:?} is not channel or campaign")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PathsBy::Channel => "channel",
            PathsBy::Campaign => "campaign",
        }
    }
}

/// One path of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct PathRow {
    /// The names along the path, first touch first; empty for conversions with no touch.
    pub path: Vec<String>,
    pub journeys: i64,
    pub conversions: i64,
    pub non_conversions: i64,
    pub revenue: Decimal,
    /// conversions / journeys.
    pub conversion_rate: f64,
}

/// The journeys of `rows` summed per path of kind `by`, the most journeys first (ties by
/// path), at most `limit` of them; also the number of journeys over all paths.
pub fn top_paths(rows: &[JourneyPathRow], by: PathsBy, limit: usize) -> (i64, Vec<PathRow>) {
    let mut sums: BTreeMap<&str, (i64, i64, Decimal)> = BTreeMap::new();
    for r in rows {
        let key = match by {
            PathsBy::Channel => r.channels.as_str(),
            PathsBy::Campaign => r.campaigns.as_str(),
        };
        let s = sums.entry(key).or_insert((0, 0, Decimal::ZERO));
        s.0 = s.0.saturating_add(r.conversions);
        s.1 = s.1.saturating_add(r.non_conversions);
        s.2 += r.revenue;
    }
    let total = sums.values().fold(0i64, |t, s| t.saturating_add(s.0).saturating_add(s.1));
    let mut out: Vec<PathRow> = sums
        .into_iter()
        .map(|(path, (conversions, non_conversions, revenue))| {
            let journeys = conversions.saturating_add(non_conversions);
            PathRow {
                path: path_names(path).into_iter().map(str::to_owned).collect(),
                journeys,
                conversions,
                non_conversions,
                revenue: revenue.normalize(),
                conversion_rate: if journeys > 0 { conversions as f64 / journeys as f64 } else { 0.0 },
            }
        })
        .filter(|p| p.journeys > 0)
        .collect();
    // Stable: paths with as many journeys keep their path order.
    out.sort_by_key(|p| std::cmp::Reverse(p.journeys));
    out.truncate(limit);
    (total, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(channels: &str, campaigns: &str, conversions: i64, non_conversions: i64, revenue: &str) -> JourneyPathRow {
        JourneyPathRow {
            channels: channels.into(),
            campaigns: campaigns.into(),
            conversions,
            non_conversions,
            revenue: revenue.parse().unwrap(),
        }
    }

    fn rows() -> Vec<JourneyPathRow> {
        vec![
            row("display > search", "c1 > c1", 1, 2, "100"),
            row("display > search", "c1 > c2", 1, 0, "40"),
            row("search", "c2", 1, 0, "50"),
            row("email", "(none)", 0, 4, "0"),
        ]
    }

    /// By channel: display > search sums two campaign paths (2 converted, 2 not, 140; rate
    /// 2/4); email 0 of 4; search 1 of 1. Journeys in all: 3 + 1 + 1 + 4 = 9.
    #[test]
    fn paths_by_channel_sum_their_campaign_paths() {
        let (total, got) = top_paths(&rows(), PathsBy::Channel, 10);
        assert_eq!(total, 9);
        let brief: Vec<(Vec<String>, i64, i64, i64, String, f64)> = got
            .into_iter()
            .map(|p| (p.path, p.journeys, p.conversions, p.non_conversions, p.revenue.to_string(), p.conversion_rate))
            .collect();
        assert_eq!(
            brief,
            vec![
                (vec!["display".into(), "search".into()], 4, 2, 2, "140".into(), 0.5),
                (vec!["email".into()], 4, 0, 4, "0".into(), 0.0),
                (vec!["search".into()], 1, 1, 0, "50".into(), 1.0),
            ]
        );
    }

    /// By campaign the two display > search journeys part; the limit keeps the first two of
    /// (email 4, c1 > c1 3, then c1 > c2 and c2 with 1 each in path order).
    #[test]
    fn paths_by_campaign_and_the_limit() {
        let (total, got) = top_paths(&rows(), PathsBy::Campaign, 3);
        assert_eq!(total, 9);
        let paths: Vec<(String, i64)> = got.iter().map(|p| (p.path.join(" > "), p.journeys)).collect();
        assert_eq!(paths, vec![("(none)".into(), 4), ("c1 > c1".into(), 3), ("c1 > c2".into(), 1)]);
    }

    #[test]
    fn a_conversion_without_touches_is_the_empty_path() {
        let (_, got) = top_paths(&[row("", "", 2, 0, "10")], PathsBy::Channel, 10);
        assert_eq!((got[0].path.len(), got[0].conversions), (0, 2));
    }

    #[test]
    fn by_names_only_channel_or_campaign() {
        assert_eq!(PathsBy::parse(None), Ok(PathsBy::Channel));
        assert_eq!(PathsBy::parse(Some("campaign")), Ok(PathsBy::Campaign));
        assert!(PathsBy::parse(Some("ad")).unwrap_err().contains("`by`"));
    }
}
