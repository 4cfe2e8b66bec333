"""Hostile-input probes against a running touchline server (see probe.sh).

Each probe sends what an attacker would and checks the server's answer: a clear status that
names the problem, never a dropped connection, a stall or a 5xx, and the server still healthy
afterwards. Standard library only.
"""
import gzip
import http.client
import json
import os
import socket
import sys
import time
import urllib.parse

BASE, WRITE_KEY, SECRET_KEY = sys.argv[1], sys.argv[2], sys.argv[3]
URL = urllib.parse.urlparse(BASE)
HOST, PORT = URL.hostname, URL.port or 80
HEADER_TIMEOUT = float(os.environ.get("PROBE_HEADER_TIMEOUT_SECS", "10"))
BODY_TIMEOUT = float(os.environ.get("PROBE_BODY_TIMEOUT_SECS", "30"))
IDLE_TIMEOUT = float(os.environ.get("PROBE_IDLE_TIMEOUT_SECS", "60"))
MAX_CONNECTIONS = int(os.environ.get("PROBE_MAX_CONNECTIONS", "0"))
SKIP_SLOW = os.environ.get("PROBE_SKIP_SLOW") == "1"

results = []


def request(method, path, body=None, headers=None, timeout=20):
    """One request on a fresh connection: (status, headers dict lower-cased, body text)."""
    conn = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    text = r.read().decode("utf-8", "replace")
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    return r.status, hdrs, text


def auth(key=WRITE_KEY):
    return {"Authorization": f"Bearer {key}"}


def probe(name):
    def wrap(fn):
        started = time.monotonic()
        try:
            ok, detail = fn()
        except Exception as e:  # a dropped connection or a timeout is a failure, with its cause
            ok, detail = False, f"{type(e).__name__}: {e}"
        results.append((name, ok, detail, time.monotonic() - started))
        print(f"{'PASS' if ok else 'FAIL'}  {name}  ({time.monotonic() - started:.1f} s)  {detail}", flush=True)
        return fn
    return wrap


def refused(status, text, field, statuses=(400,)):
    return status in statuses and f"`{field}`" in text, f"{status} {text[:160]}"


NOW = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

# -- 1. handler panics -------------------------------------------------------------------------


@probe("1 native timestamp and sent_at 500 years apart → 400 naming the field")
def _():
    s, _, t = request("POST", "/v1/events", {"event_name": "x", "anonymous_id": "a", "timestamp": "2026-01-01T00:00:00Z",
                                              "sent_at": "2526-01-01T00:00:00Z"}, auth())
    return s == 400 and ("`timestamp`" in t or "`sent_at`" in t), f"{s} {t[:160]}"


@probe("1 Segment track with sentAt far from timestamp → 400")
def _():
    s, _, t = request("POST", "/v1/track", {"event": "x", "anonymousId": "a", "timestamp": "2001-01-01T00:00:00Z",
                                             "sentAt": "2099-12-31T00:00:00Z"}, auth())
    return s == 400 and ("`timestamp`" in t or "`sentAt`" in t), f"{s} {t[:160]}"


@probe("1 batch-level sentAt at the end of time → record rejected, not a panic")
def _():
    s, _, t = request("POST", "/v1/batch", {"sentAt": "9999-12-31T23:59:59Z", "batch": [
        {"type": "track", "event": "x", "anonymousId": "a", "timestamp": "0001-01-01T00:00:00Z"}]}, auth())
    return s == 400, f"{s} {t[:160]}"


@probe("1 report with the smallest date chrono knows → 400")
def _():
    s, _, t = request("GET", "/v1/reports/campaigns?to=-262143-01-01", headers=auth(SECRET_KEY))
    return s == 400, f"{s} {t[:160]}"

# -- 2. poison records -------------------------------------------------------------------------


@probe("2 conversion value 1e15 → 400 naming `value`")
def _():
    s, _, t = request("POST", "/v1/conversions", {"kind": "purchase", "customer_id": "c", "value": "1000000000000000",
                                                   "currency": "USD"}, auth())
    return refused(s, t, "value")


