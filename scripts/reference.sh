#!/usr/bin/env bash
# Publishes the finished runs under RUNS_DIR into results/reference/ and rebuilds the
# comparisons docs/results.md quotes:
#   results/reference/<name>/seed-<k>/   config, logs, summary, final + best online weights, and
#                                        both agents re-evaluated on 100 fresh episodes per task
#                                        (env seeds 2,000,000+: evaluation-{weights,best}-…json)
#   results/reference/compare/           the methods, final weights (our protocol), + predecessor logs
#   results/reference/compare-best/      the same methods, best checkpoints (the predecessor's protocol)
#   results/reference/ablations/         brc_tuned against its one-change variants (the newest
#                                        brc_t_lr_constant, its step before change 6, and
#                                        brc_t_vmax20 before change 5; others brc_t_critics1,
#                                        the one-critic step; the oldest brc_t_support10)
#   results/reference/surgery/           gradient surgery against its controls (balanced batches,
#                                        task-blind), Shared DQN and one-critic BRC sizes, final weights
#   results/reference/varshare_comparison/ VarShare and its l2 ablation against the network each
#                                        one adapts (Shared DQN, one-critic tuned BRC), final weights
# A run already published is left alone (delete its directory to publish it again).
#
#   scripts/reference.sh [--publish-only] [RUNS_DIR…]
#                                        (default results/runs; BRC_BIN overrides the binary;
#                                        --publish-only leaves the comparisons as they are)
#   scripts/reference.sh results/runs results/sweeps/surgery
set -euo pipefail
cd "$(dirname "$0")/.."
publish_only=false
if [ "${1:-}" = --publish-only ]; then publish_only=true; shift; fi
runs=("${@:-results/runs}")
brc=${BRC_BIN:-target/release/brc}
if [ -z "${BRC_BIN:-}" ]; then cargo build --release -p brc-cli; fi
ref=results/reference
report=evaluation-best-all-seed2000000-n100.json

for run in $(printf '%s/*/seed-* ' "${runs[@]}"); do
    [ -f "$run/summary.json" ] || continue            # unfinished
    dest=$ref/$(basename "$(dirname "$run")")/$(basename "$run")
    [ -f "$dest/weights.safetensors" ] && continue    # published already
    "$brc" publish "$run" --out "$dest" > /dev/null
    for agent in weights best; do
        "$brc" evaluate --run "$dest" --checkpoint "$agent.safetensors" \
            --episodes 100 --seed 2000000 --json > /dev/null
    done
    echo "published $dest"
done

if $publish_only; then exit 0; fi

present() { for m in "$@"; do [ -d "$ref/$m" ] && echo "$ref/$m"; done; }
surgery_methods=(shared_dqn shared_dqn_blind shared_dqn_balanced pcgrad pcgrad_blind gradnorm gradnorm_blind cagrad brc_t_critics1 brc_balanced brc_pcgrad brc_cagrad brc_balanced_21 brc_pcgrad_21 brc_cagrad_21)
mapfile -t main < <(present shared_dqn independent_dqn independent_dqn_matched brc brc_polyak brc_t_critics1 brc_tuned shared_dqn_blind shared_dqn_balanced pcgrad pcgrad_blind gradnorm gradnorm_blind cagrad brc_balanced brc_pcgrad brc_cagrad varshare_mlp varshare_mlp_l2 varshare varshare_l2)
mapfile -t varshare < <(present shared_dqn varshare_mlp varshare_mlp_l2 brc_t_critics1 varshare varshare_l2)
mapfile -t surgery < <(present "${surgery_methods[@]}")
mapfile -t ablations < <(present brc_tuned brc_t_critics1 brc_t_support10 brc_t_scalar brc_t_noblocks brc_t_no_decay brc_t_postln brc_t_tau001 brc_t_lr_decay brc_t_buffer500k brc_t_c1_buffer500k brc_t_unit_embedding brc_t_batch128 brc_t_nstep3 brc_t_replay2 brc_t_width512 brc_t_vmax20 brc_t_c1_vmax10 brc_t_lr_constant brc_t_lr_floor001)
predecessor=()                                        # its logs, where ../shared is present
[ -d ../shared/predecessor/metrics ] && predecessor=(../shared/predecessor/metrics)
"$brc" compare "${main[@]}" "${predecessor[@]}" --out "$ref/compare" > /dev/null
"$brc" compare "${main[@]}" --final-evaluation "$report" --out "$ref/compare-best" > /dev/null
if [ "${#ablations[@]}" -gt 1 ]; then
    "$brc" compare "${ablations[@]}" --out "$ref/ablations" > /dev/null
fi
if [ "${#surgery[@]}" -gt 2 ]; then
    # Curve figures by question: batches and task input, surgery on Shared DQN, on BRC.
    groups=$(mktemp); trap 'rm -f "$groups"' EXIT
    group() { # NAME METHOD... -> a [[group]] of the published ones
        local name=$1 present=(); shift
        for m in "$@"; do [ -d "$ref/$m" ] && present+=("\"$m\""); done
        [ "${#present[@]}" -eq 0 ] && return
        printf '[[group]]\nname = "%s"\nmethods = [%s]\n\n' "$name" "$(IFS=,; echo "${present[*]}")" >> "$groups"
    }
    group "Shared DQN: batches and task input" shared_dqn shared_dqn_blind shared_dqn_balanced
    group "Shared DQN: gradient surgery" shared_dqn_balanced pcgrad pcgrad_blind gradnorm gradnorm_blind cagrad
    group "BRC: gradient surgery" brc_t_critics1 brc_balanced brc_pcgrad brc_cagrad
    group "BRC: gradient surgery on 3 x 21 rows" brc_t_critics1 brc_balanced_21 brc_pcgrad_21 brc_cagrad_21
    "$brc" compare "${surgery[@]}" --group "$groups" --out "$ref/surgery" > /dev/null
fi
if [ "${#varshare[@]}" -gt 2 ]; then
    "$brc" compare "${varshare[@]}" --out "$ref/varshare_comparison" > /dev/null
fi
echo "tables: $ref/compare/results.md $ref/compare-best/results.md $ref/ablations/results.md $ref/surgery/results.md $ref/varshare_comparison/results.md"
