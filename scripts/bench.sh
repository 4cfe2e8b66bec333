#!/usr/bin/env bash
# The benchmark harness: one invocation prints one table of this machine's figures, each as an
# absolute and as a ratio to a baseline measured in the same run.
#
#   scripts/bench.sh                 # the HTTP edge and the replay scale curve (~20 minutes)
#   scripts/bench.sh --quick         # short phases and a small curve (a smoke run, ~3 minutes)
#   scripts/bench.sh --write-docs    # also replace the latest run in docs/benchmarks.md and README.md
#
# 1. The HTTP edge: `touchline loadgen` against `touchline serve` (embedded log, SQLite, the
#    aggregator working beside the collector on the same cores), against `touchline collector`
#    alone on the embedded log (the edge itself: decode, validate, durable append), and against
#    the bare axum server `touchline-bare`, which answers the same shapes with nothing behind
#    them (204 after reading a POST body, the 43-byte GIF, a 302). For each shape: the maximum
#    rate, p99 at that maximum, and p99 paced at half of it (coordinated omission corrected).
#    The ratios are touchline's rates over the bare server's. With --kafka the collector also
#    runs against a Kafka broker (tansu, scripts/tansu.sh), reported as a ratio to the
#    collector on the embedded log.
# 2. Clicks kept: `--clicks N` redirects (default 1 000 000) against `touchline collector`, as fast
#    as it answers; after a clean stop (SIGTERM) the clicks in the log are counted and compared
#    with the 302s the load generator received. Every answered redirect must have its click.
# 3. The pipeline at scale: `touchline generate` writes the demo dataset at three sizes straight
#    into a fresh embedded log, then `touchline replay` rebuilds every result from it (log →
#    engine → checkpoints → SQLite), timed, with peak RSS. The ratio is each size's rate over
#    the smallest size's, so a flat curve reads 1.00.
#
# Environment / flags:
#   --duration S        seconds measured per load phase (default 8; --quick 2)
#   --connections N     keep-alive connections of the load generator (default 64)
#   --visitors "A B C"  dataset sizes in visitors, ~9 records each (default "5500 55000 550000",
#                       about 50 k, 500 k and 5 M records; --quick "1100 5500")
#   --replay-limit S    stop a replay after S seconds and report the rate it reached (default 600)
#   --clicks N          redirects of the click-count run (default 1000000; --quick 50000)
#   --kafka             also measure the collector on Kafka (tansu on 127.0.0.1:$TANSU_PORT, default 9092)
#   --skip-edge / --skip-clicks / --skip-scale
#   CARGO_TARGET_DIR    (default ~/.cache/touchline/target)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

DURATION=8
CONNECTIONS=64
VISITORS="5500 55000 550000"
REPLAY_LIMIT=600
WRITE_DOCS=0
SKIP_EDGE=0
SKIP_SCALE=0
SKIP_CLICKS=0
CLICKS=1000000
KAFKA=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) DURATION=2; VISITORS="1100 5500"; REPLAY_LIMIT=120; CLICKS=50000 ;;
    --clicks) CLICKS="$2"; shift ;;
    --skip-clicks) SKIP_CLICKS=1 ;;
    --duration) DURATION="$2"; shift ;;
    --connections) CONNECTIONS="$2"; shift ;;
    --visitors) VISITORS="$2"; shift ;;
    --replay-limit) REPLAY_LIMIT="$2"; shift ;;
    --write-docs) WRITE_DOCS=1 ;;
    --skip-edge) SKIP_EDGE=1 ;;
    --skip-scale) SKIP_SCALE=1 ;;
    --kafka) KAFKA=1 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/touchline/target}"
