#!/usr/bin/env python3
"""The per-run table of docs/results.md: every published run's final average (the protocol's
held-out seeds), its final and best agents re-evaluated on fresh seeds, env steps and wall time.

    python3 scripts/runs_table.py [results/reference]
"""
import glob
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "results/reference"
# The main methods first, then brc_tuned's one-change variants, in the order docs/results.md uses.
methods = ["shared_dqn", "independent_dqn", "independent_dqn_matched", "brc", "brc_polyak",
           "brc_tuned", "brc_t_noblocks", "brc_t_scalar", "brc_t_no_decay", "brc_t_postln",
           "brc_t_tau001", "brc_t_lr_decay", "brc_t_unit_embedding", "brc_t_batch128",
           "brc_t_support20"]


def load(path):
    with open(path) as f:
        return json.load(f)


print("| run | final average | final, fresh seeds | best checkpoint (episode), fresh seeds "
      "| env steps | wall time |")
print("|---|---:|---:|---:|---:|---:|")
for method in methods:
    for run in sorted(glob.glob(f"{root}/{method}/seed-*")):
        summary = load(f"{run}/summary.json")
        final = load(f"{run}/evaluation-weights-all-seed2000000-n100.json")
        best = load(f"{run}/evaluation-best-all-seed2000000-n100.json")
        print(f"| {method}/{os.path.basename(run)} | {summary['final_average']:.1f} "
              f"| {final['average']:.1f} | {best['average']:.1f} ({summary['best_after_episode']}) "
              f"| {summary['env_steps']:,} | {summary['wall_seconds'] / 60:.1f} min |")
