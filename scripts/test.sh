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

# A C compiler is needed by some crates' build scripts.
if ! command -v cc >/dev/null 2>&1; then
  echo "installing a C toolchain (build-essential)"
  apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
fi

# Services: the foundation runs on the embedded log only; Postgres, ClickHouse and the Kafka
# broker (tansu) are installed and started here by the issues that bring their tests.

echo "== cargo test (target dir: $CARGO_TARGET_DIR)"
# --all-targets includes the criterion benches, which run once each in test mode: they keep
# compiling and working without a second (release) build.
cargo test --locked --workspace --all-targets "$@"