export RUST_BACKTRACE=0
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
echo "== building the release binaries (touchline, touchline-bare)" >&2
cargo build --release --locked -q -p touchline -p touchline-benches --bin touchline --bin touchline-bare
BIN="$CARGO_TARGET_DIR/release/touchline"
BARE="$CARGO_TARGET_DIR/release/touchline-bare"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/touchline-bench.XXXXXX")"
# Results outlive the run (the work directory is removed at exit): one JSON line per phase.
RESULTS_DIR="${BENCH_RESULTS_DIR:-$HOME/.cache/touchline/bench}"
mkdir -p "$RESULTS_DIR"
RESULTS="$RESULTS_DIR/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
: >"$RESULTS"
echo "== results: $RESULTS" >&2
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

WRITE_KEY="tl_wk_bench_0123456789abcdef"
SECRET_KEY="tl_sk_bench_0123456789abcdef"

# Starts a server command in the background; sets SERVER_URL to the base URL it announces
# ("listening on http://…" on its standard output). Not to be called in a subshell: PIDS
# must see the server.
start_server() {
  local name="$1"; shift
  local out="$WORK/$name.out"
  "$@" >"$out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  local i url
  for ((i = 0; i < 300; i++)); do
    url="$(grep -o 'listening on http://[0-9.:]*' "$out" 2>/dev/null | head -1 | sed 's/listening on //')" || true
    if [ -n "$url" ]; then SERVER_URL="$url"; return 0; fi
    sleep 0.1
  done
  echo "bench.sh: $name did not start; its log:" >&2
  tail -20 "$WORK/$name.err" >&2
  return 1
}

# loadgen URL SERVER SHAPE MODE [RATE]: one phase, its JSON report appended to the results.
loadgen() {
  local url="$1" server="$2" shape="$3" mode="$4" rate="${5:-0}"
  "$BIN" loadgen --url "$url" --write-key "$WRITE_KEY" --secret-key "$SECRET_KEY" --mix "$shape" --batch 100 \
    --connections "$CONNECTIONS" --threads 1 --duration "$DURATION" --warmup 1 --rate "$rate" --identities 1000000 --json \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); r.update(kind="edge", server=sys.argv[1], shape=sys.argv[2], mode=sys.argv[3]); print(json.dumps(r))' \
      "$server" "$shape" "$mode" >>"$RESULTS"
}

max_rate_of() { # SERVER SHAPE → requests/s of its max phase
  python3 - "$RESULTS" "$1" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
r = [x for x in rows if x.get("kind") == "edge" and x["server"] == sys.argv[2] and x["shape"] == sys.argv[3] and x["mode"] == "max"]
print(f'{r[-1]["requests_per_sec"]:.0f}' if r else "0")
PY
}

# start_touchline SERVER DIR: starts `touchline serve` (SERVER touchline), `touchline collector`
# on the embedded log (collector) or on Kafka (kafka) on a fresh data directory; sets SERVER_URL.
start_touchline() {
  local server="$1" dir="$2" role=serve
  local env=(TOUCHLINE_DATA_DIR="$dir" TOUCHLINE_HTTP_ADDR=127.0.0.1:0 TOUCHLINE_WRITE_KEY="$WRITE_KEY"
    TOUCHLINE_SECRET_KEY="$SECRET_KEY" TOUCHLINE_LOG_LEVEL=warn)
  case "$server" in
    collector) role=collector ;;
    kafka) role=collector; env+=(TOUCHLINE_KAFKA_BROKERS="127.0.0.1:${TANSU_PORT:-9092}") ;;
  esac
  start_server "$server" env "${env[@]}" "$BIN" "$role"
}

stop_last_server() {
  local pid="${PIDS[-1]}"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset 'PIDS[-1]'
}

