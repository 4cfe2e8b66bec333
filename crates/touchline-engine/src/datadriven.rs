//! Data-driven attribution over the paths of a period: the first-order Markov removal effect
//! (exact, by solving the absorbing chain's linear system) and Shapley values over channel sets
//! (exact enumeration up to [`SHAPLEY_EXACT_MAX`] channels, deterministic permutation sampling
//! beyond).
//!
//! Paths are additive: the runtime collects [`PathCount`]s from every partition
//! ([`crate::Engine::paths`]), merges them with [`aggregate_paths`] and calls [`markov`] /
//! [`shapley`] once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A journey: the channels of its touches in order, and how many conversions / non-converting
/// journeys ended with exactly this sequence. `value` is the revenue of those conversions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathCount {
    pub channels: Vec<String>,
    pub conversions: f64,
    pub nulls: f64,
    pub value: f64,
}

/// Merges equal channel sequences (sums counts and values); output sorted by sequence.
pub fn aggregate_paths(paths: impl IntoIterator<Item = PathCount>) -> Vec<PathCount> {
    let mut m: BTreeMap<Vec<String>, (f64, f64, f64)> = BTreeMap::new();
    for p in paths {
        let e = m.entry(p.channels).or_insert((0.0, 0.0, 0.0));
        e.0 += p.conversions;
        e.1 += p.nulls;
        e.2 += p.value;
    }
    m.into_iter().map(|(channels, (conversions, nulls, value))| PathCount { channels, conversions, nulls, value }).collect()
}

/// Credit of one channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelCredit {
    pub channel: String,
    /// Conversions credited; over all channels they sum to the converting paths' conversions.
    pub conversions: f64,
    /// Revenue credited, in proportion to `conversions`' share.
    pub revenue: f64,
    /// Markov only: `1 − P(conv without the channel) / P(conv)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal_effect: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarkovResult {
    /// Probability of reaching `conversion` from `start` in the full chain.
    pub conversion_probability: f64,
    pub total_conversions: f64,
    pub total_revenue: f64,
    /// Sorted by channel name.
    pub channels: Vec<ChannelCredit>,
}

