#!/usr/bin/env bash
# A Kafka-compatible broker for the tests: tansu (https://github.com/tansu-io/tansu), built once
# with cargo and cached outside the clone, started on the loopback interface.
#
#   scripts/tansu.sh [start]   # build tansu if missing, start a broker if none answers, wait until ready
#   scripts/tansu.sh status    # exit 0 when the broker answers, 1 otherwise
#   scripts/tansu.sh stop      # stop the broker this script started (by its pid file)
#   scripts/tansu.sh build     # only make sure the binary exists; prints its path
#
# Environment:
#   TANSU_PORT      (default 9092)  the broker listens on 127.0.0.1:$TANSU_PORT
#   TANSU_STORAGE   (default sqlite://tansu-$PORT.db, relative to TANSU_RUN_DIR; a new broker
#                   process starts from an empty file). memory://tansu/ also works but tansu
#                   0.6's memory engine answers ListOffsets(latest) with the base offset of the
#                   newest batch + 1, which is wrong for batches of several records, so the end
#                   offsets touchline relies on would be wrong.
#   TANSU_ROOT      (default ~/.cache/touchline/tansu)  cargo install root; binary at $TANSU_ROOT/bin/tansu
#   TANSU_BIN       (default $TANSU_ROOT/bin/tansu)
#   TANSU_RUN_DIR   (default ~/.cache/touchline/run)  pid file tansu-$PORT.pid, log tansu-$PORT.log
#   TANSU_WAIT_SECS (default 30)
# The tests read the broker address from TOUCHLINE_TEST_KAFKA (default 127.0.0.1:9092).
set -euo pipefail

CACHE="${TOUCHLINE_CACHE:-$HOME/.cache/touchline}"
PORT="${TANSU_PORT:-9092}"
STORAGE="${TANSU_STORAGE:-sqlite://tansu-$PORT.db}"
ROOT="${TANSU_ROOT:-$CACHE/tansu}"
BIN="${TANSU_BIN:-$ROOT/bin/tansu}"
RUN_DIR="${TANSU_RUN_DIR:-$CACHE/run}"
WAIT="${TANSU_WAIT_SECS:-30}"
VERSION=0.6.0
PID_FILE="$RUN_DIR/tansu-$PORT.pid"
LOG_FILE="$RUN_DIR/tansu-$PORT.log"

log() { echo "tansu.sh: $*" >&2; }

answers() {
    # A TCP connect is enough: tansu accepts once its listener and storage are up.
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

build() {
    if [ -x "$BIN" ]; then return 0; fi
    command -v cargo >/dev/null 2>&1 || { [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"; } || {
        log "cargo is needed to build tansu; install Rust with rustup"; return 1; }
    mkdir -p "$ROOT" "$CACHE/logs"
    # One build at a time, even when several test runs start together.
    exec 9>"$ROOT/.build.lock"
    flock 9
    if [ -x "$BIN" ]; then return 0; fi
    log "building tansu $VERSION (once; 20-40 minutes) into $ROOT; log: $CACHE/logs/tansu-build.log"
    CARGO_TARGET_DIR="${TANSU_TARGET_DIR:-$CACHE/tansu-target}" \
        cargo install tansu --version "$VERSION" --locked --features dynostore,libsql --root "$ROOT" \
        >"$CACHE/logs/tansu-build.log" 2>&1 || { tail -n 30 "$CACHE/logs/tansu-build.log" >&2; log "tansu build failed"; return 1; }
    [ -x "$BIN" ] || { log "the build finished but $BIN is missing"; return 1; }
}

start() {
    if answers; then echo "tansu: already answering on 127.0.0.1:$PORT"; return 0; fi
    build
    mkdir -p "$RUN_DIR"
    if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
        # Starting up, or on its way out (stopped a moment ago): give it a few seconds.
        local old j
        old="$(cat "$PID_FILE")"
        log "a broker process ($old) exists but does not answer yet; waiting"
        for ((j = 0; j < 50; j++)); do
            if answers; then echo "tansu: running on 127.0.0.1:$PORT (pid $old)"; return 0; fi
            kill -0 "$old" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$old" 2>/dev/null; then
            log "it still does not answer; stopping it and starting a new one"
            kill "$old" 2>/dev/null || true
            for ((j = 0; j < 100; j++)); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$old" 2>/dev/null || true
        fi
        rm -f "$PID_FILE"
    fi
    if [ ! -f "$PID_FILE" ]; then
        # A test broker starts empty (topics of earlier runs would only pile up).
        case "$STORAGE" in
            sqlite://*) rm -f "$RUN_DIR/${STORAGE#sqlite://}" "$RUN_DIR/${STORAGE#sqlite://}"-wal "$RUN_DIR/${STORAGE#sqlite://}"-shm ;;
        esac
        log "starting $BIN broker on 127.0.0.1:$PORT, storage $STORAGE; log: $LOG_FILE"
        (
            cd "$RUN_DIR"
            RUST_LOG="${RUST_LOG:-warn}" nohup "$BIN" broker \
                --cluster-id touchline \
                --listener-url "tcp://127.0.0.1:$PORT" \
                --advertised-listener-url "tcp://127.0.0.1:$PORT" \
                --storage-engine "$STORAGE" \
                >>"$LOG_FILE" 2>&1 </dev/null &
            echo $! >"$PID_FILE"
        )
    fi
    local i
    for ((i = 0; i < WAIT * 10; i++)); do
        if answers; then echo "tansu: running on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"), storage $STORAGE)"; return 0; fi
        if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
            log "the broker exited; last lines of $LOG_FILE:"; tail -n 20 "$LOG_FILE" >&2 || true; return 1
        fi
        sleep 0.1
    done
    log "the broker did not answer on 127.0.0.1:$PORT within ${WAIT}s; see $LOG_FILE"
    return 1
}

stop() {
    if [ ! -f "$PID_FILE" ]; then log "no pid file at $PID_FILE; nothing to stop"; return 0; fi
    local pid
    pid="$(cat "$PID_FILE")"
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
        log "stopped (pid $pid)"
    fi
    rm -f "$PID_FILE"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    build) build; echo "$BIN" ;;
    status)
        if answers; then echo "tansu: answering on 127.0.0.1:$PORT"; exit 0; fi
        echo "tansu: not answering on 127.0.0.1:$PORT"; exit 1 ;;
    *) echo "usage: $0 [start|status|stop|build]" >&2; exit 2 ;;
esac
