#!/usr/bin/env python3
"""Latency of one kind of query-API request, for scripts/bench-query.sh.

    query_latency.py BASE_URL KIND N CONCURRENCY

KIND: service | level | pages | stats | search15 | search1h | common15
Sends N requests (for `pages`: N chains of 5 pages following next_cursor, each page one sample)
from CONCURRENCY threads, each request timed at the client, and prints one line:

    KIND n=<samples> errors=<non-200> p50=<ms> p95=<ms> p99=<ms> max=<ms> rows=<mean rows/page>

Standard library only: the script must run wherever bench-query.sh runs.
"""

import json
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

SERVICES = [f"svc-{i}" for i in range(10)]


def get(base, path, params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        body, status = err.read(), err.code
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        body, status = b"", 0
    ms = (time.perf_counter() - t0) * 1000
    try:
        doc = json.loads(body) if status == 200 else {}
    except ValueError:
        doc = {}
    return status, ms, doc


def rare_q(rng):
    # A six-digit number: the templates' order and user ids run to 999,999, so it matches a
    # handful of rows in a day; the search scans the whole range (the worst case for `q`).
    return str(rng.randrange(100000, 1000000))


def one(base, kind, rng):
    """Samples (status, ms, rows) of one request (or one chain of pages)."""
    logs = "/api/v1/logs"
    if kind == "service":
        params = {"service": rng.choice(SERVICES), "since": "15m"}
    elif kind == "level":
        params = {"level": "ERROR", "since": "15m"}
    elif kind == "stats":
        status, ms, _ = get(base, "/api/v1/stats", {"since": "24h"})
        return [(status, ms, 0)]
    elif kind == "search15":
        params = {"q": rare_q(rng), "since": "15m"}
    elif kind == "search1h":
        params = {"q": rare_q(rng), "since": "1h"}
    elif kind == "common15":
        params = {"q": "card declined", "since": "15m"}
    elif kind == "pages":
        out = []
        params = {"service": rng.choice(SERVICES), "since": "15m"}
        for _ in range(5):
            status, ms, doc = get(base, logs, params)
            out.append((status, ms, len(doc.get("logs", []))))
            cursor = doc.get("next_cursor")
            if status != 200 or not cursor:
                break
            params = {**params, "cursor": cursor}
        return out
    else:
        raise SystemExit(f"unknown kind {kind}")
    status, ms, doc = get(base, logs, params)
    return [(status, ms, len(doc.get("logs", [])))]


def pct(sorted_ms, p):
    if not sorted_ms:
        return float("nan")
    i = min(len(sorted_ms) - 1, max(0, int(round(p / 100 * len(sorted_ms) + 0.5)) - 1))
    return sorted_ms[i]


def main():
    base, kind, n, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    samples, lock, left = [], threading.Lock(), [n]

    def worker(seed):
        rng = random.Random(seed)
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            got = one(base, kind, rng)
            with lock:
                samples.extend(got)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = sorted(ms for status, ms, _ in samples if status == 200)
    errors = sum(1 for status, _, _ in samples if status != 200)
    rows = [r for status, _, r in samples if status == 200]
    mean_rows = sum(rows) / len(rows) if rows else 0
    print(
        f"{kind} n={len(samples)} errors={errors} p50={pct(ok, 50):.1f} p95={pct(ok, 95):.1f} "
        f"p99={pct(ok, 99):.1f} max={(ok[-1] if ok else float('nan')):.1f} rows={mean_rows:.0f}"
    )


if __name__ == "__main__":
    main()
