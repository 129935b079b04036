#!/usr/bin/env bash
# Side-by-side benchmark: `brc bench` against the PyTorch + Gymnasium reference (reference.py),
# on this machine, alternately, then one Markdown table of ratios (compare.py).
#
#   scripts/bench/run.sh [--quick] [--rounds N] [--out FILE] [--no-build] [--raw-dir DIR]
#
# Sets up its Python environment with pip on first use (a venv outside the repo, by default
# ${BRC_BENCH_VENV:-$HOME/.cache/brc-bench-venv}; pinned versions below), builds `brc` with
# `cargo build --release -p brc-cli` (honours CARGO_TARGET_DIR), then runs ours, reference,
# ours, reference, ... for N rounds (default 3) and prints the table (and writes it to FILE).
set -euo pipefail

TORCH_VERSION=2.15.0
GYMNASIUM_VERSION=1.4.0
NUMPY_VERSION=2.4.6
SWIG_VERSION=4.5.1

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${BRC_BENCH_VENV:-$HOME/.cache/brc-bench-venv}
PYTHON=${PYTHON:-python3}

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --quick          BenchSize::quick on both sides (seconds; noisy, for smoke checks)
  --rounds N       rounds per side (default 3)
  --out FILE       also write the report to FILE (atomically)
  --no-build       use the existing release binary instead of running cargo build
  --raw-dir DIR    keep every round's JSON in DIR (default: a temporary directory, removed)
Environment:
  BRC_BENCH_VENV   the venv (default \$HOME/.cache/brc-bench-venv)
  PYTHON           the interpreter that creates the venv (default python3)
  BRC_BIN          a brc binary to use instead of building one (implies --no-build)
EOF
}

QUICK=()
ROUNDS=3
OUT=
BUILD=1
RAW_DIR=
COMMAND="scripts/bench/run.sh $*"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=(--quick) ;;
        --rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
        --rounds=*) ROUNDS=${1#*=} ;;
        --out) OUT=${2:?--out needs a file}; shift ;;
        --out=*) OUT=${1#*=} ;;
        --no-build) BUILD=0 ;;
        --raw-dir) RAW_DIR=${2:?--raw-dir needs a directory}; shift ;;
        --raw-dir=*) RAW_DIR=${1#*=} ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$ROUNDS" in
    ''|*[!0-9]*|0) echo "run.sh: --rounds must be a positive integer" >&2; exit 2 ;;
esac
# Paths given relative to where the command was started.
if [ -n "$OUT" ]; then OUT=$(cd "$(dirname "$OUT")" 2>/dev/null && pwd)/$(basename "$OUT") \
    || { echo "run.sh: directory of --out does not exist" >&2; exit 2; }; fi

say() { echo "run.sh: $*" >&2; }

# --- Python environment ---------------------------------------------------------------------
REQUIREMENTS="torch==$TORCH_VERSION gymnasium[box2d]==$GYMNASIUM_VERSION numpy==$NUMPY_VERSION swig==$SWIG_VERSION"
STAMP="$VENV/.brc-bench-requirements"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating the venv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$REQUIREMENTS" ]; then
    say "installing $REQUIREMENTS into $VENV (first time: several GB of torch wheels)"
    t0=$(date +%s)
    "$VENV/bin/python" -m pip install --upgrade pip >&2
    # box2d builds with SWIG where no wheel fits: bring it first, as a wheel.
    "$VENV/bin/python" -m pip install "swig==$SWIG_VERSION" >&2
    "$VENV/bin/python" -m pip install "torch==$TORCH_VERSION" \
        "gymnasium[box2d]==$GYMNASIUM_VERSION" "numpy==$NUMPY_VERSION" >&2
    echo "$REQUIREMENTS" > "$STAMP"
    say "installed in $(( $(date +%s) - t0 )) s; venv size $(du -sh "$VENV" | cut -f1)"
fi
VPY="$VENV/bin/python"

# --- ours -----------------------------------------------------------------------------------
if [ -n "${BRC_BIN:-}" ]; then
    BRC=$BRC_BIN
    BUILD=0
else
    TARGET_DIR=${CARGO_TARGET_DIR:-target}
    case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
    BRC="$TARGET_DIR/release/brc"
fi
if [ "$BUILD" = 1 ]; then
    say "building: cargo build --release -p brc-cli"
    (cd "$ROOT" && cargo build --release -p brc-cli >&2)
fi
[ -x "$BRC" ] || { say "no brc binary at $BRC (build it, or drop --no-build)"; exit 1; }
RUSTC_VERSION=$(cd "$ROOT" && rustc --version 2>/dev/null || echo "rustc unknown")

# --- the rounds -----------------------------------------------------------------------------
if [ -n "$RAW_DIR" ]; then
    mkdir -p "$RAW_DIR"
    RAW_DIR=$(cd "$RAW_DIR" && pwd)
    WORK=$RAW_DIR
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/brc-bench.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
OURS_FILES=()
REF_FILES=()
for ((r = 1; r <= ROUNDS; r++)); do
    say "round $r/$ROUNDS: ours ($BRC bench --json ${QUICK[*]})"
    (cd "$ROOT" && "$BRC" bench --json "${QUICK[@]}") > "$WORK/ours-$r.json"
    OURS_FILES+=("$WORK/ours-$r.json")
    say "round $r/$ROUNDS: reference (reference.py --json ${QUICK[*]})"
    # OPENBLAS_* (set on some machines for old OpenBLAS builds) would only slow numpy down.
    (cd "$ROOT" && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        "$VPY" "$HERE/reference.py" --json "${QUICK[@]}") > "$WORK/ref-$r.json"
    REF_FILES+=("$WORK/ref-$r.json")
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")

SIZE=full
[ ${#QUICK[@]} -gt 0 ] && SIZE=quick
OUT_ARGS=()
[ -n "$OUT" ] && OUT_ARGS=(--out "$OUT")
"$VPY" "$HERE/compare.py" --ours "${OURS_FILES[@]}" --ref "${REF_FILES[@]}" \
    --command "$COMMAND" --rustc "$RUSTC_VERSION" --size "$SIZE" \
    --load-before "$LOAD_BEFORE" --load-after "$LOAD_AFTER" "${OUT_ARGS[@]}"
[ -n "$RAW_DIR" ] && say "raw JSON kept in $RAW_DIR"
exit 0
