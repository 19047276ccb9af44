#!/usr/bin/env python3
"""Fails on gross regressions of `edgebind bench --e2e` figures (CI, tools/test.sh).

Usage: bench_regression.py REPORT.json BASELINE.json

BASELINE.json holds the documented figures of docs/performance.md per build profile. A figure
fails only beyond `factor` (10) times its baseline, and never below an absolute floor, so that a
loaded CI machine's noise cannot fail a build; only something an order of magnitude worse can.
Standard library only.
"""

import json
import sys


def main():
    report = json.load(open(sys.argv[1]))
    baseline_file = json.load(open(sys.argv[2]))
    profile = report["build_profile"]
    base = baseline_file["profiles"][profile]
    factor = baseline_file["factor"]
    e2e = report["e2e"]
    rt, mx = e2e["realtime"], e2e["max_speed"]
    delivery = rt["end_to_delivery_excluding_inference"] or {}
    checks = [
        # (name, measured, limit, higher is worse)
        ("daemon CPU beyond inference, % of one core", rt["cpu_beyond_inference_percent"],
         max(base["cpu_beyond_inference_percent"] * factor,
             baseline_file["floor_cpu_percent"]), True),
        ("peak RSS, MiB", rt["peak_rss_mib"], base["peak_rss_mib"] * factor, True),
        ("window end -> subscriber minus inference, p99 ms",
         delivery.get("p99_ms", float("inf")),
         max(base["end_to_delivery_p99_ms"] * factor, baseline_file["floor_latency_ms"]), True),
        ("max-speed audio windows/s", mx["windows_per_s"],
         base["max_speed_windows_per_s"] / factor, False),
    ]
    failed = False
    for name, measured, limit, higher_is_worse in checks:
        bad = measured > limit if higher_is_worse else measured < limit
        failed |= bad
        relation = "<=" if higher_is_worse else ">="
        print(f"bench regression: {name}: {measured:.3f} (limit {relation} {limit:.3f}, "
              f"{profile} build) {'FAIL' if bad else 'ok'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
