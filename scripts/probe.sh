#!/usr/bin/env bash
# Fires hostile requests of every class of issue 17 at a running touchline server and prints
# PASS/FAIL per probe; exits 1 when any probe fails. Loopback only; a few hundred requests and
# about a minute at most.
#
#   scripts/probe.sh BASE WRITE_KEY SECRET_KEY
#   scripts/probe.sh http://127.0.0.1:8080 tl_wk_… tl_sk_…
#
# The slow-client probes need to know the server's limits (defaults: the server's defaults):
#   PROBE_HEADER_TIMEOUT_SECS (10)  collector.header_read_timeout_ms / 1000
#   PROBE_BODY_TIMEOUT_SECS   (30)  collector.body_read_timeout_ms / 1000
#   PROBE_IDLE_TIMEOUT_SECS   (60)  collector.idle_timeout_ms / 1000
#   PROBE_MAX_CONNECTIONS     (0)   collector.max_connections; 0 skips the connection-limit probe
#   PROBE_SKIP_SLOW=1               skip the probes that wait for timeouts
# scripts/test.sh starts a server with short timeouts and a small connection limit and runs this.
set -euo pipefail
if [ $# -ne 3 ]; then
  sed -n '2,17p' "$0" >&2
  exit 2
fi
case "$1" in
  http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*) ;;
  *) echo "probe.sh: only loopback servers (http://127.0.0.1:PORT)" >&2; exit 2 ;;
esac
exec python3 "$(dirname "$0")/probe.py" "$@"