# Each shape against the bare server, then against each touchline started fresh for that shape
# (so one shape's aggregation backlog does not weigh on the next).
edge() {
  local bare_url shape server url max servers="bare collector touchline"
  if [ "$KAFKA" = 1 ]; then
    scripts/tansu.sh start >&2
    servers="$servers kafka"
  fi
  start_server bare "$BARE" 127.0.0.1:0
  bare_url="$SERVER_URL"
  echo "== HTTP edge: bare baseline at $bare_url, $DURATION s per phase" >&2
  for shape in batch single segment pixel redirect; do
    for server in $servers; do
      if [ "$server" = bare ]; then
        url="$bare_url"
      else
        start_touchline "$server" "$WORK/$server-$shape"
        url="$SERVER_URL"
      fi
      echo "   $shape → $server: max, then half of max" >&2
      loadgen "$url" "$server" "$shape" max
      max="$(max_rate_of "$server" "$shape")"
      loadgen "$url" "$server" "$shape" half "$(python3 -c "print(max(1.0, $max / 2))")"
      if [ "$server" != bare ]; then
        stop_last_server
        rm -rf "${WORK:?}/$server-$shape"
      fi
    done
  done
}

# CLICKS redirects against a fresh collector, stopped cleanly, then its log's clicks counted.
clicks() {
  local dir="$WORK/clicks" report lost in_log
  echo "== clicks: $CLICKS redirects, then the clicks in the log counted" >&2
  start_touchline collector "$dir"
  report="$("$BIN" loadgen --url "$SERVER_URL" --secret-key "$SECRET_KEY" --mix redirect --requests "$CLICKS" \
    --connections "$CONNECTIONS" --threads 1 --duration 600 --warmup 0 --identities 1000000 --json)"
  lost="$(curl -sf "$SERVER_URL/metrics" | awk '$1 == "touchline_link_clicks_lost_total" {print $2}')"
  stop_last_server
  in_log="$(TOUCHLINE_DATA_DIR="$dir" TOUCHLINE_LOG_LEVEL=warn "$BIN" tail --topic touchline.link_clicks | wc -l)"
  python3 - "$report" "$in_log" "${lost:-unknown}" "$CLICKS" >>"$RESULTS" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(json.dumps({"kind": "clicks", "requested": int(sys.argv[4]), "acknowledged": r["acknowledged"], "in_log": int(sys.argv[2]),
                  "lost_metric": sys.argv[3], "errors": r["errors"], "seconds": r["seconds"], "requests_per_sec": r["requests_per_sec"]}))
PY
  echo "   $(tail -1 "$RESULTS")" >&2
  rm -rf "$dir"
}

# The replay of one dataset size: generate into a fresh directory, then replay it timed.
scale_point() {
  local visitors="$1" dir="$WORK/scale-$1"
  echo "== scale: generating $visitors visitors" >&2
  local gen
  gen="$(TOUCHLINE_LOG_LEVEL=warn "$BIN" generate --data-dir "$dir" --visitors "$visitors" --quiet --json)"
  python3 -c 'import json,sys; g=json.loads(sys.argv[1]); print("   %d records in %.1f s (%.0f records/s)" % (g["records"], g["seconds"], g["records_per_sec"]))' "$gen" >&2
  echo "   replaying (limit $REPLAY_LIMIT s)" >&2
  local rss_file="$WORK/rss-$visitors" replay log="$RESULTS_DIR/replay-$visitors.log"
  if ! replay="$(TOUCHLINE_DATA_DIR="$dir" TOUCHLINE_LOG_LEVEL=warn /usr/bin/time -f '%M' -o "$rss_file" \
    "$BIN" replay --quiet --json --time-limit "$REPLAY_LIMIT" 2>"$log")"; then
    echo "   the replay failed; its log: $log" >&2
    tail -3 "$log" >&2
    rm -rf "$dir"
    return 0
  fi
  echo "   $(grep -c WARN "$log" || true) warnings in $log" >&2
  python3 - "$gen" "$replay" "$(cat "$rss_file")" "$visitors" >>"$RESULTS" <<'PY'
import json, sys
g, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({"kind": "scale", "visitors": int(sys.argv[4]), "generated": g["records"], "generate_seconds": g["seconds"],
                  "replayed": r["records"], "seconds": r["seconds"], "complete": r["complete"], "peak_rss_kb": int(sys.argv[3]),
                  "stage_seconds": r.get("stage_seconds", {}), "sink_seconds": r.get("sink_seconds", {}),
                  "state_bytes": r.get("state_bytes", 0)}))
