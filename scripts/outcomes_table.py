#!/usr/bin/env python3
"""Where a method's final networks lose their points: every episode of its published runs'
fresh-seed re-evaluation (final weights, 100 episodes per task and seed), per task by how it
ended (rest = landed and came to rest, time_limit, crash, out_of_bounds) with the mean return
of each outcome, and the task's mean with and without the crashed or out-of-bounds episodes.

    python3 scripts/outcomes_table.py [--root results/reference] [--checkpoint best] METHOD...
"""
import argparse
import signal
from statistics import mean

from runs_table import published_runs

TASKS = ["standard", "windy", "heavy"]
OUTCOMES = ["rest", "time_limit", "crash", "out_of_bounds"]
FAILURES = {"crash", "out_of_bounds"}


def returns_by_outcome(root, method, checkpoint):
    """{task: {outcome: [episode return, ...]}} over every published seed of `method`."""
    by_task = {t: {} for t in TASKS}
    for _run, _summary, final, best in published_runs(root, method):
        report = best if checkpoint == "best" else final
        for task in report["episodes"]:
            outcomes = by_task[task["task"]]
            for episode in task["episodes"]:
                outcomes.setdefault(episode["outcome"], []).append(episode["episode_return"])
    return by_task


def cell(returns, total):
    """`share% (mean return)` of one outcome, or – when no episode ended that way."""
    if not returns:
        return "–"
    return f"{100 * len(returns) / total:.1f}% ({mean(returns):.1f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="results/reference")
    parser.add_argument("--checkpoint", choices=["weights", "best"], default="weights")
    parser.add_argument("methods", nargs="+")
    args = parser.parse_args()
    print("| method | task | episodes | " + " | ".join(OUTCOMES)
          + " | mean | mean without failures |")
    print("|---|---|---:|" + "---:|" * len(OUTCOMES) + "---:|---:|")
    for method in args.methods:
        by_task = returns_by_outcome(args.root, method, args.checkpoint)
        means, kept_means = [], []
        for task in TASKS:
            outcomes = by_task[task]
            every = [r for returns in outcomes.values() for r in returns]
            kept = [r for o, returns in outcomes.items() if o not in FAILURES for r in returns]
            if not every:
                continue
            means.append(mean(every))
            kept_means.append(mean(kept) if kept else float("nan"))
            cells = " | ".join(cell(outcomes.get(o, []), len(every)) for o in OUTCOMES)
            print(f"| {method} | {task} | {len(every)} | {cells} | {means[-1]:.1f} "
                  f"| {kept_means[-1]:.1f} |")
        if means:
            blank = " | ".join("" for _ in OUTCOMES)
            print(f"| {method} | average | | {blank} | {mean(means):.1f} "
                  f"| {mean(kept_means):.1f} |")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # end quietly under `| head`
    main()
