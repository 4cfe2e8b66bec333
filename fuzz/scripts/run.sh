#!/usr/bin/env bash
# Runs one fuzz target the way the runs in fuzz/README.md were made: one job, one worker, nice'd,
# for SECONDS (default 600), on its own target dir, then prints libFuzzer's final counts.
#
#   fuzz/scripts/run.sh TARGET [SECONDS]
#
# New corpus entries go to $FUZZ_WORK/TARGET (default ~/.cache/touchline/fuzz-corpus/TARGET), not
# into the checked-in seeds; the seeds (fuzz/corpus/TARGET) and the regressions
# (fuzz/regressions/TARGET) are read as extra corpus dirs, so a regression fails the run at once.
# The libFuzzer log ends up in $FUZZ_LOGS/TARGET.log (default ~/.cache/touchline/fuzz-logs).
set -euo pipefail
target=${1:?usage: fuzz/scripts/run.sh TARGET [SECONDS]}
secs=${2:-600}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/touchline/fuzz-target}
work=${FUZZ_WORK:-$HOME/.cache/touchline/fuzz-corpus}/$target
logs=${FUZZ_LOGS:-$HOME/.cache/touchline/fuzz-logs}
mkdir -p "$work" "$logs"
dirs=("$work" "fuzz/corpus/$target")
if [ -d "fuzz/regressions/$target" ]; then dirs+=("fuzz/regressions/$target"); fi
nice -n 10 cargo fuzz build "$target"
rc=0
# -jobs=1 -workers=1: libFuzzer runs the fuzzer as one child process whose output goes to
# ./fuzz-0.log; it is moved to $logs afterwards.
nice -n 10 cargo fuzz run "$target" "${dirs[@]}" -- -jobs=1 -workers=1 -max_total_time="$secs" -print_final_stats=1 \
  >"$logs/$target.cargo.log" 2>&1 || rc=$?
if [ -f fuzz-0.log ]; then mv fuzz-0.log "$logs/$target.log"; else cp "$logs/$target.cargo.log" "$logs/$target.log"; fi
grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$logs/$target.log" || true
echo "corpus entries in $work: $(find "$work" -type f | wc -l)"
if [ "$rc" -ne 0 ] || grep -qE 'ERROR: libFuzzer|panicked at|SUMMARY: AddressSanitizer' "$logs/$target.log"; then
  echo "FAILED: see $logs/$target.log and fuzz/artifacts/$target/" >&2
  exit 1
fi