/// Solves `a · x = b` in place by Gaussian elimination with partial pivoting. `a` is row-major
/// `n × n`. Returns `None` if the matrix is (numerically) singular.
pub fn solve_linear(mut a: Vec<f64>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    if a.len() != n * n {
        return None;
    }
    for col in 0..n {
        // Pivot: the row with the largest magnitude in this column.
        let mut piv = col;
        let mut best = 0.0f64;
        for r in col..n {
            let v = a.get(r * n + col).copied().unwrap_or(0.0).abs();
            if v > best {
                best = v;
                piv = r;
            }
        }
        if !matches!(best.partial_cmp(&1e-300), Some(std::cmp::Ordering::Greater)) || !best.is_finite() {
            return None;
        }
        if piv != col {
            for c in 0..n {
                a.swap(piv * n + c, col * n + c);
            }
            b.swap(piv, col);
        }
        let d = a.get(col * n + col).copied()?;
        for r in (col + 1)..n {
            let f = a.get(r * n + col).copied()? / d;
            if f == 0.0 {
                continue;
            }
            for c in col..n {
                let v = a.get(col * n + c).copied()?;
                if let Some(x) = a.get_mut(r * n + c) {
                    *x -= f * v;
                }
            }
            let bv = b.get(col).copied()?;
            if let Some(x) = b.get_mut(r) {
                *x -= f * bv;
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let mut s = b.get(r).copied()?;
        for c in (r + 1)..n {
            s -= a.get(r * n + c).copied()? * x.get(c).copied()?;
        }
        let d = a.get(r * n + r).copied()?;
        if let Some(xr) = x.get_mut(r) {
            *xr = s / d;
        }
    }
    Some(x)
}

/// The first-order chain estimated from paths: states `start`, the channels (sorted by name), and
/// the absorbing `conversion` and `null`.
struct Chain<'a> {
    names: BTreeMap<&'a str, usize>,
    /// Channel count.
    n: usize,
    /// Row width: channels, then conversion (`n`), then null (`n + 1`).
    w: usize,
    /// Row-normalised transition probabilities; rows `0..n` are channels, row `n` is start.
    prob: Vec<f64>,
    total_conv: f64,
    total_value: f64,
}

impl<'a> Chain<'a> {
    fn build(paths: &'a [PathCount]) -> Chain<'a> {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for p in paths.iter().filter(|p| !p.channels.is_empty()) {
            for c in &p.channels {
                names.entry(c.as_str()).or_insert(0);
            }
        }
        for (i, v) in names.values_mut().enumerate() {
            *v = i;
        }
        let n = names.len();
        let w = n + 2;
        let mut cnt = vec![0.0f64; (n + 1) * w];
        let mut total_conv = 0.0;
        let mut total_value = 0.0;
        for p in paths.iter().filter(|p| !p.channels.is_empty()) {
            let weight = p.conversions.max(0.0) + p.nulls.max(0.0);
            if weight <= 0.0 {
                continue;
            }
            total_conv += p.conversions.max(0.0);
            total_value += p.value;
            let mut from = n;
            for c in &p.channels {
                let to = names.get(c.as_str()).copied().unwrap_or(0);
                if let Some(x) = cnt.get_mut(from * w + to) {
                    *x += weight;
                }
                from = to;
            }
            if let Some(x) = cnt.get_mut(from * w + n) {
                *x += p.conversions.max(0.0);
            }
            if let Some(x) = cnt.get_mut(from * w + n + 1) {
                *x += p.nulls.max(0.0);
            }
        }
        let mut prob = cnt;
        for r in 0..=n {
            let row = prob.get_mut(r * w..(r + 1) * w).unwrap_or(&mut []);
            let s: f64 = row.iter().sum();
            if s > 0.0 {
                row.iter_mut().for_each(|x| *x /= s);
            }
        }
        Chain { names, n, w, prob, total_conv, total_value }
    }
}

/// The transition probabilities of the first-order chain [`markov`] uses, as
/// `(from, to, probability)` for every non-zero transition, sorted by `(from, to)`. States are
/// the channel names and `(start)`, `(conversion)`, `(null)`.
pub fn markov_transitions(paths: &[PathCount]) -> Vec<(String, String, f64)> {
    let ch = Chain::build(paths);
    let label = |i: usize| -> String {
        if i < ch.n {
            ch.names.iter().find(|(_, v)| **v == i).map(|(k, _)| (*k).to_owned()).unwrap_or_default()
        } else if i == ch.n {
            "(conversion)".to_owned()
        } else {
            "(null)".to_owned()
        }
    };
    let mut out = Vec::new();
    for r in 0..=ch.n {
        let from = if r == ch.n { "(start)".to_owned() } else { label(r) };
        for c in 0..ch.w {
            let p = ch.prob.get(r * ch.w + c).copied().unwrap_or(0.0);
            if p > 0.0 {
                out.push((from.clone(), label(c), p));
            }
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// First-order Markov attribution with removal effects.
///
/// States: `start`, one per channel, and the absorbing `conversion` and `null`. Transition
/// probabilities are the observed transition counts (each path weighted by its conversions +
/// nulls) normalised per state. `x_c`, the probability of eventually converting from channel
/// `c`, solves `(I − Q) x = r` where `Q` holds channel→channel and `r` channel→conversion
/// probabilities. Removing a channel makes it lead to `null` (its row becomes `x_c = 0`). The
/// removal effects are normalised so credits sum to the total conversions of the paths.
/// Empty paths (conversions with no touch) are left out of the chain; their conversions are
/// not credited to any channel and not counted in `total_conversions`.
pub fn markov(paths: &[PathCount]) -> MarkovResult {
    let chain = Chain::build(paths);
    let channels: Vec<&str> = chain.names.keys().copied().collect();
    removal_credits(&chain, &channels, |state, channel| state == channel)
}

/// Markov attribution of order `order` (1 to [`MAX_MARKOV_ORDER`]), as ChannelAttribution's
/// `markov_model(order = k)` builds it: a state is `k` consecutive channels of a path (every
/// window of the path, repeats kept; a path shorter than `k` is one state), and removing a
/// channel removes every state that holds it. Order 1 is [`markov`].
pub fn markov_of_order(paths: &[PathCount], order: usize) -> MarkovResult {
    let order = order.clamp(1, MAX_MARKOV_ORDER);
    if order == 1 {
        return markov(paths);
    }
    let states: Vec<PathCount> = paths.iter().map(|p| PathCount { channels: windows(&p.channels, order), ..p.clone() }).collect();
    let chain = Chain::build(&states);
    let mut channels: Vec<&str> = paths.iter().flat_map(|p| p.channels.iter().map(String::as_str)).collect();
    channels.sort_unstable();
    channels.dedup();
    removal_credits(&chain, &channels, |state, channel| state.split(STATE_JOIN).any(|c| c == channel))
}

/// Highest order [`markov_of_order`] computes (the state count grows with the power of it).
pub const MAX_MARKOV_ORDER: usize = 3;

/// What joins the channels of a higher-order state's name (a character no channel name holds).
const STATE_JOIN: char = '\u{1f}';

/// The states of a path for order `k`: its windows of `k` channels, or the whole path when it
/// is shorter.
fn windows(channels: &[String], k: usize) -> Vec<String> {
    if channels.is_empty() {
        return Vec::new();
    }
    if channels.len() <= k {
        return vec![channels.join(&STATE_JOIN.to_string())];
    }
    channels.windows(k).map(|w| w.join(&STATE_JOIN.to_string())).collect()
}

/// Removal effects of `channels` over `chain`, removing for each channel the states
/// `holds(state, channel)` says hold it, and the conversions credited in proportion.
fn removal_credits(chain: &Chain, channels: &[&str], holds: impl Fn(&str, &str) -> bool) -> MarkovResult {
    let base = conversion_probability(chain, &vec![false; chain.n]);
    let effects: Vec<f64> = channels
        .iter()
        .map(|channel| {
            let mut removed = vec![false; chain.n];
            for (state, i) in &chain.names {
                if let Some(r) = removed.get_mut(*i) {
                    *r = holds(state, channel);
                }
            }
            if base > 0.0 {
                (1.0 - conversion_probability(chain, &removed) / base).clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect();
    let sum_re: f64 = effects.iter().sum();
    let credited = channels
        .iter()
        .zip(&effects)
        .map(|(name, re)| {
            let share = if sum_re > 0.0 { re / sum_re } else { 0.0 };
            ChannelCredit {
                channel: (*name).to_owned(),
                conversions: share * chain.total_conv,
                revenue: share * chain.total_value,
                removal_effect: Some(*re),
            }
        })
        .collect();
    MarkovResult { conversion_probability: base, total_conversions: chain.total_conv, total_revenue: chain.total_value, channels: credited }
}

/// The probability of reaching `conversion` from `start` when the states marked in `removed`
/// lead to `null`.
fn conversion_probability(chain: &Chain, removed: &[bool]) -> f64 {
    let (n, w) = (chain.n, chain.w);
    let p_of = |r: usize, c: usize| chain.prob.get(r * w + c).copied().unwrap_or(0.0);
    let mut a = vec![0.0; n * n];
    let mut b = vec![0.0; n];
    for i in 0..n {
        if let Some(x) = a.get_mut(i * n + i) {
            *x = 1.0;
        }
        if removed.get(i) == Some(&true) {
            continue; // x_i = 0
        }
        for j in 0..n {
            if let Some(x) = a.get_mut(i * n + j) {
                *x -= p_of(i, j);
            }
        }
        if let Some(x) = b.get_mut(i) {
            *x = p_of(i, n);
        }
    }
    let x = if n == 0 { Some(Vec::new()) } else { solve_linear(a, b) };
    let x = x.unwrap_or_else(|| vec![0.0; n]);
    (0..n).map(|j| p_of(n, j) * x.get(j).copied().unwrap_or(0.0)).sum()
}

/// Largest channel count for which Shapley values are computed exactly (2^15 coalitions).
pub const SHAPLEY_EXACT_MAX: usize = 15;

/// How the Shapley values were obtained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum ShapleyMethod {
    Exact,
    /// Monte Carlo over `permutations` random channel orders drawn from a SplitMix64 stream seeded
    /// with `seed` (deterministic: the same paths and seed give the same credits).
    Sampled {
        permutations: u32,
        seed: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShapleyResult {
    pub method: ShapleyMethod,
    pub total_conversions: f64,
    pub total_revenue: f64,
    /// Sorted by channel name.
    pub channels: Vec<ChannelCredit>,
}

/// Options of [`shapley`] beyond the exact limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShapleyOptions {
    pub permutations: u32,
    pub seed: u64,
}

impl Default for ShapleyOptions {
    fn default() -> Self {
        ShapleyOptions { permutations: 2000, seed: 0x7465_6368_6c69_6e65 }
    }
}

/// Shapley attribution over channel sets.
///
/// Characteristic function (Zhao et al., "Shapley Value Methods for Attribution Modeling in
/// Online Advertising", 2018): `v(S)` = conversions of the converting paths whose *set* of
/// channels is a subset of `S`. Order and repeats within a path do not matter; non-converting
/// paths contribute nothing. By efficiency the credits sum to `v(all channels)`, the total
/// conversions of non-empty paths. Revenue is credited the same way with path values.
/// Up to [`SHAPLEY_EXACT_MAX`] channels every coalition is enumerated; beyond, channel orders
/// are sampled and each path's conversions go to the channel of its set that joins last.
pub fn shapley(paths: &[PathCount], opts: ShapleyOptions) -> ShapleyResult {
    shapley_up_to(paths, opts, SHAPLEY_EXACT_MAX)
}

/// [`shapley`] with the exact limit as a parameter (tests force sampling on small examples).
fn shapley_up_to(paths: &[PathCount], opts: ShapleyOptions, exact_max: usize) -> ShapleyResult {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for p in paths.iter().filter(|p| p.conversions > 0.0) {
        for c in &p.channels {
            names.entry(c.as_str()).or_insert(0);
        }
    }
    for (i, v) in names.values_mut().enumerate() {
        *v = i;
    }
    let n = names.len();
    // Channel sets of converting paths → (conversions, value).
    let mut sets: BTreeMap<Vec<usize>, (f64, f64)> = BTreeMap::new();
    for p in paths.iter().filter(|p| p.conversions > 0.0 && !p.channels.is_empty()) {
        let mut s: Vec<usize> = p.channels.iter().filter_map(|c| names.get(c.as_str()).copied()).collect();
        s.sort_unstable();
        s.dedup();
        let e = sets.entry(s).or_insert((0.0, 0.0));
        e.0 += p.conversions;
        e.1 += p.value;
    }
    let total_conv: f64 = sets.values().map(|v| v.0).sum();
    let total_value: f64 = sets.values().map(|v| v.1).sum();
    let mut credit = vec![(0.0f64, 0.0f64); n];
    let method = if n <= exact_max {
        let full = 1usize << n;
        // v(S) by zeta transform over subsets.
        let mut v = vec![(0.0f64, 0.0f64); full];
        for (s, (c, val)) in &sets {
            let mask = s.iter().fold(0usize, |m, i| m | (1 << i));
            if let Some(x) = v.get_mut(mask) {
                x.0 += c;
                x.1 += val;
            }
        }
        for i in 0..n {
            for mask in 0..full {
                if mask & (1 << i) != 0 {
                    let sub = v.get(mask ^ (1 << i)).copied().unwrap_or((0.0, 0.0));
                    if let Some(x) = v.get_mut(mask) {
                        x.0 += sub.0;
                        x.1 += sub.1;
                    }
                }
            }
        }
        // Weights |S|!(n−|S|−1)!/n!.
        let mut fact = vec![1.0f64; n + 1];
        for k in 1..=n {
            let prev = fact.get(k - 1).copied().unwrap_or(1.0);
            if let Some(f) = fact.get_mut(k) {
                *f = prev * k as f64;
            }
        }
        let f = |k: usize| fact.get(k).copied().unwrap_or(1.0);
        for (i, cr) in credit.iter_mut().enumerate() {
            let bit = 1usize << i;
            for mask in 0..full {
                if mask & bit != 0 {
                    continue;
                }
                let s = mask.count_ones() as usize;
                let wgt = f(s) * f(n - s - 1) / f(n);
                let with = v.get(mask | bit).copied().unwrap_or((0.0, 0.0));
                let without = v.get(mask).copied().unwrap_or((0.0, 0.0));
                cr.0 += wgt * (with.0 - without.0);
                cr.1 += wgt * (with.1 - without.1);
            }
        }
        ShapleyMethod::Exact
    } else {
        let m = opts.permutations.max(1);
        let mut rng = SplitMix64(opts.seed);
        let mut order: Vec<usize> = (0..n).collect();
        let mut pos = vec![0usize; n];
        for _ in 0..m {
            for i in (1..n).rev() {
                let j = (rng.next() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            for (p, ch) in order.iter().enumerate() {
                if let Some(x) = pos.get_mut(*ch) {
                    *x = p;
                }
            }
            for (s, (c, val)) in &sets {
                let last = s.iter().copied().max_by_key(|ch| pos.get(*ch).copied().unwrap_or(0));
                if let Some(cr) = last.and_then(|ch| credit.get_mut(ch)) {
                    cr.0 += c;
                    cr.1 += val;
                }
            }
        }
        for cr in &mut credit {
            cr.0 /= f64::from(m);
            cr.1 /= f64::from(m);
        }
        ShapleyMethod::Sampled { permutations: m, seed: opts.seed }
    };
    let channels = names
        .keys()
        .zip(credit)
        .map(|(name, (c, r))| ChannelCredit { channel: (*name).to_owned(), conversions: c, revenue: r, removal_effect: None })
        .collect();
    ShapleyResult { method, total_conversions: total_conv, total_revenue: total_value, channels }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny deterministic generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ch: &[&str], conv: f64, nulls: f64) -> PathCount {
        PathCount { channels: ch.iter().map(|s| s.to_string()).collect(), conversions: conv, nulls, value: conv * 10.0 }
    }

    fn credit(cs: &[ChannelCredit], name: &str) -> f64 {
        cs.iter().find(|c| c.channel == name).map(|c| c.conversions).unwrap_or(f64::NAN)
    }

    #[test]
    fn gaussian_elimination_with_pivoting() {
        // 0·x + 2y = 4; 3x + y = 5  → needs a row swap; x = 1, y = 2.
        let x = solve_linear(vec![0.0, 2.0, 3.0, 1.0], vec![4.0, 5.0]).unwrap_or_default();
        assert!((x[0] - 1.0).abs() < 1e-12 && (x[1] - 2.0).abs() < 1e-12, "{x:?}");
        assert!(solve_linear(vec![1.0, 2.0, 2.0, 4.0], vec![1.0, 2.0]).is_none());
    }

    /// Not a published-figures test: the paths of S. Puzyrov's example (see
    /// `markov_puzyrov_published_transition_table`, which checks the figures the article does
    /// publish) solved by hand from that published table. The article's own removal-effect
    /// figures could not be retrieved (only the opening of the page, up to the transition table,
    /// is available to us), so the expected values below are our derivation, labelled as such:
    /// P(conv) = 0.8·(0.5 + 0.25·1) + 0.2·1 = 0.8. Without google ads: 0.2 → removal effect
    /// 1 − 0.2/0.8 = 0.75. Without mailing: 0.8·0.5 = 0.4 → 0.5. Credits of the 4 conversions:
    /// 4·0.75/1.25 = 2.4 and 4·0.5/1.25 = 1.6. The source-validated Markov tests are
    /// `markov_bryl_analyzecore_example` (removal effects and credits as published) and
    /// `markov_pychattr_readme_example`.
    #[test]
    fn markov_puzyrov_paths_solved_by_hand() {
        let paths = vec![
            p(&["google ads"], 2.0, 0.0),
            p(&["mailing"], 1.0, 0.0),
            p(&["google ads", "mailing"], 1.0, 0.0),
            p(&["google ads"], 0.0, 1.0),
        ];
        let r = markov(&aggregate_paths(paths));
        assert!((r.conversion_probability - 0.8).abs() < 1e-12, "{r:?}");
        let ga = r.channels.iter().find(|c| c.channel == "google ads").and_then(|c| c.removal_effect).unwrap_or(0.0);
        let ml = r.channels.iter().find(|c| c.channel == "mailing").and_then(|c| c.removal_effect).unwrap_or(0.0);
        assert!((ga - 0.75).abs() < 1e-12 && (ml - 0.5).abs() < 1e-12, "{r:?}");
        assert!((credit(&r.channels, "google ads") - 2.4).abs() < 1e-9, "{r:?}");
        assert!((credit(&r.channels, "mailing") - 1.6).abs() < 1e-9, "{r:?}");
        assert!((r.total_conversions - 4.0).abs() < 1e-12);
    }

    /// S. Puzyrov, "Markov Chain Attribution – Simple Explanation Of Removal Effect" (2019,
    /// https://serhiipuzyrov.com/2019/07/markov-chain-attribution-simple-explanation-of-removal-effect/):
    /// paths `google ads` (2 conv), `mailing` (1), `google ads > mailing` (1), `google ads` (0 conv,
    /// 1 null). Source figures, the article's transition table: "google ads > conv 2 0.5,
    /// google ads > mailing 1 0.25, google ads > null 1 0.25, mailing > conv 2 1,
    /// start > google ads 4 0.8, start > mailing 1 0.2".
    #[test]
    fn markov_puzyrov_published_transition_table() {
        let paths = vec![
            p(&["google ads"], 2.0, 0.0),
            p(&["mailing"], 1.0, 0.0),
            p(&["google ads", "mailing"], 1.0, 0.0),
            p(&["google ads"], 0.0, 1.0),
        ];
        let t = markov_transitions(&aggregate_paths(paths));
        let expected = [
            ("(start)", "google ads", 0.8),
            ("(start)", "mailing", 0.2),
            ("google ads", "(conversion)", 0.5),
            ("google ads", "(null)", 0.25),
            ("google ads", "mailing", 0.25),
            ("mailing", "(conversion)", 1.0),
        ];
        assert_eq!(t.len(), expected.len(), "{t:?}");
        for (from, to, pr) in expected {
            let got = t.iter().find(|x| x.0 == from && x.1 == to).map(|x| x.2);
            assert!(got.is_some_and(|g| (g - pr).abs() < 1e-12), "{from}->{to}: {got:?} (want {pr})");
        }
    }

    /// S. Bryl, "Marketing Multi-Channel Attribution model with R (part 1: Markov chains
    /// concept)", analyzecore.com, 2016 (http://analyzecore.com/2016/08/03/attribution-model-r-part-1/),
    /// with the figures as the npm package `markovattribution` (J. Castro,
    /// https://github.com/JesseCastro/markovattribution, `test/test.js`) asserts them "derived
    /// from" that article. Paths: `C1 > C2 > C3` (1 conversion, value 1000), `C1` (null),
    /// `C2 > C3` (null). Source figures: P(conversion) = 1/3; without C1 = 1/6; removal effects
    /// C1 0.5, C2 1, C3 1; conversions C1 0.2, C2 0.4, C3 0.4; value 200 / 400 / 400.
    #[test]
    fn markov_bryl_analyzecore_example() {
        let paths = vec![
            PathCount { channels: vec!["C1".into(), "C2".into(), "C3".into()], conversions: 1.0, nulls: 0.0, value: 1000.0 },
            PathCount { channels: vec!["C1".into()], conversions: 0.0, nulls: 1.0, value: 0.0 },
            PathCount { channels: vec!["C2".into(), "C3".into()], conversions: 0.0, nulls: 1.0, value: 0.0 },
        ];
        let r = markov(&paths);
        assert!((r.conversion_probability - 1.0 / 3.0).abs() < 1e-12, "{r:?}");
        let expect = [("C1", 0.5, 0.2, 200.0), ("C2", 1.0, 0.4, 400.0), ("C3", 1.0, 0.4, 400.0)];
        for (name, re, conv, value) in expect {
            let c = r.channels.iter().find(|c| c.channel == name);
            let c = c.unwrap_or_else(|| panic!("{name} missing: {r:?}"));
            assert!(c.removal_effect.is_some_and(|x| (x - re).abs() < 1e-12), "{c:?}");
            assert!((c.conversions - conv).abs() < 1e-12, "{c:?}");
            assert!((c.revenue - value).abs() < 1e-9, "{c:?}");
        }
        // "the test matrix minus c1": P = 1/6 (removal effect 1 − (1/6)/(1/3) = 0.5, checked above).
    }

    /// pychattr README (J. Woloso, https://github.com/jmwoloso/pychattr, "MarkovModel" example):
    /// paths `A>B>A>B>B>A`, `A>B>B>A>A`, `A>A`, one conversion each, no null paths, first order.
    /// Source output: `A 1.991106`, `B 1.008894` total_conversions. pychattr (like the R package
    /// ChannelAttribution it ports) estimates by Monte Carlo simulation (`n_simulations=10000`,
    /// `random_state=26`); we solve the chain exactly, which gives A = 2, B = 1 (removal effects 1
    /// and 0.5). The source's figures therefore agree to within its simulation error; the test
    /// allows 0.01 (≈ 1% of a credit at 10,000 simulated paths). Self-transitions (`B>B`, `A>A`),
    /// which ChannelAttribution drops, do not change first-order removal effects: a self-loop
    /// of probability p only rescales the other transitions of that state by 1/(1−p).
    #[test]
    fn markov_pychattr_readme_example() {
        let paths = vec![p(&["A", "B", "A", "B", "B", "A"], 1.0, 0.0), p(&["A", "B", "B", "A", "A"], 1.0, 0.0), p(&["A", "A"], 1.0, 0.0)];
        let r = markov(&paths);
        assert!((credit(&r.channels, "A") - 1.991106).abs() < 0.01, "{r:?}");
        assert!((credit(&r.channels, "B") - 1.008894).abs() < 0.01, "{r:?}");
        assert!((r.total_conversions - 3.0).abs() < 1e-12);
    }

    /// A chain with a loop (A > B > A > conv) checks the linear solve rather than path products.
    /// Paths: A>B>A (1 conv), B (1 null). Transitions: start→A 1/2, start→B 1/2; A→B 1/2 (the
    /// first A), A→conv 1/2; B→A 1/2, B→null 1/2. x_A = ½x_B + ½, x_B = ½x_A → x_A = 2/3,
    /// x_B = 1/3, P = ½·2/3 + ½·1/3 = 1/2. Without A: x_B = 0 → P = 0, RE 1. Without B: x_A = ½,
    /// P = 1/4, RE 1/2. One conversion: A 2/3, B 1/3.
    #[test]
    fn markov_with_loop_solved_by_hand() {
        let r = markov(&[p(&["A", "B", "A"], 1.0, 0.0), p(&["B"], 0.0, 1.0)]);
        assert!((r.conversion_probability - 0.5).abs() < 1e-12, "{r:?}");
        assert!((credit(&r.channels, "A") - 2.0 / 3.0).abs() < 1e-12, "{r:?}");
        assert!((credit(&r.channels, "B") - 1.0 / 3.0).abs() < 1e-12, "{r:?}");
    }

    /// "Data Driven Attribution using Shapley value", notebook in
    /// https://github.com/tomgorb/misc (`Data Driven Attribution.ipynb`), reproducing the
    /// Towards Data Science article "Data-driven marketing attribution"
    /// (https://towardsdatascience.com/data-driven-marketing-attribution-1a28d2e613a0).
    /// Input: converting journeys by channel set F (Facebook), O (Organic), L (LinkedIn) with
    /// conversion ratios F 0.2, O 0.1, L 0.17, F+O 0.17, F+L 0.3, L+O 0, F+L+O 0.06; worth
    /// v(S) = sum over sub-coalitions (source: `[0.2, 0.1, 0.17, 0.47, 0.67, 0.27, 1.0]`).
    /// Source output: `{'F': 0.455, 'O': 0.205, 'L': 0.34}`. This is exactly our characteristic
    /// function (conversions of paths whose channel set ⊆ S); we feed the ratios as conversions
    /// (and, second, the 100 journeys the notebook builds from them: 20, 10, 17, 17, 30, 0, 6).
    #[test]
    fn shapley_towards_data_science_example() {
        let sets: [(&[&str], f64); 7] = [
            (&["F"], 0.2),
            (&["O"], 0.1),
            (&["L"], 0.17),
            (&["F", "O"], 0.17),
            (&["F", "L"], 0.3),
            (&["L", "O"], 0.0),
            (&["F", "L", "O"], 0.06),
        ];
        let paths: Vec<PathCount> = sets.iter().map(|(ch, r)| p(ch, *r, 0.0)).collect();
        let r = shapley(&paths, ShapleyOptions::default());
        assert_eq!(r.method, ShapleyMethod::Exact);
        assert!((credit(&r.channels, "F") - 0.455).abs() < 1e-9, "{r:?}");
        assert!((credit(&r.channels, "O") - 0.205).abs() < 1e-9, "{r:?}");
        assert!((credit(&r.channels, "L") - 0.34).abs() < 1e-9, "{r:?}");
        // The same as journey counts (100 journeys): credits scale by 100.
        let paths: Vec<PathCount> = sets.iter().map(|(ch, r)| p(ch, (r * 100.0).round(), 0.0)).collect();
        let r = shapley(&paths, ShapleyOptions::default());
        assert!((credit(&r.channels, "F") - 45.5).abs() < 1e-9, "{r:?}");
        assert!((credit(&r.channels, "O") - 20.5).abs() < 1e-9, "{r:?}");
        assert!((credit(&r.channels, "L") - 34.0).abs() < 1e-9, "{r:?}");
        assert!((r.total_conversions - 100.0).abs() < 1e-9);
    }

    /// Hand-computed 3-channel example. Converting channel sets: {A} 10, {B} 5, {A,B} 6,
    /// {A,B,C} 3; v(S) = conversions of sets ⊆ S, so v(A)=10, v(B)=5, v(C)=0, v(AB)=21,
    /// v(AC)=10, v(BC)=5, v(ABC)=24. Shapley of A = 1/3·[v(A)] + 1/6·[v(AB)−v(B)] +
    /// 1/6·[v(AC)−v(C)] + 1/3·[v(ABC)−v(BC)] = 10/3 + 16/6 + 10/6 + 19/3 = 14. Likewise
    /// B = 5/3 + 11/6 + 5/6 + 14/3 = 9, C = 0 + 0 + 0 + 3/3 = 1. This agrees with the closed form
    /// of Zhao et al. (2018) for this characteristic function: φ_i = Σ_{T∋i} R(T)/|T|
    /// (A = 10 + 6/2 + 3/3).
    #[test]
    fn shapley_exact_three_channels() {
        let paths = vec![
            p(&["A"], 10.0, 0.0),
            p(&["B"], 5.0, 0.0),
            p(&["B", "A"], 6.0, 0.0),
            p(&["C", "A", "B", "C"], 3.0, 0.0),
            p(&["C"], 0.0, 7.0),
        ];
        let r = shapley(&paths, ShapleyOptions::default());
        assert_eq!(r.method, ShapleyMethod::Exact);
        assert!((credit(&r.channels, "A") - 14.0).abs() < 1e-9, "{r:?}");
        assert!((credit(&r.channels, "B") - 9.0).abs() < 1e-9, "{r:?}");
        assert!((credit(&r.channels, "C") - 1.0).abs() < 1e-9, "{r:?}");
        assert!((r.total_conversions - 24.0).abs() < 1e-12);
    }

    /// Two channels: {A} 1 conversion, {A,B} 1. v(A)=1, v(B)=0, v(AB)=2. φ_A = ½·1 + ½·(2−0) = 1.5,
    /// φ_B = ½·0 + ½·(2−1) = 0.5.
    #[test]
    fn shapley_exact_two_channels() {
        let r = shapley(&[p(&["A"], 1.0, 0.0), p(&["A", "B"], 1.0, 0.0)], ShapleyOptions::default());
        assert!((credit(&r.channels, "A") - 1.5).abs() < 1e-12 && (credit(&r.channels, "B") - 0.5).abs() < 1e-12, "{r:?}");
    }

    /// The sampled estimator against published exact figures: the Towards Data Science / tomgorb
    /// example of `shapley_towards_data_science_example` (source output
    /// `{'F': 0.455, 'O': 0.205, 'L': 0.34}`), forced into sampling mode (exact limit 0 instead
    /// of 15). Tolerance from the sample count: each sampled order credits a channel between 0
    /// and v(N) = 1 (the total), so by Hoeffding's inequality the mean of m = 20,000 orders is
    /// within t = 0.02 of the exact value with probability ≥ 1 − 2·exp(−2·m·t²) = 1 − 2·e⁻¹⁶
    /// (≈ 1 − 2·10⁻⁷) per channel. (The seed makes the run deterministic; the bound says the
    /// tolerance is not tuned to it.) Efficiency holds exactly in every sample.
    #[test]
    fn shapley_sampled_estimate_matches_published_exact_values() {
        let sets: [(&[&str], f64); 7] = [
            (&["F"], 0.2),
            (&["O"], 0.1),
            (&["L"], 0.17),
            (&["F", "O"], 0.17),
            (&["F", "L"], 0.3),
            (&["L", "O"], 0.0),
            (&["F", "L", "O"], 0.06),
        ];
        let paths: Vec<PathCount> = sets.iter().map(|(ch, r)| p(ch, *r, 0.0)).collect();
        let m = 20_000;
        for seed in [1u64, 0x7465_6368_6c69_6e65] {
            let opts = ShapleyOptions { permutations: m, seed };
            let r = shapley_up_to(&paths, opts, 0);
            assert_eq!(r.method, ShapleyMethod::Sampled { permutations: m, seed });
            for (name, exact) in [("F", 0.455), ("O", 0.205), ("L", 0.34)] {
                let got = credit(&r.channels, name);
                assert!((got - exact).abs() < 0.02, "{name}: sampled {got}, published {exact}");
            }
            let sum: f64 = r.channels.iter().map(|c| c.conversions).sum();
            assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        }
        // The exact path on the same input gives the published figures (see the test above).
        assert_eq!(shapley_up_to(&paths, ShapleyOptions::default(), 15).method, ShapleyMethod::Exact);
    }

    #[test]
    fn shapley_samples_beyond_fifteen_channels_deterministically() {
        let names: Vec<String> = (0..20).map(|i| format!("ch{i:02}")).collect();
        let mut paths = Vec::new();
        for i in 0..20 {
            let a = names[i].as_str();
            let b = names[(i + 1) % 20].as_str();
            paths.push(p(&[a], 1.0, 0.0));
            paths.push(p(&[a, b], 2.0, 0.0));
        }
        let opts = ShapleyOptions { permutations: 4000, seed: 42 };
        let r = shapley(&paths, opts);
        assert_eq!(r.method, ShapleyMethod::Sampled { permutations: 4000, seed: 42 });
        let sum: f64 = r.channels.iter().map(|c| c.conversions).sum();
        assert!((sum - 60.0).abs() < 1e-9, "{sum}");
        // Exact value by symmetry: each channel 1 + 2·(½+½) = 3; sampling gets close.
        for c in &r.channels {
            assert!((c.conversions - 3.0).abs() < 0.2, "{c:?}");
        }
        assert_eq!(r, shapley(&paths, opts));
    }

    #[test]
    fn empty_inputs() {
        let m = markov(&[]);
        assert!(m.channels.is_empty() && m.total_conversions == 0.0);
        let s = shapley(&[], ShapleyOptions::default());
        assert!(s.channels.is_empty());
    }
}
