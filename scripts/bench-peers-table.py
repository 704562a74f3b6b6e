#!/usr/bin/env python3
"""Prints issue 15's table from bench-peers.sh's results: per figure and
server the median of the runs and their spread (min-max)."""
import json
import statistics
import sys

# (phase, JSON field, label, format)
FIGURES = [
    ("login", "logins_per_s", "full logins/s", "{:,.0f}"),
    ("login", "login_p99_ms", "login p99 (ms)", "{:,.0f}"),
    ("login", "server_cpu_us_per_login", "server CPU per login (us)", "{:,.0f}"),
    ("offline", "stores_per_s", "durable offline stores/s", "{:,.0f}"),
    ("idle", "kib_per_session", "memory per idle TLS session (KiB RSS)", "{:,.1f}"),
    ("route", "msgs_per_s", "burst routing, msgs/s", "{:,.0f}"),
    ("route", "server_cpu_us_per_msg", "server CPU per routed message (us)", "{:,.1f}"),
    ("rate", "lat_p99_ms", "p99 latency at 1,000 msgs/s (ms)", "{:,.2f}"),
]


def main():
    path, servers = sys.argv[1], sys.argv[2:]
    runs = {}
    try:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                runs.setdefault((r["phase"], r["result"].get("label")), []).append(r["result"])
    except FileNotFoundError:
        sys.exit("bench-peers: no results")
    print("| figure | " + " | ".join(servers) + " |")
    print("|---|" + "---|" * len(servers))
    for phase, field, label, fmt in FIGURES:
        cells, any_value = [], False
        for s in servers:
            vals = [r[field] for r in runs.get((phase, s), []) if r.get(field) is not None]
            if not vals:
                cells.append("-")
                continue
            any_value = True
            med = statistics.median(vals)
            cell = fmt.format(med)
            if len(vals) > 1:
                cell += " (" + fmt.format(min(vals)) + "-" + fmt.format(max(vals)) + ")"
            cells.append(cell)
        if any_value:
            print("| " + label + " | " + " | ".join(cells) + " |")
    fails = [(k, r.get("login_failures"), r.get("lost")) for k, rs in runs.items() for r in rs
             if r.get("login_failures") or r.get("lost")]
    for k, lf, lost in fails:
        print("note: %s %s: %s login failures, %s messages lost" % (k[1], k[0], lf or 0, lost or 0))


if __name__ == "__main__":
    main()
