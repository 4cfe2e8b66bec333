#!/usr/bin/env bash
# Prints each criterion group's results from the last `cargo bench` run: time per iteration,
# throughput, and the ratio of each function's time to its baseline's, naming that baseline.
#
# Baselines are the functions named `baseline` or `baseline_<words>`. Each other function is
# paired with one of its group's baselines by this rule:
#
#   1. the baseline whose name shares the most trailing `_`-separated words with the function's
#      name (at least one word; the leading `baseline` does not count). So in one group
#      `baseline_clone_paths_in_state` pairs with `attribute_paths_in_state`, and
#      `baseline_file_group_commit` with `embedded_log_group_commit`. A tie is ambiguous;
#   2. otherwise the group's default baseline: its only baseline; among several, the one named
#      exactly `baseline`, else the only one whose name shares no trailing word with any
#      function of the group;
#   3. otherwise no ratio is printed, with the reason (a pairing is never guessed).
#
# So a group with one baseline needs no naming care, and a group with several names each
# extra baseline after the tail of the function it is for.
#
# Results are read from $CARGO_TARGET_DIR/criterion (default ~/.cache/touchline/target, as in
# scripts/test.sh). A function whose result is older than its group's newest result by more than
# BENCH_RATIOS_STALE_SECS (default 1800) comes from an earlier run (e.g. a function since
# renamed): it is listed as stale and never compared, so a ratio never pairs a new result with
# an old one. (A run filtered to some functions of a group is still compared with the group's
# other results of the last BENCH_RATIOS_STALE_SECS: rerun whole groups.)
#
# Time per iteration is criterion's slope estimate (the `time:` figure it prints), or its mean
# where there is no slope (flat sampling). Throughput is printed in the unit criterion was given:
# records/s for Elements, MiB/s for Bytes, MB/s for BytesDecimal, Mbit/s for Bits; nothing when
# the group set none.
set -euo pipefail
dir="${CARGO_TARGET_DIR:-$HOME/.cache/touchline/target}/criterion"
[ -d "$dir" ] || { echo "no criterion results under $dir: run cargo bench first" >&2; exit 1; }
python3 - "$dir" "${BENCH_RATIOS_STALE_SECS:-1800}" <<'PY'
import json, os, sys

root, stale_secs = sys.argv[1], float(sys.argv[2])


def load(path):
    with open(path) as f:
        return json.load(f)


# group -> {function: (ns per iteration, throughput dict or None, mtime)}
groups = {}
for cur, dirs, files in os.walk(root):
    dirs[:] = [d for d in dirs if d not in ("report", "base", "change")]
    if os.path.basename(cur) != "new" or "estimates.json" not in files or "benchmark.json" not in files:
        continue
    est, bench = os.path.join(cur, "estimates.json"), os.path.join(cur, "benchmark.json")
    b = load(bench)
    fn = b.get("function_id") or b.get("title") or os.path.basename(os.path.dirname(cur))
    if b.get("value_str"):
        fn = f"{fn}/{b['value_str']}"
    e = load(est)
    # ns per iteration: criterion's slope estimate when it has one (the `time:` it prints under
    # linear sampling), else the mean (flat sampling).
    mean = (e.get("slope") or e["mean"])["point_estimate"]
    groups.setdefault(b.get("group_id") or "?", {})[fn] = (mean, b.get("throughput"), os.path.getmtime(est))


def is_baseline(fn):
    return fn == "baseline" or fn.startswith("baseline_")


def shared_tail(fn, base):
    """Trailing `_`-separated words `fn` shares with the baseline `base` (minus `baseline`)."""
    a, b = fn.split("_"), base.split("_")[1:]
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def pair(fn, baselines, functions):
    """(baseline, None) or (None, why no ratio)."""
    if not baselines:
        return None, "no baseline in this group"
    scores = {b: shared_tail(fn, b) for b in baselines}
    best = max(scores.values())
    if best > 0:
        top = [b for b, s in scores.items() if s == best]
        if len(top) == 1:
            return top[0], None
        return None, f"ambiguous: {', '.join(sorted(top))} share as long a tail with it"
    if len(baselines) == 1:
        return baselines[0], None
    if "baseline" in baselines:
        return "baseline", None
    unclaimed = [b for b in baselines if all(shared_tail(f, b) == 0 for f in functions)]
    if len(unclaimed) == 1:
        return unclaimed[0], None
    return None, f"ambiguous: {len(baselines)} baselines and none named after this function's tail (see the rule in scripts/bench-ratios.sh)"


def rate(mean_ns, t):
    if not t:
        return ""
    per_s = 1e9 / mean_ns
    (kind, v), = t.items()
    if kind == "Elements":
        return f"{v * per_s:>14,.0f} records/s"
    if kind == "ElementsAndBytes":
        return f"{v['elements'] * per_s:>14,.0f} records/s ({v['bytes'] * per_s / 2**20:,.1f} MiB/s)"
    if kind == "Bytes":
        return f"{v * per_s / 2**20:>14,.1f} MiB/s"
    if kind == "BytesDecimal":
        return f"{v * per_s / 1e6:>14,.1f} MB/s"
    if kind == "Bits":
        return f"{v * per_s / 1e6:>14,.1f} Mbit/s"
    return ""


for group in sorted(groups):
    rows = groups[group]
    newest = max(r[2] for r in rows.values())
    fresh = {fn: r for fn, r in rows.items() if newest - r[2] <= stale_secs}
    baselines = sorted(fn for fn in fresh if is_baseline(fn))
    functions = [fn for fn in fresh if not is_baseline(fn)]
    width = max(34, *(len(fn) for fn in rows))
    print(f"{group}:")
    for fn in sorted(rows, key=lambda f: (not is_baseline(f), f)):
        mean, t, mtime = rows[fn]
        line = f"  {fn:<{width}} {mean / 1e3:>12.1f} us/iter {rate(mean, t):>26}"
        if fn not in fresh:
            print(f"{line}  stale: {(newest - mtime) / 60:.0f} min older than the group's last run, not compared")
        elif is_baseline(fn):
            print(f"{line}  (baseline)")
        else:
            base, why = pair(fn, baselines, functions)
            if base is None:
                print(f"{line}  no ratio: {why}")
            else:
                print(f"{line}  {mean / fresh[base][0]:6.2f}x the time of {base}")
PY