@probe("2 spend cost 1e15 → 400 naming `cost`")
def _():
    s, _, t = request("POST", "/v1/spend", {"date": NOW[:10], "campaign_id": "c", "cost": 1e15, "currency": "USD"}, auth())
    return refused(s, t, "cost")


@probe("2 NUL in channel → 400 naming `channel`")
def _():
    s, _, t = request("POST", "/v1/touchpoints", {"kind": "click", "anonymous_id": "a", "channel": "sea\u0000rch"}, auth())
    return refused(s, t, "channel")


@probe("2 NUL in a utm value → 400")
def _():
    s, _, t = request("POST", "/v1/touchpoints", {"kind": "click", "anonymous_id": "a", "utm_source": "news\u0000letter"},
                      auth())
    return refused(s, t, "utm_source")


@probe("2 timestamp in 1999 → 400 naming `timestamp`")
def _():
    s, _, t = request("POST", "/v1/events", {"event_name": "x", "anonymous_id": "a", "timestamp": "1999-12-31T23:59:59Z"},
                      auth())
    return refused(s, t, "timestamp")

# -- 3. amplification --------------------------------------------------------------------------


@probe("3 2,500 events with a 400 KB User-Agent → answered, never amplified")
def _():
    batch = [{"type": "event", "event_name": "x", "anonymous_id": f"a{i}"} for i in range(2500)]
    started = time.monotonic()
    try:
        s, _, t = request("POST", "/v1/batch", {"batch": batch}, {**auth(), "User-Agent": "A" * 400_000}, timeout=30)
    except (BrokenPipeError, ConnectionResetError) as e:
        # The server refused the headers (431) and closed while the client was still sending:
        # the client may see only the closed socket. A refusal all the same.
        s, t = "closed", f"{type(e).__name__} while sending"
    took = time.monotonic() - started
    return s in (200, 413, 431, "closed") and took < 20, f"{s} in {took:.1f} s {t[:120]}"

@probe("3 2,500 events with a 60 KB User-Agent (under the header limit) → accepted with the UA cut, quickly")
def _():
    batch = [{"type": "event", "event_name": "x", "anonymous_id": f"a{i}"} for i in range(2500)]
    started = time.monotonic()
    s, _, t = request("POST", "/v1/batch", {"batch": batch}, {**auth(), "User-Agent": "A" * 60_000}, timeout=30)
    took = time.monotonic() - started
    # Copied whole, 2,500 × 60 KB would be 150 MB; cut to 1 KiB it is 2.5 MB, within the budget.
    return s == 200 and took < 20, f"{s} in {took:.1f} s {t[:120]}"

# -- 5. work before authentication -------------------------------------------------------------


