#!/usr/bin/env bash
# Runs touchline's whole test suite. Installs and starts what the tests need when missing
# (it may find it already there). CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# One shared, cached build directory outside the clone: CI reuses it between runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/touchline/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR"

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "cargo is not installed: install Rust with rustup (https://rustup.rs) and re-run" >&2
    exit 1
  fi
fi

# Format and lint first: they take seconds and fail the run before the long part does.
echo "== cargo fmt --check"
if ! cargo fmt --all --check; then
  echo "the code is not formatted: run \`cargo fmt --all\` and commit the result" >&2
  exit 1
fi

# A C compiler is needed by some crates' build scripts.
if ! command -v cc >/dev/null 2>&1; then
  echo "installing a C toolchain (build-essential)"
  apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
fi

echo "== cargo clippy -D warnings"
if ! cargo clippy --workspace --all-targets --locked -- -D warnings; then
  echo "clippy found warnings: fix them (\`cargo clippy --workspace --all-targets --fix\` mends many) and re-run" >&2
  exit 1
fi

# Postgres: the SQL store tests and the end-to-end/crash tests use a real server at
# 127.0.0.1:5432 (user postgres, trust auth on loopback). Install and start it when missing.
pg_ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; }
if ! pg_ready; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "== installing PostgreSQL"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  ver=$(ls /etc/postgresql | sort -n | tail -1)
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  if ! grep -q "touchline-tests" "$hba"; then
    # Trust on loopback for the tests, as on the development machines.
    sed -i '1i host all all 127.0.0.1/32 trust # touchline-tests\nhost all all ::1/128 trust # touchline-tests' "$hba"
  fi
  echo "== starting PostgreSQL $ver"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster "$ver" main start
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
pg_ready || { echo "PostgreSQL is not reachable at 127.0.0.1:5432" >&2; exit 1; }
export TOUCHLINE_TEST_PG="${TOUCHLINE_TEST_PG:-postgres://postgres@127.0.0.1:5432}"

# ClickHouse: Debian's server (18.16), installed and started on 127.0.0.1:8123 when missing.
echo "== ClickHouse"
scripts/clickhouse.sh
export TOUCHLINE_TEST_CLICKHOUSE="${TOUCHLINE_TEST_CLICKHOUSE:-http://127.0.0.1:8123}"

# Python (a third-party Kafka client for the interop test, chdb for the current ClickHouse
# dialect, ChannelAttribution as the reference Markov model), in a venv cached outside the clone.
VENV="${TOUCHLINE_VENV:-$HOME/.cache/touchline/venv}"
if ! "$VENV/bin/python" -c "import confluent_kafka, chdb, duckdb, ChannelAttribution" >/dev/null 2>&1; then
  echo "== installing Python test packages into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet -r scripts/requirements-test.txt
fi
export TOUCHLINE_TEST_PYTHON="${TOUCHLINE_TEST_PYTHON:-$VENV/bin/python}"

# Kafka protocol: tansu, built once with cargo (~20 min on 2 cores) and cached in
# ~/.cache/touchline/tansu, started on 127.0.0.1:9092 (SQLite storage, see scripts/tansu.sh), stopped at the end
# when this script started it. Tests that restart a broker start their own (TOUCHLINE_TANSU_BIN).
echo "== Kafka broker (tansu)"
if [ -z "${TOUCHLINE_TANSU_BIN:-}" ]; then
  # A plain `export X="$(cmd)"` would succeed whatever cmd's status: build first, then read the
  # path, so a failed build stops here with the tail of its log (tansu.sh prints it).
  tansu_out="$(scripts/tansu.sh build)" || { echo "building tansu failed (see above)" >&2; exit 1; }
  TOUCHLINE_TANSU_BIN="$(printf '%s\n' "$tansu_out" | tail -1)"
fi
[ -x "$TOUCHLINE_TANSU_BIN" ] || { echo "tansu binary not found at $TOUCHLINE_TANSU_BIN" >&2; exit 1; }
export TOUCHLINE_TANSU_BIN
started_tansu=0
if ! scripts/tansu.sh status >/dev/null 2>&1; then
  scripts/tansu.sh start
  started_tansu=1
fi
trap 'if [ "$started_tansu" = 1 ]; then scripts/tansu.sh stop || true; fi' EXIT
export TOUCHLINE_TEST_KAFKA="${TOUCHLINE_TEST_KAFKA:-127.0.0.1:9092}"

echo "== cargo test (target dir: $CARGO_TARGET_DIR)"
# --all-targets includes the criterion benches, which run once each in test mode: they keep
# compiling and working without a second (release) build.
cargo test --locked --workspace --all-targets "$@"

echo "== hostile-input probes (scripts/probe.sh) against a server started for them"
probe_dir="$(mktemp -d)"
probe_wk="tl_wk_probe_$(date +%s)_000000"
probe_sk="tl_sk_probe_$(date +%s)_000000"
TOUCHLINE_DATA_DIR="$probe_dir/data" TOUCHLINE_HTTP_ADDR=127.0.0.1:0 TOUCHLINE_LOG_LEVEL=warn \
  TOUCHLINE_WRITE_KEY="$probe_wk" TOUCHLINE_SECRET_KEY="$probe_sk" \
  TOUCHLINE_COLLECTOR__HEADER_READ_TIMEOUT_MS=2000 TOUCHLINE_COLLECTOR__BODY_READ_TIMEOUT_MS=3000 \
  TOUCHLINE_COLLECTOR__IDLE_TIMEOUT_MS=3000 TOUCHLINE_COLLECTOR__MAX_CONNECTIONS=50 \
  "$CARGO_TARGET_DIR/debug/touchline" serve >"$probe_dir/serve.out" 2>"$probe_dir/serve.err" &
probe_pid=$!
probe_url=""
for _ in $(seq 1 100); do
  probe_url="$(grep -o 'listening on http://[0-9.:]*' "$probe_dir/serve.out" 2>/dev/null | head -1 | sed 's/listening on //')" || true
  [ -n "$probe_url" ] && break
  sleep 0.2
done
[ -n "$probe_url" ] || { echo "the probe server did not start:" >&2; tail -20 "$probe_dir/serve.err" >&2; kill "$probe_pid"; exit 1; }
probe_status=0
PROBE_HEADER_TIMEOUT_SECS=2 PROBE_BODY_TIMEOUT_SECS=3 PROBE_IDLE_TIMEOUT_SECS=3 PROBE_MAX_CONNECTIONS=50 \
  timeout 120 scripts/probe.sh "$probe_url" "$probe_wk" "$probe_sk" || probe_status=$?
kill "$probe_pid" 2>/dev/null || true
wait "$probe_pid" 2>/dev/null || true
rm -rf "$probe_dir"
[ "$probe_status" = 0 ] || { echo "hostile-input probes failed" >&2; exit 1; }

echo "== ClickHouse current dialect (chdb): every DDL file and BI query"
"$TOUCHLINE_TEST_PYTHON" scripts/chdb_check.py
