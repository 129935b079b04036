#!/usr/bin/env python3
"""Value blow-ups in published runs: windows of training in which the critic's mean Q runs far
above its usual level, and what the greedy policy scored around them.

A run's training log (`episodes.jsonl`) records, per episode, the mean Q of the online critic on
its update batches and the mean gradient norm. After episode 500 (once the first policies land)
the log is cut into 25-episode windows; a window whose mean Q exceeds RATIO times the run's
median window is a blow-up. Per run the table gives the median and the peak window (with the
peak's ratio), the gradient norm's peak against its median, the first blown-up window, the
periodic evaluation (task average) at least 50 episodes before that window (Q and crashes often
rise together, so the evaluation right before a window may already show the fall), and the
lowest periodic evaluation from that window to 150 episodes after it.

    python3 scripts/value_blowups.py [--root results/reference] [--ratio 1.5] METHOD...
"""
import argparse
import json
import signal
from statistics import median

from runs_table import published_runs

WINDOW = 25
START = 500
AFTER = 150
LEAD = 50


def windows(rows, key):
    """Mean of `key` over each WINDOW-episode window from episode START on (episodes without
    an update log null, as seeds_table.py skips them)."""
    late = rows[START:]
    means = []
    for i in range(0, len(late), WINDOW):
        values = [r[key] for r in late[i:i + WINDOW] if r[key] is not None]
        means.append(sum(values) / len(values) if values else float("nan"))
    return means


def periodic_averages(run):
    """{after_episode: task-averaged return} of the run's periodic (not final) evaluations."""
    evals = {}
    for line in open(f"{run}/evals.jsonl"):
        e = json.loads(line)
        if not e.get("is_final"):
            evals[e["after_episode"]] = sum(e["mean_return"].values()) / len(e["mean_return"])
    return evals


def blowup_row(run, ratio):
    """One table row for a run directory: its Q and gradient-norm windows and the evaluations
    around its first blow-up ("–" where it has none)."""
    rows = [json.loads(line) for line in open(f"{run}/episodes.jsonl")]
    q, grad = windows(rows, "mean_q"), windows(rows, "grad_norm")
    q_median, grad_median = median(q), median(grad)
    peak = max(range(len(q)), key=lambda i: q[i])
    first = next((i for i, v in enumerate(q) if v > ratio * q_median), None)
    cells = [f"{q_median:.1f}",
             f"{q[peak]:.1f} (×{q[peak] / q_median:.2f}, ep {START + WINDOW * peak})",
             f"×{max(grad) / grad_median:.1f}"]
    if first is None:
        return cells + ["–", "–", "–"]
    start = START + WINDOW * first
    evals = periodic_averages(run)
    before = max((e for e in evals if e <= start - LEAD), default=None)
    during = [v for e, v in evals.items() if start < e <= start + AFTER]
    return cells + [str(start), f"{evals[before]:.1f}" if before is not None else "–",
                    f"{min(during):.1f}" if during else "–"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="results/reference")
    parser.add_argument("--ratio", type=float, default=1.5)
    parser.add_argument("methods", nargs="+")
    args = parser.parse_args()
    print("| run | seed | median Q | peak Q | peak grad norm | first blow-up (ep) "
          "| eval ≥ 50 ep before | lowest eval within 150 ep |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for method in args.methods:
        runs, blown = 0, 0
        for run, summary, _final, _best in published_runs(args.root, method):
            cells = blowup_row(run, args.ratio)
            runs += 1
            blown += cells[3] != "–"
            print(f"| {method} | {summary['seed']} | " + " | ".join(cells) + " |")
        if runs:
            print(f"| {method} | all | | | | {blown} of {runs} runs | | |")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # end quietly under `| head`
    main()