PY
  rm -rf "$dir"
}

[ "$SKIP_EDGE" = 1 ] || edge
[ "$SKIP_CLICKS" = 1 ] || clicks
for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
PIDS=()
if [ "$SKIP_SCALE" = 0 ]; then
  for v in $VISITORS; do scale_point "$v"; done
fi

TABLE="$WORK/table.md"
python3 - "$RESULTS" "$(nproc)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$DURATION" "$CONNECTIONS" >"$TABLE" <<'PY'
import json, sys, datetime, platform
rows = [json.loads(l) for l in open(sys.argv[1])]
cores, rev, duration, conns = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"`scripts/bench.sh` at {rev}, {datetime.date.today()}: {cores} cores ({cpu}); server and load generator on the same machine,")
print(f"loopback, {conns} keep-alive connections, one load-generator thread, {duration} s per phase after 1 s of warm-up.")
print()
edge = [r for r in rows if r["kind"] == "edge"]
def get(server, shape, mode):
    m = [r for r in edge if r["server"] == server and r["shape"] == shape and r["mode"] == mode]
    return m[-1] if m else None
def ms(us): return f"{us / 1000:.2f} ms"
labels = {"batch": "`POST /v1/batch`, 100 records", "single": "`POST /v1/events`, 1 record",
          "segment": "Segment `track`/`page`/`identify`, 1 message", "pixel": "`GET /p.gif` impression pixel",
          "redirect": "`GET /l/{code}` redirect"}
def rate(r, shape):
    rec = f" = {r['records_per_sec']:,.0f} records/s" if shape == "batch" else ""
    return f"{r['requests_per_sec']:,.0f} req/s{rec}"
def ratio(a, b):
    return f"{a['requests_per_sec'] / b['requests_per_sec']:.2f}" if a and b and b["requests_per_sec"] else "–"
def p99(*rs):
    return " / ".join(ms(r["latency_us"]["p99"]) if r else "–" for r in rs)
def errors(*rs):
    return sum(r["errors"] for r in rs if r)
