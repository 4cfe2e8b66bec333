#!/usr/bin/env python3
"""What one `campaign_attributions` row costs SQLite itself, without touchline around it.

Creates a fresh database from migrations/sqlite (WAL, synchronous=NORMAL, as SqliteStore opens
it) and inserts attribution rows shaped like a replay's: 7 models x 3 touches per conversion,
text ids as touchline writes them, in transactions of 20,000 rows. It prints the time per row
for each way of writing them:

  upsert   one prepared single-row INSERT ... ON CONFLICT DO UPDATE (what the store's statement does)
  plain    the same INSERT without ON CONFLICT
  indexed  the upsert with a secondary index by (account, model, campaign) added, as Postgres has
  floor    the same rows into a table with the same columns and no key or index, in memory:
           Python's and SQLite's least cost per row, which the others include

Usage: scripts/sqlite-row-cost.py [CONVERSIONS] (default 28,000: about 588,000 rows, as in a
replay of `generate --visitors 55000`). Python's own per-row cost is included, so these are upper
bounds on SQLite's share.
"""
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = ["first_touch", "last_touch", "linear", "time_decay", "position_based", "last_non_direct", "markov"]
COLS = ("account_id, conversion_id, touchpoint_id, attribution_model, version, campaign_id, advertisement_id, customer_id, "
        "touchpoint_type, touchpoint_timestamp, channel_id, conversion_time, conversion_value, currency, weight, attributed_revenue")
UPDATED = ["version", "campaign_id", "advertisement_id", "customer_id", "touchpoint_type", "touchpoint_timestamp", "channel_id",
           "conversion_time", "conversion_value", "currency", "weight", "attributed_revenue"]
ON_CONFLICT = (
    " ON CONFLICT (account_id, conversion_id, attribution_model, touchpoint_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in UPDATED)
    + ", updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE campaign_attributions.version <= excluded.version AND NOT ("
    + " AND ".join(f"campaign_attributions.{c} IS excluded.{c}" for c in UPDATED)
    + ")"
)
PER_TRANSACTION = 20_000


def open_db(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    migrations = os.path.join(ROOT, "migrations", "sqlite")
    for name in sorted(os.listdir(migrations)):
        db.executescript(open(os.path.join(migrations, name)).read())
    return db


def attribution_rows(account, conversions):
    rows = []
    for i in range(conversions):
        conversion = f"order:purchase:{uuid.uuid4()}"
        touches = [str(uuid.uuid4()) for _ in range(3)]
        for model in MODELS:
            for touch in touches:
                rows.append((account, conversion, touch, model, 1, f"campaign-{random.randint(0, 20)}", None, f"customer-{i}",
                             "click", "2026-11-01T00:00:00.000000Z", "paid_search", "2026-11-02T00:00:00.000000Z", "10.00", "USD",
                             1 / 3, "3.333333"))
    return rows


def run(variant, conversions):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.db")
        db = open_db(path)
        account = str(uuid.uuid4())
        db.execute("INSERT INTO accounts (id, name) VALUES (?, 'bench')", (account,))
        table = "campaign_attributions"
        if variant == "indexed":
            db.execute("CREATE INDEX campaign_attributions_campaign ON campaign_attributions (account_id, attribution_model, campaign_id)")
        if variant == "floor":
            db.execute("ATTACH ':memory:' AS mem")
            db.execute(f"CREATE TABLE mem.floor ({COLS})")
            table = "mem.floor"
        sql = f"INSERT INTO {table} ({COLS}) VALUES ({', '.join('?' * 16)})"
        if variant in ("upsert", "indexed"):
            sql += ON_CONFLICT
        rows = attribution_rows(account, conversions)
        started = time.perf_counter()
        for start in range(0, len(rows), PER_TRANSACTION):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(sql, rows[start:start + PER_TRANSACTION])
            db.execute("COMMIT")
        seconds = time.perf_counter() - started
        print(f"{variant:8} {len(rows):>9,} rows  {seconds:6.2f} s  {seconds / len(rows) * 1e6:5.1f} us/row")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 28_000
    for v in ("upsert", "plain", "indexed", "floor"):
        run(v, n)