@probe("5 a 5 MiB gzip body with a bad header key → 401 before the body is inflated")
def _():
    bomb = gzip.compress(b"[" + b"{}," * (5 * 1024 * 1024 // 3) + b"{}]")
    started = time.monotonic()
    s, _, t = request("POST", "/v1/batch", bomb, {"Authorization": "Bearer tl_wk_not_a_key_0000000000",
                                                    "Content-Encoding": "gzip"})
    return s == 401 and time.monotonic() - started < 2, f"{s} {t[:120]}"


@probe("5 sixty bad keys in a row from one client → 429 with Retry-After")
def _():
    statuses = []
    retry_after = None
    for i in range(60):
        s, h, _ = request("POST", "/v1/events", {"event_name": "x", "anonymous_id": "a"},
                          {"Authorization": f"Bearer tl_wk_guess_{i:04d}_000000000000"})
        statuses.append(s)
        if s == 429:
            retry_after = h.get("retry-after")
            break
    return 429 in statuses and retry_after is not None, f"statuses {sorted(set(statuses))}, Retry-After {retry_after}"

# -- 6. unbounded user-controlled sizes --------------------------------------------------------


@probe("6 a short link with a 300 KB UTM → refused")
def _():
    s, _, t = request("POST", "/v1/links", {"target_url": "https://shop.example/", "utm_campaign": "x" * 300_000},
                      auth(SECRET_KEY))
    return s in (400, 413), f"{s} {t[:120]}"


@probe("6 a Segment page whose name nests 127 levels → 400")
def _():
    name = "x"
    for _ in range(126):
        name = {"n": name}
    s, _, t = request("POST", "/v1/page", {"anonymousId": "a", "name": name}, auth())
    return s == 400, f"{s} {t[:160]}"

# -- 7. defaults that leak ---------------------------------------------------------------------


@probe("7 CORS preflight of ingestion allows no credentials")
def _():
    s, h, _ = request("OPTIONS", "/v1/batch", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
                                                       "Access-Control-Request-Headers": "authorization,content-type"})
    creds = h.get("access-control-allow-credentials")
    return s < 300 and creds is None, f"{s} allow-origin {h.get('access-control-allow-origin')} allow-credentials {creds}"


@probe("7 secret-key routes answer no CORS")
def _():
    s, h, _ = request("OPTIONS", "/v1/reports/campaigns", headers={"Origin": "https://evil.example",
                                                                   "Access-Control-Request-Method": "GET"})
    return "access-control-allow-origin" not in h, f"{s} allow-origin {h.get('access-control-allow-origin')}"

# -- 4. slow clients ---------------------------------------------------------------------------


def closed_within(sock, secs):
    """True when the server closes `sock` within `secs` (EOF or reset)."""
    sock.settimeout(secs)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


if not SKIP_SLOW:
    @probe(f"4 a client that stops inside its headers is dropped within {HEADER_TIMEOUT:.0f} s")
    def _():
        s = socket.create_connection((HOST, PORT))
        s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        ok = closed_within(s, HEADER_TIMEOUT + 3)
        s.close()
        return ok, "closed" if ok else "still open"

    @probe(f"4 a body that stalls is dropped within {BODY_TIMEOUT:.0f} s")
    def _():
        s = socket.create_connection((HOST, PORT))
        s.sendall(f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE_KEY}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"event".encode())
        ok = closed_within(s, BODY_TIMEOUT + 3)
        s.close()
        return ok, "closed (or answered and closed)" if ok else "still open"

    @probe(f"4 an idle kept-alive connection is closed within {IDLE_TIMEOUT:.0f} s")
    def _():
        s = socket.create_connection((HOST, PORT))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        first = s.recv(4096)
        ok = first.startswith(b"HTTP/1.1 200") and closed_within(s, IDLE_TIMEOUT + 3)
        s.close()
        return ok, "closed" if ok else "still open"

    if MAX_CONNECTIONS > 0:
        @probe(f"4 connections past max_connections ({MAX_CONNECTIONS}) are not held")
        def _():
            socks = []
            try:
                for _ in range(MAX_CONNECTIONS + 10):
                    socks.append(socket.create_connection((HOST, PORT), timeout=5))
                time.sleep(0.5)
                # A new client past the limit gets no service; the server keeps what it holds.
                extra = socket.create_connection((HOST, PORT), timeout=5)
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                extra.settimeout(2)
                try:
                    served = extra.recv(64).startswith(b"HTTP/1.1 200")
                except (socket.timeout, ConnectionResetError):
                    served = False
                extra.close()
            finally:
                for s in socks:
                    s.close()
            time.sleep(0.5)
            status, _, _ = request("GET", "/healthz")
            return (not served) and status == 200, f"extra client {'served' if served else 'refused'}; after: {status}"

# -- the server survived -----------------------------------------------------------------------


@probe("the server still answers after every probe")
def _():
    s, _, t = request("GET", "/healthz")
    return s == 200, f"{s} {t[:40]}"


failed = [r for r in results if not r[1]]
print(f"\n{len(results) - len(failed)} of {len(results)} probes passed")
sys.exit(1 if failed else 0)
