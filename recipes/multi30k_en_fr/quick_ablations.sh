#!/usr/bin/env bash
# Run: bash recipes/multi30k_en_fr/quick_ablations.sh NAME:OVERRIDES [NAME:OVERRIDES ...]
# The Multi30k ablations at the quickstart shape (recipes/quickstart: bi-GRU + Bahdanau,
# GloVe/fastText embeddings, 5 epochs of a cosine schedule): one run folder per job under
# runs/ablations/NAME, trained with one torch thread (two such lanes share 2 cores), then
# evaluated on the three test sets (beam 5). Compare them with
#   nmt-report runs/ablations/gru-s1 runs/ablations/lstm-s1 ... --buckets
# Example lane: bash recipes/multi30k_en_fr/quick_ablations.sh gru-s1:train.seed=1 "lstm-s1:model.cell=lstm train.seed=1"
# The same at the recipe's shape on a 30-minute budget (its cosine ends with the budget):
#   RECIPE=multi30k_en_fr MINUTES=30 OUT=runs/budget30 bash recipes/multi30k_en_fr/quick_ablations.sh ...
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
RECIPE=${RECIPE:-quickstart}   # recipes/quickstart, or multi30k_en_fr (this folder)
MINUTES=${MINUTES:-40}          # quickstart: a cap only (its 5 epochs end first)
OUT=${OUT:-runs/ablations}
if [ "$RECIPE" = quickstart ]; then dir=recipes/quickstart; else dir=recipes/multi30k_en_fr; fi
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
for job in "$@"; do
  name=${job%%:*}; overrides=${job#*:}
  out=$OUT/$name
  start=$(date +%s)
  echo "$(date -u +%FT%TZ) start $name: $overrides" >> "$OUT/lanes.log"
  # shellcheck disable=SC2086  # the overrides are words on purpose
  "$BIN/nmt-train" --config-dir "$dir" --config-name "$RECIPE" \
      train.threads=1 train.max_minutes="$MINUTES" $overrides hydra.run.dir="$out" > "$OUT/$name.train.log" 2>&1
  mid=$(date +%s)
  "$BIN/nmt-evaluate" "$out" --splits test_2016_flickr test_2017_flickr test_2017_mscoco \
      > "$OUT/$name.eval.log" 2>&1
  end=$(date +%s)
  echo "$(date -u +%FT%TZ) done $name: train $((mid-start)) s, eval $((end-mid)) s" >> "$OUT/lanes.log"
done
