#!/usr/bin/env bash
# Two cores, two ways: one BRC run with `--threads 1` and `--threads 2`, and two seeds at once
# (`--seeds 0..2`, one thread each) against one seed. Short slices of configs/brc.toml with
# updates from the 65th step; prints env steps/s of each and the speed-ups.
#
#   scripts/bench/threads.sh [BRC_BINARY] [EPISODES_PER_TASK]
set -euo pipefail
BRC=${1:-target/release/brc}
EPISODES=${2:-4}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/brc-threads.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SET=(--set "training.episodes_per_task=$EPISODES" --set training.min_replay=64
     --set evaluation.final_episodes=1 --set evaluation.interval_episodes=1000000
     --set checkpoints.interval_episodes=1000000 --set checkpoints.save_replay=false)

rate() { # summaries JSON on stdin -> total env steps / longest wall time
    python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(x["env_steps"] for x in s)/max(x["wall_seconds"] for x in s))'
}
one() { "$BRC" train --config configs/brc.toml "${SET[@]}" --out "$WORK/$1" --quiet --json "${@:2}" | rate; }

t1=$(one t1 --threads 1)
t2=$(one t2 --threads 2)
s1=$(one s1 --seeds 0..1)
s2=$(one s2 --seeds 0..2 --jobs 2)
python3 - "$t1" "$t2" "$s1" "$s2" <<'PY'
import sys
t1, t2, s1, s2 = map(float, sys.argv[1:])
print(f"one run, --threads 1: {t1:.0f} env steps/s")
print(f"one run, --threads 2: {t2:.0f} env steps/s ({t2 / t1:.2f}x)")
print(f"--seeds 0..1:         {s1:.0f} env steps/s")
print(f"--seeds 0..2 --jobs 2: {s2:.0f} env steps/s, both runs together ({s2 / s1:.2f}x)")
PY
