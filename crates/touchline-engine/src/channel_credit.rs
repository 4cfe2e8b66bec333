//! Per-conversion credit under the data-driven models (`markov`, `shapley`).
//!
//! Markov and Shapley are defined over many journeys, not over one: they say how much each
//! channel contributes to an account's conversions. To credit one conversion, its touches share
//! it in proportion to their channels' weights, the account's per-channel shares computed over
//! its recent journeys (see [`crate::config::ChannelWeights`]):
//!
//! - each distinct channel `c` of the conversion's touches gets `W(c) / Σ W(c')` over the
//!   distinct channels of those touches;
//! - a channel's share is split equally over its touches (a channel touched three times
//!   gets no more than touched once: the chain counts a channel's presence on the path, and
//!   Shapley's coalitions are sets of channels);
//! - a channel without a weight (not in the window's journeys, or credited nothing there)
//!   gets none; when no channel of the conversion has a weight, or the account has no weights
//!   yet, every touch gets `1/n`, the linear split, so the conversion is always credited in full.

use crate::config::ChannelWeights;
use crate::journeys::path_name;

/// Weights of a data-driven model for the `n` touches of one conversion, in touch order,
/// written into `out` (cleared first); they sum to 1 when `n > 0`. `channel(i)` is touch `i`'s
/// channel.
pub(crate) fn channel_weights_into<'a>(n: usize, channel: impl Fn(usize) -> &'a str, table: Option<&ChannelWeights>, out: &mut Vec<f64>) {
    out.clear();
    if n == 0 {
        return;
    }
    out.resize(n, 1.0 / n as f64);
    let Some(table) = table.filter(|t| !t.0.is_empty()) else { return };
    // (channel, its weight, its touches): a conversion has few distinct channels, so a list
    // searched linearly beats a map.
    let mut distinct: Vec<(&str, f64, u32)> = Vec::new();
    let mut slot_of: Vec<usize> = Vec::with_capacity(n);
    for i in 0..n {
        let name = channel(i);
        let slot = match distinct.iter().position(|(c, _, _)| *c == name) {
            Some(s) => s,
            None => {
                distinct.push((name, table.of(&path_name(name)), 0));
                distinct.len() - 1
            }
        };
        if let Some(d) = distinct.get_mut(slot) {
            d.2 += 1;
        }
        slot_of.push(slot);
    }
    let total: f64 = distinct.iter().map(|d| d.1).sum();
    if !(total > 0.0 && total.is_finite()) {
        return;
    }
    for (x, slot) in out.iter_mut().zip(slot_of) {
        *x = distinct.get(slot).map_or(0.0, |&(_, w, touches)| w / total / f64::from(touches.max(1)));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn table(pairs: &[(&str, f64)]) -> ChannelWeights {
        ChannelWeights(pairs.iter().map(|(c, w)| ((*c).to_owned(), *w)).collect())
    }

    fn weights(path: &[&str], t: Option<&ChannelWeights>) -> Vec<f64> {
        let mut out = Vec::new();
        channel_weights_into(path.len(), |i| path[i], t, &mut out);
        out
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn channels_share_in_proportion_to_their_weights() {
        // W(search) = 0.6, W(display) = 0.2: search 0.6 / 0.8 = 3/4, display 1/4.
        let t = table(&[("search", 0.6), ("display", 0.2), ("email", 0.2)]);
        assert!(close(&weights(&["display", "search"], Some(&t)), &[0.25, 0.75]));
    }

    #[test]
    fn a_repeated_channel_splits_its_share_over_its_touches() {
        // search 3/4 over two touches (3/8 each), display 1/4.
        let t = table(&[("search", 0.6), ("display", 0.2)]);
        assert!(close(&weights(&["search", "display", "search"], Some(&t)), &[0.375, 0.25, 0.375]));
    }

    #[test]
    fn a_channel_without_weight_gets_nothing_unless_none_has_one() {
        let t = table(&[("search", 0.5), ("display", 0.5)]);
        assert!(close(&weights(&["new", "search"], Some(&t)), &[0.0, 1.0]));
        assert!(close(&weights(&["new", "other"], Some(&t)), &[0.5, 0.5]), "linear when no channel has a weight");
        assert!(close(&weights(&["a", "b", "c", "d"], None), &[0.25; 4]), "linear without weights");
        assert!(weights(&[], Some(&t)).is_empty());
    }

    #[test]
    fn names_are_looked_up_as_paths_write_them() {
        let long = "x".repeat(60);
        let t = table(&[("a›b", 1.0), (&"x".repeat(48), 3.0)]);
        assert!(close(&weights(&["a>b", &long], Some(&t)), &[0.25, 0.75]));
    }

    #[test]
    fn unusable_weights_count_as_none() {
        let t = table(&[("a", f64::NAN), ("b", -1.0), ("c", f64::INFINITY)]);
        assert!(close(&weights(&["a", "b", "c"], Some(&t)), &[1.0 / 3.0; 3]));
    }
}
