#!/usr/bin/env bash
# Installs (when missing) and starts (when not running) a ClickHouse server on 127.0.0.1:
# HTTP 8123, native 9000. Idempotent: run it as often as you like; it returns once the server
# answers `SELECT 1` over HTTP.
#
#   scripts/clickhouse.sh          # install if missing, start if not running, wait until ready
#   scripts/clickhouse.sh status   # exit 0 when the server answers, 1 otherwise
#   scripts/clickhouse.sh stop     # stop the server this script started (by its pid file)
#
# Environment: CLICKHOUSE_HTTP (default http://127.0.0.1:8123), CLICKHOUSE_CONFIG
# (default /etc/clickhouse-server/config.xml), CLICKHOUSE_WAIT_SECS (default 60).
# The server runs as the `clickhouse` user when that user exists (the Debian package creates
# it) and as the current user otherwise; it listens on the loopback interface only.
set -euo pipefail

HTTP="${CLICKHOUSE_HTTP:-http://127.0.0.1:8123}"
CONFIG="${CLICKHOUSE_CONFIG:-/etc/clickhouse-server/config.xml}"
WAIT="${CLICKHOUSE_WAIT_SECS:-60}"
RUN_DIR="${CLICKHOUSE_RUN_DIR:-/var/run/clickhouse-server}"
PID_FILE="$RUN_DIR/clickhouse-server.pid"

log() { echo "clickhouse.sh: $*" >&2; }

ping_server() {
    local out
    if command -v curl >/dev/null 2>&1; then
        out="$(curl -fsS --max-time 2 "$HTTP/?query=SELECT%201" 2>/dev/null)" || return 1
    elif command -v clickhouse-client >/dev/null 2>&1; then
        out="$(clickhouse-client --host 127.0.0.1 --query 'SELECT 1' 2>/dev/null)" || return 1
    else
        return 1
    fi
    [ "$(echo "$out" | tr -d '[:space:]')" = "1" ]
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else
        log "need root for: $*"; return 1; fi
}

install_server() {
    if command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || [ -x /usr/bin/clickhouse-server ]; then
        return 0
    fi
    log "clickhouse-server not found; installing the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq || log "apt-get update failed; trying the install anyway"
    as_root apt-get install -y -qq clickhouse-server clickhouse-client
}

server_bin() {
    local b
    for b in "$(command -v clickhouse-server 2>/dev/null || true)" /usr/sbin/clickhouse-server /usr/bin/clickhouse-server; do
        if [ -n "$b" ] && [ -x "$b" ]; then echo "$b"; return 0; fi
    done
    log "no clickhouse-server binary after install"
    return 1
}

start_server() {
    local bin user=""
    bin="$(server_bin)"
    if id clickhouse >/dev/null 2>&1; then user=clickhouse; fi
    # Directories of the stock Debian config; created when missing (e.g. a fresh container).
    local d
    for d in /var/lib/clickhouse /var/log/clickhouse-server "$RUN_DIR"; do
        as_root mkdir -p "$d"
        if [ -n "$user" ]; then as_root chown -R "$user:$user" "$d"; fi
    done
    log "starting $bin --config-file=$CONFIG (user: ${user:-$(id -un)})"
    local cmd=("$bin" --config-file="$CONFIG" --pid-file="$PID_FILE" --daemon)
    if [ -n "$user" ] && [ "$(id -un)" != "$user" ]; then
        if command -v runuser >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            runuser -u "$user" -- "${cmd[@]}"
        else
            as_root su -s /bin/sh "$user" -c "$(printf '%q ' "${cmd[@]}")"
        fi
    else
        "${cmd[@]}"
    fi
}

wait_ready() {
    local i
    for ((i = 0; i < WAIT * 4; i++)); do
        if ping_server; then return 0; fi
        sleep 0.25
    done
    log "the server did not answer on $HTTP within ${WAIT}s; see /var/log/clickhouse-server/clickhouse-server.err.log"
    tail -n 20 /var/log/clickhouse-server/clickhouse-server.err.log >&2 2>/dev/null || true
    return 1
}

case "${1:-start}" in
    status)
        if ping_server; then echo "clickhouse: running on $HTTP"; exit 0; fi
        echo "clickhouse: not running on $HTTP"; exit 1 ;;
    stop)
        if [ -f "$PID_FILE" ]; then
            pid="$(cat "$PID_FILE")"
            as_root kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            log "stopped (pid $pid)"
        else
            log "no pid file at $PID_FILE; nothing to stop"
        fi ;;
    start)
        if ping_server; then echo "clickhouse: already running on $HTTP"; exit 0; fi
        install_server
        # A stale pid file from a crashed server makes --daemon refuse to start.
        if [ -f "$PID_FILE" ] && ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then as_root rm -f "$PID_FILE"; fi
        if [ -f "$PID_FILE" ]; then
            log "a server process ($(cat "$PID_FILE")) exists but does not answer yet; waiting"
        else
            start_server
        fi
        wait_ready
        echo "clickhouse: running on $HTTP ($(curl -fsS --max-time 2 "$HTTP/?query=SELECT%20version()" 2>/dev/null || echo '?'))" ;;
    *)
        echo "usage: $0 [start|status|stop]" >&2; exit 2 ;;
esac
