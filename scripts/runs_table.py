#!/usr/bin/env python3
"""The per-run table of docs/results.md: every published run's final average (the protocol's
held-out seeds), its final and best agents re-evaluated on fresh seeds, env steps and wall time.

    python3 scripts/runs_table.py [results/reference]

`published_runs` is also what scripts/seeds_table.py reads runs through.
"""
import glob
import json
import os
import signal
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def published_runs(root, method):
    """Each published seed of `method`: its directory, summary and both fresh-seed reports."""
    for run in sorted(glob.glob(f"{root}/{method}/seed-*")):
        yield (run, load(f"{run}/summary.json"),
               load(f"{run}/evaluation-weights-all-seed2000000-n100.json"),
               load(f"{run}/evaluation-best-all-seed2000000-n100.json"))


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "results/reference"
    # Methods in the order scripts/reference.sh compared them (compare/, then ablations/), so
    # the method lists live in one place; any other published method follows, alphabetically.
    methods = []
    for comparison in ["compare", "ablations"]:
        path = f"{root}/{comparison}/results.json"
        rows = load(path) if os.path.isfile(path) else []
        methods += [r["method"] for r in rows
                    if not r["predecessor"] and r["method"] not in methods]
    methods += sorted(os.path.basename(os.path.dirname(d)) for d in glob.glob(f"{root}/*/seed-0")
                      if os.path.basename(os.path.dirname(d)) not in methods)

    print("| run | final average | final, fresh seeds | best checkpoint (episode), fresh seeds "
          "| env steps | wall time |")
    print("|---|---:|---:|---:|---:|---:|")
    for method in methods:
        for run, summary, final, best in published_runs(root, method):
            print(f"| {method}/{os.path.basename(run)} | {summary['final_average']:.1f} "
                  f"| {final['average']:.1f} | {best['average']:.1f} "
                  f"({summary['best_after_episode']}) "
                  f"| {summary['env_steps']:,} | {summary['wall_seconds'] / 60:.1f} min |")


if __name__ == "__main__":
    # A closed pipe (`| head`) ends the table quietly, as the CLI does, not with a traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