if edge:
    print("`serve` is the whole default (the aggregator shares the cores with the collector); `collector` is the edge alone on the")
    print("embedded log (decode, validate, durable append). Ratios are to the bare axum server.")
    print()
    print("| path | `serve` | `collector` | bare axum | ratio serve / collector | p99 at max (serve / collector / bare) | p99 at half of max (serve / collector / bare) | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for shape, label in labels.items():
        t, c, b = get("touchline", shape, "max"), get("collector", shape, "max"), get("bare", shape, "max")
        th, ch, bh = get("touchline", shape, "half"), get("collector", shape, "half"), get("bare", shape, "half")
        if not (t and b):
            continue
        print(f"| {label} | {rate(t, shape)} | {rate(c, shape) if c else '–'} | {rate(b, shape)} | {ratio(t, b)} / {ratio(c, b)} | "
              f"{p99(t, c, b)} | {p99(th, ch, bh)} | {errors(t, th, c, ch)} |")
    print()
    if any(r["server"] == "kafka" for r in edge):
        print("The collector on Kafka (tansu 0.6 on SQLite storage, loopback) against the collector on the embedded log:")
        print()
        print("| path | collector on Kafka | ratio to the embedded log | p99 at max (Kafka / embedded) | p99 at half of max (Kafka / embedded) | errors |")
        print("| --- | --- | --- | --- | --- | --- |")
        for shape, label in labels.items():
            k, c, kh, ch = get("kafka", shape, "max"), get("collector", shape, "max"), get("kafka", shape, "half"), get("collector", shape, "half")
            if k and c:
                print(f"| {label} | {rate(k, shape)} | {ratio(k, c)} | {p99(k, c)} | {p99(kh, ch)} | {errors(k, kh)} |")
        print()
for c in (r for r in rows if r["kind"] == "clicks"):
    kept = "every click kept" if c["in_log"] == c["acknowledged"] else f"{c['acknowledged'] - c['in_log']:,} clicks missing"
    print(f"Clicks kept: {c['acknowledged']:,} redirects answered 302 by `touchline collector` ({c['requests_per_sec']:,.0f} req/s, "
          f"{c['errors']} errors); after a clean stop its log holds {c['in_log']:,} clicks ({kept}; "
          f"`touchline_link_clicks_lost_total` {c['lost_metric']}).")
    print()
scale = [r for r in rows if r["kind"] == "scale"]
if scale:
    base = scale[0]["replayed"] / scale[0]["seconds"] if scale[0]["seconds"] else 0
    print("| `touchline replay` (embedded log → engine → SQLite results, Parquet raw) | records | seconds | records/s | ratio to the smallest | peak RSS | engine state (compressed) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in scale:
        rate = r["replayed"] / r["seconds"] if r["seconds"] else 0
        done = "" if r["complete"] else f" (time limit: {r['replayed']:,} of {r['generated']:,} replayed)"
        print(f"| `generate --visitors {r['visitors']}` | {r['generated']:,} | {r['seconds']:.1f}{done} | {rate:,.0f} | "
              f"{rate / base if base else 0:.2f} | {r['peak_rss_kb'] / 1024:,.0f} MB | {r.get('state_bytes', 0) / 1048576:,.1f} MB |")
    base_stages = ["read", "decode", "engine", "snapshot", "checkpoint", "sinks", "append"]
    stages = list(base_stages)
    for r in scale:
        st, sinks = r.get("stage_seconds", {}), r.get("sink_seconds", {})
        parts = [(f"{name} {rows}", secs) for name, by_rows in sinks.items() if isinstance(by_rows, dict) for rows, secs in by_rows.items()]
        for label, secs in parts:
            st[label] = secs
        stages += [label for label, _ in parts if label not in stages]
    # A sink's part that no replay spent time in (the warehouse's results, SQLite's raw rows
    # when the warehouse holds them) is no column.
    stages = [s for s in stages if s in base_stages or any(r.get("stage_seconds", {}).get(s, 0) >= 0.05 for r in scale)]
    if any(r.get("stage_seconds") for r in scale):
        print()
        print("Where each replay's time went: seconds per aggregator stage, summed over the partitions that run side by side")
        print("(so a row can add up to more than the wall time), and each stage's share of that sum; the last columns split")
        print("`sinks` into each sink's raw rows (written before the checkpoint) and results (after it).")
        print()
        print("| records | " + " | ".join(stages) + " |")
        print("| --- |" + " --- |" * len(stages))
        for r in scale:
            st = r.get("stage_seconds", {})
            total = sum(st.get(s, 0) for s in base_stages) or 1
            cells = [f"{st.get(s, 0):.1f} s ({100 * st.get(s, 0) / total:.0f}%)" for s in stages]
            print(f"| {r['replayed']:,} | " + " | ".join(cells) + " |")
PY
cat "$TABLE"

if [ "$WRITE_DOCS" = 1 ]; then
  python3 - "$TABLE" "$ROOT/docs/benchmarks.md" "$ROOT/README.md" <<'PY'
import sys
table = open(sys.argv[1]).read().strip()
start, end = "<!-- bench.sh output -->", "<!-- /bench.sh output -->"
for path in sys.argv[2:]:
    doc = open(path).read()
    if start not in doc:
        sys.exit(f"{path} has no {start} marker")
    head, rest = doc.split(start, 1)
    tail = rest.split(end, 1)[1] if end in rest else rest
    open(path, "w").write(f"{head}{start}\n{table}\n{end}{tail}")
    print(f"wrote the table into {path}", file=sys.stderr)
PY
fi
