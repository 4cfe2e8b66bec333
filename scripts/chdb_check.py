#!/usr/bin/env python3
"""The current-dialect check: runs every DDL file under clickhouse/ (extras included, in the
order `touchline migrate` applies them), the fixed BI dataset, and every BI example query
through chdb, the embedded current ClickHouse engine. Exits non-zero naming the file that
fails. The real server of this machine (18.16) is covered by the Rust tests; this covers
today's dialect.

    $HOME/.cache/touchline/venv/bin/python scripts/chdb_check.py [-v]

When chdb is missing from the interpreter running this script, it is pip-installed into that
interpreter's environment first (the venv above).
"""

import glob
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CH = os.path.join(ROOT, "clickhouse")
VERBOSE = "-v" in sys.argv[1:]


# What each example returns on the fixed dataset (clickhouse/testdata/bi_dataset.sql), worked
# out by hand there; crates/touchline-clickhouse/tests/bi.rs expects the same on the real server.
# Numbers compare numerically (decimal formatting differs between versions); \N is NULL.
EXPECTED = {
    "01_daily_report_per_campaign.sql": [
        "2026-03-01 spring 250 20 105 2.381 4 120 45 0.08 2.25 180 11.25 2.6667",
        "2026-03-02 spring 200 20 100 2 4 100 40 0.1 2 200 10 2.5",
        "2026-03-02 summer 0 0 0 \\N 0 0 0 \\N \\N \\N \\N \\N",
    ],
    "02_attribution_by_model.sql": [
        "first_touch spring 2 160",
        "last_touch (none) 1 0",
        "last_touch spring 1 60",
        "last_touch summer 1 100",
        "linear spring 1.5 110",
        "linear summer 0.5 50",
        "markov spring 1.25 85",
        "markov summer 0.75 75",
    ],
    "03_models_side_by_side.sql": [
        " 0 1 0 0 0 0 0 0 0 0",
        "spring 2 1 0 1.5 0 0 1.25 0 60 110",
        "summer 0 1 0 0.5 0 0 0.75 0 100 50",
    ],
    "04_funnel.sql": ["4 2 1"],
    "05_link_clicks_per_day.sql": [
        "2026-03-01 spring1 3 2 2 2",
        "2026-03-01 summer1 1 1 1 1",
        "2026-03-02 spring1 2 2 1 1",
    ],
}


def same(tsv, expected):
    """Compares TSV output with expected rows (fields separated by one space), numbers by value."""
    rows = [line.split("\t") for line in tsv.rstrip("\n").split("\n")] if tsv.strip() else []
    want = [line.split(" ") for line in expected]
    if len(rows) != len(want):
        return False
    for got, exp in zip(rows, want):
        if len(got) != len(exp):
            return False
        for g, e in zip(got, exp):
            try:
                if abs(float(g) - float(e)) > 1e-9 * max(1.0, abs(float(e))):
                    return False
            except ValueError:
                if g != e:
                    return False
    return True


def ensure_chdb():
    try:
        import chdb  # noqa: F401
    except ImportError:
        print("chdb_check: chdb is not installed in %s; installing it with pip" % sys.prefix, file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "chdb"])


def requires(sql):
    """The `-- requires: MAJOR.MINOR` header of a file (leading comment block), or None."""
    for line in sql.splitlines():
        t = line.strip()
        if not t:
            continue
        if not t.startswith("--"):
            break
        m = re.match(r"--\s*requires:\s*(\d+)\.(\d+)", t)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def migration_files():
    base = sorted(glob.glob(os.path.join(CH, "[0-9][0-9][0-9][0-9]_*.sql")))
    extras = sorted(glob.glob(os.path.join(CH, "extras", "[0-9][0-9][0-9][0-9]_*.sql")))
    return base + extras


def main():
    ensure_chdb()
    from chdb import session

    started = time.time()
    s = session.Session()
    failures = []

    def run(path, sql, fmt="TSV"):
        rel = os.path.relpath(path, ROOT)
        try:
            out = s.query(sql, fmt)
        except Exception as e:  # chdb raises its own error types
            failures.append(rel)
            print("FAIL %s\n  %s" % (rel, str(e).strip().replace("\n", "\n  ")), file=sys.stderr)
            return None
        text = out.bytes().decode() if hasattr(out, "bytes") else str(out)
        if VERBOSE:
            print("ok   %s\n%s" % (rel, text.rstrip()))
        return text

    version_text = str(s.query("SELECT version()", "TSVRaw")).strip()
    version = tuple(int(x) for x in version_text.split(".")[:2])
    s.query("CREATE DATABASE IF NOT EXISTS touchline")

    ddl = migration_files()
    for path in ddl:
        sql = open(path, encoding="utf-8").read()
        need = requires(sql)
        if need and version < need:
            failures.append(os.path.relpath(path, ROOT))
            print("FAIL %s requires %d.%d but chdb embeds %s" % (os.path.relpath(path, ROOT), need[0], need[1], version_text), file=sys.stderr)
            continue
        run(path, sql)
    if failures:
        print("chdb_check: %d file(s) failed: %s" % (len(failures), ", ".join(failures)), file=sys.stderr)
        return 1

    dataset = os.path.join(CH, "testdata", "bi_dataset.sql")
    run(dataset, open(dataset, encoding="utf-8").read())

    examples = sorted(glob.glob(os.path.join(CH, "examples", "*.sql")))
    for path in examples:
        out = run(path, open(path, encoding="utf-8").read())
        name = os.path.basename(path)
        rel = os.path.relpath(path, ROOT)
        if out is None:
            continue
        if name not in EXPECTED:
            failures.append(rel)
            print("FAIL %s has no expected result in scripts/chdb_check.py" % rel, file=sys.stderr)
        elif not same(out, EXPECTED[name]):
            failures.append(rel)
            print("FAIL %s returned\n%s\nexpected (fields separated by spaces)\n%s" % (rel, out.rstrip(), "\n".join(EXPECTED[name])), file=sys.stderr)

    # The views over an empty and a populated database both answer.
    for view in ("campaign_daily_report", "attributions_current", "attribution_model_comparison"):
        run(os.path.join(CH, "0003_reports.sql"), "SELECT count() FROM touchline.%s" % view)

    if failures:
        print("chdb_check: %d file(s) failed: %s" % (len(failures), ", ".join(failures)), file=sys.stderr)
        return 1
    print("chdb_check: ok — %d DDL files, the BI dataset and %d examples on ClickHouse %s (chdb) in %.1fs"
          % (len(ddl), len(examples), version_text, time.time() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
