#!/usr/bin/env python3
"""A per-seed table of published runs, as docs/results.md's BRC surgery section shows them: the
final average with its tasks, final weights and best checkpoint re-evaluated on fresh seeds, the
updates' mean Q(s, a) over the last third of training (a sign of value overestimation when it
outgrows the returns) and the wall time.

    python3 scripts/seeds_table.py [--root results/reference] METHOD...
"""
import argparse
import json
import signal

from runs_table import published_runs


def late_mean_q(run, episodes):
    """The mean of the logged per-episode mean Q over the last third of the episodes."""
    start = episodes - episodes // 3
    values = []
    with open(f"{run}/episodes.jsonl") as f:
        for line in f:
            row = json.loads(line)
            if row["episode"] >= start and row["mean_q"] is not None:
                values.append(row["mean_q"])
    return sum(values) / len(values) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="results/reference")
    parser.add_argument("methods", nargs="+")
    args = parser.parse_args()
    print("| run | seed | final | std / windy / heavy | final, fresh | best ckpt, fresh "
          "| late mean Q | wall |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for method in args.methods:
        for run, s, final, best in published_runs(args.root, method):
            tasks = " / ".join(f"{s['final_eval'][t]:.1f}" for t in ["standard", "windy", "heavy"])
            print(f"| {method} | {s['seed']} | {s['final_average']:.1f} | {tasks} "
                  f"| {final['average']:.1f} | {best['average']:.1f} (ep {s['best_after_episode']}) "
                  f"| {late_mean_q(run, s['episodes']):.1f} | {s['wall_seconds'] / 60:.0f} min |")


if __name__ == "__main__":
    # A closed pipe (`| head`) ends the table quietly, as the CLI does, not with a traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
