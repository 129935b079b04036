#!/usr/bin/env python3
"""Turns rounds of `brc bench --json` and `reference.py --json` into one Markdown table.

Each side's value of a quantity is the median over rounds of that round's median (with an even
number of rounds, the mean of the two middle ones). The ratio always reads "how many times
faster ours is": ours / reference for throughputs, reference / ours for times.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile

# (label, JSON path in ours, JSON path in the reference, "rate" | "time", unit, target ratio)
ROWS = [
    ("env steps/s, random actions", "env.steps_per_s", "env.steps_per_s", "rate", "steps/s", 1.8),
    ("env steps/s, heuristic pilot", "env.heuristic_steps_per_s", "env.heuristic_steps_per_s",
     "rate", "steps/s", None),
    ("replay sample, batch 64 of 100,000", "replay_sample_us", "replay_sample_us", "time", "µs",
     None),
    ("Independent DQN (MLP) update, batch 64", "agents.independent_dqn.update_us",
     "agents.independent_dqn.update_us", "time", "µs", 2.0),
    ("Shared DQN update, batch 64", "agents.shared_dqn.update_us",
     "agents.shared_dqn.update_us", "time", "µs", 2.0),
    ("BroNet/C51 (BRC) update, batch 64, one thread", "agents.brc.update_us",
     "agents.brc.update_us", "time", "µs", 1.5),
    ("BroNet/C51 update, brc_tuned (101 atoms, Polyak), one thread", "agents.brc_tuned.update_us",
     "agents.brc_tuned.update_us", "time", "µs", 1.5),
    ("BroNet/C51 update: ours one thread vs PyTorch two threads", "agents.brc.update_us",
     "agents.brc.update_us_2threads", "time", "µs", 1.1),
    ("Independent DQN greedy action, batch 1", "agents.independent_dqn.act_us",
     "agents.independent_dqn.act_us", "time", "µs", None),
    ("Shared DQN greedy action, batch 1", "agents.shared_dqn.act_us",
     "agents.shared_dqn.act_us", "time", "µs", None),
    ("BRC greedy action, batch 1", "agents.brc.act_us", "agents.brc.act_us", "time", "µs", None),
    ("training loop steps/s, Independent DQN", "e2e.independent_dqn.steps_per_s",
     "e2e.independent_dqn.steps_per_s", "rate", "steps/s", None),
    ("training loop steps/s, Shared DQN", "e2e.shared_dqn.steps_per_s",
     "e2e.shared_dqn.steps_per_s", "rate", "steps/s", None),
    ("training loop steps/s, BRC", "e2e.brc.steps_per_s", "e2e.brc.steps_per_s", "rate",
     "steps/s", 1.3),
]

KINDS = [("independent_dqn", "Independent DQN"), ("shared_dqn", "Shared DQN"), ("brc", "BRC")]

# Ours only: (label, JSON path of the cost, JSON path of the baseline cost, largest ratio allowed).
# A surgery update computes three task gradients on 3 × 64 rows; the baseline is one mean update
# on the same 192 rows.
OURS_RATIOS = [
    ("BRC per-task gradients (3 × 64) / mean update on 192 rows", "agents.brc_task_gradients.update_us",
     "agents.brc_balanced.update_us", None),
    ("BRC PCGrad update / mean update, both 3 × 64 rows", "agents.brc_pcgrad.update_us",
     "agents.brc_balanced.update_us", 1.3),
    ("Shared DQN PCGrad update / mean update, both 3 × 64 rows", "agents.shared_dqn_pcgrad.update_us",
     "agents.shared_dqn_balanced.update_us", 1.3),
    ("BRC CAGrad update / mean update, both 3 × 64 rows", "agents.brc_cagrad.update_us",
     "agents.brc_balanced.update_us", 1.3),
    ("Shared DQN CAGrad update / mean update, both 3 × 64 rows", "agents.shared_dqn_cagrad.update_us",
     "agents.shared_dqn_balanced.update_us", 1.3),
]


def ours_only(ours):
    """Our own cost ratios (lower is better) and the rate of the BRC update's arithmetic."""
    lines = ["", "| ours only | cost | baseline | ratio | target |", "|---|---|---|---|---|"]
    verdicts = []
    for label, path, base, target in OURS_RATIOS:
        c, b = medians(ours, path), medians(ours, base)
        if not c or not b:
            continue
        ratio = statistics.median(c) / statistics.median(b)
        t = "—"
        if target is not None:
            met = ratio <= target
            verdicts.append((label, ratio, target, met))
            t = f"≤ {target:g}× ({'met' if met else 'NOT met'})"
        lines.append(f"| {label} | {fmt_value(c, 'µs')} | {fmt_value(b, 'µs')} | {ratio:.2f}× | {t} |")
    for kind in ("brc", "brc_tuned", "brc_balanced"):
        g = [get(d, f"agents.{kind}.gflop_per_s") for d in ours]
        g = [x for x in g if isinstance(x, (int, float))]
        if g:
            lines.append(f"| {kind} update arithmetic rate | {statistics.median(g):.1f} GFLOP/s | — | — | — |")
    kernels = {get(d, "cpu.matmul_kernel") for d in ours} - {None}
    if kernels:
        lines.append(f"| matrix-product kernels | {', '.join(sorted(kernels))} | — | — | — |")
    return lines, verdicts


