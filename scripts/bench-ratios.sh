#!/usr/bin/env bash
# Prints each criterion group's results as throughput and as a ratio to the group's baseline
# (the function whose name starts with "baseline"), from the last `cargo bench` run.
set -euo pipefail
dir="${CARGO_TARGET_DIR:-$HOME/.cache/touchline/target}/criterion"
[ -d "$dir" ] || { echo "no criterion results under $dir: run cargo bench first" >&2; exit 1; }
python3 - "$dir" <<'PY'
import json, os, sys
root = sys.argv[1]
for group in sorted(os.listdir(root)):
    gdir = os.path.join(root, group)
    if not os.path.isdir(gdir) or group == "report":
        continue
    rows = {}
    for fn in sorted(os.listdir(gdir)):
        est = os.path.join(gdir, fn, "new", "estimates.json")
        bench = os.path.join(gdir, fn, "new", "benchmark.json")
        if not os.path.exists(est):
            continue
        mean = json.load(open(est))["mean"]["point_estimate"]  # ns per iteration
        elems = None
        if os.path.exists(bench):
            t = json.load(open(bench)).get("throughput") or {}
            elems = t.get("Elements")
        rows[fn] = (mean, elems)
    base = next((v for k, v in rows.items() if k.startswith("baseline")), None)
    print(f"{group}:")
    for fn, (mean, elems) in rows.items():
        rate = f"{elems / (mean / 1e9):>12,.0f} records/s" if elems else ""
        ratio = f"{mean / base[0]:6.2f}x the baseline's time" if base else ""
        print(f"  {fn:<34} {mean / 1e3:>10.1f} us/iter {rate}  {ratio}")
PY
