#!/usr/bin/env bash
# Run one translation recipe end to end: prepare -> train -> evaluate.
#   bash recipes/run.sh <recipe> [hydra overrides...]      e.g. bash recipes/run.sh multi30k_en_fr
# The run folder is runs/<recipe>/<timestamp> (RUN=... overrides it); evaluation translates
# the recipe's test splits with its beam search and scores them with sacreBLEU
# (RUN/eval/results.json). EXAMPLES=N prints N example translations per test split.
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=${1:?usage: bash recipes/run.sh <recipe> [hydra overrides...]}
shift
BIN=${BIN:-.venv/bin}
RUN=${RUN:-runs/$recipe/$(date +%Y-%m-%d_%H-%M-%S)}
args=(--config-dir "recipes/$recipe" --config-name "$recipe")
t0=$(date +%s)
"$BIN/nmt-prepare" "${args[@]}" "$@" hydra.run.dir="$RUN"
t1=$(date +%s)
"$BIN/nmt-train" "${args[@]}" "$@" hydra.run.dir="$RUN"
t2=$(date +%s)
"$BIN/nmt-evaluate" "$RUN" ${SPLITS:+--splits $SPLITS} --examples "${EXAMPLES:-0}"
t3=$(date +%s)
echo "recipe $recipe: prepare $((t1 - t0)) s, train $((t2 - t1)) s, evaluate $((t3 - t2)) s; run folder $RUN"