def load(path):
    with open(path) as f:
        text = f.read()
    # Tolerate anything printed before the document (e.g. a stray log line).
    return json.loads(text[text.index("{"):])


def get(doc, path):
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def medians(docs, path):
    """Each round's median of `path` (rounds that lack it are skipped)."""
    out = []
    for d in docs:
        m = get(d, path)
        if isinstance(m, dict) and "median" in m:
            out.append(float(m["median"]))
    return out


def fmt_num(x):
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_value(values, unit):
    m = statistics.median(values)
    s = f"{fmt_num(m)} {unit}"
    if len(values) > 1:
        s += f" ({fmt_num(min(values))}–{fmt_num(max(values))})"
    return s


def table(ours, ref):
    lines = [
        "| quantity | ours | reference | ratio (× faster) | target |",
        "|---|---|---|---|---|",
    ]
    verdicts = []
    for label, ours_path, ref_path, kind, unit, target in ROWS:
        o, r = medians(ours, ours_path), medians(ref, ref_path)
        if not o or not r:
            lines.append(f"| {label} | {fmt_value(o, unit) if o else 'n/a'} | "
                         f"{fmt_value(r, unit) if r else 'n/a'} | n/a | "
                         f"{f'≥ {target:g}× (not measured)' if target else '—'} |")
            continue
        om, rm = statistics.median(o), statistics.median(r)
        ratio = om / rm if kind == "rate" else rm / om
        if target is None:
            t = "—"
        else:
            met = ratio >= target
            verdicts.append((label, ratio, target, met))
            t = f"≥ {target:g}× ({'met' if met else 'NOT met'})"
        lines.append(f"| {label} | {fmt_value(o, unit)} | {fmt_value(r, unit)} | "
                     f"{ratio:.2f}× | {t} |")
    # How much of each training slice updates: the slices differ in random streams, so
    # check that the two sides did comparable work.
    for kind, name in KINDS:
        def frac(docs):
            vals = []
            for d in docs:
                s = get(d, f"e2e.{kind}.steps_per_s.median")
                u = get(d, f"e2e.{kind}.updates_per_s.median")
                if s and u is not None:
                    vals.append(u / s)
            return vals
        fo, fr = frac(ours), frac(ref)
        if fo and fr:
            lines.append(f"| training loop updates per env step, {name} (work check) | "
                         f"{statistics.median(fo):.2f} | {statistics.median(fr):.2f} | — | — |")
    return lines, verdicts


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ours", nargs="+", required=True, help="brc bench --json outputs")
    ap.add_argument("--ref", nargs="+", required=True, help="reference.py --json outputs")
    ap.add_argument("--command", default="", help="the command that produced the runs")
    ap.add_argument("--rustc", default="", help="rustc --version")
    ap.add_argument("--size", default="full", help="full or quick")
    ap.add_argument("--load-before", default="", help="load average before the runs")
    ap.add_argument("--load-after", default="", help="load average after the runs")
    ap.add_argument("--out", help="also write the report here (atomically)")
    args = ap.parse_args()

    ours = [load(p) for p in args.ours]
    ref = [load(p) for p in args.ref]
    meta = ref[-1].get("meta", {})
    rows, verdicts = table(ours, ref)
    extra, extra_verdicts = ours_only(ours)
    rows += extra
    verdicts += extra_verdicts

    out = ["# brc bench vs PyTorch + Gymnasium", ""]
    out.append(f"- machine: {cpu_model()}, {os.cpu_count()} cores, {mem_total()} memory, "
               f"{platform.system()} {platform.release()}")
    if args.load_before or args.load_after:
        out.append(f"- load average before / after: {args.load_before or '?'} / "
                   f"{args.load_after or '?'}")
        try:
            busy = float(args.load_before.split()[0]) >= 0.5
        except (ValueError, IndexError):
            busy = False
        if busy:
            out.append("- **warning: the machine was not quiet before the runs (1-minute load "
                       f"{args.load_before.split()[0]} on {os.cpu_count()} cores): the figures "
                       "and ratios are not representative**")
    out.append(f"- ours: {args.rustc or 'rustc ?'}, release build, one thread")
    out.append(f"- reference: Python {meta.get('python', '?')}, PyTorch {meta.get('torch', '?')} "
               f"(torch.set_num_threads(1); the two-thread row sets 2), Gymnasium "
               f"{meta.get('gymnasium', '?')}, numpy {meta.get('numpy', '?')}, torch.optim "
               f"implementation: {meta.get('optimizer_impl', '?')}")
    out.append(f"- size: {args.size}; {len(ours)} round(s) per side, run alternately "
               f"(ours, reference, ours, reference, ...)")
    if args.command:
        out.append(f"- command: `{args.command}`")
    out.append("")
    out.append("Values: median over rounds of each round's median (range of the round medians "
               "in parentheses). Ratio: ours / reference for throughputs, reference / ours for "
               "times, i.e. how many times faster ours is.")
    out.append("")
    out.extend(rows)
    out.append("")
    missed = [v for v in verdicts if not v[3]]
    out.append(f"Targets met: {len(verdicts) - len(missed)} of {len(verdicts)}"
               + ("" if not missed else " (not met: " + "; ".join(
                   f"{label} {ratio:.2f}× (target {target:g}×)" for label, ratio, target, _ in missed)
                   + ")"))
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if args.out:
        directory = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bench-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, args.out)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


if __name__ == "__main__":
    main()
