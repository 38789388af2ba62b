#!/usr/bin/env bash
# The spec's load test, against a RUNNING logpipe stack: 1000 events through the gateway with
# `logpipe loadgen`, then a check that the consumer stored every accepted event. Prints the
# loadgen report (throughput, request latency p50/p95/p99, end-to-end latency) and exits non-zero
# on a mismatch or a failed request.
#
#   scripts/load-test.sh
#   EVENTS=20000 RATE=5000 GATEWAY=http://10.0.0.5:8080 \
#   METRICS=http://10.0.0.6:8082/metrics scripts/load-test.sh   # split mode: the consumer's metrics
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GATEWAY=${GATEWAY:-http://127.0.0.1:8080}
METRICS=${METRICS:-$GATEWAY/metrics}
EVENTS=${EVENTS:-1000}
RATE=${RATE:-500}
BATCH=${BATCH:-50}
SETTLE=${SETTLE:-60s}
LOGPIPE=${LOGPIPE:-}
if [[ -z "$LOGPIPE" ]]; then
    if [[ -x "$REPO_ROOT/target/release/logpipe" ]]; then LOGPIPE="$REPO_ROOT/target/release/logpipe"
    elif command -v logpipe >/dev/null; then LOGPIPE=logpipe
    else echo "logpipe binary not found: build it (cargo build --release) or set LOGPIPE=path" >&2; exit 2; fi
fi
command -v python3 >/dev/null || { echo "missing tool: python3" >&2; exit 2; }

echo "==> sending $EVENTS events to $GATEWAY at $RATE events/s, $BATCH per request"
report=$("$LOGPIPE" loadgen --target "$GATEWAY" --metrics-url "$METRICS" --total "$EVENTS" \
    --rate "$RATE" --batch "$BATCH" --duration 1h --settle "$SETTLE" --json)
check=$(cat <<'PY'
import json, sys
expected = int(sys.argv[1])
r = json.load(sys.stdin)
c = r.get("consumer") or {}
e2e = c.get("e2e_latency_ms") or {}
lat = r["latency_ms"]
rows = [
    ("events sent", r["events_sent"]),
    ("events accepted", r["events_accepted"]),
    ("requests failed", r["requests_failed"]),
    ("throughput", f'{r["accepted_per_s"]:.0f} events/s'),
    ("request latency p50/p95/p99", f'{lat["p50"]:.1f} / {lat["p95"]:.1f} / {lat["p99"]:.1f} ms'),
    ("stored by the consumer", c.get("stored", "not measured")),
    ("end-to-end p50/p95/p99", f'{e2e["p50"]:.1f} / {e2e["p95"]:.1f} / {e2e["p99"]:.1f} ms' if e2e else "not measured"),
]
for k, v in rows:
    print(f"  {k:<30} {v}")
problems = []
if r["events_sent"] != expected:
    problems.append(f'sent {r["events_sent"]}, expected {expected}')
if r["requests_failed"]:
    problems.append(f'{r["requests_failed"]} requests failed (5xx or network)')
if r["events_accepted"] != r["events_sent"]:
    problems.append(f'{r["events_sent"] - r["events_accepted"]} events rejected')
if not c:
    problems.append("no consumer metrics at the metrics URL: cannot check what was stored (set METRICS)")
elif c["stored"] != r["events_accepted"]:
    problems.append(f'consumer stored {c["stored"]} of {r["events_accepted"]} accepted events')
if problems:
    print("FAIL: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"PASS: {expected} events accepted and stored")
PY
)
python3 -c "$check" "$EVENTS" <<<"$report"
