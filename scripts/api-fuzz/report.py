"""Summarises a schemathesis HAR report: requests per operation and status, and the events the
gateway accepted (the sum of `accepted` over its 202 answers), which the script then finds in
the store.

    python3 report.py HAR_FILE    # prints a table, then `accepted=N` and `requests=N`
"""

import collections
import json
import sys
import urllib.parse


def main(path):
    with open(path, encoding="utf-8") as f:
        entries = json.load(f)["log"]["entries"]
    counts = collections.defaultdict(collections.Counter)
    accepted = 0
    for entry in entries:
        request, response = entry["request"], entry["response"]
        route = urllib.parse.urlsplit(request["url"]).path
        status = response["status"]
        counts[f"{request['method']} {route}"][status] += 1
        if status == 202:
            body = json.loads(response.get("content", {}).get("text") or "{}")
            accepted += int(body.get("accepted", 0))
    # The unsupported-method probes (405 on every route) fold into one line.
    probes = [op for op, c in counts.items() if set(c) == {405}]
    if probes:
        folded = collections.Counter()
        for op in probes:
            folded.update(counts.pop(op))
        counts[f"other methods ({len(probes)} routes x methods)"] = folded
    statuses = sorted({s for c in counts.values() for s in c})
    width = max(len(op) for op in counts) if counts else 10
    header = f"{'operation':<{width}}  " + "".join(f"{s:>6}" for s in statuses) + f"{'total':>8}"
    print(header)
    print("-" * len(header))
    for op in sorted(counts, key=lambda o: -sum(counts[o].values())):
        row = counts[op]
        print(f"{op:<{width}}  " + "".join(f"{row.get(s, 0) or '':>6}" for s in statuses) + f"{sum(row.values()):>8}")
    print(f"accepted={accepted}")
    print(f"requests={len(entries)}")


if __name__ == "__main__":
    main(sys.argv[1])
