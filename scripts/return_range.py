#!/usr/bin/env python3
"""Per-task return range of every published training episode, and the reward scale that
would put each task's returns into ±10 (the BRC paper's per-task normalisation).

    python3 scripts/return_range.py [results/reference]
"""
import glob
import json
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "results/reference"
returns = {}
for path in sorted(glob.glob(f"{root}/*/seed-*/episodes.jsonl")):
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            returns.setdefault(row["task"], []).append(row["return"])

print("| task | episodes | 1st percentile | median | 99th percentile | scale into ±10 |")
print("|---|---:|---:|---:|---:|---:|")
for task, values in returns.items():
    values.sort()
    low, median, high = (values[int(p * (len(values) - 1))] for p in (0.01, 0.5, 0.99))
    scale = 10 / max(-low, high)
    print(f"| {task} | {len(values)} | {low:.0f} | {median:.0f} | {high:.0f} | {scale:.3f} |")
